"""A ranker's LATEST file (ranker/artifacts.py names the newest version in it) where it cannot be
read: what each command does then. `train` trains the model anew; `score`, `explain` and `prune`
refuse, naming the file and the ways out; what only compares with the newest version, or uses an
optional stage, goes on as if none were saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.arguments import is_version_name
from ranker import artifacts
from ranker.names import ALL_MODELS

# What reading a ranker's LATEST raises where it names no readable version (a deleted or damaged
# folder, an emptied file), is a folder, or is not text (ranker/artifacts.py's `list_models`, behind
# `models` and explain's LightGBM stage, takes such a ranker to have no latest).
LATEST_ERRORS = (artifacts.ModelMismatch, OSError, ValueError)


def readable_versions(models_dir: Path, name: str) -> list[str]:
    """The versions of `name` whose meta.json reads (not by artifacts.list_models, which reads
    each LATEST too)."""
    found = []
    for meta in sorted((models_dir / "rankers" / name).glob("*/meta.json")):
        try:
            artifacts.read_meta(models_dir, name, meta.parent.name)
            found.append(meta.parent.name)
        except artifacts.ModelMismatch:
            pass
    return found


def damaged_latest(models_dir: Path, name: str, error: Exception, *, ways_out: bool = True) -> str:
    """What is wrong with `name`'s LATEST file and, with `ways_out`, how to mend it (probe: an
    emptied file read "no model sasrec version  in ...", and only `--force` got past it, unsaid)."""
    marker = models_dir / "rankers" / name / "LATEST"
    readable = readable_versions(models_dir, name)
    if marker.is_dir():  # probe: the advice was to write a version into it
        what = f"{marker} is a folder, not the file that names {name}'s latest version"
        train = f"`reelsense train --models {name}` trains one anew" if name in ALL_MODELS else "then no version is the latest"
        if not ways_out:
            return what
        return f"{what}: remove it (`rm -r {marker}`), then write one of its readable versions into a file of that name, or {train}"
    try:
        named = marker.read_text().strip()
        if not named:
            why = "it is empty"
        elif not is_version_name(named):  # probe: a path led to another ranker's version
            why = f"it holds {named!r}, which is no version's name"
        elif not (marker.parent / named).is_dir():
            why = f"it names {named}, which is not there"
        else:
            why = f"it names {named}, which cannot be read: {error}"
        what = f"{marker} names no readable version ({why})"
    except FileNotFoundError:  # probe: "no trained lstm-attn" where versions were saved
        what = f"{marker} is missing, though {name} has {len(readable)} saved version(s)"
    except (OSError, ValueError) as unreadable:
        what = f"{marker} names no readable version (it cannot be read: {unreadable})"
    if not ways_out:
        return what
    delete = f"delete that file (then no {name} is the latest)"
    if name not in ALL_MODELS:  # a ranker this version no longer trains (review: `train` refused the advice)
        return f"{what}: {delete}"
    train = f"`reelsense train --models {name}` trains one anew"
    if not readable:  # review: the advice sent users to versions that were not there
        return f"{what}, and no version of {name} is readable: {train}, or {delete}"
    which = f"one of its {len(readable)} readable versions (the newest: {readable[-1]})" if len(readable) > 1 else f"its one readable version, {readable[0]}"
    return f"{what}: write {which} into that file, or {train}"


def checked_latest(models_dir: Path, name: str) -> dict[str, Any] | None:
    """artifacts.latest, where LATEST must name one of `name`'s own version folders (probe: a path
    in it read another ranker's version), and a missing LATEST beside saved versions is an error."""
    marker = models_dir / "rankers" / name / "LATEST"
    if not marker.exists():
        if name in ALL_MODELS and readable_versions(models_dir, name):  # a retired ranker's versions are no one's latest
            raise FileNotFoundError(marker)
        return None
    named = marker.read_text().strip()  # read once: a train that moves LATEST meanwhile is not a mismatch
    if not is_version_name(named):
        raise artifacts.ModelMismatch(f"it holds {named!r}, which is no version's name")
    meta = artifacts.read_meta(models_dir, name, named)
    if meta.get("name") != name or meta.get("version") != named:
        raise artifacts.ModelMismatch(f"its meta.json is of {meta.get('name')} {meta.get('version')}")
    return meta


def check_latest(models_dir: Path) -> None:
    """Refuse (ModelMismatch) where a ranker's versions have no readable latest: its LATEST is
    damaged, or gone while versions are there (prune would delete every version no run pins)."""
    for folder in sorted(p for p in (models_dir / "rankers").glob("*") if p.is_dir() and p.name in ALL_MODELS):
        latest_meta(models_dir, folder.name)


def latest_meta(models_dir: Path, name: str) -> dict[str, Any] | None:
    """The latest version's meta.json (None where none was saved); a damaged or missing LATEST
    beside saved versions is an error that names the file and the ways out."""
    try:
        return checked_latest(models_dir, name)
    except LATEST_ERRORS as error:
        raise artifacts.ModelMismatch(damaged_latest(models_dir, name, error)) from None


def readable_latest(models_dir: Path, name: str) -> dict[str, Any] | None:
    """The latest version's meta.json, None where none was saved or LATEST is damaged (for what
    is optional: explain's LightGBM stage, a comparison with the newest version)."""
    try:
        return checked_latest(models_dir, name)
    except LATEST_ERRORS:
        return None
