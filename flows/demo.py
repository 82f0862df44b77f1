"""`reelsense demo`: the whole pipeline on the bundled sample, end to end.

Generates the sample platform into `<home>/sample` (kept between runs for the same seed), ingests
its items and events, embeds frames, titles and music (flow extract-items, offline preset), aligns
and fuses them (flow align-items, writing reports/alignment.json), and prints the warehouse's table
counts and two DuckDB queries; then builds behaviour sequences (build-features), trains every ranker
(train-ranker), evaluates them (evaluate, writing reports/results.json), scores every user's top 20
(score-batch, into `scores` with a run id) and explains them (analyze: `explanations`, interest
profiles and shifts, plots and the HTML report reports/index.html).
"""

from __future__ import annotations

import json
import time

from extractors.config import ExtractConfig
from flows.align import align_items
from flows.analyze import analyze, explain_lines
from flows.console import alignment_lines, extract_line, format_table, report_line, results_lines, runnable, score_line
from flows.extract import run_extract
from flows.rank import build_features, evaluate_rankers, train_rankers
from flows.score import score_batch
from ranker.names import TOP_K
from warehouse import db
from warehouse.ingest import ingest_events, ingest_items
from warehouse.store import Warehouse

NEAREST_QUERY = """
SELECT b.item_id, b.title, b.tags,
       round(array_cosine_similarity(a.vector, b.vector)::DOUBLE, 3) AS cosine
FROM vectors_frames_efficientnet_lite0 a, vectors_frames_efficientnet_lite0 b
WHERE a.item_id = $item AND b.item_id <> a.item_id
ORDER BY cosine DESC LIMIT 5
"""
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
        print(f"[1/9] sample: reusing {sample_dir} (seed {seed})")
    else:
        print(f"[1/9] sample: generating {sample_dir} (seed {seed}) ...")
        generate_sample(sample_dir, SampleConfig(seed=seed))
    print("[2/9] ingest:")
    for report in (ingest_items(wh, sample_dir / "items.csv"), ingest_events(wh, sample_dir / "events.csv")):
        print("  " + report.line())
    db.refresh_views(wh)
    print("[3/9] extract-items (Prefect flow; EfficientNet-Lite0, MiniLM, musicnn):", flush=True)
    print("  " + extract_line(run_extract(str(wh.home), ExtractConfig())))
    print("[4/9] align-items (contrastive heads + attention fusion; held-out retrieval vs random):", flush=True)
    aligned = align_items(str(wh.home), topics_path=str(truth_path))
    print(f"  model aligned@{aligned['version']}, {aligned['written']} vectors written; {wh.reports_dir / 'alignment.json'}")
    print("\n".join("  " + line for line in alignment_lines(aligned["report"])))
    features = build_features(str(wh.home))
    print(f"[5/9] build-features: {features['positives']} positive interactions of {features['users']} users with their histories -> samples", flush=True)
    print("[6/9] train-ranker:", flush=True)
    metas = train_rankers(str(wh.home))
    for name, meta in metas.items():
        took = "reused" if meta.get("reused") else f"{meta['fit_seconds']:.1f}s"
        print(f"  {name:<22} {took:>8}")
    print(f"[7/9] evaluate (held-out last engagement of each user, ranked against all items; {wh.reports_dir / 'results.json'}):", flush=True)
    print("\n".join("  " + line for line in results_lines(evaluate_rankers(str(wh.home), dataset=f"bundled sample (seed {seed})"))))
    print(f"[8/9] score-batch (each user's top {TOP_K} by lstm-attn among the items they have not engaged with):", flush=True)
    # One run id per model version: rerunning the demo completes that run and duplicates nothing.
    scored = score_batch(str(wh.home), model="lstm-attn", k=TOP_K, run_id=f"demo-{metas['lstm-attn']['version']}")
    print("  " + runnable(score_line(scored)))
    print("[9/9] analyze (explanations, interest profiles and shifts, plots, HTML report):", flush=True)
    print("  " + report_line(wh, analyze(str(wh.home), run_id=scored["run_id"], truth_path=str(truth_path))))
    user, item = _first_pair(wh, scored["run_id"])
    print(runnable(f"\nreelsense explain --user {user} --item {item}"))
    print("\n".join(explain_lines(wh, user, item, run_id=scored["run_id"])[:3]))
    print("\nwarehouse tables (DuckDB views in " + str(wh.db_path) + "):")
    for name, count in db.table_counts(wh).items():
        print(f"  {name:<13} {count:>8}")
    print(runnable('\nreelsense sql "' + " ".join(EXAMPLE_QUERY.split()) + '"'))
    print(format_table(db.query(wh, EXAMPLE_QUERY)))
    print("\nnearest items to v0001 (a cooking clip) by their frames:")
    print(format_table(db.query(wh, NEAREST_QUERY, {"item": "v0001"})))
    print(f"\ndemo finished in {time.perf_counter() - started:.1f}s; home: {wh.home}")


def _first_pair(wh: Warehouse, run_id: str) -> tuple[str, str]:
    row = db.analysis(wh, "first_pair", {"run": run_id}).to_pylist()[0]
    return row["user_id"], row["item_id"]
