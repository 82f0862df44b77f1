"""A ranker's LATEST file (ranker/artifacts.py names the newest version in it) where it cannot be
read: what each command does then. `train` trains the model anew; `score`, `explain` and `prune`
refuse, naming the file and the ways out; what only compares with the newest version, or uses an
optional stage, goes on as if none were saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ranker import artifacts

# What reading a ranker's LATEST raises where it names no readable version (a deleted or damaged
# folder, an emptied file), is a folder, or is not text.
LATEST_ERRORS = (artifacts.ModelMismatch, OSError, ValueError)


def damaged_latest(models_dir: Path, name: str, error: Exception, *, ways_out: bool = True) -> str:
    """What is wrong with `name`'s LATEST file and, with `ways_out`, how to mend it (probe: an
    emptied file read "no model sasrec version  in ...", and only `--force` got past it, unsaid)."""
    marker = models_dir / "rankers" / name / "LATEST"
    try:
        empty = not marker.read_text().strip()
    except (OSError, ValueError):
        empty = False
    what = f"{marker} names no readable version ({'it is empty' if empty else error})"
    if not ways_out:
        return what
    readable = 0  # counted here, not by artifacts.list_models, which reads each LATEST too
    for meta in sorted((models_dir / "rankers" / name).glob("*/meta.json")):
        try:
            artifacts.read_meta(models_dir, name, meta.parent.name)
            readable += 1
        except artifacts.ModelMismatch:
            pass
    train = f"`reelsense train --models {name}` trains one anew"
    if not readable:  # review: the advice sent users to versions that were not there
        return f"{what}, and no version of {name} is readable: {train}"
    which = f"one of its {readable} readable versions (`reelsense models` lists them)"
    which = "its one readable version (`reelsense models` lists it)" if readable == 1 else which
    return f"{what}: write {which} into that file, or {train}"


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
