"""Retention: `reelsense prune --keep-runs N` keeps the N newest score runs and what they need.

The older runs' explanations, then their scores (their partition folders in both tables;
journaled, so a crash leaves scores to explain again, never explanations of deleted
scores), then their report folders
go. Registry versions go when no kept run scored with them, they are not their ranker's latest,
and no version that stays re-ranks them. It waits for running reports (`store.runs_lock`); run it
while no score-batch runs.
"""

from __future__ import annotations

import shutil
from typing import Any

from flows.arguments import check_keep_runs
from flows.console import waiting_for_reports
from flows.latest import check_latest
from flows.report import run_dir, write_runs_index
from flows.score import remove_runs
from ranker import artifacts
from warehouse import db, store
from warehouse.errors import ReelsenseError
from warehouse.schemas import EXPLANATIONS, SCORES
from warehouse.store import Warehouse


def prune_runs(wh: Warehouse, keep: int) -> dict[str, Any]:
    """Keep the `keep` newest runs (by when each was first scored: runs.sql); returns what went."""
    check_keep_runs(keep)
    try:  # review: prune kept no version of a ranker without a readable LATEST, deleting every one no run pins
        check_latest(wh.models_dir)
    except ReelsenseError as error:
        raise ReelsenseError(f"nothing pruned: prune keeps each ranker's latest version, and {error}") from None
    with store.runs_lock(wh, exclusive=True, on_wait=waiting_for_reports):  # running reports finish first (flows/analyze.py)
        return _prune(wh, keep)


def _prune(wh: Warehouse, keep: int) -> dict[str, Any]:
    runs = db.analysis(wh, "runs").to_pylist() if wh.has_rows_on_disk(SCORES) else []
    doomed = {r["run_id"] for r in runs[keep:]}
    removed = {spec.name: remove_runs(wh, spec, doomed) for spec in (EXPLANATIONS, SCORES)}
    # Run folders without rows: the record of a run that wrote none, or of a removal cut short (review).
    store.drop_partitions(wh, SCORES, set(store.empty_partitions(wh, SCORES)))
    reports = 0
    for run_id in sorted(doomed):
        folder = run_dir(wh, run_id)
        if folder.exists():
            shutil.rmtree(folder)
            reports += 1
    if doomed and wh.reports_dir.exists():
        write_runs_index(wh)
    versions = artifacts.prune_versions(wh.models_dir, {r["model_version"] for r in runs[:keep]})
    return {"runs": sorted(doomed), "rows": removed, "reports": reports, "kept_runs": [r["run_id"] for r in runs[:keep]], "model_versions": versions}
