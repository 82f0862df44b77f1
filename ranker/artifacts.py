"""The model registry on disk: `<home>/models/rankers/<name>/<version>/{model, meta.json}`
(and `<name>/unfinished.pt` while a fit is in progress or was stopped, `unfinished_fit`).

A version is written once and never changed; `<name>/LATEST` names the newest. meta.json holds the
config (seed, device), the training history, the evaluation metrics once `evaluate` has run, and two
descriptions of the data:
- `data_fingerprint`: a hash of the exact training rows (evaluation refuses a model trained on
  other rows), and `rows_fingerprint`, the same rows by item id (new items renumber the rows
  without changing them);
- `reuse_key`: the rows, the item vocabulary, the content vectors, the hyper-parameters, the seed
  and the code version; training reuses a saved model only when this matches;
- `feature_schema`: what the model's inputs look like (item vocabulary, content source and width,
  history length, heads). Scoring only needs this to match: new events for known items are fine,
  another content model is not, and a new item vocabulary only for models that map items by id
  and score new items by content (`sasrec-content`).

`reelsense models` lists the registry.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ranker.data import POPULARITY, Dataset
from ranker.names import NEEDS_BASE, READS_CONTENT
from ranker.registry import build, chosen_settings
from warehouse import store
from warehouse.db import QUARANTINED_ITEMS
from warehouse.errors import ReelsenseError


class ModelMismatch(ReelsenseError):
    """A saved model does not fit the data it is asked to score."""


def fingerprint(data: Dataset) -> str:
    digest = hashlib.sha256()
    for array in (data.targets, data.queries.hist_items, np.asarray([s[:2] for s in data.split], dtype="S2")):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def rows_fingerprint(data: Dataset) -> str:
    """`fingerprint` by item id, not index: the same events give the same hash after new items renumber
    the vocabulary (kept in meta.json to say why a model is retrained; probe: `train` said "its
    training rows changed" after only `ingest items`)."""
    ids = np.zeros(len(data.item_ids), np.uint64)
    for i, item in enumerate(data.item_ids[1:], start=1):
        ids[i] = int.from_bytes(hashlib.blake2b(item.encode(), digest_size=8).digest(), "little")
    digest = hashlib.sha256()
    for array in (ids[data.targets], ids[data.queries.hist_items], np.asarray([s[:2] for s in data.split], dtype="S2")):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def code_version() -> str:
    """A hash of the ranker package's source: a model is reused only by the code that trained it."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def reuse_key(name: str, model: Any, data: Dataset, seed: int) -> str:
    """What a trained model depends on: the training rows, the item vocabulary, the content
    vectors themselves (a changed title or `align --retrain` changes them), the model's
    hyper-parameters, the seed and the code. Training reuses a saved model only when all match."""
    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    params = repr(config) if config is not None else repr(sorted((k, v) for k, v in vars(model).items() if isinstance(v, (int, float, str, bool))))
    base = getattr(getattr(model, "base", None), "version", "")  # a re-ranker depends on its base model
    for part in (name, base, fingerprint(data), json.dumps(feature_schema(data), sort_keys=True), params, str(seed), code_version()):
        digest.update(part.encode() + b"\0")
    digest.update(np.ascontiguousarray(data.content).tobytes())
    return digest.hexdigest()[:16]


# Rankers that read `Dataset.train_counts` when they score (LightGBM's log_popularity feature).
USES_POPULARITY = ("lightgbm",)


def feature_schema(data: Dataset) -> dict[str, Any]:
    items = hashlib.sha256("\n".join(data.item_ids).encode()).hexdigest()[:16]
    return {
        "n_items": data.n_items,
        "item_vocabulary": items,
        "content": data.content_source,
        "content_dim": int(data.content.shape[1]),
        "max_history": int(data.queries.hist_items.shape[1]),
        "behaviours": list(data.behaviours),
        "popularity": POPULARITY,  # what train_counts counts (LightGBM's log_popularity feature)
    }


def new_version(data: Dataset) -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{fingerprint(data)[:8]}"


def save(models_dir: Path, model: Any, meta: dict[str, Any]) -> Path:
    folder = models_dir / "rankers" / meta["name"] / meta["version"]
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model")
    _write_json(folder / "meta.json", meta)
    write_text(folder.parent / "LATEST", meta["version"] + "\n")
    return folder


def unfinished_fit(models_dir: Path, name: str) -> Path:
    """Where a fit of `name` in progress keeps its state after each epoch (ranker/training.py
    FitCheckpoint); deleted once the model is saved. Not a version: `models` and prune skip it."""
    return models_dir / "rankers" / name / "unfinished.pt"


def latest(models_dir: Path, name: str) -> dict[str, Any] | None:
    marker = models_dir / "rankers" / name / "LATEST"
    if not marker.exists():
        return None
    return read_meta(models_dir, name, marker.read_text().strip())


def read_meta(models_dir: Path, name: str, version: str) -> dict[str, Any]:
    path = models_dir / "rankers" / name / version / "meta.json"
    if not path.exists():
        raise ModelMismatch(f"no model {name} version {version} in {models_dir / 'rankers'}; `reelsense models` lists them")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ModelMismatch(f"{path} is damaged ({error}); {_damaged_way_out(path, name)}") from error
    if not isinstance(meta, dict) or not {"name", "version"} <= meta.keys():
        raise ModelMismatch(f"{path} is not a model's meta.json (no name or version); {_damaged_way_out(path, name)}")
    return meta


def _damaged_way_out(meta_path: Path, name: str) -> str:
    """What to do about a version whose meta.json cannot be read. Probe: the advice said `train
    --force`, which a damaged version does not need (train never reuses it) and which, where
    `train` already trained anew, read as a step still to take."""
    return f"delete {meta_path.parent} (no command reads that version); `reelsense train --models {name}` trains {name} where no readable version fits"


def list_models(models_dir: Path) -> list[dict[str, Any]]:
    """Every saved version, by name then version (versions sort by time), with a `latest` flag."""
    out, newest = [], {}
    for folder in sorted((models_dir / "rankers").glob("*/*/meta.json")):
        try:  # a damaged folder is no model (`reelsense models` names it)
            meta = read_meta(models_dir, folder.parent.parent.name, folder.parent.name)
        except ModelMismatch:
            continue
        if meta["name"] not in newest:  # each ranker's LATEST read once
            try:
                newest[meta["name"]] = (latest(models_dir, meta["name"]) or {}).get("version")
            except (ModelMismatch, OSError, ValueError):  # it names a damaged or missing version, is a folder or is not text
                newest[meta["name"]] = None
        out.append({**meta, "latest": newest[meta["name"]] == meta["version"]})
    return sorted(out, key=lambda m: (m["name"], m["version"]))


def prune_versions(models_dir: Path, kept: set[str]) -> list[str]:
    """Delete the saved versions ("name@version") that are not in `kept`, not their ranker's
    latest, not the base of a version that stays (a re-ranker loads its base's version) and not
    the newest re-ranker over a base that stays (what explains that base's runs).
    Returns the deleted ones."""
    metas = list_models(models_dir)
    stays = {f"{m['name']}@{m['version']}" for m in metas if m["latest"] or f"{m['name']}@{m['version']}" in kept}
    stays |= {
        f"{NEEDS_BASE[m['name']]}@{m['base_version']}"
        for m in metas
        if f"{m['name']}@{m['version']}" in stays and m.get("base_version") and m["name"] in NEEDS_BASE
    }
    # A base that stays keeps the newest re-ranker over it: a run it scored is explained with that
    # one's feature contributions (probe: prune deleted it, and `report` then went without them).
    # (metas run by version, oldest first, so each base keeps the newest)
    newest_over = {(m["name"], m["base_version"]): m["version"] for m in metas if m["name"] in NEEDS_BASE and m.get("base_version")}
    stays |= {f"{reranker}@{version}" for (reranker, base_version), version in newest_over.items() if f"{NEEDS_BASE[reranker]}@{base_version}" in stays}
    gone = []
    for m in metas:
        if f"{m['name']}@{m['version']}" not in stays:
            shutil.rmtree(models_dir / "rankers" / m["name"] / m["version"])
            gone.append(f"{m['name']}@{m['version']}")
    return gone


def record_metrics(models_dir: Path, name: str, version: str, metrics: dict[str, Any]) -> None:
    path = models_dir / "rankers" / name / version / "meta.json"
    meta = json.loads(path.read_text())
    _write_json(path, {**meta, "metrics": metrics})


def load(
    models_dir: Path,
    name: str,
    data: Dataset,
    trained: dict[str, Any],
    device: str,
    *,
    version: str | None = None,
    match: str = "fingerprint",
    fix: str | None = None,
) -> Any:
    """A saved ranker, checked against `data`: `match='fingerprint'` (evaluation: the same training
    rows) or `'schema'` (scoring: the same feature schema); `fix` as in `checked_meta`."""
    meta = checked_meta(models_dir, name, data, version=version, match=match, fix=fix)
    model = build(name, device, trained)
    model.load(models_dir / "rankers" / name / meta["version"] / "model", data)
    model.version = meta["version"]
    return model


def checked_meta(
    models_dir: Path, name: str, data: Dataset, *, version: str | None = None, match: str = "fingerprint", fix: str | None = None
) -> dict[str, Any]:
    """The saved ranker's meta.json once `load`'s checks against `data` pass (ModelMismatch if not);
    `fix`: what the error tells the user to do (default: retrain, or, scoring, use a matching model)."""
    meta = read_meta(models_dir, name, version) if version else latest(models_dir, name)
    if meta is None:
        raise ModelMismatch(f"no trained {name} in {models_dir / 'rankers'}; run `reelsense train --models {name}` first")
    schema = feature_schema(data)
    if match == "fingerprint" and meta["data_fingerprint"] != fingerprint(data):
        retrain = fix or f"retrain it: `reelsense train --models {name}` (it rebuilds the samples first)"
        first = new_items_first(name, meta, schema, items_without_content(data), data.unaligned + data.unaligned_unread)
        raise ModelMismatch(
            f"{name} {meta['version']} was trained on other data (fingerprint {meta['data_fingerprint']}, "
            f"the warehouse gives {fingerprint(data)}); {first}{retrain}"
        )
    # Evaluation checks the schema too: the same rows with other content vectors (align --retrain,
    # another text model) are not the data the model was trained on.
    check_schema(
        name,
        meta,
        schema,
        data=data,
        new_items_ok=match == "schema" and name in MAPS_ITEMS_BY_ID,
        fix=fix or f"rerun `reelsense train --models {name}` on this data" + ("" if match == "fingerprint" else ", or score with a matching model"),
    )
    return meta


def items_without_content(data: Dataset) -> list[str]:
    """Items of the vocabulary without a content vector (a row of zeros: not extracted yet, quarantined
    by extract, or not aligned)."""
    return [data.item_ids[i + 1] for i in np.flatnonzero(~data.content[1:].any(axis=1))]


def new_items_first(
    name: str, meta: dict[str, Any], schema: dict[str, Any], without_content: list[str] | None = None, unaligned: list[str] | None = None
) -> str:
    """The steps a content model's new items need before a retrain can use them ("" where the items
    are those it was trained on, or the model reads no content). Probe: evaluate said only "retrain"
    after `ingest items`, and training then stopped on the new items' missing vectors. Where every
    item has its vector (`without_content` empty) those steps are done, and are not named again; where
    some have none, they are named, with what to do if extract quarantined them (probe: extract
    skips a quarantined item, so the advice to run it again went round in a loop); where all of them
    are `unaligned` (raw embeddings, no fused vector), `align` alone is the step."""
    saved = meta.get("feature_schema")
    if not saved or name not in READS_CONTENT or all(saved.get(k) == schema[k] for k in ("n_items", "item_vocabulary")):
        return ""
    if without_content is not None and not without_content:
        return "the items changed since training (every item has its content vector): "
    steps = "`reelsense ingest items FILE`, `reelsense extract`" + (", `reelsense align`" if str(saved.get("content", "")).startswith("fused:") else "")
    if not without_content:
        return f"the items changed since training: give new items their rows and content first ({steps}), then "
    shown = ", ".join(without_content[:5]) + (" ..." if len(without_content) > 5 else "")
    has = "has" if len(without_content) == 1 else "have"
    if set(without_content) <= set(unaligned or ()):  # extracted since align-items ran (probe: told to ingest and extract them again)
        return (
            f"the items changed since training, and {len(without_content)} {has} no {schema.get('content')} vector yet ({shown}), "
            "only raw embeddings: run `reelsense align` first (it projects them with the trained alignment; a content ranker's "
            "train and score stop until it has run), then "
        )
    return (
        f"the items changed since training, and {len(without_content)} {has} no content vector ({shown}): to score them, give "
        f"them their rows and content first ({steps}; an item that extract quarantined, and so skips, is listed by {QUARANTINED_ITEMS}: "
        "fix its media and ingest it again); to leave them unscored, go straight on; either way, "
    )


def load_with_base(
    models_dir: Path, name: str, data: Dataset, device: str, *, version: str | None = None, match: str = "fingerprint", fix: str | None = None
) -> Any:
    """`load`, with the base model of a ranker that re-ranks another (lightgbm: lstm-attn) loaded first."""
    trained: dict[str, Any] = {}
    if name in NEEDS_BASE:
        base, base_fix = NEEDS_BASE[name], fix or base_advice(name)
        trained[base] = load(models_dir, base, data, {}, device, version=base_version(models_dir, name, version), match=match, fix=base_fix)
    return load(models_dir, name, data, trained, device, version=version, match=match, fix=fix)


def check_with_base(models_dir: Path, name: str, data: Dataset, *, version: str | None = None, match: str = "fingerprint", fix: str | None = None) -> None:
    """The checks of `load_with_base` without loading any weights: ModelMismatch if the ranker, or
    the base it re-ranks, does not fit `data` (score-batch asks before it touches a run)."""
    ours = (read_meta(models_dir, name, version) if version else latest(models_dir, name)) if name in NEEDS_BASE else None
    if ours is not None:  # (a re-ranker not trained yet: its own check below says so)
        base, trained_on = NEEDS_BASE[name], ours.get("base_version")  # None: a registry from before base_version, the latest base
        base_fix = base_advice(name) if fix is None else f"{fix} (with {name}, which re-ranks it)"
        try:
            checked_meta(models_dir, base, data, version=trained_on, match=match, fix=base_fix)
        except ModelMismatch as first:
            error = first
            # Probe: after lstm-attn alone was retrained, the error named only the old lstm-attn.
            # Not where items lack content: extract and align first would make the newer base stale too (probe).
            lacking = base in READS_CONTENT and len(items_without_content(data)) > 0
            newer = None if lacking or match != "fingerprint" else find_reusable_base(models_dir, base, data, not_version=trained_on)
            if newer is not None:  # the same error, with the advice to re-rank the newer base
                base_fix = (f"{fix} over" if fix else f"`reelsense train --models {name}` re-ranks") + f" the latest {base} {newer}, which fits"
                try:
                    checked_meta(models_dir, base, data, version=trained_on, match=match, fix=base_fix)
                except ModelMismatch as again:
                    error = again
            which = f"{base} {trained_on}" if trained_on else base
            raise ModelMismatch(f"{name} {ours['version']} re-ranks {which}, which does not fit: {error}") from None
    checked_meta(models_dir, name, data, version=version, match=match, fix=fix)


# Defaults as they were before a change (a version saved before meta.json recorded its `settings` has
# them in its config as if chosen): lstm-attn's item tower until 2026-12-02, its borrowing until 2026-12-06.
FORMER_DEFAULTS: dict[str, dict[str, list[Any]]] = {"lstm-attn": {"id_drop": [0.5], "delta_ratio": [0.5], "cold_neighbours": [0]}}


def given_settings(name: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The settings a rankers TOML gave a saved version: meta.json's `settings`, or, where it was saved
    before they were recorded, its config's values other than today's defaults and former ones."""
    given = meta.get("settings")
    if isinstance(given, dict):
        return dict(given)
    former = FORMER_DEFAULTS.get(name, {})
    return {k: v for k, v in (chosen_settings(name, meta.get("config")) or {}).items() if v not in former.get(k, [])}


def find_reusable_base(models_dir: Path, name: str, data: Dataset, *, not_version: str | None) -> str | None:
    """The latest version of base `name` where `reelsense train --models <its re-ranker>` would reuse
    it on `data` (its reuse key: the same rows, items, content vectors and code, with the settings it
    was given and its seed, which such a train takes from it: flows/rank.py `base_fits`), other than
    `not_version`; else None (review: the advice claimed reuse for a model train would retrain)."""
    try:
        meta = latest(models_dir, name)
        if meta is None or meta["version"] == not_version:
            return None
        if meta.get("reuse_key") != reuse_key(name, build(name, "cpu", {}, given_settings(name, meta)), data, meta.get("seed") or 0):
            return None
    except ReelsenseError:  # a damaged LATEST or meta.json: no claim
        return None
    return meta["version"]


def base_advice(name: str) -> str:
    """What to do when the base that `name` re-ranks no longer fits (probe: the error named only
    lstm-attn and said to retrain, as if lightgbm were not involved)."""
    return f"retrain it with {name}, which re-ranks it: `reelsense train --models {NEEDS_BASE[name]},{name}`"


def base_version(models_dir: Path, name: str, version: str | None) -> str | None:
    """The base version a re-ranker was trained on top of (older registries: the latest base)."""
    meta = read_meta(models_dir, name, version) if version else latest(models_dir, name)
    return (meta or {}).get("base_version")


# Rankers whose checkpoints map item ids (not indices) and score unseen items by content: a grown
# item vocabulary is fine for them.
MAPS_ITEMS_BY_ID = {"sasrec-content", "lstm-attn"}


def check_schema(
    name: str,
    meta: dict[str, Any],
    schema: dict[str, Any],
    *,
    new_items_ok: bool = False,
    fix: str = "rerun `reelsense train` on this data, or score with a matching model",
    data: Dataset | None = None,
) -> None:
    """ModelMismatch naming each feature where the saved ranker differs from `schema`, and `fix`;
    `data`: the data `schema` describes, whose items without a content vector the advice on new
    items names (looked at only then)."""
    saved = meta.get("feature_schema")
    if saved is None:
        raise ModelMismatch(f"{name} {meta['version']} was saved without a feature schema (before registry v2); {fix}")
    # Behaviours are labels, not features: a model scores with the heads it was trained with, and a
    # shard of users (or tonight's new events) may hold fewer or more behaviours than training saw.
    skip = {"behaviours"} | ({"n_items", "item_vocabulary"} if new_items_ok else set())
    if name not in USES_POPULARITY:  # only a model that reads train_counts as a feature depends on its definition
        skip.add("popularity")
    if name not in READS_CONTENT:  # an id-only model scores the same whatever the content vectors are
        skip |= {"content", "content_dim"}
    changed = [k for k in schema if k not in skip and saved.get(k) != schema[k]]
    differ = [f"{k}: model {saved.get(k)!r}, data {schema[k]!r}" for k in changed]
    if differ:
        if {"n_items", "item_vocabulary"} & set(changed):
            # New items since training (probe: the advice named only `train`, which would fit a
            # content model to them without their content).
            missing = items_without_content(data) if data is not None else None
            unaligned = data.unaligned + data.unaligned_unread if data is not None else None  # probe: an explanation's copy named ingest and extract
            fix = (new_items_first(name, meta, schema, missing, unaligned) or "the items changed since training: ") + fix
        raise ModelMismatch(f"{name} {meta['version']} does not fit the warehouse's features ({'; '.join(differ)}); {fix}")


def _write_json(path: Path, value: dict[str, Any]) -> None:
    write_text(path, json.dumps(value, indent=1))


def write_text(path: Path, text: str) -> None:
    """Atomic: a reader sees the old file or the new one, never half of one (temp, fsync, rename)."""
    store.write_atomic(path, text)
