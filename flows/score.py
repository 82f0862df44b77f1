"""score-batch (Prefect flow; `reelsense score`): every user's top-K items now, into `scores`.

    reelsense score [--model lstm-attn] [--k 20] [--candidates 200] [--users u1,u2] [--run-id ID]
                    [--shards 4] [--dask-workers N | --dask-address tcp://host:8786]

Users are sharded by their `events` partition (user_bucket): a shard task reads only its users'
events, loads the model (checked against the warehouse's feature schema), generates candidates by
embedding similarity and re-ranks them (ranker/scoring.py), and appends its rows to `scores` with
the run id and the model version. Appends are idempotent by (run_id, user_id, item_id), so a run
repeated with the same `--run-id` after a crash completes the missing shards and duplicates nothing.
Shards run on threads by default, or on a Dask cluster: local worker processes (`--dask-workers`)
or a running scheduler (`--dask-address`, env REELSENSE_DASK_ADDRESS), whose workers must see the
same warehouse path.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ranker import artifacts
from ranker.base import device_for
from ranker.data import load_dataset
from ranker.names import ALL_MODELS
from ranker.scoring import current_queries, rerank, similarity_candidates
from warehouse import db, store
from warehouse.errors import ReelsenseError
from warehouse.schemas import EVENT_PARTITIONS, SCORES
from warehouse.store import Warehouse

MAX_HISTORY = 20


def new_run_id() -> str:
    return f"score-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}"


@task(name="score-shard", cache_policy=NO_CACHE)
def score_shard(home: str, buckets: list[int], model_name: str, run_id: str, *, k: int, n_candidates: int,
                users: list[str] | None, device: str, version: str | None) -> dict[str, Any]:
    wh = Warehouse(home)
    started = time.perf_counter()
    data = load_dataset(wh, MAX_HISTORY, buckets=buckets)
    model = artifacts.load_with_base(wh.models_dir, model_name, data, device, version=version, match="schema")
    queries = current_queries(data)
    if users is not None:
        queries = queries.take(np.flatnonzero(np.isin(queries.users, users)))
    if len(queries) == 0:
        return {"users": 0, "written": 0, "duplicates": 0, "seconds": time.perf_counter() - started}
    candidates = similarity_candidates(data, queries, n_candidates)
    items, scores = rerank(model, data, queries, candidates, k)
    n, k_kept = items.shape
    item_ids = np.asarray(data.item_ids, dtype=object)
    rows = pa.table({
        "run_id": pa.array([run_id] * (n * k_kept)), "user_id": pa.array(np.repeat(queries.users, k_kept).tolist()),
        "item_id": pa.array(item_ids[items.ravel()].tolist()), "score": pa.array(scores.ravel(), pa.float32()),
        "rank": pa.array(np.tile(np.arange(1, k_kept + 1, dtype=np.int32), n)),
        "model_version": pa.array([f"{model_name}@{model.version}"] * (n * k_kept)),
        "scored_at": pa.array([datetime.now(timezone.utc)] * (n * k_kept), pa.timestamp("us", tz="UTC")),
    })
    result = store.append(wh, SCORES, rows)
    return {"users": n, "written": result.written, "duplicates": result.duplicates, "seconds": time.perf_counter() - started}


def shard_buckets(shards: int) -> list[list[int]]:
    """Split the events partitions into `shards` groups (round robin: users are spread evenly)."""
    shards = max(1, min(shards, EVENT_PARTITIONS))
    return [list(range(s, EVENT_PARTITIONS, shards)) for s in range(shards)]


@flow(name="score-batch", log_prints=True)
def score_batch(home: str, model: str = "lstm-attn", k: int = 20, n_candidates: int = 200, users: list[str] | None = None,
                run_id: str | None = None, shards: int = 4, device: str = "auto", version: str | None = None) -> dict[str, Any]:
    if model not in ALL_MODELS:
        raise ReelsenseError(f"unknown ranker {model!r}; expected one of {', '.join(ALL_MODELS)}")
    if k < 1 or n_candidates < k:
        raise ReelsenseError(f"need 1 <= k <= candidates, got k={k}, candidates={n_candidates}")
    run_id = run_id or new_run_id()
    started = time.perf_counter()
    futures = [score_shard.submit(home, buckets, model, run_id, k=k, n_candidates=n_candidates, users=users,
                                  device=device_for(device), version=version) for buckets in shard_buckets(shards)]
    parts = [f.result() for f in futures]
    db.refresh_views(Warehouse(home))
    seconds = time.perf_counter() - started
    summary = {"run_id": run_id, "model": model, "users": sum(p["users"] for p in parts), "written": sum(p["written"] for p in parts),
               "duplicates": sum(p["duplicates"] for p in parts), "seconds": round(seconds, 2), "k": k}
    get_run_logger().info("score-batch: %s", summary)
    return summary


def run_score(home: str, *, dask_workers: int = 0, dask_address: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run the flow on threads, local Dask worker processes, or a running Dask scheduler."""
    if dask_workers or dask_address:
        from prefect_dask import DaskTaskRunner

        runner = (DaskTaskRunner(address=dask_address) if dask_address else
                  DaskTaskRunner(cluster_kwargs={"n_workers": dask_workers, "processes": True, "threads_per_worker": 1}))
        return score_batch.with_options(task_runner=runner)(home, **kwargs)
    return score_batch(home, **kwargs)


def summary_line(summary: dict[str, Any]) -> str:
    rate = summary["written"] / summary["seconds"] if summary["seconds"] else 0.0
    return (f"score-batch {summary['run_id']}: {summary['users']} users x top {summary['k']} with {summary['model']}: "
            f"{summary['written']} rows written, {summary['duplicates']} already there; {summary['seconds']:.1f}s ({rate:.0f} rows/s)")
