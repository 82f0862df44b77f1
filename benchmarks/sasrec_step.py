"""Time of one sasrec training step on a home (MicroLens-50K on 2 cores: where an epoch goes).

    .venv/bin/python benchmarks/sasrec_step.py --home HOME [--content] [--steps 25] [--rounds 4] [--profile]

Runs the training step of ranker/sasrec.py (encoder forward, softmax over every item, backward,
Adam) on the home's real batches with two implementations of the loss, in alternating rounds of
`--steps` steps so that both see the same machine load:
- `autograd`: logits = states @ items.T, columns masked, torch's cross_entropy (what sasrec ran
  until 2026-12-03);
- `fused`: ranker/sasrec.py's SoftmaxLoss, one logits buffer turned into the softmax and its
  gradient in place, kept from step to step.
Before timing it checks on one batch that the two give the same loss and gradients (to float32
rounding). Prints the median ms per step of each and the epoch time that implies, and the time of
torch's dropout against ranker/training.py's on one batch of states; `--profile`
adds torch.profiler's ops table of a fused round. Measured, never asserted in tests.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from step_timing import home_data, print_profile, step_parser  # benchmarks/, beside this script

from ranker.base import minibatches
from ranker.sasrec import Sasrec, SoftmaxLoss
from ranker.training import Dropout, next_item_sequences


def autograd_loss(user: torch.Tensor, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = user @ items.T
    logits[:, 0] = float("-inf")
    return torch.nn.functional.cross_entropy(logits, targets)


def main() -> None:
    parser = step_parser(__doc__)
    parser.add_argument("--content", action="store_true", help="sasrec-content (default: sasrec)")
    args = parser.parse_args()
    data = home_data(args.home)
    model = Sasrec(use_content=args.content)
    torch.manual_seed(0)
    model._build(data)
    cfg, net = model.config, model.net
    optimiser = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    inputs, labels = next_item_sequences(data)
    batches = list(minibatches(len(inputs), cfg.batch, np.random.default_rng(0)))
    drop = torch.Generator().manual_seed(0)
    print(f"{model.name}: {len(inputs)} sequences, {int((labels > 0).sum())} (prefix, next item) pairs, {len(batches)} steps an epoch, {data.n_items} items")

    def forward(idx: np.ndarray, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        keep = torch.rand(data.n_items + 1, generator=drop) >= cfg.id_drop if keep is None else keep
        vectors = net.items(keep if args.content else None)
        states = net.states(torch.as_tensor(inputs[idx]), vectors)
        targets = torch.as_tensor(labels[idx])
        pairs = targets > 0
        return states[pairs], vectors, targets[pairs]

    fused = SoftmaxLoss()
    net.eval()  # the same loss and gradients from both: no dropout in the check
    grads = []
    keep = torch.rand(data.n_items + 1, generator=drop) >= cfg.id_drop  # one draw for both (review)
    for loss_of in (autograd_loss, fused):
        net.zero_grad()
        loss = loss_of(*forward(batches[0], keep))
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in net.parameters() if p.grad is not None]))
    (a, ga), (b, gb) = grads
    worst = max(float((x - y).abs().max() / (x.abs().max() + 1e-12)) for x, y in zip(ga, gb))
    print(f"check on one batch: loss {a:.6f} (autograd) against {b:.6f} (fused), largest relative gradient difference {worst:.1e}")

    net.train()
    times: dict[str, list[float]] = {"autograd": [], "fused": []}
    position = 1
    for _ in range(args.rounds):
        for name, loss_of in (("autograd", autograd_loss), ("fused", fused)):
            for _ in range(args.steps):
                idx = batches[position % len(batches)]
                position += 1
                started = time.perf_counter()
                loss = loss_of(*forward(idx))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                times[name].append(time.perf_counter() - started)
    for name, values in times.items():
        ms = statistics.median(values) * 1000
        mean = statistics.mean(values) * 1000
        print(f"{name:9s} median {ms:6.1f} ms a step (mean {mean:6.1f}), about {ms * len(batches) / 1000:5.1f} s an epoch of training steps")
    x = torch.randn(cfg.batch, inputs.shape[1], cfg.dim)
    for name, drop_layer in (("torch's nn.Dropout (bernoulli_)", torch.nn.Dropout(cfg.dropout)), ("ranker.training.Dropout (rand)", Dropout(cfg.dropout))):
        drop_layer.train()
        started = time.perf_counter()
        for _ in range(200):
            drop_layer(x)
        print(f"{name}: {(time.perf_counter() - started) / 200 * 1000:.2f} ms for a {tuple(x.shape)} batch")
    if args.profile:

        def step(idx: np.ndarray) -> None:
            loss = fused(*forward(idx))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()

        print_profile(step, batches[position : position + args.steps])


if __name__ == "__main__":
    main()
