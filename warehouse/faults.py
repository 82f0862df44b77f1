"""Fault injection for the crash tests: kill this process with SIGKILL at a named point of a write.

    REELSENSE_CRASH_AT=swap:after-add reelsense features      # dies between adding and removing files
    REELSENSE_CRASH_AT=append:after-write@3 reelsense extract  # dies after its third committed append

Points: `write:before-rename` (a temp file is written and fsynced, not yet renamed),
`append:after-write` (an append is committed), `swap:after-add` (a journaled replace has written
its new files and not yet removed the old ones). Unset, `crash_point` does nothing.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

CRASH_ENV = "REELSENSE_CRASH_AT"
_seen: Counter = Counter()


def crash_point(name: str) -> None:
    wanted = os.environ.get(CRASH_ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    if point != name:
        return
    _seen[name] += 1
    if _seen[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
