"""extract-items scale-out: the in-process pipeline against item shards on 1 and 2 Dask workers.

    .venv/bin/python benchmarks/extract_scaleout.py --sample DIR [--runners pipeline,dask1,dask2]

DIR is a generated sample (`reelsense sample --out DIR`). Each runner embeds every item (offline
preset) into a fresh warehouse, in its own process; the time includes starting the cluster and
loading the models in every worker, as a scheduled run pays them. Measured, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from isolated import run_isolated

RUNNERS = {"pipeline": 0, "dask1": 1, "dask2": 2}


def one(sample: str, runner: str, queue) -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from extractors.config import ExtractConfig
    from flows.extract import run_extract
    from warehouse.ingest import ingest_items
    from warehouse.store import Warehouse

    with tempfile.TemporaryDirectory() as home:
        ingest_items(Warehouse(home), Path(sample) / "items.csv")
        started = time.perf_counter()
        summary = run_extract(home, ExtractConfig(), dask_workers=RUNNERS[runner])
        seconds = time.perf_counter() - started
    queue.put(
        {
            "runner": runner,
            "items": summary["embedded"],
            "seconds": round(seconds, 1),
            "flow_seconds": summary["seconds"],
            "items_per_s": round(summary["embedded"] / seconds, 2),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", required=True)
    parser.add_argument("--runners", default="pipeline,dask1,dask2")
    args = parser.parse_args()
    results = []
    for runner in args.runners.split(","):
        results.append(run_isolated(one, args.sample, runner))
        print(json.dumps(results[-1]), flush=True)
    print(f"\ncpus: {os.cpu_count()}; sample {args.sample}")
    print(f"{'runner':<10}{'items':>7}{'seconds':>9}{'items/s':>9}")
    for r in results:
        print(f"{r['runner']:<10}{r['items']:>7}{r['seconds']:>9}{r['items_per_s']:>9}")


if __name__ == "__main__":
    main()
