"""Ingest throughput: MicroLens-50K (or the bundled sample) into a fresh warehouse, twice.

    .venv/bin/python benchmarks/ingest.py [--microlens ../shared/data/microlens-50k]

Prints rows/s of the first ingest, of the idempotent re-ingest, and peak resident memory.
Numbers are measured, never asserted in tests.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from warehouse.microlens import ingest_microlens
from warehouse.store import Warehouse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--microlens", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/microlens-50k")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        wh = Warehouse(home)
        for label in ("first ingest", "re-ingest"):
            started = time.perf_counter()
            reports = ingest_microlens(wh, args.microlens)
            seconds = time.perf_counter() - started
            rows = sum(r.input_rows for r in reports)
            print(f"{label:<13} {rows:>8} rows in {seconds:6.2f}s = {rows / seconds:>10,.0f} rows/s ({', '.join(r.line() for r in reports)})")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
