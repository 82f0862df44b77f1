"""extract-items: decode frames and audio, embed them in batches, write `embeddings` (Prefect flow).

    reelsense extract [--config extract.toml] [--force] [--limit N] [--dask-workers N | --dask-address ADDR] [--shards N]

Reads `items`; writes `embeddings` (one row per item, modality and model) and `failures` (corrupt
media, missing audio). Caching is by content hash, in the warehouse itself: an item whose
(modality, model, content_hash) is stored is skipped, so a rerun after a crash does only what is
left, and `--force` recomputes and replaces. Whole batches are committed once they hold
`commit_items` items (default 256: 16 batches of 16), each commit atomic and one file per
modality, so a crash loses fewer than `commit_items + batch_items` items of work, and the table
does not gather a file per batch (whose count every append's duplicate check and every reader
would pay for). On one machine, the next `prefetch_batches` batches are decoded (by a shared pool
of decoding threads, one per core by default) while the current one is encoded and committed.
Scaled out (--dask-workers, --dask-address), items are partitioned by crc32(item_id) into shards
that each worker decodes, embeds and commits on its own: the commits are idempotent appends, so
workers never coordinate, and more workers give more throughput until the storage saturates.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from tqdm import tqdm

from extractors.config import ExtractConfig
from extractors.pipeline import (
    STAGE,
    BatchResult,
    WorkItem,
    build_encoders,
    decode_batch,
    embed_batch,
    failures_table,
    loaded_encoders,
    merge_results,
    model_ids,
    plan_work,
    prefetched,
)
from flows.console import count
from flows.runners import dask_runner
from warehouse import db, store
from warehouse.ingest import media_path
from warehouse.progress import progress
from warehouse.schemas import EMBEDDINGS, FAILURES
from warehouse.store import Warehouse


@task(name="plan-extraction", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def plan_extraction(home: str, config: ExtractConfig, force: bool, limit: int | None) -> tuple[list[WorkItem], int, dict[str, int]]:
    """The items to embed (the first `limit` of those that need it, by item_id), how many were
    skipped, and counts: "held", the skipped items that lack a vector but that an earlier run
    quarantined (only --force tries them again), "empty", those with nothing to embed (no title,
    no media), and the items past the limit by what a run
    without --limit would do with them: "to_embed" (they lack a vector: any run embeds them), and
    after --force "embedded" (they have their vectors) and "quarantined" (quarantined before)."""
    wh = Warehouse(home)
    models = model_ids(config)
    items = [
        {**r, "video_uri": media_path(wh, r["video_uri"]), "audio_uri": media_path(wh, r["audio_uri"])} for r in db.analysis(wh, "extract_items").to_pylist()
    ]
    done = {tuple(r.values()) for r in db.analysis(wh, "extracted_keys", {"models": list(models.values())}).to_pylist()}
    failed, no_audio = ({tuple(r.values()) for r in db.analysis(wh, "failed_extractions", {"stage": stage}).to_pylist()} for stage in (STAGE, f"{STAGE}:audio"))
    work, skipped, held, empty = plan_work(items, done, failed, models, no_audio=no_audio, force=force)
    # The limit counts items that need embedding (probe: as the first N of all items, a second
    # `--limit 1` planned the same, already embedded item and never moved on).
    past = [] if limit is None else work[limit:]
    # Review: after `--force --limit` the items past it that never had a vector were also called "not embedded again".
    lacking = {w.item_id for w in plan_work(items, done, failed, models, no_audio=no_audio)[0]} if force and past else {w.item_id for w in past}
    kinds = ["to_embed" if w.item_id in lacking else "quarantined" if (w.item_id, w.content_hash) in failed else "embedded" for w in past]
    # Probe: an item quarantined before was one of the "skipped", as if it had its vectors (held).
    counts = {kind: kinds.count(kind) for kind in ("to_embed", "embedded", "quarantined")}
    return work if limit is None else work[:limit], skipped, {**counts, "held": held, "empty": empty}


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
    # Stages: STAGE (undecodable media), STAGE:audio (no audio track), STAGE:<modality>:encoder
    # (an encoder could not take the item's input, or returned the wrong number of vectors;
    # retried on the next run, since a device out of memory is one such error).
    quarantined = sum(1 for f in result.failures if f["stage"] != f"{STAGE}:audio")
    return {
        "vectors": written,
        "embedded": result.embedded_items,
        "quarantined": quarantined,
        "audio_missing": len(result.failures) - quarantined,
        "without_media": result.without_media,
        "without_title": result.without_title,
    }


COUNTS = ("vectors", "embedded", "quarantined", "audio_missing", "without_media", "without_title")


def _add(totals: dict[str, int], counts: dict[str, int]) -> dict[str, int]:
    return {k: totals[k] + counts[k] for k in COUNTS}


class Commits:
    """Batches' results held until they hold `commit_items` items or more (whole batches: fewer than
    `commit_items + batch_items`), then committed by `write` (the write task) as one; `flush`
    commits what is held. Used as a context manager, what is held is also committed when a later
    batch raises an Exception (not on Ctrl-C or a cancelled flow), so finished work is kept."""

    def __init__(
        self, write: Callable[[BatchResult], dict[str, int]], commit_items: int, write_on_error: Callable[[BatchResult], dict[str, int]] | None = None
    ) -> None:
        # write_on_error: the write without Prefect's task machinery, for a flow that is failing
        # (its API may be going away: a task run then retries against it for minutes).
        self.write, self.commit_items, self.write_on_error = write, commit_items, write_on_error or write
        self.held: list[BatchResult] = []
        self.items = 0
        self.totals = dict.fromkeys(COUNTS, 0)

    def add(self, result: BatchResult, items: int) -> None:
        self.held.append(result)
        self.items += items
        if self.items >= self.commit_items:
            self.flush()

    def flush(self, write: Callable[[BatchResult], dict[str, int]] | None = None) -> None:
        if not self.held:
            return
        merged = merge_results(self.held)
        self.held, self.items = [], 0  # a failed write is not tried again on exit
        self.totals = _add(self.totals, (write or self.write)(merged))

    def __enter__(self) -> Commits:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: object) -> None:
        if kind is None:
            self.flush()
        elif issubclass(kind, Exception):  # a batch failed: keep the finished ones (not on Ctrl-C or cancellation)
            try:
                self.flush(self.write_on_error)
            except Exception as flush_error:  # the batch's error is the one to report
                error.add_note(f"and the batches finished before it could not be committed: {flush_error!r}")  # type: ignore[union-attr]


@task(name="extract-shard", cache_policy=NO_CACHE)
def extract_shard(home: str, work: list[WorkItem], config: ExtractConfig, force: bool, torch_threads: int = 0) -> dict[str, int]:
    """Decode, embed and commit one shard of items, all on the worker that runs it (scale-out)."""
    loaded_encoders(config)  # once per worker process (cached); it sets torch's threads to every core
    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)  # worker processes sharing a machine share its cores
    with Commits(lambda result: write_task.fn(home, result, force), config.commit_items) as commits:
        for start in range(0, len(work), config.batch_items):
            batch = work[start : start + config.batch_items]
            commits.add(embed_task.fn(decode_task.fn(batch, config), config), len(batch))
    return commits.totals


def item_shards(work: list[WorkItem], shards: int) -> list[list[WorkItem]]:
    """Items by partition (crc32 of the item id): the same item always lands in the same shard."""
    parts: list[list[WorkItem]] = [[] for _ in range(shards)]
    for item in work:
        parts[zlib.crc32(item.item_id.encode("utf-8")) % shards].append(item)
    return [p for p in parts if p]


def _run_shards(home: str, work: list[WorkItem], config: ExtractConfig, force: bool, shards: int, torch_threads: int, bar: tqdm) -> dict[str, int]:
    parts = item_shards(work, shards)
    futures = [extract_shard.submit(home, part, config, force, torch_threads) for part in parts]
    totals = dict.fromkeys(COUNTS, 0)
    for part, future in zip(parts, futures):
        totals = _add(totals, future.result())
        bar.update(len(part))
    return totals


def _run_pipeline(home: str, work: list[WorkItem], config: ExtractConfig, force: bool, bar: tqdm) -> dict[str, int]:
    """Batches in order; up to `prefetch_batches` of the next ones decode (tasks on the shared
    decoder pool) while this one is encoded and committed, so the encoder need not wait."""
    batches = [work[i : i + config.batch_items] for i in range(0, len(work), config.batch_items)]
    with Commits(lambda result: write_task(home, result, force), config.commit_items, lambda result: write_task.fn(home, result, force)) as commits:
        for batch, decoded in prefetched(batches, lambda b: decode_task.submit(b, config), config.prefetch_batches):
            commits.add(embed_task(decoded, config), len(batch))
            bar.set_postfix(committed=commits.totals["embedded"], quarantined=commits.totals["quarantined"])
            bar.update(len(batch))  # draws (at most every mininterval), the counts above with it
    # The last commits land as the block closes: the bar ends on the totals (probe: "committed=0"
    # beside "1 embedded"), drawn as it closes (a draw now put a bar line without a newline into a log).
    bar.set_postfix(committed=commits.totals["embedded"], quarantined=commits.totals["quarantined"])
    return commits.totals


@flow(name="extract-items", log_prints=True)
def extract_items(
    home: str, config: ExtractConfig = ExtractConfig(), force: bool = False, limit: int | None = None, shards: int = 0, torch_threads: int = 0
) -> dict[str, Any]:
    """Embed every item that is not embedded yet; return the run summary. shards = 0: one
    pipeline in this process (decoding the next batches while this one is encoded); shards > 0:
    items partitioned into that many shard tasks, each decoded, embedded and committed by
    whichever worker runs it (the Dask runner's processes or machines)."""
    logger = get_run_logger()
    started = time.perf_counter()
    work, skipped, counts = plan_extraction(home, config, force, limit)
    how = f"{shards} shards" if shards else f"batches of {config.batch_items}"
    models = model_ids(config)
    logger.info(
        "%s to embed in %s (%s), %d skipped (%d of them quarantined before, %d with nothing to embed)",
        count(len(work), "item"),  # probe: "1 items"
        how,
        ", ".join(models.values()),
        skipped,
        counts["held"],
        counts["empty"],
    )
    with progress(total=len(work), unit="item", desc="extract-items", disable=not work) as bar:
        if shards:
            totals = _run_shards(home, work, config, force, shards, torch_threads, bar)
        else:
            totals = _run_pipeline(home, work, config, force, bar)
    db.refresh_views(Warehouse(home))
    seconds = time.perf_counter() - started
    summary = {
        **totals,
        "skipped": skipped,
        "skipped_quarantined": counts["held"],  # of the skipped: quarantined before, tried again only by --force
        "skipped_empty": counts["empty"],  # of the skipped: nothing the configured modalities embed
        "past_limit": counts["to_embed"],  # past --limit, without a vector: a run without --limit embeds them
        "past_limit_embedded": counts["embedded"],  # after --force: with their vectors, embedded again only by --force
        "past_limit_quarantined": counts["quarantined"],  # after --force: quarantined before, tried again only by --force
        "modalities": sorted(models),  # the configured ones: "without audio" only where audio is one (probe)
        "seconds": round(seconds, 2),
        "items_per_s": round(len(work) / seconds, 2) if work else 0.0,
    }
    audio = f", {summary['audio_missing']} without audio" if "audio" in models else ""  # review: as extract_line
    logger.info(
        "extract-items: %(embedded)d embedded, %(skipped)d skipped, %(quarantined)d quarantined%(audio)s, %(vectors)d vectors, %(items_per_s).2f items/s",
        {**summary, "audio": audio},
    )
    return summary


def run_extract(
    home: str, config: ExtractConfig, *, force: bool = False, limit: int | None = None, dask_workers: int = 0, dask_address: str | None = None, shards: int = 0
) -> dict[str, Any]:
    """Run the flow in this process, or sharded on Dask: a local cluster of `dask_workers`
    processes (each with its share of the cores) or a running scheduler at `dask_address`."""
    dask = dask_runner(dask_workers, dask_address)
    if dask:
        runner, threads = dask
        shards = shards or 4 * max(dask_workers, 2)  # a few shards per worker evens out their sizes
        if threads and not config.decode_workers:  # local workers share this machine's cores: so do their decoders
            config = config.replace(decode_workers=threads)
        return extract_items.with_options(task_runner=runner)(home, config, force, limit, shards, threads)
    return extract_items(home, config, force, limit, shards)
