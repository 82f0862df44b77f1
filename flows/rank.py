"""build-features, train-ranker and evaluate (Prefect flows; `reelsense features | train | evaluate`).

- build-features: behaviour sequences from `events` with DuckDB SQL (ranker/data.py), written to
  `samples` (each positive interaction with its history, labels and split): the one input of
  training, evaluation, scoring and the report. Those flows rebuild it first when `events` changed
  since it was built;
- train-ranker: fits each ranker on the train split, saves it to
  `<home>/models/rankers/<name>/<version>/` with its config, training history and the fingerprint
  of the data it saw; a ranker trained in epochs keeps its state after each one in
  `<name>/unfinished.pt` until it is saved, so a stopped `train` continues where it stopped;
- evaluate: every saved ranker in one harness (ranker/evaluate.py), written to
  `<home>/reports/results.json` and `results.md`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.console import RETIRED_ROW, UNTRAINED_ROW, count, results_markdown, say, settings_summary, toml_pairs
from flows.latest import LATEST_ERRORS, checked_latest, damaged_latest, latest_meta, readable_versions
from ranker import artifacts
from ranker.base import device_for
from ranker.data import MAX_HISTORY, Dataset, build_samples, ensure_samples, load_dataset
from ranker.evaluate import compare_to, evaluate_model, evaluation_slices, test_rows
from ranker.names import ALL_MODELS, CANDIDATES, NEEDS_BASE, REFERENCE, check_rankers
from ranker.registry import build, chosen_settings, ignored_settings, load_settings
from ranker.training import FitCheckpoint, discard, items_for_codes, stopped_fit, too_many_codes
from warehouse.errors import ConfigError, ReelsenseError
from warehouse.store import Warehouse


@flow(name="build-features", log_prints=True)
def build_features(home: str, max_history: int = MAX_HISTORY) -> dict[str, Any]:
    table = build_samples(Warehouse(home), max_history)
    splits = {s: int(n) for s, n in zip(*np.unique(table.column("split").to_numpy(zero_copy_only=False), return_counts=True))}
    summary = {"positives": table.num_rows, "users": len(pc.unique(table.column("user_id"))), "splits": splits}
    get_run_logger().info("build-features: %s", summary)
    return summary


def current_samples(home: str) -> None:
    """Rebuild `samples` first when `events` changed since build-features last ran (train, evaluate,
    score, report and explain read nothing else), and say so."""
    reason = ensure_samples(Warehouse(home), MAX_HISTORY)
    if reason is None:
        return
    say(f"{reason}: rebuilt `samples` from `events` (build-features) first")


@task(name="train-one-ranker", cache_policy=NO_CACHE)
def train_one(
    home: str, name: str, data: Dataset, trained: dict, seed: int, device: str, force: bool = False, settings: dict[str, Any] | None = None
) -> tuple[Any, dict[str, Any]]:
    models_dir = Warehouse(home).models_dir
    model = build(name, device, trained, settings)
    key = artifacts.reuse_key(name, model, data, seed)
    try:
        saved = None if force else checked_latest(models_dir, name)
    except LATEST_ERRORS as error:  # no latest to reuse: this fit's version becomes the latest
        say(f"{damaged_latest(models_dir, name, error, ways_out=False)}: training {name} anew; the version it saves becomes the latest", logging.WARNING)
        saved = None
    # Rankers trained in epochs keep their state here after each one: a stopped `train` continues
    # from its last finished epoch (a file of another fit, say other data, is replaced).
    unfinished = artifacts.unfinished_fit(models_dir, name)
    if saved is not None and saved.get("reuse_key") == key:
        # Same rows, items, content, hyper-parameters, seed and code: training again would give the same model.
        if unfinished.is_file() and FitCheckpoint.for_fit(unfinished, model, data, seed).holds_this_fit():  # the key's hashing only then
            # This fit, finished and saved: of no use now (a stopped fit of other settings stays).
            # Said (probe: a stopped `train --force` went without a word, `models` having offered it).
            was = stopped_fit(unfinished)
            say(f"discarding {name}'s stopped fit ({count(was['epochs'], 'epoch')} finished): the saved {saved['version']} is the same fit, finished")
            discard(unfinished)
        return artifacts.load(models_dir, name, data, trained, device), {**saved, "reused": True}
    if force and unfinished.is_file():  # --force trains from epoch 1, not on from a stopped fit
        was = stopped_fit(unfinished)
        say(f"--force: discarding {name}'s stopped fit ({count(was['epochs'], 'epoch')} finished, {unfinished}); training from epoch 1")
        discard(unfinished)
    if saved is not None:
        get_run_logger().info("training %s again, not reusing %s: %s", name, saved["version"], retrain_reason(saved, model, data, seed))
    started = time.perf_counter()
    model.fit(data, seed=seed, checkpoint=unfinished)
    history = getattr(model, "history", None)
    meta = {
        "name": name,
        "version": artifacts.new_version(data),
        "seed": seed,
        "device": device,
        "fit_seconds": round(time.perf_counter() - started, 1),  # this process's part of a continued fit
        "fit_continued_after": getattr(model, "fit_continued_after", 0),  # epochs an earlier, stopped `train` had finished
        "epoch_seconds": round(sum(h.get("seconds", 0.0) for h in history), 1) if isinstance(history, list) else None,  # all epochs, whichever process
        "data_fingerprint": artifacts.fingerprint(data),
        "rows_fingerprint": artifacts.rows_fingerprint(data),
        "reuse_key": key,
        "code_version": artifacts.code_version(),
        "base_version": getattr(getattr(model, "base", None), "version", None),
        "config": dataclasses.asdict(model.config) if dataclasses.is_dataclass(getattr(model, "config", None)) else None,
        "settings": dict(settings or {}) if dataclasses.is_dataclass(getattr(model, "config", None)) else None,  # those given (a TOML's)
        "feature_schema": artifacts.feature_schema(data),
        "content": data.content_source,
        "n_items": data.n_items,
        "behaviours": data.behaviours,
        "history": history if isinstance(history, list) else None,
        "trained_at": datetime.now(timezone.utc).isoformat(),
    }
    artifacts.save(models_dir, model, meta)
    discard(unfinished)
    model.version = meta["version"]
    return model, meta


def _listed(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def retrain_reason(saved: dict[str, Any], model: Any, data: Dataset, seed: int) -> str:
    """Why a saved model's reuse key no longer matches, from what its meta.json recorded."""
    config = dataclasses.asdict(model.config) if dataclasses.is_dataclass(getattr(model, "config", None)) else None
    reasons = []
    was, now = saved.get("feature_schema") or {}, artifacts.feature_schema(data)
    if saved.get("data_fingerprint") != artifacts.fingerprint(data):
        renumbered = was.get("item_vocabulary") != now.get("item_vocabulary")
        if "rows_fingerprint" not in saved and renumbered:  # saved before rows_fingerprint: cannot tell which
            reasons.append("its training rows changed (new events or a samples rebuild), or new items renumbered them")
        elif saved.get("rows_fingerprint") != artifacts.rows_fingerprint(data):
            reasons.append("its training rows changed (new events or a samples rebuild)")
        # else the same rows, renumbered by new items: the item change is named below
    if was != now:
        # Name what changed (probe: new events that added a "watch" head read "the items or content changed").
        named = {"behaviours": "the behaviour heads", "max_history": "the history length"}
        reasons += [f"{words} changed ({_listed(was.get(k))} -> {_listed(now.get(k))})" for k, words in named.items() if k in was and was[k] != now.get(k)]
        if any(was.get(k) != now.get(k) for k in (was.keys() | now.keys()) - named.keys()):
            reasons.append("the items or content changed")
    if saved.get("config") != config and saved.get("config") is not None and config is not None:
        old, defaults = saved["config"], dataclasses.asdict(type(model.config)())
        # A setting added since (at its default) is the code's change, not the user's (probe: sasrec
        # said "content_hidden None -> 0", a setting refused for it).
        unused = ignored_settings(model)  # an id-only ranker's item-tower keys (probe)
        changed = [
            f"{k} {old.get(k)!r} -> {config.get(k)!r}"
            for k in sorted(old.keys() | config.keys())
            if old.get(k) != config.get(k) and not (k not in old and config.get(k) == defaults.get(k)) and k not in unused
        ]
        if changed:
            reasons.append(f"its settings changed ({', '.join(changed)})")
    if saved.get("seed") != seed:
        reasons.append(f"the seed changed ({saved.get('seed')} -> {seed})")
    if saved.get("code_version") != artifacts.code_version():
        reasons.append("the ranker code changed (ranker/*.py: every model is retrained once after an upgrade)")
    # Not recorded apart in meta.json: the content vectors themselves, the base model of a re-ranker,
    # and the settings of a ranker without a config (lightgbm, itemknn, popularity).
    return "; ".join(reasons) or "its content vectors, its base model or its settings changed"


@flow(name="train-ranker", log_prints=True)
def train_rankers(
    home: str,
    models: list[str] = ALL_MODELS,
    seed: int | None = None,
    device: str = "auto",
    force: bool = False,
    settings: dict[str, dict[str, Any]] | None = None,
    config: str | None = None,
) -> dict[str, Any]:
    """Train (or reuse) each ranker; `settings` maps a ranker name to overrides of its config
    (a rankers TOML file, `reelsense train --config`); the registry stores the config it trained with.
    `config`: the path of such a TOML, read when the run starts (the train-ranker deployment's
    parameter, `reelsense serve --config`: an edit of the file reaches the next scheduled run).
    `seed` None: 0, except for a base trained only for its re-ranker (`base_fits`: its latest's seed),
    and that re-ranker, which trains with its base's seed."""
    logger = get_run_logger()
    if config is not None:
        if settings is not None:
            raise ConfigError("train-ranker: give either `settings` or `config` (the path of a rankers TOML), not both: drop one")
        if not Path(config).is_absolute():  # a flow run's working folder is not the user's (review)
            raise ConfigError(f"train-ranker: config {config!r} is a relative path; give the rankers TOML's absolute path")
        settings = load_settings(config)  # checked before any training: unknown keys, wrong types
        logger.info("settings from %s: %s", config, settings_summary(settings))
    models_dir = Warehouse(home).models_dir
    for name in _ordered(models):  # before any fit (probe: a minute's fit, then its LATEST write failed on the folder)
        if (models_dir / "rankers" / name / "LATEST").is_dir():
            raise artifacts.ModelMismatch(damaged_latest(models_dir, name, IsADirectoryError()))
    current_samples(home)
    data = load_dataset(Warehouse(home), MAX_HISTORY)
    inherited = base_fits(models_dir, models, settings or {}, seed)
    settings = {**(settings or {}), **{name: fit.settings for name, fit in inherited.items()}}
    for name in _ordered(models):  # settings the data decides, before any fit (probe: a second model's failed after the first trained)
        codes = (settings.get(name) or {}).get("semantic_codes", 0)
        if codes and data.content_source != "none" and codes > (items := items_for_codes(data)):
            where = f"{name} {inherited[name].version}'s semantic_codes =" if name in inherited else f"[{name}] semantic_codes ="
            raise too_many_codes(codes, items, where)
    for name, fit in inherited.items():  # before any fit (probe: a stopped fit of hours was replaced)
        keep_stopped_fit(models_dir, name, models, data, fit=fit, settings=settings.get(name), device=device_for(device))
    trained: dict[str, Any] = {}
    metas = {}
    for name in _ordered(models):
        # --force retrains the models asked for, not a base added for them (probe, 2026-12-03:
        # `train --models lightgbm --force` retrained lstm-attn too, for 20 minutes on MicroLens)
        fit_seed = inherited[name].seed if name in inherited else seed or 0
        if seed is None and NEEDS_BASE.get(name) in inherited:  # a re-ranker trains with its base's seed (probe: lightgbm at 0 over an lstm-attn of 1)
            fit_seed = inherited[NEEDS_BASE[name]].seed
        trained[name], metas[name] = train_one(home, name, data, trained, fit_seed, device_for(device), force and name in models, settings.get(name))
        if metas[name].get("reused"):
            logger.info("reused %s %s (same data, content, settings, code)", name, metas[name]["version"])
        else:
            logger.info("trained %s in %.1fs (version %s)", name, metas[name]["fit_seconds"], metas[name]["version"])
    return metas


def nightly_settings_warning(models_dir: Path, settings: dict[str, dict[str, Any]] | None = None, seed: int | None = None) -> str | None:
    """What `reelsense serve` says where the scheduled train-ranker (every ranker, with `settings`,
    a rankers TOML's, and `seed` or 0) would replace a latest ranker trained otherwise: it makes
    its fits the latest (probe: the nightly run replaced a TOML's lstm-attn with a default one;
    review: and one of --seed 1; a TOML's value equal to the default is no difference)."""
    nightly_seed = seed or 0
    other, seeds = {}, set()
    for name in ALL_MODELS:
        try:
            saved = checked_latest(models_dir, name)
        except LATEST_ERRORS:
            continue
        if saved is None:
            continue
        differs = []
        if saved.get("config") is not None:  # a ranker with settings: the configs the two fits train with
            was, given = artifacts.given_settings(name, saved), (settings or {}).get(name, {})
            try:
                same = dataclasses.asdict(build(name, "cpu", {}, was).config) == dataclasses.asdict(build(name, "cpu", {}, given).config)  # type: ignore[attr-defined]
                if not same:
                    differs.append(toml_pairs(was) or "the defaults")
            except ConfigError:  # a setting this code no longer has: no TOML keeps it (review)
                differs.append(f"{toml_pairs(was)}, which this code no longer has: no TOML keeps it")
        latest_seed = saved.get("seed") or 0
        seeds.add(latest_seed)
        if latest_seed != nightly_seed:
            differs.append(f"seed {latest_seed}")
        if differs:
            other[name] = f"{name} {saved['version']} ({'; '.join(differs)})"
    if not other:
        return None
    nightly = f"{'the defaults' if not settings else 'its rankers TOML'} at seed {nightly_seed}"
    # One seed trains every ranker: where the latests have several, no --seed keeps them all (probe).
    keep = (
        "`reelsense serve --config FILE --seed N` (a rankers TOML with their settings, their seed) keeps them"
        if len(seeds) == 1
        else f"the latests have seeds {', '.join(map(str, sorted(seeds)))} and serve's one --seed trains every ranker, so it keeps those of "
        "one seed (`reelsense serve --config FILE --seed N`, a rankers TOML with their settings)"
    )
    return (
        f"the scheduled train-ranker trains every ranker with {nightly} and makes each fit the latest, but the latest "
        f"{'; '.join(other.values())} {'was' if len(other) == 1 else 'were'} trained otherwise: {keep}"
    )


@dataclasses.dataclass(frozen=True)
class Inherited:
    """What a base trained only for its re-ranker takes from its latest version (`base_fits`)."""

    version: str
    settings: dict[str, Any]
    seed: int  # the latest's where `train` was given no --seed, else --seed's
    reuse_key: str | None  # the latest's: whether it is reused


def base_fits(models_dir: Path, models: list[str], settings: dict[str, dict[str, Any]], seed: int | None) -> dict[str, Inherited]:
    """For each base trained only for a re-ranker of `models` (lstm-attn for lightgbm) that no rankers
    TOML sets: the settings, and the seed where `seed` is None (no --seed), of its latest version, so
    `train --models lightgbm` re-ranks the lstm-attn the user trained (probe, 2026-12-06: over an
    lstm-attn of a TOML it trained a default lstm-attn and made it the latest; review: and over one of
    --seed 1, one of seed 0). The settings are those the latest was given (ranker/artifacts.py
    `given_settings`: meta.json's `settings`, else its config's values other than today's defaults and
    former ones). A model asked for by
    name trains with the TOML's settings or the defaults, and --seed or 0, as before."""
    found = {}
    for name in _ordered(models):
        if name in models or name in settings:
            continue
        try:
            saved = checked_latest(models_dir, name)
        except LATEST_ERRORS:  # train_one names the damage and trains anew
            continue
        if saved is None:
            continue
        chosen = artifacts.given_settings(name, saved)
        taken = saved.get("seed") if seed is None else None  # the latest's seed, where no --seed was given
        inherited = Inherited(saved["version"], chosen, taken if taken is not None else seed or 0, saved.get("reuse_key"))
        parts = ([f"seed {taken}"] if taken else []) + ([toml_pairs(chosen)] if chosen else [])
        # A default changed since the latest was trained: said, not hidden behind "its settings" (probe)
        was, now = saved.get("config") or {}, dataclasses.asdict(build(name, "cpu", {}, chosen).config)  # type: ignore[attr-defined]
        changed = [k for k in sorted(now) if k in was and was[k] != now[k] and k not in chosen]
        moved = [f"{k} {was[k]!r} -> {now[k]!r}" for k in changed]
        if parts or moved:
            what = "seed and settings" if taken and chosen else "seed" if taken else "settings"
            rerankers = ", ".join(m for m in models if NEEDS_BASE.get(m) == name)
            given = f"the {what} of its latest {saved['version']} ({'; '.join(parts)})" if parts else f"the settings of its latest {saved['version']}"
            keep = f"a rankers TOML whose [{name}] table sets {toml_pairs({k: was[k] for k in changed})} keeps them"
            since = f"; today's defaults where it had others ({', '.join(moved)}; {keep})" if moved else ""
            also = f"; {rerankers} trains with seed {taken} too" if taken else ""
            say(f"{name}, the base of {rerankers}: {given}{since}{also}")
        found[name] = inherited
    return found


def keep_stopped_fit(models_dir: Path, name: str, models: list[str], data: Dataset, *, fit: Inherited, settings: dict[str, Any] | None, device: str) -> None:
    """A base trained only for its re-ranker never replaces a stopped fit of its own that its own
    `train` could continue (`train` of the base, asked for by name, decides that): ReelsenseError where
    its latest cannot be reused and unfinished.pt holds such another fit (probe, 2026-12-06: `train
    --models lightgbm` took the latest's seed and replaced a stopped lstm-attn fit of 9 epochs, with one
    log line). A fit of other code or other data, which no `train` continues, is replaced as before."""
    unfinished = artifacts.unfinished_fit(models_dir, name)
    was = stopped_fit(unfinished) if unfinished.is_file() else None
    if not was or not was["readable"] or was["code"] != artifacts.code_version() or was["config"] is None:
        return
    own = build(name, was["device"] or "cpu", {}, was["config"])  # as `reelsense models` reads it (flows/cli.py)
    if FitCheckpoint.for_fit(unfinished, own, data, was["seed"]).key != was["key"]:
        return  # the data changed since it ran: its own `train` would start over too
    model = build(name, device, {}, settings)
    if fit.reuse_key == artifacts.reuse_key(name, model, data, fit.seed) or FitCheckpoint.for_fit(unfinished, model, data, fit.seed).holds_this_fit():
        return  # the latest is reused, or the stopped fit is this very fit and continues
    rerankers = ",".join(m for m in models if NEEDS_BASE.get(m) == name)
    raise ReelsenseError(
        f"{rerankers} re-ranks {name}, which would be trained for it now (seed {fit.seed}, the latest {fit.version}'s "
        f"settings) and so replace {name}'s stopped fit ({count(was['epochs'], 'epoch')} finished, {unfinished}); nothing was trained. "
        f"`reelsense models` names the `train` that continues that fit (then `reelsense train --models {rerankers}` re-ranks it), "
        f"or `reelsense train --models {name},{rerankers}` with the --seed and --config you want trains both and replaces it"
    )


def _ordered(models: list[str]) -> list[str]:
    """Bases before the models that re-rank them."""
    check_rankers(models)
    needed = set(models) | {NEEDS_BASE[m] for m in models if m in NEEDS_BASE}
    return [m for m in ALL_MODELS if m in needed]


def load_trained(home: str, data: Dataset, models: list[str], device: str) -> dict[str, Any]:
    """Each model (a re-ranker with the base version it was trained on), checked against `data`
    before any weights load; every model that does not fit is named in one error (probe: evaluate
    named stale models one at a time, a retrain for each)."""
    check_rankers(models)
    models_dir = Warehouse(home).models_dir
    refused: dict[str, artifacts.ModelMismatch] = {}
    for name in models:
        try:
            latest_meta(models_dir, name)  # a damaged LATEST, named with the ways out (review)
            artifacts.check_with_base(models_dir, name, data)
        except artifacts.ModelMismatch as exc:
            refused[name] = exc
    # Nothing is evaluated then (a table of some models would drop the others' rows); the models that
    # fit are named with their command (probe: the error left them unsaid).
    fitting = [name for name in models if name not in refused]
    others = f"\nNothing was evaluated; the models that fit: `reelsense evaluate --models {','.join(fitting)}` (with your other options)" if fitting else ""
    if len(refused) == 1:
        (exc,) = refused.values()
        raise artifacts.ModelMismatch(f"{exc}{others}") from None
    if refused:  # each reason again, its advice shortened to the one command (probe: it repeated "retrain it: ..." per model)
        train = f"`reelsense train --models {','.join(refused)}`"
        reasons = []
        for name in refused:
            try:
                artifacts.check_with_base(models_dir, name, data, fix="the command above retrains it")
            except artifacts.ModelMismatch as exc:
                reasons.append(f"- [{name}] {exc}")
        raise artifacts.ModelMismatch(
            f"{len(refused)} models cannot be evaluated on this warehouse's data; {train} retrains them all, "
            "after any step a reason below names first:\n" + "\n".join(reasons) + others
        )
    return {
        name: artifacts.load_with_base(models_dir, name, data, device) if name in NEEDS_BASE else artifacts.load(models_dir, name, data, {}, device)
        for name in models
    }


def training_record(models_dir: Path, name: str, version: str) -> dict[str, Any]:
    """The seed a saved model was trained with, its settings that differ from the defaults and the
    ranker code that trained it (a row of a fit of older code says so: flows/console.py `older_code_note`)."""
    meta = artifacts.read_meta(models_dir, name, version)
    return {
        "train_seed": meta.get("seed"),
        "train_settings": chosen_settings(name, meta.get("config")),  # None: lightgbm, itemknn, popularity
        "train_code": meta.get("code_version"),
    }


@flow(name="evaluate", log_prints=True)
def evaluate_rankers(
    home: str, models: list[str] = ALL_MODELS, seed: int = 0, max_users: int | None = None, device: str = "auto", dataset: str = ""
) -> dict[str, Any]:
    """Every model on all test users (or a seeded sample of `max_users`: a quick evaluation, written
    to results-quick.json and never recorded in the registry), both protocols, paired against sasrec."""
    wh = Warehouse(home)
    current_samples(home)
    data = load_dataset(wh, MAX_HISTORY)
    trained = load_trained(home, data, models, device_for(device))
    rows = test_rows(data, max_users=max_users, seed=seed)
    quick = len(rows) < int((data.split == "test").sum())
    results: dict[str, Any] = {
        "models": {},
        "dataset": dataset or str(wh.home),
        "home": str(wh.home.resolve()),  # where it ran: a copied or moved home says so in its report
        "seed": seed,
        "command": shlex.join(["reelsense", *sys.argv[1:]]),
        "evaluation": f"quick: {len(rows)} seeded test users of {int((data.split == 'test').sum())}" if quick else "full: every test user",
        "max_users": max_users if quick else None,
        "protocol": {
            "split": "leave-one-out per user: last positive = test, second-to-last = valid",
            "ranking": f"full ranking of each test target against all {data.n_items} items",
            "unmasked": "history items keep their scores (RecBole's default for sequential models)",
            "masked": "every item the user engaged with before the target is removed, the target excepted "
            "(MicroLens's official code; score-batch never recommends them either)",
            "users": {k: int(len(v)) for k, v in evaluation_slices(data, rows).items()},
            "natural_cold_items": "test targets never seen in training, ranked among all items",
            "warm_items": "test targets seen in training",
            "ctr_sampled": "AUC / GAUC / logloss on 25 uniform + 25 popularity-sampled negatives per target, 2000 seeded users",
            "scoring_path": "score-batch's default path: the model's own top items among those not engaged with before "
            f"(so a repeated target is a miss); recall of its top {CANDIDATES}, and NDCG@10 / HR@10 of the top 10 written",
            "scoring_path_similarity": f"score-batch with --retrieval similarity: {CANDIDATES} similarity candidates (engaged "
            "items removed) re-ranked by the model; recall of the candidates, NDCG@10 / HR@10 of the top 10 written",
            "vs_sasrec": "per-user NDCG@10 minus sasrec's, paired bootstrap over users (1000 resamples), 95% CI",
            "ci95": "bootstrap over users, 1000 resamples",
            "content": data.content_source,
        },
    }
    ranks = {}
    # How each model was trained, read before any evaluation (review): the table's advice to train a
    # re-ranker over a row must reuse that very base (probe: an lstm-attn trained with --seed 1).
    trained_with = {name: training_record(wh.models_dir, name, trained[name].version) for name in models}
    for name in models:
        started = time.perf_counter()
        metrics, ranks[name] = evaluate_model(trained[name], data, rows, seed=seed)
        results["models"][name] = {**metrics, "version": trained[name].version, **trained_with[name]}
        if name in NEEDS_BASE:  # the base version it re-ranks: the table says where that is not the base's row
            results["models"][name]["base_version"] = trained[name].base.version
        get_run_logger().info("evaluated %s in %.1fs", name, time.perf_counter() - started)
    if REFERENCE in ranks:
        for name in models:
            if name != REFERENCE:
                results["models"][name]["vs_sasrec"] = compare_to(ranks[REFERENCE], ranks[name], seed=seed)
                results["models"][name]["vs_sasrec_version"] = trained[REFERENCE].version
    if not quick:
        for name in models:
            r = results["models"][name]
            artifacts.record_metrics(
                wh.models_dir,
                name,
                trained[name].version,
                {
                    "overall": _scalars(r["unmasked"]["overall"]),
                    "masked": _scalars(r["masked"]["overall"]),
                    "natural_cold_items": _scalars(r["unmasked"]["natural_cold_items"]),
                    "ctr_sampled": _scalars(r["ctr_sampled"]),
                },
            )
    stem = "results-quick" if quick else "results"
    results["data_fingerprint"] = artifacts.fingerprint(data)
    # Results of the same code only: the evaluation (its sampled negatives, popularity) is code too.
    results["code_version"] = artifacts.code_version()
    results["models"] = merged_models(wh.reports_dir / f"{stem}.json", results, models, wh.models_dir, data, given_dataset=bool(dataset))
    results["kept_from_earlier"] = [name for name in results["models"] if name not in models]
    results["reference_trained"] = reference_fits(wh.models_dir, data)  # the not-paired note's advice (probes)
    wh.reports_dir.mkdir(parents=True, exist_ok=True)
    artifacts.write_text(wh.reports_dir / f"{stem}.json", json.dumps(results, indent=1))
    artifacts.write_text(wh.reports_dir / f"{stem}.md", results_markdown(results))
    results["path"] = str(wh.reports_dir / f"{stem}.json")
    return results


def reference_fits(models_dir: Path, data: Dataset) -> bool:
    """Whether a sasrec trained on this very data is saved, so `evaluate --models ...,sasrec` runs as
    it is (probe: after new events the note sent a user to evaluate a sasrec of the data before)."""
    try:
        artifacts.checked_meta(models_dir, REFERENCE, data)  # none saved, or a damaged LATEST, raise too
    except (ReelsenseError, *LATEST_ERRORS):
        return False
    return True


def merged_models(
    path: Path, results: dict[str, Any], evaluated: list[str], models_dir: Path, data: Dataset | None = None, *, given_dataset: bool = True
) -> dict[str, Any]:
    """`evaluate --models a,b` updates a and b in the report and keeps the other models' results, when
    they were measured by the same code on the same data, content, seed and test users and are still the latest
    version of their model; otherwise the report holds only this run's models. A kept model's paired comparison is dropped once sasrec is evaluated at another
    version, or leaves the table (its per-user ranks are not stored, so it cannot be paired again).
    A dropped model that no longer fits `data` is listed in `train_before_evaluate` (probe: the
    advice to evaluate it was refused, its model being of other data). Without `given_dataset` (no
    --dataset), the results keep the earlier name while they keep rows."""
    previous = json.loads(path.read_text()) if path.exists() else {}
    what = {"data_fingerprint": "data", "seed": "seed", "evaluation": "test users", "code_version": "ranker code"}
    differ = [label for key, label in what.items() if previous.get(key) != results[key]]
    differ += ["content model"] if previous.get("protocol", {}).get("content") != results["protocol"]["content"] else []
    kept, dropped, stale = {}, {}, []
    for name, r in previous.get("models", {}).items():
        if name in evaluated:
            continue
        if name not in ALL_MODELS:
            dropped[name] = RETIRED_ROW
            continue
        try:
            latest = (latest_meta(models_dir, name) or {}).get("version")
        except artifacts.ModelMismatch:  # a damaged LATEST: the row stays while its version is saved (probe: "no longer trained")
            latest = r.get("version") if r.get("version") in readable_versions(models_dir, name) else None
        if latest is None:
            dropped[name] = UNTRAINED_ROW
        elif differ:
            dropped[name] = f"the earlier evaluate had other {', '.join(differ)}"
            if data is not None:
                try:
                    artifacts.check_with_base(models_dir, name, data)
                except artifacts.ModelMismatch:
                    stale.append(name)
        elif r.get("version") != latest:
            dropped[name] = "retrained since the earlier evaluate"  # no stale versions
        else:
            kept[name] = dict(r)
            try:  # what a row written before rows recorded it lacks (review)
                if name in NEEDS_BASE and not r.get("base_version"):
                    kept[name]["base_version"] = artifacts.read_meta(models_dir, name, r["version"]).get("base_version")
                if any(k not in r for k in ("train_seed", "train_settings", "train_code")):  # the notes' advice needs them
                    kept[name].update(training_record(models_dir, name, r["version"]))
            except artifacts.ModelMismatch:
                pass
    # Said where the rows went (probe: the first evaluate after an upgrade dropped six rows silently).
    results["dropped_from_earlier"] = dropped
    results["train_before_evaluate"] = stale
    # The sasrec the table will show, evaluated now or kept (review: a kept row kept its pairing with a
    # sasrec that had gone stale and left the table).
    reference = (results["models"].get(REFERENCE) or kept.get(REFERENCE) or {}).get("version")
    for r in kept.values():
        if r.get("vs_sasrec_version") != reference:
            r.pop("vs_sasrec", None)
            if old := r.pop("vs_sasrec_version", None):  # what the note says of it (probe: "no sasrec ... over the same users")
                r["was_paired_with"] = old
    merged = {**kept, **results["models"]}
    if kept and not given_dataset and previous.get("dataset"):  # the kept rows' name (probe: it became the home's path)
        results["dataset"] = previous["dataset"]
    order = {name: i for i, name in enumerate(ALL_MODELS)}
    return dict(sorted(merged.items(), key=lambda item: order.get(item[0], len(order))))


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if not isinstance(v, list)}
