"""A tiny platform with a known answer, built through the real ingest, store and flows.

3 topics x 30 items. Items carry aligned vectors per modality (frames, text, audio; 16-d, near their
topic's centre in each modality), fused vectors with equal fusion weights, and raw-model rows with
tags, as align-items and extract-items would write them. 36 users like one item per step for 40
steps, from their current topic 90% of the time; users 0-23 switch topic at step 20 (the planted
shift), users 24-35 never do.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from warehouse import db, store
from warehouse.ingest import ingest_events, ingest_items
from warehouse.schemas import EMBEDDINGS
from warehouse.store import Warehouse

TOPICS = ("cooking", "sports", "pets")
MUSIC = {"cooking": "piano", "sports": "drums", "pets": "guitar"}
MODALITIES = ("audio", "frames", "text")
SHIFT_STEP, STEPS, SHIFTERS, USERS = 20, 40, 24, 36
START = datetime(2026, 3, 1, tzinfo=timezone.utc)


def topic_of(item_id: str) -> str:
    return TOPICS[int(item_id[1])]


def build(home: Path) -> Warehouse:
    import csv

    wh = Warehouse(home)
    rng = np.random.default_rng(0)
    items = [f"i{t}{k:02d}" for t in range(len(TOPICS)) for k in range(30)]
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "items.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "title", "video_uri"])
        w.writerows([[i, f"a {topic_of(i)} clip #{topic_of(i)}", ""] for i in items])
    rows = []
    for u in range(USERS):
        first = u % len(TOPICS)
        topic = first
        for step in range(STEPS):
            if u < SHIFTERS and step == SHIFT_STEP:
                topic = (first + 1) % len(TOPICS)
            t = topic if rng.random() < 0.9 else int(rng.integers(len(TOPICS)))
            item = f"i{t}{int(rng.integers(30)):02d}"
            rows.append([f"user{u:02d}", item, (START + timedelta(hours=u, minutes=10 * step)).isoformat(), "like", ""])
    with open(home / "events.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "event_ts", "event", "watch_ratio"])
        w.writerows(rows)
    ingest_items(wh, home / "items.csv")
    ingest_events(wh, home / "events.csv")
    db.refresh_views(wh)
    _write_embeddings(wh, items, rng)
    db.refresh_views(wh)
    return wh


def add_item_vectors(wh: Warehouse, item_id: str, *, aligned: bool, seed: int = 1) -> None:
    """Vectors for an item ingested after the platform was built, as extract-items writes them
    (raw models), and align-items too when `aligned` (aligned per modality, and fused)."""
    _write_embeddings(wh, [item_id], np.random.default_rng(seed), aligned=aligned)
    db.refresh_views(wh)


def _write_embeddings(wh: Warehouse, items: list[str], rng: np.random.Generator, *, aligned: bool = True) -> None:
    with_aligned = aligned
    hashes = {r["item_id"]: r["content_hash"] for r in db.fetch(wh, "SELECT item_id, content_hash FROM items")}
    centres = {m: rng.normal(size=(len(TOPICS), 16)) for m in MODALITIES}
    rows = []
    now = datetime.now(timezone.utc)
    for item in items:
        t = TOPICS.index(topic_of(item))
        aligned = {}
        for m in MODALITIES:
            v = centres[m][t] + 0.3 * rng.normal(size=16)
            aligned[m] = v / np.linalg.norm(v)
            tags = {"audio": [MUSIC[topic_of(item)]], "frames": ["plate" if t == 0 else "ball" if t == 1 else "dog"], "text": [topic_of(item)]}[m]
            base = {"item_id": item, "modality": m, "dim": 16, "content_hash": hashes[item], "created_at": now, "fusion_weights": None}
            rows.append({**base, "model": f"toy-{m}@1", "vector": aligned[m].tolist(), "tags": tags})
            if with_aligned:
                rows.append({**base, "model": "aligned@tiny", "vector": aligned[m].tolist(), "tags": None})
        if not with_aligned:
            continue
        fused = sum(aligned.values())
        rows.append(
            {
                "item_id": item,
                "modality": "fused",
                "model": "aligned@tiny",
                "dim": 16,
                "vector": (fused / np.linalg.norm(fused)).tolist(),
                "tags": None,
                "content_hash": hashes[item],
                "created_at": now,
                "fusion_weights": [(m, 1 / 3) for m in MODALITIES],
            }
        )
    store.append(wh, EMBEDDINGS, pa.Table.from_pylist(rows, schema=EMBEDDINGS.schema))


def write_truth(path: Path) -> Path:
    """truth.json in the sample's format: each user's interest segments, each item's topic."""
    import json

    users = {}
    for u in range(USERS):
        segments = [{"from_step": 0, "from_ts": START.isoformat()}]
        if u < SHIFTERS:
            segments.append({"from_step": SHIFT_STEP, "from_ts": (START + timedelta(hours=u, minutes=10 * SHIFT_STEP)).isoformat()})
        users[f"user{u:02d}"] = {"segments": segments}
    items = {f"i{t}{k:02d}": TOPICS[t] for t in range(len(TOPICS)) for k in range(30)}
    path.write_text(json.dumps({"users": users, "items": items}))
    return path
