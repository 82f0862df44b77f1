"""extract-items: decode frames and audio, embed them in batches, write `embeddings` (Prefect flow).

    reelsense extract [--config extract.toml] [--force] [--limit N] [--dask-workers N]

Reads `items`; writes `embeddings` (one row per item, modality and model) and `failures` (corrupt
media, missing audio). Caching is by content hash, in the warehouse itself: an item whose
(modality, model, content_hash) is stored is skipped, so a rerun after a crash does only what is
left (each finished batch was committed atomically), and `--force` recomputes and replaces.
Decoding of the next batch (threads, or Dask worker processes with --dask-workers) overlaps the
encoding of the current one.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from tqdm import tqdm

from extractors.config import ExtractConfig
from extractors.pipeline import (
    STAGE, BatchResult, WorkItem, build_encoders, decode_batch, embed_batch, failures_table, loaded_encoders, model_ids, plan_work,
)
from warehouse import db, store
from warehouse.schemas import EMBEDDINGS, FAILURES
from warehouse.store import Warehouse


@task(name="plan-extraction", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def plan_extraction(home: str, config: ExtractConfig, force: bool, limit: int | None) -> tuple[list[WorkItem], int]:
    wh = Warehouse(home)
    models = model_ids(config)
    items = db.fetch(wh, "SELECT item_id, title, video_uri, audio_uri, content_hash FROM items ORDER BY item_id")
    if limit is not None:
        items = items[:limit]
    done = {tuple(r.values()) for r in db.fetch(
        wh, "SELECT item_id, modality, model, content_hash FROM embeddings WHERE list_contains($models, model)",
        {"models": list(models.values())})}
    failed, no_audio = (
        {tuple(r.values()) for r in db.fetch(
            wh, "SELECT item_id, json_extract_string(record, '$.content_hash') AS h FROM failures WHERE stage = $stage",
            {"stage": stage})}
        for stage in (STAGE, f"{STAGE}:audio")
    )
    return plan_work(items, done, failed, models, no_audio=no_audio, force=force)


@task(name="decode-batch", cache_policy=NO_CACHE)
def decode_task(work: list[WorkItem], config: ExtractConfig) -> list[Any]:
    audio = build_encoders(config).get("audio")  # its sample rate is known without loading it
    return decode_batch(work, config, getattr(audio, "sample_rate", None))


@task(name="embed-batch", cache_policy=NO_CACHE)
def embed_task(decoded: list[Any], config: ExtractConfig) -> BatchResult:
    return embed_batch(decoded, loaded_encoders(config))


@task(name="write-batch", retries=3, retry_delay_seconds=2, cache_policy=NO_CACHE)
def write_task(home: str, result: BatchResult, force: bool) -> dict[str, int]:
    """Commit one batch. Appends are idempotent, so a retry after a partial write is safe."""
    wh = Warehouse(home)
    write = store.replace if force else store.append
    written = sum(write(wh, EMBEDDINGS, table).written for table in result.embeddings.values())
    store.append(wh, FAILURES, failures_table(result.failures))
    quarantined = sum(1 for f in result.failures if f["stage"] == STAGE)
    return {"vectors": written, "embedded": result.embedded_items, "quarantined": quarantined,
            "audio_missing": len(result.failures) - quarantined}


@flow(name="extract-items", log_prints=True)
def extract_items(home: str, config: ExtractConfig = ExtractConfig(), force: bool = False, limit: int | None = None) -> dict[str, Any]:
    """Embed every item that is not embedded yet; return the run summary."""
    logger = get_run_logger()
    started = time.perf_counter()
    work, skipped = plan_extraction(home, config, force, limit)
    batches = [work[i : i + config.batch_items] for i in range(0, len(work), config.batch_items)]
    logger.info("%d items to embed in %d batches (%s), %d skipped", len(work), len(batches), ", ".join(model_ids(config).values()), skipped)
    totals = {"vectors": 0, "embedded": 0, "quarantined": 0, "audio_missing": 0}
    with tqdm(total=len(work), unit="item", desc="extract-items", file=sys.stderr, disable=not work) as bar:
        pending = decode_task.submit(batches[0], config) if batches else None
        for index in range(len(batches)):
            decoded = pending.result()
            pending = decode_task.submit(batches[index + 1], config) if index + 1 < len(batches) else None
            counts = write_task(home, embed_task(decoded, config), force)
            totals = {k: totals[k] + counts[k] for k in totals}
            bar.update(len(batches[index]))
            bar.set_postfix(quarantined=totals["quarantined"])
    db.refresh_views(Warehouse(home))
    seconds = time.perf_counter() - started
    summary = {**totals, "skipped": skipped, "seconds": round(seconds, 2),
               "items_per_s": round(len(work) / seconds, 2) if work else 0.0}
    logger.info("extract-items: %(embedded)d embedded, %(skipped)d skipped, %(quarantined)d quarantined, "
                "%(audio_missing)d without audio, %(vectors)d vectors, %(items_per_s).2f items/s", summary)
    return summary


def run_extract(home: str, config: ExtractConfig, *, force: bool = False, limit: int | None = None, dask_workers: int = 0) -> dict[str, Any]:
    """Run the flow, on Dask worker processes when `dask_workers` > 0."""
    if dask_workers:
        from prefect_dask import DaskTaskRunner

        runner = DaskTaskRunner(cluster_kwargs={"n_workers": dask_workers, "processes": True, "threads_per_worker": 1})
        return extract_items.with_options(task_runner=runner)(home, config, force, limit)
    return extract_items(home, config, force, limit)


def summary_line(summary: dict[str, Any]) -> str:
    return (f"extract-items: {summary['embedded']} embedded, {summary['skipped']} skipped, "
            f"{summary['quarantined']} quarantined, {summary['audio_missing']} without audio; "
            f"{summary['vectors']} vectors in {summary['seconds']}s ({summary['items_per_s']} items/s)")
