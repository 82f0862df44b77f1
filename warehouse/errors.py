"""The reelsense error family.

Every error a user can cause derives from `ReelsenseError`; the CLI prints its message on one line
and exits with status 2. Messages say what was found, what was expected and what to do.
"""


class ReelsenseError(Exception):
    """Root of every error reelsense raises on purpose."""


class SchemaError(ReelsenseError):
    """A file or table does not have the columns or types a stage expects."""


class InputFileError(ReelsenseError):
    """An input file is missing or unreadable as a whole."""


class WarehouseNotFound(ReelsenseError):
    """A command needs a warehouse that has not been created yet."""


class QueryError(ReelsenseError):
    """A SQL query given by the user failed."""


class MediaDecodeError(ReelsenseError):
    """A video or audio file could not be decoded."""


class EncoderInputError(ReelsenseError):
    """An item's decoded media an encoder cannot take (wrong shape or type, empty, not finite):
    the item is quarantined, the rest of its batch goes on."""


class ModelNotFound(ReelsenseError):
    """A model checkpoint or weight file is missing."""


class ConfigError(ReelsenseError):
    """A configuration file or option is invalid."""


class InvalidSettings(ConfigError):
    """A settings dataclass's values that no run can use, every one of them: `problems`, each
    "key must be ..., got ..." (a range, or a rule across keys); `warehouse.settings.override`
    names the file and table they came from instead of the dataclass `kind`."""

    def __init__(self, kind: str, problems: list[str] | tuple[str, ...] = ()) -> None:
        self.kind, self.problems = kind, list(problems)
        super().__init__("; ".join(f"{kind}.{problem}" for problem in self.problems))

    def __reduce__(self) -> tuple[type, tuple[str, list[str]]]:  # picklable across processes (Prefect, Dask)
        return type(self), (self.kind, self.problems)
