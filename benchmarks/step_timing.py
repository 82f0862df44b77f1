"""What the training-step benchmarks share (sasrec_step.py, lstm_attn_step.py): their arguments,
the home's data, and torch.profiler's ops table of some steps."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable

from ranker.data import MAX_HISTORY, Dataset, ensure_samples, load_dataset
from warehouse.store import Warehouse


def step_parser(doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--steps", type=int, default=25, help="steps a round (default 25)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds of each implementation (default 4)")
    parser.add_argument("--profile", action="store_true", help="then torch.profiler's ops table of one more round")
    return parser


def home_data(home: str) -> Dataset:
    """The rankers' data of `home`, its `samples` built first where they are stale."""
    wh = Warehouse(home)
    ensure_samples(wh, MAX_HISTORY)
    return load_dataset(wh, MAX_HISTORY)


def print_profile(step: Callable[..., None], batches: Iterable) -> None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches:
            step(batch)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
