"""What reaches the terminal: user errors as one line, never as Prefect tracebacks.

A `ReelsenseError` raised inside a flow or task (a missing checkpoint, a refused run id) is a user
error: the CLI prints it as `reelsense: error: ...` and exits 2. Prefect's own console handler would
first print the traceback of the failing task and flow and two "Finished in state Failed" lines;
`hide_user_error_tracebacks()` filters those records out of the console only. Prefect's API handler
(the run logs you see in the Prefect UI or `prefect flow-run logs`) still gets every record,
tracebacks included.
"""

from __future__ import annotations

import logging

from warehouse.errors import ReelsenseError


def _user_error_names() -> set[str]:
    names, todo = set(), [ReelsenseError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo += cls.__subclasses__()
    return names


class HideUserErrors(logging.Filter):
    """Drops console records about a failure whose cause is a ReelsenseError."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ReelsenseError):
            return False
        if record.name.startswith(("prefect.flow_runs", "prefect.task_runs")) and record.levelno >= logging.INFO:
            message = record.getMessage()
            if "encountered an exception" in message and any(f"{name}:" in message for name in _user_error_names()):
                return False
        return True


def hide_user_error_tracebacks() -> None:
    """Install HideUserErrors on Prefect's console handlers (configured when Prefect is imported)."""
    import prefect.main  # noqa: F401  (runs Prefect's logging setup, which creates the console handlers)
    from prefect.logging.handlers import PrefectConsoleHandler

    for logger in (logging.getLogger(), *(logging.getLogger(n) for n in ("prefect", "uvicorn", "fastapi"))):
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler) and not any(isinstance(f, HideUserErrors) for f in handler.filters):
                handler.addFilter(HideUserErrors())
