"""Time of lstm-attn's full ranking (validation, evaluation) by block size, on a home.

    .venv/bin/python benchmarks/lstm_attn_scoring.py --home HOME [--users 2048] [--rounds 3]
        [--blocks 256x2048,64x512] [--checkpoint PATH]

`LstmAttn.score_all` ranks every item for each user in blocks of (users, items): the target-aware
attention of a block makes a few (users, 20, items) temporaries. This times score_all over the
first `--users` validation rows with each block size in `--blocks`, in alternating rounds so that
every size sees the same machine load, and checks that every size gives the same scores (the same
arithmetic: exactly here, to float32 rounding where a BLAS rounds blocks apart). The net is freshly
initialised (seed 0) unless `--checkpoint` names a saved lstm-attn: the time does not depend on the weights. Prints the
median seconds of each and what that implies for 10,000 validation users (one epoch's early
stopping on MicroLens-50K). Measured, never asserted in tests.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ranker import sequence
from ranker.data import MAX_HISTORY, ensure_samples, load_dataset
from ranker.sequence import LstmAttn
from warehouse.store import Warehouse


def blocks(text: str) -> list[tuple[int, int]]:
    try:
        out = [tuple(int(n) for n in part.split("x")) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--blocks takes USERSxITEMS[,USERSxITEMS...], e.g. 256x2048,64x512; got {text!r}") from None
    if any(len(b) != 2 or min(b) < 1 for b in out):
        raise argparse.ArgumentTypeError(f"--blocks takes USERSxITEMS with both at least 1, e.g. 64x512; got {text!r}")
    return out  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--users", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--blocks", type=blocks, default=blocks("256x2048,64x512"))
    parser.add_argument("--checkpoint", type=Path, help="a saved lstm-attn (default: a freshly initialised net)")
    args = parser.parse_args()
    wh = Warehouse(args.home)
    ensure_samples(wh, MAX_HISTORY)
    data = load_dataset(wh, MAX_HISTORY)
    model = LstmAttn()
    if args.checkpoint:
        model.load(args.checkpoint, data)
    else:
        torch.manual_seed(0)
        model._build(data)
    queries = data.queries.take(np.flatnonzero(data.split == "valid")[: args.users])
    print(f"{len(queries)} users against {data.n_items} items, {torch.get_num_threads()} threads")
    times: dict[tuple[int, int], list[float]] = {b: [] for b in args.blocks}
    first: np.ndarray | None = None
    differ: dict[tuple[int, int], float] = {}
    kept = dict(sequence.SCORE_BLOCK)
    try:
        for _ in range(args.rounds):
            for block in args.blocks:
                sequence.SCORE_BLOCK["cpu"] = sequence.SCORE_BLOCK["gpu"] = block
                started = time.perf_counter()
                scores = model.score_all(data, queries)
                times[block].append(time.perf_counter() - started)
                if first is None:
                    first = scores
                elif block != args.blocks[0]:  # the same arithmetic; another BLAS may round a block's products differently
                    finite = np.isfinite(first)
                    if not np.array_equal(finite, np.isfinite(scores)):
                        raise SystemExit(f"blocks {block} left other items unscorable (-inf) than {args.blocks[0]}")
                    if not np.allclose(scores[finite], first[finite], rtol=1e-5, atol=1e-6):
                        raise SystemExit(f"blocks {block} gave other scores than {args.blocks[0]}: largest difference {np.nanmax(np.abs(scores - first))}")
                    differ[block] = float(np.abs(scores[finite] - first[finite]).max())
    finally:
        sequence.SCORE_BLOCK.update(kept)
    for (users, items), values in times.items():
        median = statistics.median(values)
        each = ", ".join(f"{v:.2f}" for v in values)
        gap = f", largest score difference to the first {differ[users, items]:.1e}" if (users, items) in differ else ""
        per_10k = median * 10_000 / len(queries)
        print(f"blocks of {users:4d} users x {items:5d} items: median {median:6.2f} s ({each}), about {per_10k:5.1f} s for 10,000 users{gap}")


if __name__ == "__main__":
    main()
