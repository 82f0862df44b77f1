"""Time of lstm-attn's full ranking (score_all: every user against every item, with target
attention), as its validation each epoch and its evaluation run it.

    .venv/bin/python benchmarks/lstm_attn_scoring.py --home HOME [--users 2048] [--rounds 2]

Scores the first `--users` validation rows of the home against all items with an untrained
lstm-attn (the arithmetic does not depend on the weights), in alternating rounds:
- `engage`: LstmAttnNet.engage, the autograd-ready path (what score_all ran until 2026-12-03);
- `in place`: LstmAttnNet.engage_scores, the same arithmetic in place in two buffers.
Checks that both give the same scores, then prints seconds per round and what 10,000 validation
users (sasrec+'s setting, an epoch's validation) would take. Measured, never asserted in tests.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from ranker.base import minibatches
from ranker.data import MAX_HISTORY, ensure_samples, load_dataset
from ranker.sequence import LstmAttn, _history
from warehouse.store import Warehouse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--users", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    wh = Warehouse(args.home)
    ensure_samples(wh, MAX_HISTORY)
    data = load_dataset(wh, MAX_HISTORY)
    model = LstmAttn(use_content=True)
    torch.manual_seed(0)
    model._build(data)
    net = model.net.eval()
    queries = data.queries.take(np.flatnonzero(data.split == "valid")[: args.users])

    @torch.no_grad()
    def score_all(in_place: bool) -> np.ndarray:
        vectors = net.items()
        scores = np.empty((len(queries), data.n_items + 1), np.float32)
        for rows in minibatches(len(queries), 256):
            states, mask = net.encode(vectors, *_history(queries, rows, "cpu"))
            for start in range(0, data.n_items + 1, 2048):
                block = vectors[start : start + 2048]
                part = net.engage_scores(states, mask, block) if in_place else net.engage(states, mask, block)[0]
                scores[rows, start : start + part.shape[1]] = part.numpy()
        return scores

    a, b = score_all(False), score_all(True)
    gap = float(np.abs(a - b).max())
    print(f"{len(queries)} users x {data.n_items} items: largest score difference {gap:.1e} (scores up to {float(np.abs(a).max()):.2f})")
    if gap > 1e-4 * max(1.0, float(np.abs(a).max())):
        raise SystemExit("the two paths disagree: not timed")
    times: dict[str, list[float]] = {"engage": [], "in place": []}
    for _ in range(args.rounds):
        for name, in_place in (("engage", False), ("in place", True)):
            started = time.perf_counter()
            score_all(in_place)
            times[name].append(time.perf_counter() - started)
    for name, values in times.items():
        seconds = statistics.median(values)
        print(f"{name:8s} {seconds:6.1f} s ({', '.join(f'{v:.1f}' for v in values)}), about {seconds * 10000 / len(queries):5.0f} s for 10,000 users")


if __name__ == "__main__":
    main()
