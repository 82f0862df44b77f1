"""Throughput of extract-items against its limits and a naive loop, in both frame samplings.

    .venv/bin/python benchmarks/extract.py [--sample-items 48] [--real-items 96] [--real ../shared/data]
        [--modes exact,keyframes] [--device auto] [--no-flow]

Inputs: the bundled sample (first N clips of the generator, H.264) and the 6 real clips of
../shared/data repeated to --real-items items (3 MicroLens HEVC 720p with audio, 3 public H.264).
Offline preset, frames and audio, 8 frames per video, batches of 16; per input and sampling mode:
- decode limit: `decode_batch` over every batch on the shared thread pool (one thread per core),
  and the same items in a pool of as many processes (threads or processes: which is faster);
- encode ceiling: the models alone on inputs already preprocessed and on the device;
- encode path: `embed_batch` on pre-decoded batches, as the flow runs it;
- pipeline: `prefetched` decoding `prefetch_batches` ahead of `embed_batch` (what the flow does,
  without the warehouse writes), and the extract-items Prefect flow itself unless --no-flow;
- naive loop: one item at a time, every frame decoded with PyAV, 8 kept, then encoded;
- GPU utilisation while the pipeline runs (pynvml, CUDA only) and peak RSS.
Runs without Prefect or DuckDB with --no-flow (the GPU machine has neither). Prints a Markdown
table; measured, never asserted in tests.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from extractors.config import ExtractConfig  # noqa: E402
from extractors.decode import DecodedItem, decode_audio, frame_indices  # noqa: E402
from extractors.encoders import forward_in_chunks, frames_to_tensor  # noqa: E402
from extractors.musicnn import log_mel_patches  # noqa: E402
from extractors.pipeline import (  # noqa: E402
    Prepared,
    WorkItem,
    decode_batch,
    decode_one,
    embed_batch,
    loaded_encoders,
    prefetched,
)
from extractors.sample import SampleConfig, generate_sample  # noqa: E402


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> tuple[object, float]:
    sync(device)
    started = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - started


def naive_decode(item: WorkItem, config: ExtractConfig, rate: int) -> DecodedItem:
    """Decode every frame of the video (no seeking), keep 8; then the audio."""
    with av.open(item.video_uri) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    picked = np.stack([frames[i] for i in frame_indices(len(frames), config.n_frames)])
    audio, missing = decode_audio(item.video_uri, rate)
    return DecodedItem(item.item_id, picked, audio, rate, None, audio_missing=missing)


def encode_ceiling(decoded: list[list], encoders: dict, device: str) -> float:
    """Seconds for the models alone: frames resized and normalised, log-mels computed, all on the
    device before the clock starts."""
    frames_enc, audio_enc = encoders["frames"], encoders["audio"]
    items = [d for batch in decoded for d in batch if isinstance(d, Prepared)]
    frames = [frames_to_tensor(d.media.frames, device=device) for d in items if d.media.frames is not None]
    mels = [log_mel_patches(d.media.audio, device) for d in items if d.media.audio is not None]
    model, musicnn = frames_enc.model, audio_enc.model
    fmt = torch.channels_last if device.startswith("cuda") else torch.contiguous_format
    x = torch.cat(frames).contiguous(memory_format=fmt)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else torch.autocast("cpu", enabled=False)

    def run() -> None:
        with torch.inference_mode(), autocast:
            forward_in_chunks(lambda c: model.forward_head(model.forward_features(c), pre_logits=True), x, frames_enc.chunk)
            if mels:
                forward_in_chunks(musicnn, torch.cat(mels), audio_enc.chunk)

    run()  # warm-up (cuDNN autotuning, allocator)
    return timed(run, device)[1]


class GpuUtilisation:
    """Mean GPU utilisation (%) sampled every 50 ms while in the block; None without CUDA/pynvml."""

    def __init__(self, device: str) -> None:
        self.samples: list[int] = []
        self.handle = None
        if device.startswith("cuda"):
            try:
                import pynvml

                pynvml.nvmlInit()
                index = torch.device(device).index or 0
                self.handle, self.read = pynvml.nvmlDeviceGetHandleByIndex(index), pynvml.nvmlDeviceGetUtilizationRates
            except Exception as exc:  # noqa: BLE001 - a benchmark reports what it could not measure
                print(f"  (no GPU utilisation: {exc})")

    def __enter__(self) -> GpuUtilisation:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def _loop(self) -> None:
        while self.handle is not None and not self.stop.is_set():
            self.samples.append(self.read(self.handle).gpu)
            time.sleep(0.05)

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def mean(self) -> float | None:
        return round(float(np.mean(self.samples)), 1) if self.samples else None


def bench(label: str, rows: list[tuple[str, str, str]], config: ExtractConfig, args: argparse.Namespace) -> list[str]:
    device = config.resolved_device()
    encoders = loaded_encoders(config)
    rate = encoders["audio"].sample_rate
    work = [WorkItem(item_id, title, uri, None, f"h-{item_id}", list(config.modalities)) for item_id, title, uri in rows]
    batches = [work[i : i + config.batch_items] for i in range(0, len(work), config.batch_items)]
    n = len(work)
    decode_batch(batches[0][:2], config, rate)  # warm the pool and the codecs

    decoded, decode_s = timed(lambda: [decode_batch(b, config, rate) for b in batches], "cpu")
    frames = sum(len(d.media.frames) for batch in decoded for d in batch if isinstance(d, Prepared))
    with ProcessPoolExecutor(max_workers=config.workers(), mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(decode_one, work[: config.workers()], [config] * config.workers(), [rate] * config.workers()))
        _, process_s = timed(lambda: list(pool.map(decode_one, work, [config] * n, [rate] * n, chunksize=1)), "cpu")
    ceiling_s = encode_ceiling(decoded, encoders, device)
    embed_batch(decoded[0][:2], encoders)  # warm-up
    _, encode_s = timed(lambda: [embed_batch(b, encoders) for b in decoded], device)
    decoded.clear()  # free the frames before the pipeline decodes them again

    def pipeline() -> None:  # batches are submitted from their own threads; their items go to the decoder pool
        with ThreadPoolExecutor(max_workers=config.prefetch_batches) as batch_threads:
            for _, batch in prefetched(batches, lambda b: batch_threads.submit(decode_batch, b, config, rate), config.prefetch_batches):
                embed_batch(batch, encoders)

    with GpuUtilisation(device) as gpu:
        _, pipeline_s = timed(pipeline, device)
    flow_s = run_flow(rows, config) if args.flow else None
    naive_items = work[: min(n, args.naive_items)]
    _, naive_s = timed(lambda: [embed_batch([Prepared(w, naive_decode(w, config, rate))], encoders) for w in naive_items], device)
    naive_rate = len(naive_items) / naive_s
    slower = max(decode_s, encode_s)
    out = [
        f"| {label}, {config.frame_sampling} | {n / decode_s:.1f} ({n / process_s:.1f}) | {n / ceiling_s:.1f} | "
        f"{n / encode_s:.1f} ({frames / encode_s:.0f} frames/s) | {n / pipeline_s:.1f}"
        f"{f' / {n / flow_s:.1f}' if flow_s else ''} | {naive_rate:.2f} | {slower / pipeline_s:.0%} "
        f"({'decode' if decode_s > encode_s else 'encode'}) | {n / pipeline_s / naive_rate:.1f}x | "
        f"{gpu.mean if gpu.mean is not None else '-'} |"
    ]
    print(out[0], flush=True)
    return out


def run_flow(rows: list[tuple[str, str, str]], config: ExtractConfig) -> float:
    """Seconds inside the extract-items flow (decode, embed and commit to a fresh warehouse)."""
    from flows.extract import run_extract
    from warehouse.ingest import ingest_items
    from warehouse.store import Warehouse

    with tempfile.TemporaryDirectory() as home:
        csv_path = Path(home) / "items.csv"
        csv_path.write_text("item_id,title,video_uri\n" + "".join(f"{i},{t},{u}\n" for i, t, u in rows))
        ingest_items(Warehouse(home), csv_path)
        return run_extract(home, config)["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample-items", type=int, default=48)
    parser.add_argument("--real-items", type=int, default=96)
    parser.add_argument("--naive-items", type=int, default=24, help="items timed in the naive loop (it is slow)")
    parser.add_argument("--real", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--modes", default="exact,keyframes")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-items", type=int, default=16)
    parser.add_argument("--no-flow", dest="flow", action="store_false", help="skip the Prefect flow (no Prefect/DuckDB)")
    args = parser.parse_args()
    base = ExtractConfig(modalities=("frames", "audio"), device=args.device, batch_items=args.batch_items)
    print(
        f"{os.cpu_count()} CPUs, device {base.resolved_device()}, {base.workers()} decoding threads, "
        f"prefetch {base.prefetch_batches} batches, batches of {base.batch_items}, 8 frames per video\n"
    )
    print(
        "| input, sampling | decode limit, items/s: threads (processes) | encode ceiling | encode path | "
        "pipeline (/ flow) | naive loop | pipeline / slower limit | vs naive | GPU util % |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "sample"
        generate_sample(root, SampleConfig(items_per_topic=max(1, args.sample_items // 6), users=2, cold_users=0))
        sample = [(p.stem, p.stem, str(p)) for p in sorted((root / "videos").glob("*.mp4"))][: args.sample_items]
        clips = sorted(args.real.glob("microlens-50k/videos/*.mp4")) + sorted(args.real.glob("public-clips/*.mp4"))
        real = [(f"{clips[i % len(clips)].stem}-{i}", "clip", str(clips[i % len(clips)])) for i in range(args.real_items)] if clips else []
        for mode in args.modes.split(","):
            config = base.replace(frame_sampling=mode)
            bench(f"sample, {len(sample)} clips", sample, config, args)
            if real:
                bench(f"real, {len(real)} items ({len(clips)} clips)", real, config, args)
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
