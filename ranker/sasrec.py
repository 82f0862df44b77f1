"""`sasrec` (the peer: item ids only) and `sasrec-content` (the same encoder over content-first items).

SASRec (Kang & McAuley 2018) with RecBole's defaults for the model
(recbole/properties/model/SASRec.yaml: 2 layers, 2 heads, hidden 64, inner 256, GELU, hidden and
attention dropout 0.5, layer-norm eps 1e-12, normal init std 0.02, loss CE) and the optimiser
(overall.yaml: Adam, learning rate 1e-3), trained as SASRec+ is (Klenitskiy & Vasilev, RecSys
2023; their src/configs/SASRec.yaml: batches of 128 users, patience 10 on validation NDCG@10 of
10,000 users): every step of a user's sequence predicts the next item with softmax cross-entropy
over ALL items, the output layer tied to the input item embeddings. The (prefix, next item) pairs
are exactly RecBole's prefix rows (ranker/training.py next_item_sequences; a test checks it), at
about one encoder pass per user instead of one per row (an epoch on MicroLens-50K took 170 s per row,
73-76 s per user on 2 cores; 50-56 s with the softmax in one buffer, SoftmaxLoss below).
Deviations, stated in results: the history window is the warehouse's MAX_HISTORY (20; RecBole
50, SASRec+ 50: 781 of 50,000 MicroLens-50K users have more than 20 items), and validation NDCG@10
ranks against all items with history unmasked.

`sasrec-content` is the same encoder over content-first items (ranker/training.py: a projection
of the frozen content vector plus a small, bounded id correction), so items never seen in training,
or added after it, are scored by their content without retraining.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ranker.base import minibatches
from ranker.data import Dataset, Queries, check_content
from ranker.training import (
    Dropout,
    EarlyStopping,
    FitCheckpoint,
    ItemTower,
    end_epoch,
    epoch_bar,
    next_item_sequences,
    not_classes,
    remap_items,
    saved_trained,
    semantic_codes_rules,
    unscorable,
    validation_ndcg,
    validation_rows,
)
from warehouse.settings import check_ranges


@dataclass(frozen=True)
class SasrecConfig:
    dim: int = 64
    layers: int = 2
    heads: int = 2
    inner: int = 256
    dropout: float = 0.5
    attn_dropout: float = 0.5
    init_std: float = 0.02
    lr: float = 1e-3
    batch: int = 128  # users per step, each with all its (prefix, next item) pairs (SASRec+; RecBole: 2048 prefix rows)
    max_epochs: int = 300
    patience: int = 10
    valid_users: int = 10000  # validation NDCG@10 on a seeded sample of the validation rows, each epoch
    # content-first items (sasrec-content only)
    # Chosen on validation NDCG@10 of MicroLens-50K after 3 epochs (seed 0): 0.0269 against 0.0166
    # for id_drop 0.5 / delta_ratio 0.5, and 0.0248 for sasrec (benchmarks/content_first.py).
    id_drop: float = 0.2  # share of items whose delta is dropped whole in a training batch
    delta_ratio: float = 2.0  # rho: ||delta_i|| <= rho * ||W c_i||
    # At inference an item without a trained delta (new, or withheld) borrows the deltas of its K
    # nearest trained items by content cosine, weighted softmax(cosine / temperature); 0: content alone.
    # Chosen on the cold-start split's validation rows (benchmarks/cold_neighbours.py; benchmarks/results/microlens-50k-history.md).
    cold_neighbours: int = 20
    cold_temperature: float = 0.02
    # In training, an item whose delta the batch drops borrows its neighbours' as a cold item will
    # (the same cold_neighbours and cold_temperature). Off: on the cold-start split it was no better
    # than training without it, paired (benchmarks/results/microlens-50k-history.md), and each epoch costs about a third more.
    borrow_dropped: bool = False
    # Items training never sees are not classes of the softmax (ranker/training.py not_classes);
    # true: they are negatives, as before 2026-12-06.
    unseen_negatives: bool = False
    # The content projection f: 0, linear (W c, the default); N, two layers through N hidden units.
    content_hidden: int = 0
    # Semantic ids (ranker/training.py ItemTower): K coarse and K x K fine content codes, each a
    # trained embedding added to f(c); 0: off (the default until measured better).
    semantic_codes: int = 0

    def __post_init__(self) -> None:
        rules = []
        if self.borrow_dropped and not self.cold_neighbours:
            rules.append(
                "borrow_dropped borrows from the cold_neighbours nearest items, and cold_neighbours is 0; set cold_neighbours above 0 or borrow_dropped = false"
            )
        rules.extend(semantic_codes_rules(self.semantic_codes))
        if isinstance(self.heads, int) and self.heads > 0 and self.dim % self.heads:
            rules.append(f"dim {self.dim} must be a multiple of heads {self.heads}")
        check_ranges(
            self,
            positive=("dim", "layers", "heads", "inner", "batch", "max_epochs", "patience", "valid_users", "lr", "init_std", "delta_ratio", "cold_temperature"),
            shares=("dropout", "attn_dropout", "id_drop"),
            counts=("cold_neighbours", "content_hidden", "semantic_codes"),
            rules=tuple(rules),
        )


class Block(nn.Module):
    """One SASRec layer as RecBole writes it: post-norm attention and a GELU feed-forward."""

    def __init__(self, cfg: SasrecConfig) -> None:
        super().__init__()
        self.heads, self.attn_dropout = cfg.heads, cfg.attn_dropout
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.out = nn.Linear(cfg.dim, cfg.dim)
        self.norm1 = nn.LayerNorm(cfg.dim, eps=1e-12)
        self.ff = nn.Sequential(nn.Linear(cfg.dim, cfg.inner), nn.GELU(), nn.Linear(cfg.inner, cfg.dim))
        self.norm2 = nn.LayerNorm(cfg.dim, eps=1e-12)
        self.drop = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in self.qkv(x).chunk(3, dim=-1))
        p = self.attn_dropout if self.training else 0.0
        att = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None], dropout_p=p)  # (B, H, T, dh)
        x = self.norm1(x + self.drop(self.out(att.transpose(1, 2).reshape(b, t, d))))
        return self.norm2(x + self.drop(self.ff(x)))


class SasrecNet(nn.Module):
    def __init__(self, n_items: int, max_len: int, cfg: SasrecConfig, content_dim: int = 0) -> None:
        super().__init__()
        self.items = ItemTower.for_config(n_items, content_dim, cfg)
        self.pos = nn.Embedding(max_len, cfg.dim)
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-12)
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.apply(lambda m: _init(m, cfg.init_std))

    def user(self, hist_items: torch.Tensor, item_vectors: torch.Tensor) -> torch.Tensor:
        """hist_items (B, T), right-aligned and left-padded with 0 -> the state after the latest step (B, d)."""
        return self.states(hist_items, item_vectors)[:, -1]

    def states(self, hist_items: torch.Tensor, item_vectors: torch.Tensor) -> torch.Tensor:
        """The state after every step (B, T, d); causal, so step j's state sees steps up to j only."""
        real = hist_items > 0
        positions = (real.long().cumsum(1) - 1).clamp(min=0)  # 0 = the oldest item kept, as RecBole counts
        x = self.drop(self.norm(item_vectors[hist_items] + self.pos(positions) * real.unsqueeze(-1)))
        t = hist_items.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        # Real queries see real keys up to themselves; a padding query sees only itself (no NaN rows).
        allowed = causal & (real.unsqueeze(1) | torch.eye(t, dtype=torch.bool, device=x.device))  # (B, T, T)
        for block in self.blocks:
            x = block(x, allowed)
        return x


def _init(module: nn.Module, std: float) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(0.0, std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        module.bias.data.zero_()
    if isinstance(module, nn.LayerNorm):
        module.weight.data.fill_(1.0)
        module.bias.data.zero_()


def softmax_loss(user: torch.Tensor, item_vectors: torch.Tensor, targets: torch.Tensor, excluded: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of each row's target against every item; column 0 (padding) and the
    `excluded` items (n + 1,) bool, withheld from training entirely, are not classes."""
    return SoftmaxLoss(excluded)(user, item_vectors, targets)


class SoftmaxLoss:
    """softmax_loss for a training loop: its (rows, n + 1) logits buffer is kept from one call to
    the next, so each step reuses memory already paged in (a fresh one cost 20-40 ms of page faults
    a step on MicroLens-50K). The buffer is lent to a call until that call's backward has run; a
    call made before then (a second loss term, accumulated steps) gets a buffer of its own. A
    target that is not a class (padding, withheld) is an error: its loss would be infinite."""

    def __init__(self, excluded: torch.Tensor | None = None) -> None:
        self.excluded = excluded
        self.buffer = torch.empty(0)
        self.lent = False  # the buffer holds a softmax whose backward has not run yet
        # Once per catalogue size: which columns are not classes, as a mask and as indices.
        self.not_class, self.masked = torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.long)

    def __call__(self, user: torch.Tensor, item_vectors: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        n = item_vectors.shape[0]
        if len(self.not_class) != n or self.not_class.device != user.device:
            excluded = torch.zeros(n, dtype=torch.bool, device=user.device) if self.excluded is None else self.excluded.to(user.device).clone()
            excluded[0] = True  # padding
            self.not_class, self.masked = excluded, torch.nonzero(excluded).squeeze(1)
        if len(targets) and bool(self.not_class[targets].any()):
            raise ValueError("softmax_loss: a target is padding (0) or a withheld item, which are not classes; drop those rows first")
        size = len(user) * n
        tracked = torch.is_grad_enabled() and (user.requires_grad or item_vectors.requires_grad)
        if self.lent or not tracked:  # never overwrite a softmax a pending backward still reads
            buffer = torch.empty(size, dtype=user.dtype, device=user.device)
        else:
            if self.buffer.numel() < size or self.buffer.dtype != user.dtype or self.buffer.device != user.device:
                self.buffer = torch.empty(size, dtype=user.dtype, device=user.device)
            buffer, self.lent = self.buffer, True
        return _FullSoftmax.apply(user, item_vectors, targets, self.masked, buffer[:size].view(len(user), n), self if buffer is self.buffer else None)


class _FullSoftmax(torch.autograd.Function):
    """The loss in one (rows, n + 1) buffer: forward writes the logits into it and turns them into
    the softmax in place; backward turns the same buffer into (softmax - one-hot) / rows in place and
    multiplies it out. Autograd's mm, log_softmax and nll_loss allocate, fill and copy about five
    buffers of that size a step (profile, MicroLens-50K: 124 ms a sasrec step with them, 85 ms in
    one fresh buffer, less again reusing it; benchmarks/sasrec_step.py). Differentiable once."""

    @staticmethod
    def forward(
        ctx: Any, user: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor, buffer: torch.Tensor, lender: SoftmaxLoss | None
    ) -> torch.Tensor:
        probs = torch.mm(user, items.T, out=buffer)  # (R, n + 1) logits
        probs.index_fill_(1, masked, float("-inf"))  # padding and withheld items: no class
        picked = probs.gather(1, targets[:, None]).squeeze(1)
        top = probs.max(dim=1, keepdim=True).values
        probs.sub_(top).exp_()
        total = probs.sum(dim=1, keepdim=True)
        probs.div_(total)
        ctx.probs, ctx.lender = probs, lender  # neither an input nor an output: backward is its only reader
        ctx.save_for_backward(user, items, targets)
        return (top.squeeze(1) + total.log().squeeze(1) - picked).mean()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if ctx.probs is None:
            raise RuntimeError("softmax_loss: backward ran twice through one graph (retain_graph); its buffer is used up by the first")
        user, items, targets = ctx.saved_tensors
        g, ctx.probs = ctx.probs, None
        g[torch.arange(len(targets), device=g.device), targets] -= 1.0
        g.mul_(grad / len(targets))
        grads = g @ items, g.T @ user
        if ctx.lender is not None:
            ctx.lender.lent = False  # the buffer may be written again
        return *grads, None, None, None, None


class Sasrec:
    probabilistic = False
    version = ""

    def __init__(self, *, use_content: bool = False, config: SasrecConfig = SasrecConfig(), device: str = "cpu") -> None:
        self.name = "sasrec-content" if use_content else "sasrec"
        self.use_content, self.config, self.device = use_content, config, device
        self.net: SasrecNet | None = None
        self.history: list[dict[str, float]] = []
        self.heads = ["engage"]
        self.item_ids: list[str] = []
        self.trained: npt.NDArray[np.bool_] | None = None  # items a training row held (ranker/training.py unscorable)

    def _build(self, data: Dataset, seen: npt.NDArray[np.bool_] | None = None) -> None:
        """The net for `data`'s items; `seen`: the items with a trained delta (default: those training sees)."""
        content_dim = 0
        if self.use_content:
            check_content(data, self.name)
            content_dim = data.content.shape[1]
        self.item_ids = list(data.item_ids)
        self.trained = data.in_training.copy()  # a load replaces it with the checkpoint's
        self.net = SasrecNet(data.n_items, data.queries.hist_items.shape[1], self.config, content_dim).to(self.device)
        self.net.items.set_items(data, data.in_training if seen is None else seen)

    def fit(self, data: Dataset, *, seed: int = 0, checkpoint: Path | None = None) -> None:
        """Train on `data`'s training rows; `checkpoint`: a file that keeps the fit's state after each
        epoch, from which a stopped fit continues (ranker/training.py FitCheckpoint)."""
        cfg = self.config
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        self.history = []
        self._build(data)
        self.net.items.fit_codes(seed)
        self.net.items.prepare_training(data)
        optimiser = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        # Every labelled step of a sequence predicts its training row's target: exactly the pairs of
        # RecBole's prefix rows, at about one encoder pass per user (ranker/training.py next_item_sequences).
        inputs, labels = next_item_sequences(data)  # one sequence per user, plus rows that fit no user's sequence
        valid = validation_rows(data, cfg.valid_users, seed)
        stopper = EarlyStopping(cfg.patience)
        drop_rng = torch.Generator().manual_seed(seed)
        excluded = not_classes(data, content=self.use_content, unseen_negatives=cfg.unseen_negatives)
        loss_of = SoftmaxLoss(torch.as_tensor(excluded, device=self.device) if excluded.any() else None)
        resume = FitCheckpoint.for_fit(checkpoint, self, data, seed)
        resume.track(self, self.net, optimiser, stopper, rng, drop_rng, max_epochs=cfg.max_epochs)
        for epoch in range(resume.restore(), cfg.max_epochs):
            started = time.perf_counter()
            self.net.train()
            losses = []
            steps = math.ceil(len(inputs) / cfg.batch)
            bar = epoch_bar(minibatches(len(inputs), cfg.batch, rng), steps, self.name, epoch)
            for idx in bar:
                keep = (torch.rand(data.n_items + 1, generator=drop_rng) >= cfg.id_drop).to(self.device)
                vectors = self.net.items(keep if self.use_content else None)
                states = self.net.states(torch.as_tensor(inputs[idx], device=self.device), vectors)
                targets = torch.as_tensor(labels[idx], device=self.device)
                pairs = targets > 0
                loss = loss_of(states[pairs], vectors, targets[pairs])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                losses.append(loss.item())
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
            score = validation_ndcg(self, data, valid) if len(valid) else -float(np.mean(losses))
            end_epoch(self, epoch, losses, score, started)
            stop = stopper.should_stop(score, self.net)
            resume.save(stop)
            if stop:
                break
        stopper.restore(self.net)

    @torch.no_grad()
    def user_vectors(self, queries: Queries) -> tuple[torch.Tensor, torch.Tensor]:
        self.net.eval()
        vectors = self.net.items()
        users = [self.net.user(torch.as_tensor(queries.hist_items[rows], device=self.device), vectors) for rows in minibatches(len(queries), 4096)]
        return (torch.cat(users) if users else torch.zeros(0, vectors.shape[1], device=self.device)), vectors

    @torch.no_grad()
    def score_all(self, data: Dataset, queries: Queries) -> npt.NDArray[np.float32]:
        users, vectors = self.user_vectors(queries)
        scores = (users @ vectors.T).cpu().numpy()
        scores[:, unscorable(data, self.use_content, self.trained)] = -np.inf  # padding among them
        return scores

    def score_items(self, data: Dataset, queries: Queries, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return np.take_along_axis(self.score_all(data, queries), items, axis=1)

    def save(self, path: Path) -> None:
        torch.save(
            {
                "config": asdict(self.config),
                "item_ids": self.item_ids,
                "trained": None if self.trained is None else torch.as_tensor(self.trained),
                "state": self.net.state_dict(),
                "has_delta": self.net.items.has_delta.cpu(),
                "history": self.history,
            },
            path,
        )

    def load(self, path: Path, data: Dataset) -> None:
        """Load a checkpoint onto `data`'s item vocabulary: ids it was trained on keep their
        delta, items it never saw (new since training) are content alone."""
        saved = torch.load(path, map_location="cpu", weights_only=False)
        # A checkpoint from before cold items borrowed corrections keeps scoring them by content alone.
        self.config, self.history = SasrecConfig(**{"cold_neighbours": 0, **saved["config"]}), saved["history"]
        state = saved["state"]
        seen = remap_items(state, "items.", saved["item_ids"], saved["has_delta"], data, name=self.name)
        self._build(data, seen)
        self.trained = saved_trained(saved, data)
        self.net.load_state_dict(state)
        self.net.eval()
