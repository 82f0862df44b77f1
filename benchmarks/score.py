"""score-batch throughput and memory: every user of a warehouse, top 20 by the chosen retrieval.

    .venv/bin/python benchmarks/score.py --home HOME [--model lstm-attn] [--retrieval model|similarity] [--runners threads,dask1,dask2]

HOME needs events, content vectors and a trained model (MicroLens-50K: `reelsense ingest
microlens`, `extract --config configs/microlens-text.toml`, `features`, `train --models
lstm-attn`). Each runner scores all users in its own process (a fresh run id, so every row is
written), so peak RSS is its own: the process's and, for Dask, its worker processes' (largest
child). Measured, not asserted; the Prefect server start-up of the flow is included.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

from isolated import run_isolated

RUNNERS = {"threads": 0, "dask1": 1, "dask2": 2}


def one(home: str, model: str, retrieval: str, runner: str, queue) -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.score import run_score

    started = time.perf_counter()
    summary = run_score(
        home, dask_workers=RUNNERS[runner], model=model, k=20, n_candidates=200, retrieval=retrieval, run_id=f"bench-{runner}-{int(time.time())}", shards=4
    )
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    queue.put(
        {
            "runner": runner,
            "retrieval": retrieval,
            "users": summary["users"],
            "rows": summary["written"],
            "seconds": round(seconds, 1),
            "flow_seconds": summary["seconds"],
            "rows_per_s": round(summary["written"] / seconds),
            "peak_rss_mb": round(own),
            "peak_child_rss_mb": round(children),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--model", default="lstm-attn")
    parser.add_argument("--retrieval", default="model", choices=("model", "similarity"), help="model: own top 20 of every item; similarity: of 200 candidates")
    parser.add_argument("--runners", default="threads,dask1,dask2")
    args = parser.parse_args()
    results = []
    for runner in args.runners.split(","):
        results.append(run_isolated(one, args.home, args.model, args.retrieval, runner))
        print(json.dumps(results[-1]), flush=True)
    print(f"\ncpus: {os.cpu_count()}; model {args.model}, retrieval {args.retrieval}; home {args.home}")
    print(f"{'runner':<8}{'users':>8}{'rows':>10}{'seconds':>9}{'rows/s':>9}{'peak RSS MB':>13}{'child RSS MB':>14}")
    for r in results:
        print(f"{r['runner']:<8}{r['users']:>8}{r['rows']:>10}{r['seconds']:>9}{r['rows_per_s']:>9}{r['peak_rss_mb']:>13}{r['peak_child_rss_mb']:>14}")


if __name__ == "__main__":
    main()
