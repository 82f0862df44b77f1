"""The nightly chain on a platform N times MicroLens-50K: wall time and peak memory per stage.

    .venv/bin/python benchmarks/nightly.py --source ML50_HOME --model-home TRAINED_HOME --home NEW_DIR
        [--copies 10] [--new-items 2000] [--model lstm-attn] [--score-users N[,M]] [--out FILE.json]

The platform is `--copies` renamed copies of a MicroLens-50K home (ML50_HOME: `reelsense ingest
microlens` and `reelsense extract --config configs/microlens-text.toml`): copy 0 keeps the ids,
copy c > 0 appends `-c` to every user and item id, so 10 copies hold 500,000 users, 192,200 items
and 3.6 M events with MicroLens's own sequences and titles. Held back from the build, as a night's
new work:
- the last event of a seeded share of users (a 30th of all events: a day of a 30-day history),
  written as a CSV for `reelsense ingest events`;
- the title vectors of `--new-items` items of the last copy, for extract-items to embed.
The ranker is the latest `--model` of TRAINED_HOME's registry, trained on MicroLens-50K itself:
copy 0's items are the ones it trained on, the other copies' items are scored from their title
vectors alone (content-first items need no retraining for new items).

Then the chain runs as the deployments run it, one `reelsense` command per stage (flows/serve.py
DEPLOYMENTS, in their nightly order; align-items is left out: titles are the only modality), each
timed with its peak RSS (`/usr/bin/time`): ingest events, extract, compact, features, score, report.
Each command starts its own local Prefect server (no PREFECT_API_URL), as a `reelsense` command
does; its start (seconds) is inside each stage's time, which the deployments, served by one
running server, do not pay.
`--score-users N[,M...]` scores seeded samples of N (then M) users instead of all of them, each as
its own run: with two sizes the fixed cost and the cost per user can be told apart, to scale to all
users. Measured, never asserted.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from warehouse import store
from warehouse.schemas import EMBEDDINGS, EVENTS, ITEMS, user_partition
from warehouse.store import Warehouse

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "flows.cli"]
DAY_SHARE = 1 / 30  # the night's events: a day of a 30-day history
MAX_SAMPLE = 10_000  # users per `--users` argument: about 9 bytes each, under Linux's 128 KiB per argument


def renamed(ids: pa.ChunkedArray | pa.Array, copy: int) -> pa.Array:
    return ids if copy == 0 else pc.binary_join_element_wise(ids, pa.scalar(f"-{copy}"), "")


def build(source: Path, home: Path, copies: int, new_items: int, seed: int) -> tuple[dict, list[str]]:
    """Write the platform into `home`; return the night's inputs (the events CSV) and the sizes,
    and the platform's user ids."""
    src, wh = Warehouse(source), Warehouse(home)
    items, events, vectors = store.read(src, ITEMS), store.read(src, EVENTS), store.read(src, EMBEDDINGS)
    models = vectors.group_by(["modality", "model"]).aggregate([("item_id", "count")]).to_pylist()
    if len(models) != 1 or models[0]["modality"] != "text":
        raise SystemExit(f"--source {source}: expected the vectors of one text model (configs/microlens-text.toml), found {models}")
    rng = np.random.default_rng(seed)
    # The night's events: each chosen user's last event; enough users for a 30th of all events.
    order = pc.sort_indices(events, [("user_id", "ascending"), ("event_ts", "ascending")])
    events = events.take(order)
    users = events.column("user_id").to_numpy(zero_copy_only=False)
    last = np.flatnonzero(np.append(users[1:] != users[:-1], True))
    tonight = np.zeros(len(users), dtype=bool)
    tonight[rng.choice(last, min(len(last), round(len(users) * DAY_SHARE)), replace=False)] = True
    history, night = events.filter(pa.array(~tonight)), events.filter(pa.array(tonight))
    day_csv = home / "night-events.csv"
    home.mkdir(parents=True, exist_ok=True)
    with day_csv.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["user_id", "item_id", "event_ts", "event", "watch_ratio"])
        for copy in range(copies):
            rows = zip(
                renamed(night.column("user_id"), copy).to_pylist(),
                renamed(night.column("item_id"), copy).to_pylist(),
                [t.isoformat() for t in night.column("event_ts").to_pylist()],
                night.column("event").to_pylist(),
                night.column("watch_ratio").to_pylist(),
            )
            out.writerows(["" if v is None else v for v in row] for row in rows)
    item_ids = sorted(set(items.column("item_id").to_pylist()))  # `items` keeps every version of an item
    held = set(item_ids[-new_items:]) if new_items else set()
    started = time.perf_counter()
    platform_users: list[str] = []
    for copy in range(copies):
        platform_users += renamed(pa.array(users[last]), copy).to_pylist()
        store.append(wh, ITEMS, items.set_column(0, "item_id", renamed(items.column("item_id"), copy)))
        user_ids = renamed(history.column("user_id"), copy)
        buckets = pa.array([user_partition(u) for u in user_ids.to_pylist()], pa.int16())
        batch = history.set_column(0, "user_id", user_ids).set_column(1, "item_id", renamed(history.column("item_id"), copy))
        store.append(wh, EVENTS, batch.set_column(batch.schema.get_field_index("user_bucket"), "user_bucket", buckets))
        kept = vectors
        if copy == copies - 1 and held:
            kept = vectors.filter(pc.invert(pc.is_in(vectors.column("item_id"), pa.array(sorted(held)))))
        for lo in range(0, kept.num_rows, 25_000):  # the history's vectors; the night's come from extract
            part = kept.slice(lo, 25_000)
            store.append(wh, EMBEDDINGS, part.set_column(0, "item_id", renamed(part.column("item_id"), copy)))
        print(f"  copy {copy + 1}/{copies} written ({time.perf_counter() - started:.0f} s)", flush=True)
    # A warehouse as the nightly compaction leaves it, so the chain's compact stage merges only the
    # night's own appends (the build wrote a file per copy and partition).
    for spec in (ITEMS, EVENTS, EMBEDDINGS):
        store.compact(wh, spec)
    return {
        "night_events_csv": str(day_csv),
        "users": len(platform_users),
        "items": len(item_ids) * copies,
        "events_stored": history.num_rows * copies,
        "events_tonight": night.num_rows * copies,
        "items_to_embed": len(held),
        "build_seconds": round(time.perf_counter() - started, 1),
    }, platform_users


def stage(name: str, home: Path, args: list[str]) -> dict:
    """One `reelsense` command: wall time, peak RSS of the process tree's largest process, its last lines."""
    command = ["/usr/bin/time", "-f", "%M %e", *CLI, "--home", str(home), *args]
    shown = " ".join(["reelsense", "--home", "H", *(f"<{a.count(',') + 1} ids>" if a.count(",") > 5 else a for a in args)])
    print(f"{name}: {shown}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - started
    rss_kb, _ = done.stderr.strip().splitlines()[-1].split()
    result = {
        "command": shown,
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(int(rss_kb) / 1024),
        "returncode": done.returncode,
        "output": done.stdout.strip().splitlines()[-6:],
    }
    print(f"  {result['seconds']} s, peak RSS {result['peak_rss_mb']} MB, exit {done.returncode}", flush=True)
    if done.returncode:
        print(done.stderr[-3000:], file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, type=Path, help="a MicroLens-50K home with its title vectors")
    parser.add_argument("--model-home", required=True, type=Path, help="a home whose registry holds the trained --model")
    parser.add_argument("--home", required=True, type=Path, help="a new folder for the platform")
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--new-items", type=int, default=2000, help="items of the last copy left for extract-items to embed")
    parser.add_argument("--model", default="lstm-attn", choices=["lstm-attn", "sasrec-content"], help="a content ranker: it scores the copies' new items")
    parser.add_argument("--score-users", help="comma-separated sample sizes: score seeded samples of users, one run each (default: all users)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the measurements here as JSON")
    args = parser.parse_args()
    if args.copies < 1 or args.new_items < 0:
        parser.error("--copies must be 1 or more and --new-items 0 or more")
    if args.home.exists() and any(args.home.iterdir()):
        parser.error(f"--home {args.home} is not empty; pass a new folder")
    try:
        sizes = sorted({int(x) for x in args.score_users.split(",") if x.strip()}) if args.score_users else []
    except ValueError:
        sizes = [0]
    if args.score_users and (not sizes or sizes[0] < 1 or sizes[-1] > MAX_SAMPLE):
        # The sample goes to `reelsense score --users` as one argument, which Linux caps at 128 KiB.
        parser.error(f"--score-users takes sizes from 1 to {MAX_SAMPLE}, got {args.score_users!r}")
    registry = args.model_home / "models" / "rankers" / args.model
    if not (registry / "LATEST").exists():
        parser.error(f"no trained {args.model} in {registry}; train one there first (reelsense train --models {args.model})")
    result: dict = {
        "command": shlex.join(["python", "benchmarks/nightly.py", *sys.argv[1:]]),
        "machine": f"{platform.node()}, {len(os.sched_getaffinity(0))} cores",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    print(f"building {args.copies} copies of {args.source} in {args.home}", flush=True)
    result["platform"], known = build(args.source, args.home, args.copies, args.new_items, args.seed)
    shutil.copytree(args.model_home / "models", args.home / "models")
    print(json.dumps(result["platform"]), flush=True)
    scores = {"score": ["score", "--model", args.model, "--run-id", "night-all"]}
    if args.score_users:
        rng = np.random.default_rng(args.seed)
        scores = {}
        for n in sizes:
            if n > len(known):
                parser.error(f"--score-users {n}: the platform has {len(known)} users")
            users = ",".join(sorted(rng.choice(known, n, replace=False)))
            scores[f"score {n} users"] = ["score", "--model", args.model, "--run-id", f"night-{n}", "--users", users]
    last_run = list(scores.values())[-1][4]
    stages = {
        "ingest events": ["ingest", "events", result["platform"]["night_events_csv"]],
        "extract": ["extract", "--config", str(ROOT / "configs" / "microlens-text.toml")],
        "compact": ["compact"],
        "features": ["features"],
        **scores,
        "report": ["report", "--run-id", last_run],
    }
    result["stages"] = {}
    for name, stage_args in stages.items():
        result["stages"][name] = stage(name, args.home, stage_args)
        if args.out:
            args.out.write_text(json.dumps(result, indent=1))
        if result["stages"][name]["returncode"]:
            break
    timed = [result["stages"].get(f"score {n} users") for n in sizes]
    if len(sizes) >= 2 and all(t and not t["returncode"] for t in timed):
        # A line through the smallest and the largest sample splits the fixed cost (model and data
        # loading, the local Prefect server's start) from the cost per user.
        (n1, t1), (n2, t2) = (sizes[0], timed[0]["seconds"]), (sizes[-1], timed[-1]["seconds"])
        per_user = (t2 - t1) / (n2 - n1)
        fixed = t1 - per_user * n1
        everyone = result["platform"]["users"]
        result["score_projection"] = {
            "seconds_per_1000_users": round(per_user * 1000, 2),
            "fixed_seconds": round(fixed, 1),
            "all_users": everyone,
            "projected_seconds_all_users": round(fixed + per_user * everyone),
        }
        print(f"score, projected from {n1} and {n2} users: {result['score_projection']}")
        if args.out:
            args.out.write_text(json.dumps(result, indent=1))
    print(f"\n{'stage':<20} {'seconds':>9} {'peak RSS MB':>12}")
    for name, s in result["stages"].items():
        print(f"{name:<20} {s['seconds']:>9} {s['peak_rss_mb']:>12}")


if __name__ == "__main__":
    main()
