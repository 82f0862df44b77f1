"""Run one benchmark case in a fresh process, so its peak RSS and its imports are its own."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from queue import Empty
from typing import Any


def run_isolated(target: Callable[..., None], *args: Any) -> Any:
    """Call `target(*args, queue)` in a spawned process and return what it put on the queue.
    The result is read before joining (a child blocks on exit until its queue is drained)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    while True:
        try:
            result = queue.get(timeout=1.0)
            break
        except Empty:
            if not process.is_alive():
                raise SystemExit(f"{getattr(target, '__name__', target)}{args}: exited with {process.exitcode} before reporting") from None
    process.join()
    return result
