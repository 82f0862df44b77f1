"""The DuckDB sequence builder against an equivalent pandas implementation, on synthetic events.

    .venv/bin/python benchmarks/features.py [--events 1000000]

Events: 20,000 users with 50 comments each at random times (ties included), 20,000 items. Both
builders produce, for every interaction, the last 20 items strictly before it and the
leave-one-out split. Each runs in its own process, so peak RSS is its own. Measured, not asserted.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
from isolated import run_isolated

from ranker.data import build_sequences
from warehouse import db, store
from warehouse.schemas import EVENTS, user_partition
from warehouse.store import Warehouse

HISTORY = 20


def synthetic_events(n_events: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    users = 20_000
    per_user = max(1, n_events // users)
    user_ids = np.repeat(np.arange(users), per_user)
    return pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in user_ids],
            "item_id": [f"i{i}" for i in rng.integers(0, 20_000, len(user_ids))],
            "event_ts": pd.to_datetime(rng.integers(0, 30 * 86400, len(user_ids)), unit="s", utc=True),
            "event": "comment",
        }
    )


def pandas_sequences(events: pd.DataFrame) -> pd.DataFrame:
    events = events.drop_duplicates().sort_values(["user_id", "event_ts", "item_id"])
    out = []
    for user, group in events.groupby("user_id", sort=False):
        items, ts = group["item_id"].to_numpy(), group["event_ts"].to_numpy()
        for k in range(len(group)):
            earlier = items[: np.searchsorted(ts, ts[k], side="left")]  # strictly before: ties excluded
            out.append((user, items[k], ts[k], list(earlier[-HISTORY:]), len(group) - k))
    frame = pd.DataFrame(out, columns=["user_id", "item_id", "event_ts", "history_item_ids", "from_end"])
    counts = frame.groupby("user_id")["item_id"].transform("size")
    frame["split"] = np.where((counts >= 3) & (frame["from_end"] == 1), "test", np.where((counts >= 3) & (frame["from_end"] == 2), "valid", "train"))
    return frame


def run(builder: str, n_events: int, queue) -> None:
    events = synthetic_events(n_events)
    started = time.perf_counter()
    if builder == "duckdb":
        with tempfile.TemporaryDirectory() as home:
            wh = Warehouse(home)
            table = pa.Table.from_pandas(events.assign(watch_ratio=None, user_bucket=[user_partition(u) for u in events["user_id"]]), preserve_index=False)
            store.append(wh, EVENTS, table)
            db.refresh_views(wh)
            started = time.perf_counter()  # time the builder, not the load
            rows = build_sequences(wh, HISTORY).num_rows
    else:
        rows = len(pandas_sequences(events))
    queue.put((builder, rows, time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    results = {}
    for builder in ("duckdb", "pandas"):
        name, rows, seconds, peak = run_isolated(run, builder, args.events)
        results[name] = (rows, seconds, peak)
        print(f"{name:<7} {rows:>9} sequences in {seconds:7.2f}s  peak RSS {peak:7.0f} MB", flush=True)
    print(f"duckdb is {results['pandas'][1] / results['duckdb'][1]:.1f}x faster ({datetime.now(timezone.utc):%Y-%m-%d}, {multiprocessing.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
