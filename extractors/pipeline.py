"""The work of extract-items, as plain functions the Prefect flow wires together.

    plan_work(items, done, failed, encoders)  -> which items need which encoders (and how many were skipped)
    decode_batch(work, config, rates)          -> frames + audio per item (a shared pool of threads)
    prefetched(batches, submit, depth)         -> batches in order, the next `depth` decoding meanwhile
    embed_batch(decoded, encoders)             -> embeddings rows per model, failure rows

An item whose media cannot be decoded, or whose input an encoder cannot take, becomes a failures
row; the rest of its batch goes on.

Reads `items`; the flow writes the rows to `embeddings` and `failures`. An item is embedded once
per (modality, model, content_hash): a rerun skips it, `--force` recomputes it.
"""

from __future__ import annotations

import collections
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from extractors.config import ExtractConfig
from extractors.decode import DecodedItem, decode_audio, first_line, sample_frames
from extractors.encoders import EfficientNetLite0, Embedded, Encoder, MiniLM, MusicnnTagger, model_id
from warehouse.errors import ConfigError, EncoderInputError, MediaDecodeError
from warehouse.schemas import EMBEDDINGS, FAILURES

STAGE = "extract-items"


@dataclass
class WorkItem:
    item_id: str
    title: str | None
    video_uri: str | None
    audio_uri: str | None
    content_hash: str
    modalities: list[str] = field(default_factory=list)  # what this item still needs


@dataclass
class Prepared:
    """An item of a batch, decoded."""

    work: WorkItem
    media: DecodedItem


@dataclass
class BatchResult:
    # (modality, model id) -> rows: the warehouse key of a vector is (item, modality, model,
    # content_hash), so two modalities may share a model (CLIP's image and text towers).
    embeddings: dict[tuple[str, str], pa.Table]
    failures: list[dict[str, Any]]
    embedded_items: int
    # Of those, items with neither video nor audio to decode, where a media modality is configured:
    # a title vector only (counted as embedded, not as planned: a title that fails is not one).
    without_media: int = 0
    # Items with media but an empty title, where text is configured: no text vector (nothing to embed).
    without_title: int = 0


def merge_results(results: list[BatchResult]) -> BatchResult:
    """Several batches' results as one (extract-items commits `commit_items` items at a time)."""
    tables: dict[tuple[str, str], list[pa.Table]] = {}
    for result in results:
        for key, table in result.embeddings.items():
            tables.setdefault(key, []).append(table)
    return BatchResult(
        # permissive: a part whose nullable columns were inferred as null still joins (tags of a batch without any)
        {key: pa.concat_tables(parts, promote_options="permissive") for key, parts in tables.items()},
        [failure for result in results for failure in result.failures],
        sum(result.embedded_items for result in results),
        sum(result.without_media for result in results),
        sum(result.without_title for result in results),
    )


def build_encoders(config: ExtractConfig) -> dict[str, Encoder]:
    """The encoder of each configured modality (constructed, not loaded)."""
    if config.preset == "paper":
        from extractors.paper_encoders import ClapAudio, ClipFrames, ClipModel, ClipText

        clip = ClipModel(config.clip_arch, config.clip_checkpoint or None)
        all_encoders: dict[str, Any] = {
            "frames": ClipFrames(clip, sampling=config.frame_sampling, short_side=config.decode_short_side),
            "text": ClipText(clip),
            "audio": ClapAudio(config.clap_checkpoint or None, audio_model=config.clap_audio_model, text_model=config.clap_text_model),
        }
    else:
        all_encoders = {
            "frames": EfficientNetLite0(sampling=config.frame_sampling, short_side=config.decode_short_side),
            "text": MiniLM(),
            "audio": MusicnnTagger(),
        }
    encoders = {m: all_encoders[m] for m in config.modalities}
    check_encoder_keys(encoders)
    return encoders


def check_checkpoints(config: ExtractConfig) -> None:
    """Raise ModelNotFound for a configured encoder whose checkpoint file is not there, before any
    flow starts (the paper preset's CLIP and CLAP; the offline encoders ship their weights)."""
    for encoder in build_encoders(config).values():
        if hasattr(encoder, "require_checkpoint"):
            encoder.require_checkpoint()


def check_encoder_keys(encoders: dict[str, Encoder]) -> None:
    """Refuse encoders that would write under one warehouse key: each sits in the slot of its own
    modality, and no two share (modality, model id)."""
    seen: dict[tuple[str, str], str] = {}
    for slot, encoder in encoders.items():
        if encoder.modality != slot:
            raise ConfigError(f"encoder {model_id(encoder)} embeds {encoder.modality!r} but is configured for {slot!r}")
        key = (encoder.modality, model_id(encoder))
        if key in seen:
            raise ConfigError(
                f"encoders for {seen[key]!r} and {slot!r} would both write {key[0]} vectors of model {key[1]}; give each its own modality or model version"
            )
        seen[key] = slot


@lru_cache(maxsize=2)
def loaded_encoders(config: ExtractConfig) -> dict[str, Encoder]:
    """Encoders loaded once per process (and per config), on the configured device."""
    import torch

    device = config.resolved_device()
    if device == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    encoders = build_encoders(config)
    for encoder in encoders.values():
        encoder.load(device)
    return encoders


def model_ids(config: ExtractConfig) -> dict[str, str]:
    """modality -> model id (`name@version`), known without loading any weights."""
    return {m: model_id(e) for m, e in build_encoders(config).items()}


def plan_work(
    items: Sequence[dict[str, Any]],
    done: set[tuple[str, str, str, str]],
    failed: set[tuple[str, str]],
    models: dict[str, str],
    *,
    no_audio: set[tuple[str, str]] = frozenset(),
    force: bool = False,
) -> tuple[list[WorkItem], int, int, int]:
    """Items that still need an encoder, how many were skipped (already embedded, quarantined
    (`failed`), or, for audio, known to have none: `no_audio`), how many of those were held back
    only by their quarantine (they lack a vector), and how many have nothing the configured
    modalities can embed (e.g. no title and no media); keys are (item_id, content_hash)."""
    work, skipped, held, empty = [], 0, 0, 0
    for row in items:
        item = WorkItem(row["item_id"], row["title"], row["video_uri"], row["audio_uri"], row["content_hash"])
        key = (item.item_id, item.content_hash)
        present = {"frames": bool(item.video_uri), "text": has_title(item.title), "audio": bool(item.audio_uri or item.video_uri)}
        empty += not any(present[m] for m in models)
        has = {**present, "audio": present["audio"] and (force or key not in no_audio)}
        needed = [m for m, model in models.items() if has[m] and (force or (item.item_id, m, model, item.content_hash) not in done)]
        if needed and (force or key not in failed):
            item.modalities = needed
            work.append(item)
        else:
            skipped += 1
            held += bool(needed)
    return work, skipped, held, empty


def has_title(title: str | None) -> bool:
    """Whether a title has words to embed (probe: a title of spaces got a text vector)."""
    return bool(title and title.strip())


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def decoder_pool(workers: int) -> ThreadPoolExecutor:
    """One pool of decoding threads per process and size, shared by every batch in flight, so
    decoding several batches ahead never runs more than `workers` decoders at once (made under a
    lock: the first batches are submitted together). Threads, not processes: decord, PyAV and
    FFmpeg's scaler and resampler release the GIL (benchmarks/extract.py measures both)."""
    with _POOLS_LOCK:
        if workers not in _POOLS:
            _POOLS[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        return _POOLS[workers]


def decode_batch(work: Sequence[WorkItem], config: ExtractConfig, audio_rate: int | None) -> list[Prepared | dict[str, Any]]:
    """Decode every item of the batch on the shared decoder pool. An item that cannot be decoded
    comes back as a failures row instead."""

    def one(item: WorkItem) -> Prepared | dict[str, Any]:
        try:
            return Prepared(item, decode_one(item, config, audio_rate))
        except MediaDecodeError as exc:
            return failure_row(item, str(exc))

    return list(decoder_pool(config.workers()).map(one, work))


def prefetched(batches: Sequence[Any], submit: Callable[[Any], Any], depth: int) -> Iterator[tuple[Any, Any]]:
    """(batch, decoded) in order, with up to `depth` later batches decoding meanwhile. `submit(batch)`
    starts a batch's decoding and returns a future (a Prefect task's or a pool's)."""
    pending = collections.deque(submit(batch) for batch in batches[:depth])
    for index, batch in enumerate(batches):
        decoded = pending.popleft().result()
        if index + depth < len(batches):
            pending.append(submit(batches[index + depth]))
        yield batch, decoded


def decode_one(item: WorkItem, config: ExtractConfig, audio_rate: int | None) -> DecodedItem:
    frames = duration = None
    if "frames" in item.modalities:
        frames, duration = sample_frames(item.video_uri, config.n_frames, sampling=config.frame_sampling, short_side=config.decode_short_side)
    audio, missing = None, None
    if "audio" in item.modalities and audio_rate:
        audio, missing = decode_audio(item.audio_uri or item.video_uri, audio_rate)
    return DecodedItem(item.item_id, frames, audio, audio_rate or 0, duration, audio_missing=missing)


def encoder_errors() -> tuple[type[BaseException], ...]:
    """What quarantines an item: input its encoder checked and refused, or a batch that did not fit
    in the device's memory and then does not fit alone. Any other error (torch's RuntimeErrors of
    shape, dtype or device, a CUDA fault, a bug) stops the run: quarantining it would hide it."""
    import torch

    return (EncoderInputError, torch.OutOfMemoryError)


def encode_each(encoder: Encoder, inputs: list[Any]) -> tuple[Embedded | None, list[str | None]]:
    """The batch in one call; if that raises, each input alone, so one bad input fails only
    itself. Returns the vectors of the inputs that encoded (None if none did) and, per input,
    None or the error that quarantines it."""
    errors_to_quarantine = encoder_errors()
    try:
        return encoder.embed(inputs), [None] * len(inputs)
    except errors_to_quarantine as batch_error:
        if len(inputs) == 1:
            return None, [f"{type(batch_error).__name__}: {first_line(batch_error)}"]
    parts: list[Embedded] = []
    errors: list[str | None] = []
    for x in inputs:
        try:
            parts.append(encoder.embed([x]))
            errors.append(None)
        except errors_to_quarantine as exc:
            errors.append(f"{type(exc).__name__}: {first_line(exc)}")
    if not parts:
        return None, errors
    return Embedded(np.concatenate([p.vectors for p in parts]), [t for p in parts for t in p.tags]), errors


def embed_batch(decoded: Sequence[Prepared | dict[str, Any]], encoders: dict[str, Encoder]) -> BatchResult:
    """Encode a decoded batch: one encoder call per modality, across all of the batch's items."""
    items = [d for d in decoded if isinstance(d, Prepared)]
    failures = [d for d in decoded if isinstance(d, dict)]
    now = datetime.now(timezone.utc)
    tables: dict[str, pa.Table] = {}
    embedded: set[str] = set()
    for modality, encoder in encoders.items():
        wanted = [d for d in items if modality in d.work.modalities]
        inputs = [_input(d, modality) for d in wanted]
        ready = [(d, x) for d, x in zip(wanted, inputs) if x is not None]
        if modality == "audio":
            failures += [failure_row(d.work, f"no audio: {d.media.audio_missing}", stage=f"{STAGE}:audio") for d in wanted if d.media.audio is None]
        if not ready:
            continue
        key = (modality, model_id(encoder))
        out, errors = encode_each(encoder, [x for _, x in ready])
        failures += [
            failure_row(d.work, f"encoder {key[1]} cannot take this {modality} input: {error}", stage=f"{STAGE}:{modality}:encoder", model=key[1])
            for (d, _), error in zip(ready, errors)
            if error
        ]
        ready = [r for r, error in zip(ready, errors) if error is None]
        if out is None:
            continue
        if len(out.vectors) != len(ready) or len(out.tags) != len(ready):
            # Never write a partial or misaligned table: the items go to failures, and a rerun retries them.
            reason = f"encoder {key[1]} returned {len(out.vectors)} vectors and {len(out.tags)} tag lists for {len(ready)} {modality} inputs"
            failures += [failure_row(d.work, reason, stage=f"{STAGE}:{modality}:encoder", model=key[1]) for d, _ in ready]
            continue
        if key in tables:
            raise ConfigError(f"two encoders would write {modality} vectors of model {key[1]} in one batch")
        tables[key] = embeddings_table([d.work for d, _ in ready], modality, key[1], out, now)
        embedded.update(d.work.item_id for d, _ in ready)
    bare = {d.work.item_id for d in items if not d.work.video_uri and not d.work.audio_uri} if {"frames", "audio"} & set(encoders) else set()
    untitled = {d.work.item_id for d in items if not has_title(d.work.title)} if "text" in encoders else set()
    return BatchResult(tables, failures, len(embedded), len(bare & embedded), len(untitled & embedded))


def _input(prepared: Prepared, modality: str) -> Any:
    if modality == "frames":
        return prepared.media.frames
    if modality == "audio":
        return prepared.media.audio
    return prepared.work.title if has_title(prepared.work.title) else None


def embeddings_table(items: Sequence[WorkItem], modality: str, model: str, out: Embedded, now: datetime) -> pa.Table:
    n, dim = out.vectors.shape
    return pa.table(
        {
            "item_id": [w.item_id for w in items],
            "modality": [modality] * n,
            "model": [model] * n,
            "dim": pa.array([dim] * n, pa.int32()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(out.vectors, np.float32).ravel()), dim),
            "tags": pa.array(out.tags, EMBEDDINGS.schema.field("tags").type),  # typed: a batch with no tag is list<null> else
            "content_hash": [w.content_hash for w in items],
            "created_at": pa.array([now] * n, EMBEDDINGS.schema.field("created_at").type),
        }
    )


def failure_row(item: WorkItem, error: str, *, stage: str = STAGE, model: str | None = None) -> dict[str, Any]:
    record = {"item_id": item.item_id, "video_uri": item.video_uri, "audio_uri": item.audio_uri, "content_hash": item.content_hash}
    if model is not None:  # an encoder's refusal: the view quarantined_items asks whether that model got past it since
        record["model"] = model
    return {
        "stage": stage,
        "source": item.video_uri or item.audio_uri or "",
        "item_id": item.item_id,
        "user_id": None,
        "error": error,
        "record": json.dumps(record, sort_keys=True),
        "failed_at": datetime.now(timezone.utc),
    }


def failures_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=FAILURES.schema)
