"""Time of one lstm-attn training step on a home (MicroLens-50K on 2 cores: where an epoch goes).

    .venv/bin/python benchmarks/lstm_attn_step.py --home HOME [--steps 25] [--rounds 4] [--profile]

Runs the training step of ranker/sequence.py (`LstmAttn.batch_loss`: item tower, LSTM, target
attention over the target and the shared negatives, backward, Adam) on the home's real batches with
the target attention run two ways, in alternating rounds of `--steps` steps so that both see the
same machine load:
- `untrimmed`: over all T history steps of every row, padding included (`LstmAttnNet.engage`,
  what lstm-attn ran until 2026-12-05);
- `trimmed`: rows grouped by history length, each group's attention over its real steps only
  (`LstmAttnNet.engage_scores`, ATTENTION_GROUPS groups).
Before timing it checks on one batch that the two give the same loss and gradients (to float32
rounding). Prints the share of history steps that are real, the median ms per step of each and the
epoch time that implies; `--profile` adds torch.profiler's ops table of a trimmed round. Measured,
never asserted in tests.
"""

from __future__ import annotations

import math
import statistics
import time
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
from step_timing import home_data, print_profile, step_parser  # benchmarks/, beside this script

from ranker.base import minibatches
from ranker.sequence import ATTENTION_GROUPS, LstmAttn, LstmAttnNet


@contextmanager
def untrimmed():
    """engage_scores as engage over every history step (the attention before trimming)."""
    trimmed = LstmAttnNet.engage_scores
    LstmAttnNet.engage_scores = lambda net, states, mask, targets, groups=1: net.engage(states, mask, targets)[0]
    try:
        yield
    finally:
        LstmAttnNet.engage_scores = trimmed


def main() -> None:
    args = step_parser(__doc__).parse_args()
    data = home_data(args.home)
    model = LstmAttn()
    torch.manual_seed(0)
    model._build(data)
    cfg, net = model.config, model.net
    optimiser = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    inputs = model.loss_inputs(data)
    train = np.flatnonzero(data.split == "train")
    batches = list(minibatches(len(train), cfg.batch, np.random.default_rng(0)))
    drop = torch.Generator().manual_seed(0)
    real = float((data.queries.hist_items[train] > 0).mean())
    softmax = "every item" if inputs.full else f"the target and {cfg.negatives} shared negatives"
    print(f"{model.name}: {len(train)} training rows, {len(batches)} steps an epoch, softmax over {softmax}")
    print(f"{real:.1%} of history steps are real; trimmed: {ATTENTION_GROUPS} groups a batch")

    def loss_of(idx: np.ndarray, rng: np.random.Generator, keep: torch.Tensor | None = None) -> torch.Tensor:
        keep = torch.rand(data.n_items + 1, generator=drop) >= cfg.id_drop if keep is None else keep
        return model.batch_loss(data, inputs, train[idx], keep=keep, rng=rng)

    net.eval()  # the same loss and gradients from both: no dropout in the check
    keep = torch.rand(data.n_items + 1, generator=drop) >= cfg.id_drop
    grads = []
    for way in ("untrimmed", "trimmed"):
        net.zero_grad()
        with untrimmed() if way == "untrimmed" else nullcontext():
            loss = loss_of(batches[0], np.random.default_rng(1), keep)  # the same negatives for both
            loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in net.parameters() if p.grad is not None]))
    (a, ga), (b, gb) = grads
    worst = max(float((x - y).abs().max() / (x.abs().max() + 1e-12)) for x, y in zip(ga, gb, strict=True))
    print(f"check on one batch: loss {a:.6f} (untrimmed) against {b:.6f} (trimmed), largest relative gradient difference {worst:.1e}")

    net.train()
    rng = np.random.default_rng(2)
    times: dict[str, list[float]] = {"untrimmed": [], "trimmed": []}
    position = 1

    def step(idx: np.ndarray) -> None:
        loss = loss_of(idx, rng)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    for _ in range(args.rounds):
        for way in times:
            with untrimmed() if way == "untrimmed" else nullcontext():
                for _ in range(args.steps):
                    started = time.perf_counter()
                    step(batches[position % len(batches)])
                    times[way].append(time.perf_counter() - started)
                    position += 1
    for way, values in times.items():
        ms = statistics.median(values) * 1000
        mean = statistics.mean(values) * 1000
        epoch = ms * math.ceil(len(train) / cfg.batch) / 1000
        print(f"{way:9s} median {ms:6.1f} ms a step (mean {mean:6.1f}), about {epoch:5.1f} s an epoch of training steps")
    if args.profile:
        print_profile(step, batches[position : position + args.steps])


if __name__ == "__main__":
    main()
