"""build-features, train-ranker and evaluate (Prefect flows; `reelsense features | train | evaluate`).

- build-features: behaviour sequences from `events` with DuckDB SQL (ranker/data.py), written to
  `samples` (positives with their histories, and one uniform and one popularity-sampled negative per
  positive, seeded);
- train-ranker: fits each ranker on the train split, saves it to
  `<home>/models/rankers/<name>/<version>/` with its config, training history and the fingerprint
  of the data it saw;
- evaluate: every saved ranker in one harness (ranker/evaluate.py), written to
  `<home>/reports/results.json` and `results.md`.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ranker import artifacts
from ranker.base import device_for
from ranker.data import Dataset, build_sequences, item_vocabulary, load_dataset, negative_samples
from ranker.evaluate import evaluate_model, evaluation_slices
from ranker.registry import ALL_MODELS, NEEDS_BASE, build
from warehouse import db, store
from warehouse.schemas import SAMPLES
from warehouse.store import Warehouse

MAX_HISTORY = 20


@flow(name="build-features", log_prints=True)
def build_features(home: str, max_history: int = MAX_HISTORY, seed: int = 0) -> dict[str, Any]:
    wh = Warehouse(home)
    table = build_sequences(wh, max_history)
    positives = pa.table({
        "user_id": table.column("user_id"), "item_id": table.column("item_id"),
        "label": pa.array(np.ones(table.num_rows, np.int8)), "event_ts": table.column("event_ts"),
        "event": table.column("event"), "history_item_ids": table.column("history_item_ids"),
        "history_events": table.column("history_events"), "history_watch_ratios": table.column("history_watch_ratios"),
        "split": table.column("split"), "negative_kind": pa.nulls(table.num_rows, pa.string()),
    })
    negatives = negative_samples(item_vocabulary(wh), table, seed)
    result = store.overwrite(wh, SAMPLES, pa.concat_tables([positives, negatives], promote_options="permissive"))
    db.refresh_views(wh)
    splits = {s: int(n) for s, n in zip(*np.unique(table.column("split").to_numpy(zero_copy_only=False), return_counts=True))}
    summary = {"positives": table.num_rows, "negatives": negatives.num_rows, "rows": result.written, "splits": splits}
    get_run_logger().info("build-features: %s", summary)
    return summary


@task(name="train-one-ranker", cache_policy=NO_CACHE)
def train_one(home: str, name: str, data: Dataset, trained: dict, seed: int, device: str,
              force: bool = False) -> tuple[Any, dict[str, Any]]:
    models_dir = Warehouse(home).models_dir
    saved = None if force else artifacts.latest(models_dir, name)
    if saved is not None and saved["data_fingerprint"] == artifacts.fingerprint(data) and saved["seed"] == seed:
        # Same data, same seed: training again would give the same model.
        return artifacts.load(models_dir, name, data, trained, device), {**saved, "reused": True}
    started = time.perf_counter()
    model = build(name, device, trained)
    model.fit(data, seed=seed)
    history = getattr(model, "history", None)
    meta = {"name": name, "version": artifacts.new_version(data), "seed": seed, "device": device,
            "fit_seconds": round(time.perf_counter() - started, 1), "data_fingerprint": artifacts.fingerprint(data),
            "feature_schema": artifacts.feature_schema(data), "content": data.content_source, "n_items": data.n_items,
            "behaviours": data.behaviours, "history": history if isinstance(history, list) else None,
            "trained_at": datetime.now(timezone.utc).isoformat()}
    artifacts.save(models_dir, model, meta)
    model.version = meta["version"]
    return model, meta


@flow(name="train-ranker", log_prints=True)
def train_rankers(home: str, models: list[str] = ALL_MODELS, seed: int = 0, device: str = "auto",
                  force: bool = False) -> dict[str, Any]:
    logger = get_run_logger()
    data = load_dataset(Warehouse(home), MAX_HISTORY)
    trained: dict[str, Any] = {}
    metas = {}
    for name in _ordered(models):
        trained[name], metas[name] = train_one(home, name, data, trained, seed, device_for(device), force)
        logger.info("trained %s in %.1fs (version %s)", name, metas[name]["fit_seconds"], metas[name]["version"])
    return metas


def _ordered(models: list[str]) -> list[str]:
    """Bases before the models that re-rank them."""
    unknown = sorted(set(models) - set(ALL_MODELS))
    if unknown:
        raise KeyError(f"unknown rankers {unknown}; known: {', '.join(ALL_MODELS)}")
    needed = set(models) | {NEEDS_BASE[m] for m in models if m in NEEDS_BASE}
    return [m for m in ALL_MODELS if m in needed]


def load_trained(home: str, data: Dataset, models: list[str], device: str) -> dict[str, Any]:
    trained: dict[str, Any] = {}
    for name in _ordered(models):
        trained[name] = artifacts.load(Warehouse(home).models_dir, name, data, trained, device)
    return trained


@flow(name="evaluate", log_prints=True)
def evaluate_rankers(home: str, models: list[str] = ALL_MODELS, seed: int = 0, max_users: int = 2000,
                     device: str = "auto", dataset: str = "") -> dict[str, Any]:
    wh = Warehouse(home)
    data = load_dataset(wh, MAX_HISTORY)
    trained = load_trained(home, data, models, device_for(device))
    slices = evaluation_slices(data, max_users=max_users, seed=seed)
    results = {"models": {}, "dataset": dataset or str(wh.home), "seed": seed,
               "command": " ".join(["reelsense", *sys.argv[1:]]),
               "protocol": {
                   "split": "leave-one-out per user: last positive = test, second-to-last = valid",
                   "ranking": f"full ranking of the test target against all {data.n_items} items, history items not masked",
                   "users": {k: int(len(v[0])) for k, v in slices.items()},
                   "cold_users": "the same users' histories cut to their last 1, 2 or 3 steps (labelled as cut)",
                   "cold_items": "test targets never seen in training",
                   "ctr": "AUC / GAUC / logloss on 25 uniform + 25 popularity-sampled negatives per target (sampled, seeded)",
                   "ci95": "bootstrap over users, 1000 resamples", "content": data.content_source}}
    for name in models:
        started = time.perf_counter()
        results["models"][name] = evaluate_model(trained[name], data, slices, seed=seed)
        results["models"][name]["version"] = trained[name].version
        artifacts.record_metrics(wh.models_dir, name, trained[name].version,
                                 {k: {m: v for m, v in r.items() if not isinstance(v, list)} for k, r in results["models"][name].items()
                                  if isinstance(r, dict)})
        get_run_logger().info("evaluated %s in %.1fs", name, time.perf_counter() - started)
    wh.reports_dir.mkdir(parents=True, exist_ok=True)
    (wh.reports_dir / "results.json").write_text(json.dumps(results, indent=1))
    (wh.reports_dir / "results.md").write_text(results_markdown(results))
    return results


def results_markdown(results: dict[str, Any]) -> str:
    lines = [f"# Results: {results['dataset']}", "", f"`{results['command']}` (seed {results['seed']})", ""]
    for slice_name in ("overall", "cold_users", "cold_items"):
        users = results["protocol"]["users"].get(slice_name, 0)
        lines += [f"## {slice_name} ({users} users)", "",
                  "| model | HR@10 | NDCG@10 (95% CI) | HR@20 | NDCG@20 | AUC | GAUC | logloss |", "|---|---|---|---|---|---|---|---|"]
        for name, by_slice in results["models"].items():
            r = by_slice.get(slice_name, {})
            if not r.get("users"):
                continue
            ci = r["ndcg@10_ci95"]
            logloss = f"{r['logloss']:.4f}" if r.get("logloss") is not None else "-"
            lines.append(f"| {name} | {r['hr@10']:.4f} | {r['ndcg@10']:.4f} ({ci[0]:.4f}-{ci[1]:.4f}) | {r['hr@20']:.4f} | "
                         f"{r['ndcg@20']:.4f} | {r['auc']:.4f} | {r['gauc']:.4f} | {logloss} |")
        lines.append("")
    protocol = results["protocol"]
    lines += ["Protocol: " + "; ".join(f"{k}: {v}" for k, v in protocol.items() if k != "users"), ""]
    return "\n".join(lines)
