"""align-items: project frames, text and audio into one space and fuse them (Prefect flow).

    reelsense align [--retrain] [--seed N] [--topics truth.json]

Reads `embeddings` (the raw vectors of each modality's most complete model) and `items`; writes
aligned vectors (`model = 'aligned@<version>'`, one row per item and modality), fused vectors
(`modality = 'fused'`, with `fusion_weights`), the model to `<home>/models/align/<version>/`, and
`<home>/reports/alignment.json`. An existing model is reused (items whose content changed are
re-projected without retraining) unless `--retrain` is given or the raw models changed.
"""

from __future__ import annotations

import itertools
import json
import logging
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from extractors.align import (
    AlignConfig,
    AlignmentModel,
    apply_alignment,
    evaluate_alignment,
    load_model,
    model_bytes,
    rows_to_store,
    train_alignment,
    vectors_from_rows,
)
from flows.console import say
from warehouse import db, store
from warehouse.schemas import EMBEDDINGS
from warehouse.store import Warehouse


@task(name="load-raw-vectors", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def load_raw_vectors(home: str) -> tuple[dict[str, str], list[str], list[str], dict[str, np.ndarray]]:
    wh = Warehouse(home)
    raw_models: dict[str, str] = {}
    stored = db.analysis(wh, "raw_models").to_pylist()
    for row in stored:
        raw_models.setdefault(row["modality"], row["model"])  # the most complete model per modality (then the newest)
    for modality, model in raw_models.items():
        others = [f"{r['model']} ({r['items']} items)" for r in stored if r["modality"] == modality and r["model"] != model]
        if others:  # e.g. exact and keyframe-sampled frames: say which one the alignment learns from
            covered = next(r["items"] for r in stored if r["model"] == model)
            get_run_logger().warning("align: %s vectors of %s (%d items, the most complete); also stored: %s", modality, model, covered, ", ".join(others))
    rows = db.analysis(wh, "raw_vectors", {"models": list(raw_models.values())}).to_pylist()
    item_ids, hashes, vectors = vectors_from_rows(rows, sorted(raw_models))
    return raw_models, item_ids, hashes, vectors


def latest_model(home: str) -> tuple[AlignmentModel, dict[str, Any]] | None:
    pointer = Warehouse(home).models_dir / "align" / "LATEST"
    if not pointer.exists():
        return None
    folder = pointer.parent / pointer.read_text().strip()
    return load_model(folder / "model.pt"), json.loads((folder / "meta.json").read_text())


@task(name="train-alignment", cache_policy=NO_CACHE)
def train_task(
    home: str, raw_models: dict[str, str], item_ids: list[str], vectors: dict[str, np.ndarray], config: AlignConfig
) -> tuple[AlignmentModel, dict[str, Any]]:
    result = train_alignment(vectors, config)
    version = result.model.version()
    folder = Warehouse(home).models_dir / "align" / version
    folder.mkdir(parents=True, exist_ok=True)
    store.write_atomic(folder / "model.pt", model_bytes(result.model))
    meta = {
        "version": version,
        "raw_models": raw_models,
        "config": result.model.config.__dict__,
        "train_item_ids": [item_ids[i] for i in result.train_idx],
        "val_item_ids": [item_ids[i] for i in result.val_idx],
        "best_epoch": result.best_epoch,
        "history": result.history,
        "trained_at": datetime.now(timezone.utc).isoformat(),
    }
    store.write_atomic(folder / "meta.json", json.dumps(meta, indent=1))
    store.write_atomic(folder.parent / "LATEST", version + "\n")  # after the model and its meta: never a pointer to half a model
    return result.model, meta


@task(name="write-aligned", retries=3, retry_delay_seconds=2, cache_policy=NO_CACHE)
def write_aligned(home: str, model: AlignmentModel, version: str, item_ids: list[str], hashes: list[str], vectors: dict[str, np.ndarray]) -> int:
    aligned, fused, weights = apply_alignment(model, vectors)
    now = datetime.now(timezone.utc)
    written = 0
    for modality, matrix in [*aligned.items(), ("fused", fused)]:
        rows = rows_to_store(matrix)
        fusion = [list(zip(model.modalities, map(float, weights[i]))) for i in rows] if modality == "fused" else None
        batch = pa.table(
            {
                "item_id": [item_ids[i] for i in rows],
                "modality": [modality] * len(rows),
                "model": [f"aligned@{version}"] * len(rows),
                "dim": pa.array([matrix.shape[1]] * len(rows), pa.int32()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(matrix[rows].ravel()), matrix.shape[1]),
                "tags": pa.nulls(len(rows), pa.list_(pa.string())),
                "content_hash": [hashes[i] for i in rows],
                "created_at": pa.array([now] * len(rows), EMBEDDINGS.schema.field("created_at").type),
                "fusion_weights": pa.array(fusion, EMBEDDINGS.schema.field("fusion_weights").type)
                if fusion is not None
                else pa.nulls(len(rows), EMBEDDINGS.schema.field("fusion_weights").type),
            }
        )
        written += store.append(Warehouse(home), EMBEDDINGS, batch).written
    return written


# Contrastive alignment learns a pair of modalities from the items holding both, each the others'
# negatives: one such item has nothing to be told apart from (fewer than this: nothing to align).
MIN_PAIRED_ITEMS = 2


@flow(name="align-items", log_prints=True)
def align_items(home: str, retrain: bool = False, config: AlignConfig = AlignConfig(), topics_path: str | None = None) -> dict[str, Any]:
    logger = get_run_logger()
    raw_models, item_ids, hashes, vectors = load_raw_vectors(home)
    if len(vectors) < 2:
        logger.warning("align-items: %d modality (%s): nothing to align", len(vectors), ", ".join(vectors) or "none")
        return {"written": 0, "modalities": sorted(vectors)}
    present = {m: ~np.isnan(v).any(1) for m, v in vectors.items()}
    paired = max(int((present[a] & present[b]).sum()) for a, b in itertools.combinations(sorted(present), 2))
    if paired < MIN_PAIRED_ITEMS:  # probe: 223 titles and one video trained an "alignment" with nothing to contrast
        logger.warning("align-items: at most %d item(s) hold the same two modalities (of %s): nothing to align", paired, ", ".join(sorted(vectors)))
        return {"written": 0, "modalities": sorted(vectors), "paired": paired}
    existing = None if retrain else latest_model(home)
    if existing and existing[1]["raw_models"] == raw_models:
        model, meta = existing
        logger.info("reusing alignment model %s", meta["version"])
    else:
        model, meta = train_task(home, raw_models, item_ids, vectors, config)
        logger.info("trained alignment model %s (best epoch %d)", meta["version"], meta["best_epoch"])
    written = write_aligned(home, model, meta["version"], item_ids, hashes, vectors)
    report = write_report(home, model, meta, item_ids, vectors, topics_path)
    db.refresh_views(Warehouse(home))
    return {"written": written, "version": meta["version"], "report": report}


def write_report(
    home: str, model: AlignmentModel, meta: dict[str, Any], item_ids: list[str], vectors: dict[str, np.ndarray], topics_path: str | None
) -> dict[str, Any]:
    index = {item: i for i, item in enumerate(item_ids)}
    held_out = [index[i] for i in meta["val_item_ids"] if i in index]
    topics = None
    if topics_path:
        truth = json.loads(Path(topics_path).read_text())["items"]
        topics = [truth.get(item_ids[i], "?") for i in held_out]
    report = evaluate_alignment(model, {m: v[held_out] for m, v in vectors.items()}, topics, model.config.seed)
    history = meta["history"]
    report.update(
        {
            "model_version": meta["version"],
            "raw_models": meta["raw_models"],
            "held_out_items": len(held_out),
            "train_items": len(meta["train_item_ids"]),
            "seed": model.config.seed,
            "best_epoch": meta["best_epoch"],
            "loss": {
                "first_epoch_train": history[0]["train_loss"],
                "first_epoch_val": history[0]["val_loss"],
                "best_val": history[meta["best_epoch"]]["val_loss"],
            },
            "command": shlex.join(["reelsense", *sys.argv[1:]]) if sys.argv else "reelsense align",
        }
    )
    if topics_path:
        report["topics_file"] = str(Path(topics_path).resolve())
    wh = Warehouse(home)
    path = wh.reports_dir / "alignment.json"
    if topics is None and "topic_neighbours" in (before := _read_report(path)):  # probe: dropped unsaid
        # the file the earlier report was given (the demo's, sample/truth.json, before reports named it)
        truth = before.get("topics_file") or str(wh.home / "sample" / "truth.json")
        say(
            f"align: {path} no longer holds the topic-neighbour figures an earlier align wrote: "
            f"`reelsense align --topics {shlex.quote(truth)}` writes them again",
            logging.WARNING,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    store.write_atomic(path, json.dumps(report, indent=1))
    return report


def _read_report(path: Path) -> dict[str, Any]:
    """The alignment report at `path`, or {} where there is none readable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
