"""Which models explain a score run (flows/analyze.py's `report` and `explain`).

Explanations come from lstm-attn (attention, modality contributions) and, where one is trained over
it, the LightGBM stage (feature contributions), whichever ranker scored the run. A run scored by
lstm-attn or lightgbm is explained by the versions that scored it while they fit the warehouse;
otherwise by the latest, with a warning that says what to do. Reads the model registry
(`<home>/models`) and, for advice, whether the `items` table has rows; writes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from flows.arguments import EXPLAINED_BY, explanations_need_content
from flows.console import run_option, say
from flows.latest import latest_meta, readable_latest
from ranker import artifacts
from ranker.data import Dataset
from warehouse.errors import ReelsenseError
from warehouse.store import Warehouse


def _retrain(models: str) -> str:
    """What to do about a model that no longer fits the warehouse, when explaining (not the
    scoring advice, "score with a matching model"); `models`: those to train, comma-separated."""
    return f"train on this data to explain with it: `reelsense train --models {models}`"


def _rescore(run_id: str, name: str) -> str:
    """What to do about a run whose own model cannot explain it (training again makes a new version;
    the run's stays as it was): rescore the run with the latest models, then report it."""
    return (
        f"`reelsense score {run_option(run_id)} --model {name} --replace` (with the --k and --users it was scored with) rescores the run "
        f"with the latest models, and `reelsense report {run_option(run_id)}` then explains it with them"
    )


def load_explainers(wh: Warehouse, data: Dataset, device: str, scored_by: str | None = None, run_id: str | None = None) -> tuple[Any, Any]:
    """lstm-attn (attention, modality contributions) and, when trained, the LightGBM stage over it.
    `scored_by` ("name@version", a run's model): a run scored by lstm-attn or lightgbm is explained
    by the versions that scored it (lstm-attn with the newest lightgbm over it) while the registry
    holds them and they fit the warehouse; otherwise by the latest, with a warning. `run_id`: the
    run, named in the advice where newer models than its own exist."""
    name, _, version = (scored_by or "").partition("@")
    ctr_version = version if name == "lightgbm" else None
    base_version = version if name == "lstm-attn" else None
    try:
        if ctr_version:
            base_version = artifacts.base_version(wh.models_dir, "lightgbm", ctr_version)
            _check_runs_model(wh, data, "lightgbm", ctr_version, _retrain("lightgbm"), run_id, name, version)
        if base_version:
            _check_runs_model(wh, data, "lstm-attn", base_version, _retrain("lstm-attn"), run_id, name, version)
    except artifacts.ModelMismatch as exc:
        say(f"the run was scored by {scored_by}, which cannot explain it now ({exc}); explaining it with the latest models", logging.WARNING)
        ctr_version = base_version = None
    if not base_version and not ctr_version:  # the latest lstm-attn (probe: it was paired with a lightgbm over an older one)
        base_version = newest = (latest_meta(wh.models_dir, "lstm-attn") or {}).get("version")
    else:  # the run's own models: a damaged LATEST does not stop them (review)
        newest = (readable_latest(wh.models_dir, "lstm-attn") or {}).get("version")
    if base_version and not ctr_version:  # that lstm-attn: the newest LightGBM stage trained over it, if any
        over_it = [m["version"] for m in artifacts.list_models(wh.models_dir) if m["name"] == "lightgbm" and m.get("base_version") == base_version]
        if not over_it:
            latest_ctr = readable_latest(wh.models_dir, "lightgbm")
            if latest_ctr is not None and base_version == newest:
                say(f"explanations without LightGBM's feature contributions: {_no_ctr_over_latest(wh, data, base_version, run_id, name)}", logging.WARNING)
            elif latest_ctr is not None and run_id and _fits(wh, data, latest_ctr):  # the run's own older lstm-attn (probe 48: it went unsaid)
                say(
                    f"explanations without LightGBM's feature contributions: no lightgbm was trained over lstm-attn {base_version}, "
                    f"which scored the run; {_rescore(run_id, name)}",
                    logging.WARNING,
                )
            return _explainer(wh, data, device, base_version), None
        ctr_version = over_it[-1]
    model = _explainer(wh, data, device, base_version)
    try:
        # With the lstm-attn version it was trained on (the latest lstm-attn may be newer).
        ctr = artifacts.load_with_base(wh.models_dir, "lightgbm", data, device, version=ctr_version, match="schema", fix=_retrain("lstm-attn,lightgbm"))
    except ReelsenseError as exc:
        ctr = None  # the CTR stage is optional: explanations then carry no feature contributions
        latest = readable_latest(wh.models_dir, "lightgbm")
        if latest is not None and run_id and ctr_version and _newer_fits(wh, data, "lightgbm", ctr_version):
            # Probe: after a retrain the advice sent the user back to steps done already: newer models exist.
            say(
                f"explanations without LightGBM's feature contributions: the run's lightgbm {ctr_version} does not fit the "
                f"warehouse now, and a newer one ({latest['version']}) was trained since; {_rescore(run_id, name)}",
                logging.WARNING,
            )
        elif latest is not None:  # trained, but not for this data: say so
            say(f"explanations without LightGBM's feature contributions: {exc}", logging.WARNING)
    return model, ctr


def _no_ctr_over_latest(wh: Warehouse, data: Dataset, base_version: str, run_id: str | None, name: str) -> str:
    """Why the latest lstm-attn has no LightGBM stage, and what trains one: over it where the data has
    not changed since it was trained; else (probe 48: the advice trained a new lstm-attn and a stage
    over that, and the report stayed without) a new pair, and a run of lstm-attn rescored with it."""
    said = f"no lightgbm was trained over lstm-attn {base_version}, the latest"
    trained_on = (readable_latest(wh.models_dir, "lstm-attn") or {}).get("data_fingerprint")
    if trained_on is None or trained_on == artifacts.fingerprint(data):
        return f"{said} (`reelsense train --models lightgbm` trains one over it)"
    report = f"reelsense report {run_option(run_id)}" if run_id else "reelsense report"
    then = f"; {_rescore(run_id, name)}" if run_id and name in ("lstm-attn", "lightgbm") else f"; `{report}` then explains with them"
    return f"{said}, and the data changed since it was trained: `reelsense train --models lightgbm` trains a new lstm-attn and one over that{then}"


def _check_runs_model(wh: Warehouse, data: Dataset, model: str, version: str, retrain: str, run_id: str | None, name: str, scored: str) -> None:
    """ModelMismatch where the run's `model` of `version` does not fit the warehouse, with the way out:
    where a newer `name` (the run's ranker) than the run's `scored` version is the latest and fits,
    rescoring the run (probe: the advice was to train, which cannot make the run's own version fit,
    and `explain` repeated it after the retrain); otherwise `retrain` (review: the run's model may be
    the latest, which a rescore would load and refuse again)."""
    try:
        artifacts.checked_meta(wh.models_dir, model, data, version=version, match="schema", fix=retrain)
    except artifacts.ModelMismatch:
        if not (run_id and _newer_fits(wh, data, name, scored)):
            raise
        artifacts.checked_meta(wh.models_dir, model, data, version=version, match="schema", fix=_rescore(run_id, name))  # raises again


def _newer_fits(wh: Warehouse, data: Dataset, name: str, version: str) -> bool:
    """Whether the latest `name` is newer than `version` and fits the warehouse (a lightgbm: over the
    latest lstm-attn too), so that a rescore would score and explain with it."""
    latest = readable_latest(wh.models_dir, name)
    if latest is None or latest["version"] == version:
        return False
    if name == "lightgbm":
        return _fits(wh, data, latest)
    try:
        artifacts.checked_meta(wh.models_dir, name, data, version=latest["version"], match="schema")
    except ReelsenseError:
        return False
    return True


def _fits(wh: Warehouse, data: Dataset, ctr: dict[str, Any]) -> bool:
    """Whether the LightGBM stage `ctr` (registry meta) is over the latest lstm-attn and fits the
    warehouse: a rescore would then explain with it (review: advising a rescore whatever held)."""
    try:
        if ctr.get("base_version") != (readable_latest(wh.models_dir, "lstm-attn") or {}).get("version"):
            return False
        artifacts.check_with_base(wh.models_dir, "lightgbm", data, version=ctr["version"], match="schema")
    except ReelsenseError:
        return False
    return True


def _explainer(wh: Warehouse, data: Dataset, device: str, version: str | None) -> Any:
    """lstm-attn of `version` (None: the latest), whichever ranker scored the run."""
    try:
        return artifacts.load(wh.models_dir, "lstm-attn", data, {}, device, version=version, match="schema", fix=_retrain("lstm-attn"))
    except artifacts.ModelMismatch as exc:  # whichever ranker scored the run, explanations come from lstm-attn
        if data.content_source == "none":  # probe: it advised training lstm-attn, which then refused for want of content
            cause = "" if str(exc).startswith("no trained lstm-attn") else f" ({exc})"  # probe 49: the plain "none trained" said train twice
            raise artifacts.ModelMismatch(explanations_need_content(wh, cause)) from exc
        raise artifacts.ModelMismatch(f"{EXPLAINED_BY}, whichever ranker scored the run: {exc}") from exc


def unaligned_in_use(data: Dataset, items: list[str]) -> Dataset:
    """`data` with only the unaligned items an explanation reads (a copy; `data` is not changed):
    those in `samples` (a target, or a step of a history) and `items` (the pairs explained). An item
    extracted since align-items last ran, with no interactions yet, plays no part in explaining an
    earlier run, so it no longer stops `report` (probe: it did, until `align` ran); lstm-attn scores
    it -inf, as it has no vector."""
    if not data.unaligned:
        return data
    index = {item: i for i, item in enumerate(data.item_ids) if i}
    used = np.zeros(len(data.item_ids), bool)
    used[data.targets] = used[data.queries.hist_items.ravel()] = True
    used[[index[item] for item in set(items) if item in index]] = True
    used[0] = False  # padding
    read = [used[index.get(item, 0)] for item in data.unaligned]
    return dataclasses.replace(
        data,
        unaligned=[item for item, r in zip(data.unaligned, read) if r],
        unaligned_unread=data.unaligned_unread + [item for item, r in zip(data.unaligned, read) if not r],
    )
