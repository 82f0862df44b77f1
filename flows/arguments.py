"""Checks of command arguments that need neither torch nor Prefect, so the CLI refuses a bad
argument in a fraction of a second, before it imports a flow (importing one takes 3-4 s on 2 cores).
The flows call the same checks for callers that skip the CLI."""

from __future__ import annotations

from pathlib import Path

from ranker.names import RETRIEVALS, check_rankers
from warehouse import store
from warehouse.errors import ReelsenseError


def check_arguments(model: str, k: int, n_candidates: int, run_id: str | None = None, retrieval: str = RETRIEVALS[0], replace: bool = False) -> None:
    """Refuse score arguments no run can use."""
    check_rankers([model])
    if replace and run_id is None:
        raise ReelsenseError("--replace starts an existing run over and needs the run's --run-id; without one, a new run is started anyway (drop --replace)")
    if retrieval not in RETRIEVALS:
        raise ReelsenseError(f"unknown retrieval {retrieval!r}; pass --retrieval {' or '.join(RETRIEVALS)}")
    if k < 1:
        raise ReelsenseError(f"need k of 1 or more, got k={k}; pass --k 1 or more")
    if retrieval == "similarity" and n_candidates < k:
        raise ReelsenseError(f"need k <= candidates, got k={k}, candidates={n_candidates}; pass --candidates at least --k")
    if run_id is not None and not store.partition_value_ok(run_id):
        raise ReelsenseError(
            f"run id {run_id!r} cannot name the run's folder in `scores` and `explanations`; use letters, digits, '_', '-' or '.', "
            "at most 200 characters, not ending in .parquet, .tmp or .json"
        )


def check_keep_runs(keep: int) -> None:
    """Refuse a prune that would keep no run."""
    if keep < 1:
        raise ReelsenseError(f"--keep-runs must be at least 1, got {keep}; prune keeps the newest N score runs")


def is_version_name(text: str) -> bool:
    """Whether `text` can name a version folder of a ranker: one folder name, not a path, '.' or '..'
    (a LATEST file's text, or a --version: `../lstm-attn/V` read another model's record)."""
    return bool(text.strip()) and Path(text).name == text and text not in (".", "..", "LATEST") and "\n" not in text


def check_version(version: str | None) -> None:
    """Refuse a --version that is not a version's name."""
    if version is not None and not is_version_name(version):
        raise ReelsenseError(f"--version {version!r} is not a version name; `reelsense models` lists each model's versions")
