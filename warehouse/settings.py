"""Settings files: TOML tables read into frozen dataclasses, with one error for every mistake.

Each stage's settings are a frozen dataclass whose defaults are the documented values
(`ExtractConfig`, `SasrecConfig`, `LstmAttnConfig`, `AlignConfig`); a TOML file overrides some of
them. Unknown keys and values of the wrong type are a `ConfigError` naming the file, the key and
what is expected, never a silent default or a `TypeError` deep inside training.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from warehouse.errors import ConfigError, InvalidSettings

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; pass a TOML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc


def override(config: T, values: dict[str, Any], where: str, *, offered: list[str] | None = None) -> T:
    """`config` with the fields named in `values` replaced; `where` names them in errors. Every
    mistake in `values` is reported at once, in one `ConfigError` (unknown keys, wrong types,
    values out of range and rules across keys), so a file is fixed in one pass. `offered`: the
    keys an unknown-keys error lists (default: every field)."""
    defaults = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    problems = []
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        problems.append(f"unknown keys {unknown}; expected some of {sorted(defaults) if offered is None else sorted(offered)}")
    checked = {}
    for key, value in values.items():
        if key not in defaults:
            continue
        expected = type(defaults[key])
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) != (expected is bool) or not isinstance(value, expected):
            problems.append(f"{key} must be {expected.__name__} (default {defaults[key]!r}), got {value!r}")
            continue
        checked[key] = value
    wrong_type = [key for key in values if key in defaults and key not in checked]
    try:  # the values of the right type are checked too, whatever else is wrong
        result = dataclasses.replace(config, **checked)
    except InvalidSettings as exc:  # less a rule that would quote the default of a key given with a wrong type
        problems.extend(p for p in exc.problems if not any(re.search(rf"\b{key}\b", p) for key in wrong_type))
    except ConfigError as exc:
        problems.append(str(exc))
    if problems:
        raise ConfigError(f"{where}: {'; '.join(problems)}")
    return result


def check_ranges(
    config: Any,
    *,
    positive: tuple[str, ...] = (),
    shares: tuple[str, ...] = (),
    counts: tuple[str, ...] = (),
    non_negative: tuple[str, ...] = (),
    rules: tuple[str, ...] = (),
) -> None:
    """A config's values that no run can use are one `InvalidSettings` at construction, naming each:
    sizes and rates must be above 0; `counts` (where 0 turns a feature off) whole numbers of at
    least 0; `non_negative` (penalties) 0 or above; dropouts and shares must lie in [0, 1);
    `rules`: the config's own broken rules across keys, each a message starting with its key."""
    problems = []
    for name in positive:
        if not getattr(config, name) > 0:
            problems.append(f"{name} must be above 0, got {getattr(config, name)!r}")
    for name in counts:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.append(f"{name} must be a whole number of at least 0, got {value!r}")
    for name in non_negative:
        if not getattr(config, name) >= 0:
            problems.append(f"{name} must be 0 or above, got {getattr(config, name)!r}")
    for name in shares:
        if not 0 <= getattr(config, name) < 1:
            problems.append(f"{name} must be in [0, 1), got {getattr(config, name)!r}")
    problems.extend(rules)
    if problems:
        raise InvalidSettings(type(config).__name__, problems)
