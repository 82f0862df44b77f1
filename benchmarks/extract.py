"""Throughput of extract-items against its two limits and a naive loop.

    .venv/bin/python benchmarks/extract.py [--sample-items 60] [--real ../shared/data]

On the bundled sample (first N items) and on the 6 real clips in ../shared/data, measures with the
offline preset (EfficientNet-Lite0, MiniLM, musicnn; 8 frames per video):
- pipeline: the extract-items Prefect flow, models already loaded (time inside the flow run);
- decode only: `decode_batch` over every batch (the decoding limit);
- encode only: `embed_batch` on pre-decoded batches (the encoding limit);
- naive: one item at a time, decoding every frame with PyAV and keeping 8, then encoding it.
Prints items/s and frames/s of each, the pipeline's share of the slower limit, its speed-up over
the naive loop, and peak RSS. Measured, never asserted in tests.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import av  # noqa: E402
import numpy as np  # noqa: E402

from extractors.config import ExtractConfig  # noqa: E402
from extractors.decode import DecodedItem, decode_audio, frame_indices  # noqa: E402
from extractors.pipeline import Prepared, decode_batch, embed_batch, loaded_encoders, model_ids, plan_work  # noqa: E402
from extractors.sample import SampleConfig, generate_sample  # noqa: E402
from flows.extract import run_extract  # noqa: E402
from warehouse import db  # noqa: E402
from warehouse.ingest import ingest_items  # noqa: E402
from warehouse.store import Warehouse  # noqa: E402

CONFIG = ExtractConfig()  # replaced in main() by --batch-items


def naive_decode(work, rate):
    """Decode every frame of the video (no seeking), keep 8; then the audio."""
    with av.open(work.video_uri) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    picked = np.stack([frames[i] for i in frame_indices(len(frames), CONFIG.n_frames)])
    audio, missing = decode_audio(work.video_uri, rate)
    return DecodedItem(work.item_id, picked, audio, rate, None, audio_missing=missing)


def bench(label: str, items_csv: Path) -> None:
    with tempfile.TemporaryDirectory() as home:
        wh = Warehouse(home)
        ingest_items(wh, items_csv)
        items = db.fetch(wh, "SELECT item_id, title, video_uri, audio_uri, content_hash FROM items ORDER BY item_id")
        work, _ = plan_work(items, set(), set(), model_ids(CONFIG))
        batches = [work[i : i + CONFIG.batch_items] for i in range(0, len(work), CONFIG.batch_items)]
        encoders = loaded_encoders(CONFIG)
        rate = encoders["audio"].sample_rate
        n_items = len(work)
        n_frames = 0

        started = time.perf_counter()
        decoded = [decode_batch(b, CONFIG, rate) for b in batches]
        decode_s = time.perf_counter() - started
        n_frames = sum(len(d.media.frames) for batch in decoded for d in batch if isinstance(d, Prepared))

        started = time.perf_counter()
        for batch in decoded:
            embed_batch(batch, encoders)
        encode_s = time.perf_counter() - started

        summary = run_extract(home, CONFIG)
        pipeline_s = summary["seconds"]

        started = time.perf_counter()
        for item in work:
            embed_batch([Prepared(item, naive_decode(item, rate))], encoders)
        naive_s = time.perf_counter() - started

    slower = max(decode_s, encode_s)
    print(f"\n{label}: {n_items} items, {n_frames} frames (8 per video), batch_items={CONFIG.batch_items}, "
          f"decode_workers={CONFIG.decode_workers}, {os.cpu_count()} CPUs")
    for name, seconds in (("pipeline", pipeline_s), ("decode only", decode_s), ("encode only", encode_s), ("naive loop", naive_s)):
        print(f"  {name:<12} {seconds:7.2f}s  {n_items / seconds:7.2f} items/s  {n_frames / seconds:8.1f} frames/s")
    print(f"  pipeline reaches {slower / pipeline_s:.0%} of the slower limit ({'decode' if decode_s > encode_s else 'encode'}), "
          f"{naive_s / pipeline_s:.1f}x the naive loop")


def main() -> None:
    global CONFIG
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample-items", type=int, default=60)
    parser.add_argument("--batch-items", type=int, default=ExtractConfig().batch_items)
    parser.add_argument("--real", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    CONFIG = CONFIG.replace(batch_items=args.batch_items)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "sample"
        generate_sample(root, SampleConfig(items_per_topic=max(1, args.sample_items // 6), users=2, cold_users=0))
        bench("bundled sample (seed 7)", root / "items.csv")
        clips = sorted(args.real.glob("microlens-50k/videos/*.mp4")) + sorted(args.real.glob("public-clips/*.mp4"))
        if clips:
            csv_path = Path(tmp) / "real.csv"
            csv_path.write_text("item_id,title,video_uri\n" + "".join(f"{c.stem},{c.stem},{c}\n" for c in clips))
            bench(f"real clips ({len(clips)}: 3 MicroLens HEVC 720p, 3 public H.264)", csv_path)
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
