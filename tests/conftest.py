"""Shared fixtures: a fresh warehouse per test, and the real data in ../shared/data."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from warehouse.store import Warehouse

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("REELSENSE_SHARED_DATA", REPO.parent / "shared" / "data"))


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
    from flows.rank import build_features, train_rankers
    import tiny_platform

    wh = tiny_platform.build(tmp_path_factory.mktemp("ranked") / "home")
    build_features(str(wh.home))
    train_rankers(str(wh.home), models=["lstm-attn", "lightgbm"], device="cpu")
    return wh
