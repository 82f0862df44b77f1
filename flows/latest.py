"""A ranker's LATEST file (ranker/artifacts.py names the newest version in it) where it cannot be
read: what each command does then. `train` trains the model anew; `score`, `explain` and `prune`
refuse, naming the file and the ways out; what only compares with the newest version, or uses an
optional stage, goes on as if none were saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ranker import artifacts
from ranker.names import ALL_MODELS

# What reading a ranker's LATEST raises where it names no readable version (a deleted or damaged
# folder, an emptied file), is a folder, or is not text. Where ranker/artifacts.py reads every
# LATEST itself (`list_models`, behind `models` and explain's LightGBM stage) only the first is caught.
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
    try:
        named = marker.read_text().strip()
        why = "it is empty" if not named else f"it names {named}, which is not there" if not (marker.parent / named).is_dir() else str(error)
    except (OSError, ValueError) as unreadable:
        why = f"it cannot be read: {unreadable}"
    what = f"{marker} names no readable version ({why})"
    if not ways_out:
        return what
    readable = len(readable_versions(models_dir, name))
    delete = f"delete that file (then no {name} is the latest)"
    if name not in ALL_MODELS:  # a ranker this version no longer trains (review: `train` refused the advice)
        return f"{what}: {delete}"
    train = f"`reelsense train --models {name}` trains one anew"
    if not readable:  # review: the advice sent users to versions that were not there
        return f"{what}, and no version of {name} is readable: {train}, or {delete}"
    which = f"one of its {readable} readable versions (`reelsense models` lists them)"
    which = "its one readable version (`reelsense models` lists it)" if readable == 1 else which
    return f"{what}: write {which} into that file, or {train}"


def check_latest(models_dir: Path) -> None:
    """Refuse (ModelMismatch) where a ranker's versions have no readable latest: its LATEST is
    damaged, or gone while versions are there (prune would delete every version no run pins)."""
    for folder in sorted(p for p in (models_dir / "rankers").glob("*") if p.is_dir() and p.name in ALL_MODELS):
        if (folder / "LATEST").exists():
            latest_meta(models_dir, folder.name)
        elif readable := readable_versions(models_dir, folder.name):  # review: a LATEST deleted by hand
            raise artifacts.ModelMismatch(
                f"{folder} holds {len(readable)} version(s) and no LATEST: write one of them ({readable[-1]} is the newest) into "
                f"{folder / 'LATEST'}, or run `reelsense train --models {folder.name}`"
            )


def latest_meta(models_dir: Path, name: str) -> dict[str, Any] | None:
    """The latest version's meta.json (None where none was saved); a damaged LATEST is an error
    that names the file and the ways out."""
    try:
        return artifacts.latest(models_dir, name)
    except LATEST_ERRORS as error:
        raise artifacts.ModelMismatch(damaged_latest(models_dir, name, error)) from None


def readable_latest(models_dir: Path, name: str) -> dict[str, Any] | None:
    """The latest version's meta.json, None where none was saved or LATEST is damaged (for what
    is optional: explain's LightGBM stage, a comparison with the newest version)."""
    try:
        return artifacts.latest(models_dir, name)
    except LATEST_ERRORS:
        return None
