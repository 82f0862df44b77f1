"""The warehouse as it grows: append cost, files before and after compaction, query latency, memory.

    .venv/bin/python benchmarks/warehouse_scale.py --home EMPTY_DIR [--scale 1] [--items N] [--runs 30] [--out FILE.json]

A synthetic platform the size of MicroLens-50K times `--scale` (scale 1: 50,000 users, 20,000
items, 360,000 events; 10: 3.6M events, 200k items), written the way the nightly jobs write it:
- `events` in 30 daily appends (ingest);
- one 384-d vector per item (a text model) in appends of `--commit-items` items (extract-items'
  default `commit_items`, 256: it commits 16 batches of 16 at a time);
- `--runs` score runs of `--run-rows` rows each (default 100,000 x scale), each in 4 shards
  (score-batch), every run under its own run id.
For each kind it reports the first and the last append (and the median of the first and last
five), the files per table before and after `store.compact`, the latency of three typical
queries through `db.query` (what `reelsense sql` runs) on a warm warehouse, and the peak RSS.
(Not benchmarks/warehouse.py: run as a script, that name would shadow the `warehouse` package.)
Measured, never asserted. Goal of issue 14: the last append of each kind at most 1.5x the first.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shlex
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from extractors.config import ExtractConfig
from warehouse import db, store
from warehouse.ingest import user_partition
from warehouse.schemas import EMBEDDINGS, EVENTS, ITEMS, SCORES, TABLES
from warehouse.store import Warehouse

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
EVENT_KINDS = np.array(["impression", "watch", "like", "comment"])
DIM = 384
MODEL = "synthetic-text@1"


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# Stored files each append's duplicate check read (store._new_rows' third argument), in order: a
# count that shared cores cannot blur, beside the times.
FILES_READ: list[int] = []
_new_rows = store._new_rows
store._new_rows = lambda spec, batch, files: FILES_READ.append(len(files or [])) or _new_rows(spec, batch, files)


def growth(seconds: list[float]) -> dict:
    """First and last append, the medians of the first and last five, and their ratio; the stored
    files the first and the last five appends read."""
    head, tail = statistics.median(seconds[:5]), statistics.median(seconds[-5:])
    per = max(1, len(FILES_READ) // len(seconds))  # a score run appends in shards: their sum
    read = [sum(FILES_READ[i : i + per]) for i in range(len(FILES_READ) - per * len(seconds), len(FILES_READ), per)]
    FILES_READ.clear()
    return {
        "files_read_first5": read[:5],
        "files_read_last5": read[-5:],
        "files_read_max": max(read, default=0),
        "appends": len(seconds),
        "first_s": round(seconds[0], 4),
        "last_s": round(seconds[-1], 4),
        "median_first5_s": round(head, 4),
        "median_last5_s": round(tail, 4),
        "last_over_first": round(tail / head, 2),
        "total_s": round(sum(seconds), 1),
    }


def write_items(wh: Warehouse, n_items: int) -> list[str]:
    ids = [f"i{k:07d}" for k in range(n_items)]
    hashes = [f"h{k:07d}" for k in range(n_items)]
    store.append(
        wh,
        ITEMS,
        pa.table(
            {
                "item_id": ids,
                "title": [f"title {k}" for k in range(n_items)],
                "video_uri": pa.nulls(n_items, pa.string()),
                "audio_uri": pa.nulls(n_items, pa.string()),
                "duration_s": pa.nulls(n_items, pa.float64()),
                "content_hash": hashes,
                "source": ["benchmark"] * n_items,
                "ingested_at": pa.array([START] * n_items, ITEMS.schema.field("ingested_at").type),
            }
        ),
    )
    return hashes


def append_events(wh: Warehouse, rng: np.random.Generator, n_users: int, n_items: int, n_events: int, days: int) -> list[float]:
    users = np.array([f"u{k:07d}" for k in range(n_users)])
    buckets = np.array([user_partition(u) for u in users], dtype=np.int16)
    seconds = []
    for day in range(days):
        n = n_events // days
        who = rng.integers(0, n_users, n)
        at = pa.array((np.int64(START.timestamp()) + day * 86400 + rng.integers(0, 86400, n)) * 1_000_000, pa.int64())
        batch = pa.table(
            {
                "user_id": users[who],
                "item_id": [f"i{k:07d}" for k in rng.zipf(1.3, n) % n_items],
                "event_ts": at.cast(EVENTS.schema.field("event_ts").type),
                "event": EVENT_KINDS[rng.integers(0, len(EVENT_KINDS), n)],
                "watch_ratio": pa.array(rng.random(n).astype(np.float32)),
                "user_bucket": buckets[who],
            }
        )
        seconds.append(timed(lambda b=batch: store.append(wh, EVENTS, b)))
    return seconds


def append_vectors(wh: Warehouse, rng: np.random.Generator, hashes: list[str], batch_items: int) -> list[float]:
    seconds = []
    created = EMBEDDINGS.schema.field("created_at").type
    for lo in range(0, len(hashes), batch_items):
        n = min(batch_items, len(hashes) - lo)
        vectors = rng.standard_normal((n, DIM), dtype=np.float32)
        batch = pa.table(
            {
                "item_id": [f"i{k:07d}" for k in range(lo, lo + n)],
                "modality": ["text"] * n,
                "model": [MODEL] * n,
                "dim": pa.array([DIM] * n, pa.int32()),
                "vector": pa.array(list(vectors), pa.list_(pa.float32())),
                "tags": pa.nulls(n, pa.list_(pa.string())),
                "content_hash": hashes[lo : lo + n],
                "created_at": pa.array([START + timedelta(seconds=lo)] * n, created),
                "fusion_weights": pa.nulls(n, EMBEDDINGS.schema.field("fusion_weights").type),
            }
        )
        seconds.append(timed(lambda b=batch: store.append(wh, EMBEDDINGS, b)))
    return seconds


def append_score_runs(wh: Warehouse, rng: np.random.Generator, n_users: int, n_items: int, runs: int, run_rows: int, shards: int = 4) -> list[float]:
    """Each run: run_rows rows (top 20 per user), appended in `shards` shards; seconds per run."""
    seconds = []
    k = 20
    scored = pa.array([START] * run_rows, SCORES.schema.field("scored_at").type)
    for run in range(runs):
        users = np.repeat(np.array([f"u{u:07d}" for u in rng.choice(n_users, run_rows // k, replace=run_rows // k > n_users)]), k)
        items = rng.integers(0, n_items, len(users))
        table = pa.table(
            {
                "run_id": [f"night-{run:03d}"] * len(users),
                "user_id": users,
                "item_id": [f"i{i:07d}" for i in items],
                "score": pa.array(rng.random(len(users)).astype(np.float32)),
                "rank": pa.array(np.tile(np.arange(1, k + 1, dtype=np.int32), len(users) // k)),
                "model_version": ["sasrec@bench"] * len(users),
                "scored_at": scored[: len(users)],
            }
        )
        bounds = np.linspace(0, table.num_rows, shards + 1, dtype=int)
        seconds.append(sum(timed(lambda s=table.slice(a, b - a): store.append(wh, SCORES, s)) for a, b in zip(bounds[:-1], bounds[1:])))
    return seconds


def file_counts(wh: Warehouse) -> dict[str, int]:
    return {name: sum(1 for _ in wh.part_files(spec)) for name, spec in TABLES.items() if wh.table_dir(spec).exists()}


def query_latency(wh: Warehouse, runs: int) -> dict[str, float]:
    last = f"night-{runs - 1:03d}"
    user = db.query(wh, "SELECT min(user_id) AS u FROM scores WHERE run_id = $1", [last]).column("u")[0].as_py()  # one the last run scored
    queries = {
        "one user's latest scores": (
            "SELECT item_id, score, rank FROM scores WHERE run_id = $run AND user_id = $user ORDER BY rank",
            {"run": last, "user": user},
        ),
        "20 nearest items to one item by vector": (
            "SELECT v.item_id, array_cosine_similarity(v.vector, q.vector) AS cosine "
            "FROM vectors_text_synthetic_text v, (SELECT vector FROM vectors_text_synthetic_text WHERE item_id = $item) q "
            "ORDER BY cosine DESC LIMIT 20",
            {"item": "i0000011"},
        ),
        "events per day": ("SELECT CAST(event_ts AS DATE) AS day, count(*) AS n FROM events GROUP BY day ORDER BY day", None),
    }
    out = {}
    for name, (sql, params) in queries.items():
        db.query(wh, sql, params)  # warm: the views exist, the files are in the page cache
        out[name] = round(statistics.median(timed(lambda s=sql, p=params: db.query(wh, s, p)) for _ in range(3)), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True, help="an empty folder (the synthetic warehouse is written there)")
    parser.add_argument("--scale", type=float, default=1.0, help="times MicroLens-50K (1: 360k events, 20k items)")
    parser.add_argument("--items", type=int, help="items: the catalogue of events and scores, each with a vector (default 20,000 x scale)")
    parser.add_argument("--commit-items", type=int, default=ExtractConfig().commit_items, help="items per vector append (extract-items' commit_items)")
    parser.add_argument("--runs", type=int, default=30, help="nightly score runs")
    parser.add_argument("--run-rows", type=int, help="rows per score run (default 100,000 x scale)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the measurements here as JSON")
    args = parser.parse_args()
    if args.commit_items < 1 or (args.items is not None and args.items < 1):
        parser.error("--commit-items and --items must be 1 or more")
    home = Path(args.home)
    if home.exists() and any(home.iterdir()):
        parser.error(f"--home {home} is not empty; pass a new folder")
    wh = Warehouse(home)
    rng = np.random.default_rng(args.seed)
    n_users, n_items, n_events = int(50_000 * args.scale), args.items or int(20_000 * args.scale), int(360_000 * args.scale)
    run_rows = args.run_rows or int(100_000 * args.scale)
    result: dict = {
        "command": shlex.join(
            ["python", "benchmarks/warehouse_scale.py", *[x for k, v in vars(args).items() if v is not None for x in (f"--{k.replace('_', '-')}", str(v))]]
        ),
        "machine": f"{platform.node()} ({platform.processor() or platform.machine()}), {len(__import__('os').sched_getaffinity(0))} cores",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sizes": {
            "users": n_users,
            "items": n_items,
            "events": n_events,
            "score_runs": args.runs,
            "rows_per_run": run_rows,
            "items_per_vector_append": args.commit_items,
        },
    }
    hashes = write_items(wh, n_items)
    print(f"events: {n_events} in 30 daily appends", flush=True)
    result["events"] = growth(append_events(wh, rng, n_users, n_items, n_events, 30))
    print(f"  {result['events']}\nvectors: {n_items} in appends of {args.commit_items} items", flush=True)
    result["vectors"] = growth(append_vectors(wh, rng, hashes, args.commit_items))
    print(f"  {result['vectors']}\nscores: {args.runs} runs of {run_rows} rows, 4 shards each", flush=True)
    result["score_runs"] = growth(append_score_runs(wh, rng, n_users, n_items, args.runs, run_rows))
    print(f"  {result['score_runs']}", flush=True)
    db.refresh_views(wh)
    result["files_before_compaction"] = file_counts(wh)
    result["compaction_s"] = {name: round(timed(lambda s=spec: store.compact(wh, s)), 1) for name, spec in TABLES.items() if wh.table_dir(spec).exists()}
    db.refresh_views(wh)
    result["files_after_compaction"] = file_counts(wh)
    result["query_s"] = query_latency(wh, args.runs)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    for key in ("files_before_compaction", "compaction_s", "files_after_compaction", "query_s", "peak_rss_mb"):
        print(f"{key}: {result[key]}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
