"""Shared fixtures: a fresh warehouse per test, and the real data in ../shared/data."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from warehouse.store import Warehouse

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("REELSENSE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _no_dask_scheduler_from_the_environment(monkeypatch):
    """The parser takes --dask-address's default from REELSENSE_DASK_ADDRESS: a machine that sets it
    would send every test's extract and score to that scheduler (a test that wants it sets it)."""
    monkeypatch.delenv("REELSENSE_DASK_ADDRESS", raising=False)


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "home")


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "microlens-50k").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set REELSENSE_SHARED_DATA to the folder holding microlens-50k/)")
    return SHARED_DATA


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def prefect_harness():
    """A real, temporary Prefect server and database for flow runs in tests."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def ranked_home(tmp_path_factory, prefect_harness) -> Warehouse:
    """tests/tiny_platform.py through build-features and train-ranker (lstm-attn + lightgbm)."""
    import tiny_platform

    from flows.rank import build_features, train_rankers

    wh = tiny_platform.build(tmp_path_factory.mktemp("ranked") / "home")
    build_features(str(wh.home))
    train_rankers(str(wh.home), models=["lstm-attn", "lightgbm"], device="cpu")
    return wh


@pytest.fixture(scope="session")
def random_checkpoints(tmp_path_factory):
    """CLIP ViT-B-32 and CLAP HTSAT-tiny checkpoints saved from randomly initialised models."""
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import laion_clap  # noqa: F401
    import open_clip
    from clap_module import create_model

    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    torch.save({"state_dict": open_clip.create_model("ViT-B-32").state_dict()}, root / "clip-random-init.pt")
    clap, _ = create_model("HTSAT-tiny", "transformer", precision="fp32", device="cpu", enable_fusion=False)
    torch.save({"state_dict": clap.state_dict()}, root / "clap-random-init.pt")
    return root
