"""Time store.append with compare=("watch_ratio",) (how ingest stores events): a warehouse's events
appended to an empty home, then again (every row a duplicate), twice.

    .venv/bin/python benchmarks/append_scan.py --home HOME

HOME: a home with events (the MicroLens-50K benchmark's, 359,708 events). Measured, never asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import pyarrow.parquet as pq

from warehouse import store
from warehouse.schemas import EVENTS
from warehouse.store import Warehouse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True)
    args = parser.parse_args()
    events = pq.read_table(Warehouse(args.home).table_dir(EVENTS))
    events = events.select([c for c in EVENTS.schema.names if c in events.column_names])
    print(events.num_rows, "rows")
    for _ in range(2):
        with tempfile.TemporaryDirectory() as home:
            wh = Warehouse(home)
            t = time.perf_counter()
            r = store.append(wh, EVENTS, events, compare=("watch_ratio",))
            a = time.perf_counter() - t
            t = time.perf_counter()
            r2 = store.append(wh, EVENTS, events, compare=("watch_ratio",))
            b = time.perf_counter() - t
            print(f"fresh {a:.2f}s written {r.written}; again {b:.2f}s duplicates {r2.duplicates} conflicts {len(r2.conflicts)}")


if __name__ == "__main__":
    main()
