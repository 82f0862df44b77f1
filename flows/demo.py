"""`reelsense demo`: the whole pipeline on the bundled sample, end to end.

Generates the sample platform into `<home>/sample` (kept between runs for the same seed), ingests
its items and events, and prints the warehouse's table counts and an example DuckDB query. Later
stages (extract, align, features, train, evaluate, score, report) join this same command.
"""

from __future__ import annotations

import json
import time

from flows.cli import format_table
from warehouse import db
from warehouse.ingest import ingest_events, ingest_items
from warehouse.store import Warehouse

EXAMPLE_QUERY = """
SELECT event, count(*) AS events, count(DISTINCT user_id) AS users,
       round(avg(watch_ratio), 3) AS avg_watch_ratio
FROM events GROUP BY event ORDER BY events DESC
"""


def run_demo(wh: Warehouse, *, seed: int = 7) -> None:
    from extractors.sample import SampleConfig, generate_sample

    started = time.perf_counter()
    sample_dir = wh.home / "sample"
    truth_path = sample_dir / "truth.json"
    if truth_path.exists() and json.loads(truth_path.read_text()).get("seed") == seed:
        print(f"[1/2] sample: reusing {sample_dir} (seed {seed})")
    else:
        print(f"[1/2] sample: generating {sample_dir} (seed {seed}) ...")
        generate_sample(sample_dir, SampleConfig(seed=seed))
    print("[2/2] ingest:")
    for report in (ingest_items(wh, sample_dir / "items.csv"), ingest_events(wh, sample_dir / "events.csv")):
        print("  " + report.line())
    db.refresh_views(wh)
    print("\nwarehouse tables (DuckDB views in " + str(wh.db_path) + "):")
    for name, count in db.table_counts(wh).items():
        print(f"  {name:<13} {count:>8}")
    print("\nreelsense sql \"" + " ".join(EXAMPLE_QUERY.split()) + "\"")
    print(format_table(db.query(wh, EXAMPLE_QUERY)))
    print(f"\ndemo finished in {time.perf_counter() - started:.1f}s; home: {wh.home}")
