"""Settings files: TOML tables read into frozen dataclasses, with one error for every mistake.

Each stage's settings are a frozen dataclass whose defaults are the documented values
(`ExtractConfig`, `SasrecConfig`, `LstmAttnConfig`, `AlignConfig`); a TOML file overrides some of
them. Unknown keys and values of the wrong type are a `ConfigError` naming the file, the key and
what is expected, never a silent default or a `TypeError` deep inside training.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from warehouse.errors import ConfigError

T = TypeVar("T")


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc


def override(config: T, values: dict[str, Any], where: str) -> T:
    """`config` with the fields named in `values` replaced; `where` names them in errors."""
    defaults = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; expected some of {sorted(defaults)}")
    checked = {}
    for key, value in values.items():
        expected = type(defaults[key])
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) != (expected is bool) or not isinstance(value, expected):
            raise ConfigError(f"{where}.{key} must be {expected.__name__} (default {defaults[key]!r}), got {value!r}")
        checked[key] = value
    return dataclasses.replace(config, **checked)
