"""score-batch (Prefect flow; `reelsense score`): every user's top-K items now, into `scores`.

    reelsense score [--model lstm-attn] [--k 20] [--retrieval model|similarity] [--candidates 200]
                    [--users u1,u2] [--run-id ID]
                    [--replace] [--shards 4] [--dask-workers N | --dask-address tcp://host:8786]

Users are sharded by their `events` partition (user_bucket): the flow rebuilds `samples` first when
events changed, computes the whole table's popularity once, and each shard task reads its users'
rows of that build of `samples` (a rebuild during the run, by another command after an ingest,
makes the remaining shards refuse with `StaleSamples`: rerun with the same --run-id and --replace, or
without --replace where the rebuild changed no data) and their
engaged items
(warehouse/sql/analysis/engaged_items.sql), loads the model
(checked against the warehouse's feature schema), keeps the model's own top K of every item each
user has not engaged with (`--retrieval model`, the default), or re-ranks candidates by embedding
similarity among them (`--retrieval similarity`, `--candidates` of them; ranker/scoring.py), and appends
its rows to `scores` with the run id and the model version. A user with fewer than K unseen items
gets fewer rows.

A run id belongs to one model version (`claim_run`): reusing it with another model or version is
refused, unless `replace=True` (`--replace`), which first removes the run's report and explanations, then
its scores (the run's partition folder in each table), both journaled, so a crash leaves the old
table or the new one. Appends are idempotent by (run_id, user_id, item_id), so a run repeated with
the same `--run-id` and model version after a crash completes the missing shards and duplicates
nothing. Shards run on threads by default, or on a Dask cluster: local worker processes
(`--dask-workers`) or a running scheduler (`--dask-address`, env REELSENSE_DASK_ADDRESS), whose
workers must see the same warehouse path.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait

from flows.arguments import (
    changed_inputs,
    check_arguments,
    check_positive_users,
    check_saved_version,
    check_users,
    content_steps,
    idle_users,
    ranking_inputs,
    run_held,
    run_k,
)
from flows.console import run_option, users_option, waiting_for_reports
from flows.latest import latest_meta
from flows.rank import current_samples
from flows.report import run_dir, write_runs_index
from flows.runners import dask_runner
from ranker import artifacts
from ranker.base import device_for
from ranker.data import MAX_HISTORY, ItemPopularity, StaleSamples, check_content, load_dataset, samples_build, warehouse_popularity
from ranker.names import CANDIDATES, READS_CONTENT, RETRIEVALS, TOP_K
from ranker.scoring import current_queries, engaged_pairs, retrieve
from warehouse import db, store
from warehouse.errors import ReelsenseError
from warehouse.schemas import EMBEDDINGS, EVENT_PARTITIONS, EXPLANATIONS, SCORES, TableSpec
from warehouse.store import Warehouse


def new_run_id() -> str:
    return f"score-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}"


class RunConflict(ReelsenseError):
    """A score run id already holds the rows of another model version."""


@task(name="score-shard", cache_policy=NO_CACHE)
def score_shard(
    home: str,
    buckets: list[int],
    model_name: str,
    run_id: str,
    *,
    k: int,
    n_candidates: int,
    retrieval: str = RETRIEVALS[0],
    users: list[str] | None,
    device: str,
    version: str,
    build: str | None,
    popularity: ItemPopularity | None = None,
) -> dict[str, Any]:
    wh = Warehouse(home)
    started = time.perf_counter()
    # The build of `samples` the run started with: a rebuild since (after an ingest) makes this shard refuse.
    data = load_dataset(wh, MAX_HISTORY, buckets=buckets, build=build, popularity=popularity)
    model = artifacts.load_with_base(wh.models_dir, model_name, data, device, version=version, match="schema")
    queries = current_queries(data)
    if users is not None:
        queries = queries.take(np.flatnonzero(np.isin(queries.users, users)))
    if len(queries) == 0:
        return {"users": 0, "written": 0, "duplicates": 0, "seconds": time.perf_counter() - started}
    engaged = db.analysis(wh, "engaged_items", {"buckets": [int(b) for b in buckets]})
    seen = engaged_pairs(data, queries, engaged.column("user_id").to_pylist(), engaged.column("item_id").to_pylist())
    items, scores = retrieve(model, data, queries, k, engaged=seen, retrieval=retrieval, n_candidates=n_candidates)  # (Q, k); 0: fewer than k unseen items
    kept = items > 0
    n = int(kept.sum())
    item_ids = np.asarray(data.item_ids, dtype=object)
    rows = pa.table(
        {
            "run_id": pa.array([run_id] * n),
            "user_id": pa.array(np.repeat(queries.users, kept.sum(1)).tolist()),
            "item_id": pa.array(item_ids[items[kept]].tolist()),
            "score": pa.array(scores[kept], pa.float32()),
            "rank": pa.array(np.cumsum(kept, axis=1)[kept], pa.int32()),  # kept items are each row's first ones
            "model_version": pa.array([f"{model_name}@{model.version}"] * n),
            "scored_at": pa.array([datetime.now(timezone.utc)] * n, pa.timestamp("us", tz="UTC")),
        }
    )
    result = store.append(wh, SCORES, rows)
    return {"users": len(queries), "written": result.written, "duplicates": result.duplicates, "seconds": time.perf_counter() - started}


def check_model_fits(wh: Warehouse, model: str, version: str, **load: Any) -> None:
    """The shards' own checks of `model` at `version`, asked on one partition's users (`load`:
    load_dataset's build and popularity): against the features (ModelMismatch), and for a content
    ranker the content (MissingContent: items extracted since align ran, or no content at all;
    probe: a --replace refused by it in the shards had removed the run already)."""
    data = load_dataset(wh, MAX_HISTORY, buckets=[0], **load)
    artifacts.check_with_base(wh.models_dir, model, data, version=version, match="schema")
    if model in READS_CONTENT:
        check_content(data, model)


def find_misfit(wh: Warehouse, model: str, version: str) -> artifacts.ModelMismatch | None:
    """Why `model` at `version` cannot score this warehouse (`check_model_fits`), or None where it
    can, or where `samples` is not current (the flow rebuilds it first, and checks then)."""
    try:
        check_model_fits(wh, model, version)
    except StaleSamples:
        return None
    except artifacts.ModelMismatch as exc:
        return exc
    return None


def model_version(wh: Warehouse, model: str, version: str | None) -> str:
    """The version a run with `model` (and `version`, default: the latest) will score with."""
    check_saved_version(wh.models_dir, model, version)
    meta = artifacts.read_meta(wh.models_dir, model, version) if version else latest_meta(wh.models_dir, model)
    if meta is None:
        fix = f"run `reelsense train --models {model}` first"
        if model in READS_CONTENT and not wh.has_rows_on_disk(EMBEDDINGS):  # probe 48: that training then refused for want of content
            fix = (
                f"it reads the items' content vectors, which the warehouse lacks: {content_steps(wh)}, then `reelsense train "
                f"--models {model}`; or score with an id-only ranker (`report` explains no run before those steps): `reelsense train --models sasrec`, "
                "then `reelsense score --model sasrec`"
            )
        raise artifacts.ModelMismatch(f"no trained {model} in {wh.models_dir / 'rankers'}; {fix}")
    return meta["version"]


def claim_run(
    wh: Warehouse,
    run_id: str,
    model_version: str,
    *,
    replace: bool,
    k: int | None = None,
    ranked_from: str | None = None,
    samples_current: bool = True,
    record: bool = False,
) -> dict[str, int]:
    """Make `run_id` a run of `model_version` ("name@version"). A run holding another version's
    scores is refused, or with `replace` removed first (its report, explanations and scores); a run
    of the same version is left as it is, to be completed, unless it holds ranks beyond `k` (a run of
    a larger --k: probe, `--k 5` on it said only "0 rows written, 1005 already there") or was ranked
    from other data than `ranked_from` (`ranking_inputs`, kept beside the run's rows; None: not
    checked; a run scored before it was kept, 2026-12-07: not checked either; `samples_current`
    False: `ranked_from` was read from a `samples` not rebuilt since `events` changed, so its part
    is not compared, and the flow checks again after the rebuild). With `record`, a run
    that holds no rows now keeps `ranked_from` and `k` (its --k: its largest rank is less where
    users have fewer items to rank, probe), and a run extended to a larger `k` keeps that. Returns
    the rows removed per table, and under "report" 1 where the run's report was removed."""
    if replace:  # report, then explanations: a crash in between leaves scores to explain again, never stale explanations
        with store.runs_lock(wh, exclusive=True, on_wait=waiting_for_reports):  # a report of the run being written is finished first
            report = run_dir(wh, run_id)
            reported = report.exists()
            if reported:
                shutil.rmtree(report)
                write_runs_index(wh)
            removed = {"report": int(reported)} | {spec.name: remove_runs(wh, spec, {run_id}) for spec in (EXPLANATIONS, SCORES)}
        held: list[dict[str, Any]] = []
        made = None
    else:
        removed, held, made = {}, run_held(wh, run_id), store.partition_record(wh, SCORES, run_id)

        def users() -> list[str]:  # read only for a refusal's advice: not on every completion (a run may hold 50,000 users)
            return [r["user_id"] for r in db.analysis(wh, "run_users", {"run_id": run_id}).to_pylist()]

        check_held(run_id, model_version, held, k=k, ranked_from=ranked_from, made=made, samples_current=samples_current, users=users)
    if record and ranked_from is not None and not held:  # before any shard writes: a run cut short knows its data
        store.record_partition(wh, SCORES, run_id, {"ranked_from": ranked_from, "k": k, "recorded_at": datetime.now(timezone.utc).isoformat()})
    elif record and made is not None and k is not None and k > (made.get("k") or 0):  # extended: it holds the larger --k now
        store.record_partition(wh, SCORES, run_id, {**made, "k": k})
    return removed


def check_held(
    run_id: str,
    model_version: str,
    held: list[dict[str, Any]],
    *,
    k: int | None,
    ranked_from: str | None,
    made: dict[str, Any] | None,
    samples_current: bool = True,
    users: Callable[[], list[str]] = list,
) -> None:
    """RunConflict where the rows a run holds (`held`: run_held) cannot be completed by a run of
    `model_version` with `k` from the data `ranked_from`; `made`: the run's kept record (claim_run);
    `users`: the run's users, asked for a refusal only and named in its completing command where
    few (probe: without them it scored a 3-user run over every user)."""
    others = [r for r in held if r["model_version"] != model_version]
    known = ranked_from is not None and bool(held) and made is not None
    stale = known and bool(changed_inputs(made["ranked_from"], ranked_from, samples_current=samples_current))  # known: neither is None
    top = run_k(made, held[0]["max_rank"] if held else 0)

    def completing(name: str, version: str, unsure: str = "") -> str:
        ran = users()
        named = users_option(ran)
        started = "(with the --retrieval and --candidates it was started with)"
        if ran and not named:  # probe: run as printed, a 26-user run was extended to every user
            started = (
                f"(with the --retrieval and --candidates it was started with, and --users naming its {len(ran)} users, which "
                f"`{db.run_users_command(run_id)}` lists: without them it scores every user)"
            )
        if made is None:  # no record of its data: the completion is unchecked (probe: said as if checked; the warning came only when it ran)
            started += ", unchecked: the run keeps no record of the data it was ranked from, so whether that data changed since is not known"
        return f"`reelsense score --model {name} --version {version} {run_option(run_id)} --k {top}{named}` completes that run{unsure} {started}"

    if others:
        found = ", ".join(f"{r['n_rows']} rows of {r['model_version']}" for r in held)
        # The safe ways first, the deleting one last (probe: --replace was the first advice given).
        complete = ""
        if stale:  # probe: the completion advised here was then refused as of other data
            complete = f" (run {run_id!r} cannot be completed either: it was ranked from other data than the warehouse holds now)"
        elif len(held) == 1:
            name, version = held[0]["model_version"].split("@", 1)
            # probe: "if no event changed" was not the condition: an event outside the histories changes none
            unsure = " if the histories it ranked from did not change (checked once `samples` is rebuilt)" if known and not samples_current else ""
            complete = "; " + completing(name, version, unsure)
        raise RunConflict(
            f"run id {run_id!r} already holds {found}, and this run scores with {model_version}: a run id belongs to one "
            f"model version. Leave out --run-id (or pick another) for a new run{complete}; --replace deletes run "
            f"{run_id!r} (its scores, explanations and report) and scores it again with {model_version}"
        )
    if stale:
        # Probe: after new events a completion wrote the users' new top lists beside their old ones
        # (two items at rank 1, items engaged with since), and the summary said nothing of it.
        raise RunConflict(
            f"run id {run_id!r} was ranked from other data than the warehouse holds now (`events`, `items` or the content "
            f"vectors changed since, or the DuckDB version that hashes them), so completing or extending it now would put two "
            f"rankings in one run. Leave out --run-id (or pick another) for a new run of the current data; --replace "
            f"deletes run {run_id!r} and scores it again from the current data"
        )
    if k is not None and held and top > k:
        name, version = model_version.split("@", 1)
        # probe: a --k 1000 run of 85 items a user was said to be "scored with --k 85"
        holds = (
            f"was scored with --k {top}"
            if (made or {}).get("k")
            else f"holds each user's top {top} at most (its largest rank: it was scored with --k {top} or more)"
        )
        raise RunConflict(
            f"run id {run_id!r} {holds}, and this run asks for the top {k}: a run "
            f"holds one --k. {completing(name, version)}; "
            f"leave out --run-id (or pick another) for a new run of the top {k}; --replace deletes run {run_id!r} and scores it "
            f"again with --k {k}"
        )


def remove_runs(wh: Warehouse, spec: TableSpec, run_ids: set[str]) -> int:
    """Remove the rows of `run_ids` from `spec`'s table (scores or explanations, both partitioned by
    run): the runs' partition folders go, journaled, and no other run is read; returns the rows removed."""
    if not wh.has_rows_on_disk(spec) or not run_ids:
        return 0
    removed = store.drop_partitions(wh, spec, run_ids)
    if not wh.has_rows_on_disk(spec):
        db.refresh_views(wh)  # the last run gone: the view becomes the empty one (a glob of no files fails)
    return removed


def shard_buckets(shards: int) -> list[list[int]]:
    """Split the events partitions into `shards` groups (round robin: users are spread evenly)."""
    shards = max(1, min(shards, EVENT_PARTITIONS))
    return [list(range(s, EVENT_PARTITIONS, shards)) for s in range(shards)]


@flow(name="score-batch", log_prints=True)
def score_batch(
    home: str,
    model: str = "lstm-attn",
    k: int = TOP_K,
    n_candidates: int = CANDIDATES,
    retrieval: str = RETRIEVALS[0],
    users: list[str] | None = None,
    run_id: str | None = None,
    shards: int = 4,
    device: str = "auto",
    version: str | None = None,
    replace: bool = False,
) -> dict[str, Any]:
    check_arguments(model, k, n_candidates, run_id, retrieval, replace)
    wh = Warehouse(home)
    if users:  # the CLI's check, for callers that skip it (review: unknown users went unsaid)
        users, warning = check_users(wh, users)
        if warning:
            get_run_logger().warning(warning)
    version = model_version(wh, model, version)  # every shard scores with this one, even if training ends meanwhile
    current_samples(home)  # once, before the shards read it
    build = samples_build(wh)
    idle = idle_users(wh, users)
    check_positive_users(users, idle)  # again: `samples` may be rebuilt only now. Before claim_run: a --replace removes nothing.
    popularity = warehouse_popularity(wh, MAX_HISTORY, build=build)  # once for every shard: the whole table's counts
    ranked_from = ranking_inputs(wh)  # of this build; kept beside the run's rows
    run_id = run_id or new_run_id()
    # The shards' own check of the model against the features, asked first on one partition's users:
    # a model that cannot score this warehouse is refused before claim_run, whose --replace removes
    # the old run (probe: a refused --replace left the run deleted and nothing in its place).
    check_model_fits(wh, model, version, build=build, popularity=popularity)
    removed = claim_run(wh, run_id, f"{model}@{version}", replace=replace, k=k, ranked_from=ranked_from, record=True)
    started = time.perf_counter()
    futures = [
        score_shard.submit(
            home,
            buckets,
            model,
            run_id,
            k=k,
            n_candidates=n_candidates,
            retrieval=retrieval,
            users=users,
            device=device_for(device),
            version=version,
            build=build,
            popularity=popularity,
        )
        for buckets in shard_buckets(shards)
    ]
    wait(futures)  # every shard ends before the run's rows are counted (review: the count raced the shards still writing)
    parts, failed = [], []
    for future in futures:
        try:
            parts.append(future.result())
        except ReelsenseError as exc:  # a shard failed: the others' rows stay, and the run can be completed
            failed.append(exc)
    written = sum(p["written"] for p in parts)
    if failed:
        db.refresh_views(wh)  # the shards' new files
        held = sum(r["n_rows"] for r in run_held(wh, run_id))
        if not held:
            raise failed[0]
        if any(isinstance(f, StaleSamples) for f in failed):  # review: completing it, the advice below, is refused now
            raise ReelsenseError(
                f"{failed[0]}; run {run_id} holds {held} rows, {written} of them written now: `samples` was rebuilt while it ran, so "
                f"where the data changed (an ingest) the run cannot be completed from the data it was ranked from. `reelsense score "
                f"--model {model} --version {version} {run_option(run_id)} --replace` scores it again from the current data (with the "
                "--k, --retrieval, --candidates and --users it was started with); where the rebuild changed no data (`features`), "
                "the same command without --replace completes it"
            ) from failed[0]
        # Not "incomplete": a rerun of a finished run fails the same way and writes nothing (probe).
        raise ReelsenseError(
            f"{failed[0]}; run {run_id} holds {held} rows, {written} of them written now by the shards that finished: fix the "
            f"cause, then `reelsense score --model {model} --version {version} {run_option(run_id)}` scores what it lacks "
            "(with the --k, --retrieval, --candidates and --users it was started with), or add --replace to start it over"
        ) from failed[0]
    db.refresh_views(wh)
    seconds = time.perf_counter() - started
    summary = {
        "run_id": run_id,
        "model": model,
        "users": sum(p["users"] for p in parts),
        "written": written,
        "duplicates": sum(p["duplicates"] for p in parts),
        "seconds": round(seconds, 2),
        "k": k,
        "retrieval": retrieval,
        "replaced": removed,
        # probe: a larger --k added ranks to a run whose report and explanations stayed as they were
        "report_predates": written > 0 and run_dir(wh, run_id).exists(),
        "without_positives": len(idle),  # a count and the first few: not millions of ids in the log (review)
        "without_positives_first": idle[:5],
    }
    get_run_logger().info("score-batch: %s", summary)
    return summary


def run_score(home: str, *, dask_workers: int = 0, dask_address: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run the flow on threads, local Dask worker processes, or a running Dask scheduler."""
    dask = dask_runner(dask_workers, dask_address)
    if dask:
        return score_batch.with_options(task_runner=dask[0])(home, **kwargs)
    return score_batch(home, **kwargs)
