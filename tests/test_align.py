"""Cross-modal alignment on data with a known answer: three modalities that are different noisy
views of the same latent item, so aligned heads must find each item's partners."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest
import torch

from extractors.align import (
    AlignConfig,
    alignment_loss,
    apply_alignment,
    evaluate_alignment,
    load_model,
    save_model,
    to_tensors,
    train_alignment,
)
from flows.align import align_items
from warehouse import db, store
from warehouse.schemas import EMBEDDINGS, ITEMS

CONFIG = AlignConfig(epochs=150, patience=20, seed=1)


def latent_views(n: int = 240, seed: int = 0, missing_audio: float = 0.0):
    """Items = 6 topic centres + item noise in 16-d; each modality is its own random nonlinear
    view of that latent, with its own noise and width."""
    rng = np.random.default_rng(seed)
    topics = rng.integers(0, 6, n)
    latent = rng.normal(size=(6, 16))[topics] + 0.6 * rng.normal(size=(n, 16))
    views = {}
    for modality, width in (("frames", 64), ("text", 32), ("audio", 24)):
        mix = rng.normal(size=(16, width)) / 4
        views[modality] = (np.tanh(latent @ mix) + 0.05 * rng.normal(size=(n, width))).astype(np.float32)
    if missing_audio:
        views["audio"][rng.random(n) < missing_audio] = np.nan
    return views, [f"t{t}" for t in topics]


@pytest.fixture(scope="module")
def trained():
    views, topics = latent_views()
    return train_alignment(views, CONFIG), views, topics


def test_loss_decreases(trained):
    result, _, _ = trained
    history = result.history
    assert history[result.best_epoch]["val_loss"] < 0.7 * history[0]["val_loss"]
    assert history[result.best_epoch]["train_loss"] < history[0]["train_loss"]


def test_retrieval_beats_random_projections_on_held_out_items(trained):
    result, views, topics = trained
    held_out = {m: v[result.val_idx] for m, v in views.items()}
    report = evaluate_alignment(result.model, held_out, [topics[i] for i in result.val_idx], seed=0)
    assert len(report["retrieval"]) == 6  # every ordered pair of 3 modalities
    for pair, r in report["retrieval"].items():
        assert r["aligned"]["recall@10"] >= r["random"]["recall@10"] + 0.3, pair
        assert r["aligned"]["median_rank"] < r["random"]["median_rank"], pair
        assert report["topic_neighbours"][pair]["aligned"] > report["topic_neighbours"][pair]["random"], pair


def test_missing_modalities_are_masked_not_zero_filled():
    views, _ = latent_views(n=120, missing_audio=0.3)
    result = train_alignment(views, AlignConfig(epochs=5, seed=2))
    missing = np.flatnonzero(np.isnan(views["audio"]).any(1))
    aligned, _, weights = apply_alignment(result.model, views)
    audio_column = result.model.modalities.index("audio")
    assert np.all(weights[missing, audio_column] == 0) and np.allclose(weights[missing].sum(1), 1)
    assert np.isnan(aligned["audio"][missing]).all()
    # Whatever sits in a missing row changes nothing: not the loss, not the fused vector.
    filled = {m: v.copy() for m, v in views.items()}
    filled["audio"][missing] = 0.0  # what zero-filling would feed the model
    x, present = to_tensors(views)
    x_filled, _ = to_tensors(filled)
    with torch.no_grad():
        assert alignment_loss(result.model, x, present).item() == alignment_loss(result.model, x_filled, present).item()


def test_save_and_load_reproduce_the_vectors_exactly(trained, tmp_path):
    result, views, _ = trained
    save_model(result.model, tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt")
    before, after = apply_alignment(result.model, views), apply_alignment(loaded, views)
    for m in result.model.modalities:
        np.testing.assert_array_equal(before[0][m], after[0][m])
    np.testing.assert_array_equal(before[1], after[1])
    assert loaded.version() == result.model.version()


def test_training_is_seeded():
    views, _ = latent_views(n=80)
    first, second = (train_alignment(views, AlignConfig(epochs=3, seed=5)) for _ in range(2))
    assert first.model.version() == second.model.version()


def _warehouse_with(wh, views, titles=None):
    now = datetime.now(timezone.utc)
    n = len(next(iter(views.values())))
    ids = [f"i{k:03d}" for k in range(n)]
    titles = titles or [f"title {k}" for k in range(n)]
    store.append(
        wh,
        ITEMS,
        pa.Table.from_pylist(
            [
                {
                    "item_id": i,
                    "title": t,
                    "video_uri": None,
                    "audio_uri": None,
                    "duration_s": None,
                    "content_hash": f"h-{t}",
                    "source": "test",
                    "ingested_at": now,
                }
                for i, t in zip(ids, titles)
            ],
            schema=ITEMS.schema,
        ),
    )
    for modality, matrix in views.items():
        keep = np.flatnonzero(~np.isnan(matrix).any(1))
        store.append(
            wh,
            EMBEDDINGS,
            pa.table(
                {
                    "item_id": [ids[k] for k in keep],
                    "modality": [modality] * len(keep),
                    "model": [f"{modality}-enc@1"] * len(keep),
                    "dim": pa.array([matrix.shape[1]] * len(keep), pa.int32()),
                    "vector": pa.FixedSizeListArray.from_arrays(pa.array(matrix[keep].ravel()), matrix.shape[1]),
                    "tags": [[] for _ in keep],
                    "content_hash": [f"h-{titles[k]}" for k in keep],
                    "created_at": [now] * len(keep),
                }
            ),
        )
    db.refresh_views(wh)
    return ids


def test_align_flow_writes_queryable_aligned_and_fused_vectors(prefect_harness, wh, caplog):
    views, topics = latent_views(n=150, missing_audio=0.2)
    ids = _warehouse_with(wh, views)
    truth = wh.home / "truth.json"
    truth.write_text(json.dumps({"items": dict(zip(ids, topics))}))
    out = align_items(str(wh.home), config=CONFIG, topics_path=str(truth))
    n_audio = int((~np.isnan(views["audio"]).any(1)).sum())
    assert out["written"] == 150 * 3 + n_audio  # frames, text, fused for all; audio where present
    report = json.loads((wh.reports_dir / "alignment.json").read_text())
    assert report["retrieval"]["text->frames"]["aligned"]["recall@10"] > report["retrieval"]["text->frames"]["random"]["recall@10"]
    weights = (
        db.query(
            wh,
            "SELECT fusion_weights FROM vectors_fused_aligned v JOIN embeddings e USING (item_id, model) WHERE e.modality = 'fused' AND item_id = $1",
            [ids[0]],
        )
        .column(0)[0]
        .as_py()
    )
    assert {k for k, _ in weights} == {"audio", "frames", "text"} and sum(v for _, v in weights) == pytest.approx(1)
    nearest = db.query(
        wh,
        """SELECT b.item_id FROM vectors_fused_aligned a, vectors_fused_aligned b
        WHERE a.item_id = $1 ORDER BY array_cosine_similarity(a.vector, b.vector) DESC LIMIT 1""",
        [ids[3]],
    )
    assert nearest.column(0).to_pylist() == [ids[3]]
    assert "topic_neighbours" in report and not [r for r in caplog.records if "topic-neighbour" in r.getMessage()]
    assert align_items(str(wh.home), config=CONFIG)["written"] == 0  # idempotent, model reused
    # without --topics the report loses its topic figures, and says so (probe: dropped unsaid)
    assert "topic_neighbours" not in json.loads((wh.reports_dir / "alignment.json").read_text())
    warned = [r.getMessage() for r in caplog.records if "no longer holds the topic-neighbour figures" in r.getMessage() and r.levelno == logging.WARNING]
    assert warned and f" align --topics {truth.resolve()}` writes them again" in warned[0]  # review: a command to follow


def test_changed_items_are_reprojected_without_retraining(prefect_harness, wh):
    views, _ = latent_views(n=100)
    _warehouse_with(wh, views)
    first = align_items(str(wh.home), config=CONFIG)
    # Item i000 gets a new title (new content hash) and new vectors.
    _warehouse_with(wh, {m: v[:1] for m, v in views.items()}, titles=["a new title"])
    second = align_items(str(wh.home), config=CONFIG)
    assert second["version"] == first["version"] and second["written"] == 4  # 3 modalities + fused


def test_one_modality_is_nothing_to_align(prefect_harness, wh):
    views, _ = latent_views(n=30)
    _warehouse_with(wh, {"text": views["text"]})
    assert align_items(str(wh.home), config=CONFIG) == {"written": 0, "modalities": ["text"]}


def test_one_item_with_two_modalities_is_nothing_to_align_and_two_are_something(prefect_harness, wh):
    """Probe: 223 titles and one video's frames and audio trained an "alignment" (best epoch 0, no
    held-out pair) whose fused vectors then stood in for the titles. One item with two modalities
    has nothing to be told apart from; two are the least contrastive learning needs."""
    views, _ = latent_views(n=30)
    views["frames"][1:] = np.nan  # i000 holds frames and text, the other 29 a title alone
    _warehouse_with(wh, {"text": views["text"], "frames": views["frames"]})
    assert align_items(str(wh.home), config=CONFIG) == {"written": 0, "modalities": ["frames", "text"], "paired": 1}
    assert not (wh.models_dir / "align").exists()
    audio = np.full_like(views["audio"], np.nan)
    audio[1] = views["audio"][1]  # i001's audio: two items hold two modalities, but not the same two (review)
    _warehouse_with(wh, {"audio": audio})
    assert align_items(str(wh.home), config=CONFIG) == {"written": 0, "modalities": ["audio", "frames", "text"], "paired": 1}
    frames = np.full_like(views["frames"], np.nan)
    frames[1] = latent_views(n=30)[0]["frames"][1]  # i001's frames too: i000 and i001 hold text and frames
    _warehouse_with(wh, {"frames": frames})
    assert align_items(str(wh.home), config=CONFIG)["written"] == 30 + 2 + 1 + 30  # text, frames, audio, fused


def test_a_report_without_held_out_pairs_says_so_instead_of_a_bare_header():
    from flows.console import alignment_lines

    assert alignment_lines({"retrieval": {}, "held_out_items": 44}) == ["not measured: fewer than 2 of the 44 held-out items hold the same two modalities"]
    assert alignment_lines({"retrieval": {}, "held_out_items": 0}) == ["not measured: no item was held out (fewer than 10 items)"]


def test_only_rows_holding_a_vector_are_stored():
    from extractors.align import rows_to_store

    matrix = np.array([[np.nan, 1.0], [0.0, 0.0], [0.5, -0.5], [0.0, 1e-3]], np.float32)  # missing, no modality, two vectors
    assert rows_to_store(matrix).tolist() == [2, 3]


def test_the_alignment_table_has_a_topic_column_only_with_topics():
    from flows.console import alignment_lines

    pair = {"aligned": {"recall@1": 0.5, "recall@10": 1.0, "median_rank": 1.5}, "random": {"recall@10": 0.25}}
    plain = alignment_lines({"retrieval": {"text->frames": pair}})
    assert "topic-NN" not in plain[0] and plain[1].endswith("0.25")
    with_topics = alignment_lines({"retrieval": {"text->frames": pair}, "topic_neighbours": {"text->frames": {"aligned": 0.9, "random": 0.2}}})
    assert with_topics[0].endswith("topic-NN (random)") and with_topics[1].endswith("0.90 (0.20)")
