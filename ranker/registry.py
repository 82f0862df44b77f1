"""The rankers by name: a plain dict. `lightgbm` re-ranks `lstm-attn`, so it is built with it.

The names themselves live in ranker/names.py (importable without torch); a test checks that this
dict builds exactly those."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ranker.base import Ranker
from ranker.bprmf import BprMF
from ranker.itemknn import ItemKNN
from ranker.lightgbm_ctr import LightGBMCtr
from ranker.names import NEEDS_BASE, check_rankers
from ranker.popularity import Popularity
from ranker.sasrec import Sasrec
from ranker.sequence import LstmAttn
from warehouse.errors import ConfigError
from warehouse.settings import override, read_toml

# Each maker returns a Ranker (ranker/base.py): `make lint` type-checks every class against the Protocol here.
RANKERS: dict[str, Callable[[str], Ranker]] = {
    "popularity": lambda device: Popularity(),
    "itemknn": lambda device: ItemKNN(),
    "bpr-mf": lambda device: BprMF(),
    "sasrec": lambda device: Sasrec(use_content=False, device=device),
    "sasrec-content": lambda device: Sasrec(use_content=True, device=device),
    "lstm-attn": lambda device: LstmAttn(use_content=True, device=device),
    "lstm-attn-no-content": lambda device: LstmAttn(use_content=False, device=device),
}


def build(name: str, device: str, trained: dict[str, Ranker], settings: dict[str, Any] | None = None) -> Ranker:
    """A fresh ranker; `settings` (from a rankers TOML table) override its config's defaults."""
    if name in NEEDS_BASE:
        base = NEEDS_BASE[name]
        if base not in trained:
            raise ConfigError(f"{name} re-ranks {base}: train {base} first (list it before {name})")
        return LightGBMCtr(trained[base])
    check_rankers([name])
    model = RANKERS[name](device)
    if settings:
        if not isinstance(model, Configurable):
            raise ConfigError(f"{name} has no settings to change; settings tables are for {', '.join(configurable())}")
        model.config = override(model.config, settings, f"[{name}]")
    return model


def chosen_settings(name: str, config: Any) -> dict[str, Any] | None:
    """The settings of a saved model's config (as its meta.json records it) that differ from this
    code's defaults; a setting this code no longer has is left out. None for a ranker without
    settings, or one this version does not train. An id-only ranker's item-tower keys (`CONTENT_ONLY`)
    are not its settings: it has no content path for them to change."""
    if name not in RANKERS or not isinstance(config, dict):
        return None
    model = RANKERS[name]("cpu")
    defaults = _config(model)
    if defaults is None:
        return None
    fields = dataclasses.asdict(defaults)
    unused = ignored_settings(model)
    return {k: v for k, v in config.items() if k in fields and fields[k] != v and k not in unused}


def ignored_settings(model: Ranker) -> set[str]:
    """The config keys a ranker has but never uses: an id-only ranker's item-tower keys (`CONTENT_ONLY`),
    which it has no content path for (probe: lstm-attn-no-content listed cold_neighbours as its setting)."""
    return CONTENT_ONLY if not getattr(model, "use_content", True) else set()


@runtime_checkable
class Configurable(Protocol):
    """A ranker with a config dataclass (SasrecConfig, LstmAttnConfig, BprMfConfig) that a rankers TOML overrides."""

    config: Any


# Settings of the content-first item tower (ranker/training.py ItemTower): nothing to an id-only model.
CONTENT_ONLY = {"id_drop", "delta_ratio", "cold_neighbours", "cold_temperature", "borrow_dropped", "content_hidden", "semantic_codes", "unseen_negatives"}


def _owners(keys: list[str]) -> list[str]:
    """The content rankers whose config has every one of `keys` (borrow_dropped: sasrec-content only)."""
    return [name for name in configurable() if getattr(RANKERS[name]("cpu"), "use_content", False) and set(keys) <= _fields(name)]


def _fields(name: str) -> set[str]:
    """The settings of a configurable ranker: its config dataclass's fields."""
    return {f.name for f in dataclasses.fields(_config(RANKERS[name]("cpu")))}


def configurable() -> list[str]:
    return [name for name, make in RANKERS.items() if _config(make("cpu")) is not None]


def _config(model: Ranker) -> Any:
    """The config dataclass of a ranker, or None."""
    return model.config if isinstance(model, Configurable) and dataclasses.is_dataclass(model.config) else None


def load_settings(path: str | Path) -> dict[str, dict[str, Any]]:
    """A rankers TOML file: one table per ranker, e.g. `[sasrec]` with `patience = 3`; each key
    overrides a field of that ranker's config dataclass (ranker/sasrec.py SasrecConfig,
    ranker/sequence.py LstmAttnConfig, ranker/bprmf.py BprMfConfig). Checked here, before any
    training starts; every mistake of every table is reported in one `ConfigError`."""
    tables = read_toml(path)
    named = configurable()
    problems = []
    for name, values in tables.items():
        if not isinstance(values, dict):
            problems.append(
                f"{path}: `{name} = {values!r}` sits outside a table; settings go in a table named after their ranker, e.g. [sasrec] then {name} = {values!r}"
            )
        elif name not in named:
            problems.append(f"{path}: [{name}] is not a ranker with settings; use tables named {', '.join(f'[{n}]' for n in named)}")
        else:
            problems.extend(_table_problems(path, name, values, named))
    if problems:
        raise ConfigError("; ".join(problems))
    return tables


def _table_problems(path: str | Path, name: str, values: dict[str, Any], named: list[str]) -> list[str]:
    """What is wrong with the table `[name]` of a rankers TOML: [] when nothing."""
    model = RANKERS[name]("cpu")
    config = _config(model)
    fields = _fields(name)
    id_only = not getattr(model, "use_content", True)
    problems = []
    unused = sorted(set(values) & CONTENT_ONLY) if id_only else []
    if unused:  # accepted silently, they changed nothing but the settings' hash (a retrain; probe, 2026-12-03)
        problems.append(
            f"{path}: [{name}] has no content path: {', '.join(unused)} {'applies' if len(unused) == 1 else 'apply'} only to the content rankers "
            f"({', '.join(f'[{n}]' for n in _owners(unused))}); remove {'it' if len(unused) == 1 else 'them'} from [{name}]"
        )
    rest = {k: v for k, v in values.items() if k not in unused}
    try:  # unknown keys, wrong types, ranges: now
        override(config, rest, f"{path} [{name}]", offered=sorted(fields - CONTENT_ONLY) if id_only else None)
    except ConfigError as exc:
        problems.append(f"{exc}{_elsewhere(set(rest) - fields, named)}")
    return problems


def _elsewhere(unknown: set[str], named: list[str]) -> str:
    """ "; borrow_dropped is a setting of [sasrec-content]" for the unknown keys that another ranker has."""
    hints = []
    for key in sorted(unknown):
        owners = _owners([key]) if key in CONTENT_ONLY else [n for n in named if key in _fields(n)]
        if owners:
            hints.append(f"{key} is a setting of {', '.join(f'[{n}]' for n in owners)}")
    return "".join(f"; {hint}" for hint in hints)
