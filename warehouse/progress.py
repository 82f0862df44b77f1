"""Progress bars on stderr that suit a terminal and a log file alike (every long loop of reelsense)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

LOG_INTERVAL = 30.0  # seconds between a bar's lines in a log file


class _Bar(tqdm):
    def set_postfix(self, ordered_dict: Any = None, refresh: bool = False, **kwargs: Any) -> None:
        """tqdm's, drawn with the bar's next update by default: a draw at once shows a stale count
        (tqdm counts an iterated bar lazily: "0/N" each step) and ignores the log's delay."""
        super().set_postfix(ordered_dict, refresh=refresh, **kwargs)


def progress(iterable: Iterable[Any] | None = None, **options: Any) -> tqdm:
    """tqdm on stderr. On a terminal it is redrawn up to ten times a second; into a log file (stderr
    not a terminal) it writes a line every 30 s, the first only after 30 s, so work shorter than that
    leaves no bar behind (probe: logs of megabytes, and a "0/N" line each step). `options` go to tqdm
    (desc, total, unit, leave, disable, ...). `set_postfix` draws with the next update, not at once."""
    tty = sys.stderr.isatty()
    every = 0.1 if tty else LOG_INTERVAL
    return _Bar(iterable, **{"file": sys.stderr, "mininterval": every, "delay": 0.0 if tty else every, **options})
