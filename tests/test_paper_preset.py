"""The paper preset end to end: CLIP frames + CLIP text + CLAP audio through the extract-items flow,
then align-items over the three modalities (randomly initialised checkpoints: no real weights can be
downloaded here), and a missing checkpoint as one line on the real command line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from extractors.config import ExtractConfig
from extractors.encoders import Embedded
from extractors.pipeline import Prepared, WorkItem, build_encoders, check_encoder_keys, embed_batch
from extractors.sample import SampleConfig, generate_sample
from flows.align import align_items, latest_model
from flows.console import extract_line
from flows.extract import run_extract
from warehouse import db
from warehouse.errors import ConfigError
from warehouse.ingest import ingest_items

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def six_items(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    generate_sample(root, SampleConfig(seed=3, items_per_topic=1, users=3, cold_users=1))
    return root


def rows_per_model(wh) -> dict[tuple[str, str], int]:
    rows = db.fetch(wh, "SELECT modality, model, count(*) AS n, count(DISTINCT item_id) AS items FROM embeddings GROUP BY ALL")
    assert all(r["n"] == r["items"] for r in rows), rows  # one vector per item and model
    return {(r["modality"], r["model"]): r["n"] for r in rows}


def test_paper_preset_writes_every_modality_and_aligns_three(prefect_harness, random_checkpoints, six_items, wh):
    ingest_items(wh, six_items / "items.csv")
    config = ExtractConfig(
        preset="paper",
        n_frames=1,
        batch_items=4,
        clip_checkpoint=str(random_checkpoints / "clip-random-init.pt"),
        clap_checkpoint=str(random_checkpoints / "clap-random-init.pt"),
        clap_text_model="transformer",
    )
    summary = run_extract(str(wh.home), config, limit=4)
    assert (summary["embedded"], summary["vectors"], summary["quarantined"]) == (4, 12, 0)
    assert summary["past_limit"] == 2 and "; 2 items past --limit still to embed" in extract_line(summary)  # probe: not said
    assert rows_per_model(wh) == {
        ("frames", "clip@ViT-B-32-clip-random-init"): 4,
        ("text", "clip@ViT-B-32-clip-random-init"): 4,
        ("audio", "clap@HTSAT-tiny-clap-random-init"): 4,
    }
    out = align_items(str(wh.home))
    model, meta = latest_model(str(wh.home))
    assert model.modalities == sorted(model.heads) == ["audio", "frames", "text"]
    assert sorted(meta["raw_models"]) == ["audio", "frames", "text"] and out["written"] == 16
    aligned = {m: n for (m, model), n in rows_per_model(wh).items() if model.startswith("aligned@")}
    assert aligned == {"frames": 4, "text": 4, "audio": 4, "fused": 4}
    # probe: after --force, "a run without --limit embeds them" did nothing for the items that have their vectors;
    # review: the two items past the limit that never had one were called "not embedded again" too
    forced = run_extract(str(wh.home), config, force=True, limit=1)
    assert (forced["embedded"], forced["past_limit"], forced["past_limit_embedded"]) == (1, 2, 3)
    assert "; 2 items past --limit still to embed (a run without --limit embeds them); 3 items past --limit not embedded again " in extract_line(forced)
    # probe: a second `--limit 1` planned the same first item again; the limit counts items still to embed
    assert [(r["embedded"], r["past_limit"]) for r in (run_extract(str(wh.home), config, limit=1) for _ in range(3))] == [(1, 1), (1, 0), (0, 0)]


class _Echo:
    """A stand-in encoder for the collision checks (the real ones are tested above)."""

    def __init__(self, modality: str, name: str = "echo", vectors: int | None = None) -> None:
        self.modality, self.name, self.version, self.dim, self.vectors = modality, name, "1", 2, vectors

    def embed(self, batch):
        import numpy as np

        n = len(batch) if self.vectors is None else self.vectors
        return Embedded(np.ones((n, 2), np.float32), [[] for _ in range(n)])


def test_encoders_that_would_share_a_warehouse_key_are_refused():
    with pytest.raises(ConfigError, match="configured for 'text'"):
        check_encoder_keys({"text": _Echo("frames")})
    check_encoder_keys({"frames": _Echo("frames"), "text": _Echo("text")})  # one model id, two modalities: fine
    assert set(build_encoders(ExtractConfig(preset="paper"))) == {"frames", "text", "audio"}


def test_an_encoder_that_returns_too_few_vectors_sends_its_items_to_failures():
    work = [WorkItem(f"v{i}", f"title {i}", None, None, f"h{i}", ["text"]) for i in range(3)]
    decoded = [Prepared(w, None) for w in work]
    result = embed_batch(decoded, {"text": _Echo("text", vectors=2)})
    assert result.embeddings == {} and result.embedded_items == 0
    assert [f["item_id"] for f in result.failures] == ["v0", "v1", "v2"]
    assert "returned 2 vectors" in result.failures[0]["error"] and result.failures[0]["stage"] == "extract-items:text:encoder"


def test_a_missing_checkpoint_is_one_line_and_exit_2(six_items, tmp_path, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    home = tmp_path / "home"
    # The session's Prefect test server, rather than an ephemeral one started by the subprocess.
    env = {**os.environ, "REELSENSE_CLIP_CHECKPOINT": "", "REELSENSE_CLAP_CHECKPOINT": "", "PREFECT_API_URL": PREFECT_API_URL.value()}
    cli = [sys.executable, "-m", "flows.cli", "--home", str(home)]
    subprocess.run([*cli, "ingest", "items", str(six_items / "items.csv")], check=True, capture_output=True, env=env)
    run = subprocess.run([*cli, "extract", "--preset", "paper"], capture_output=True, text=True, env=env)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert "flow run" not in run.stderr.lower()  # refused before any flow started (nothing decoded first)
    errors = [line for line in run.stderr.splitlines() if "error" in line.lower()]
    assert errors == [
        "reelsense: error: no CLIP ViT-B-32 checkpoint configured; download an open_clip checkpoint for "
        "ViT-B-32 (e.g. open_clip_pytorch_model.bin from https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K) "
        "and pass its path as clip_checkpoint in the config or REELSENSE_CLIP_CHECKPOINT"
    ], run.stderr
