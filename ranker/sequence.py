"""`lstm-attn`, the paper's behaviour-driven sequence ranker, and its ablation `lstm-attn-no-content`.
(The GRU4Rec-style `id-sequence` of earlier versions is retired: `sasrec` is the id-only sequence peer.)

Each history step is the item's vector (content-first for lstm-attn: ranker/training.py; an id
embedding for the ablation) plus an embedding of what the user did (impression, watch, like,
comment, share), with the watch ratio appended; an LSTM runs over the steps, and each state also
carries its own item (a residual). A candidate item e attends over the states, with its own
attention weights (target-aware, kept for explanations):

    a_t(e) = softmax_t((W s_t) . e / sqrt(d)),    score(e) = (s_T + sum_t a_t(e) s_t) . e

so the score stays a dot product with the item vector, and full ranking is two matrix products
with every item, (B, T, d) x (d, n): no per-pair MLP. Trained with softmax cross-entropy: over
every item where the catalogue holds at most `full_softmax_max` items (the bundled sample), else
over the target and `negatives` shared negatives drawn each batch in proportion to training
frequency^0.75, with the log-Q correction (Bengio & Senecal 2008; Yi et al., RecSys 2019), which
keeps the target-aware attention affordable on 2 cores: (B, 1 + K, T) scores a step instead of
(B, n, T). Early stopping on validation NDCG@10 from full ranking, one line per epoch.

Heads: `engage` is the score above. Where the data's positives disagree on a behaviour (like,
comment on the sample), a head adds log P(behaviour | engaged), a logistic model on the pooled
history times the item, trained on the positive rows.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from ranker.base import minibatches
from ranker.data import Dataset, Queries, check_content
from ranker.training import (
    Dropout,
    EarlyStopping,
    FitCheckpoint,
    ItemTower,
    end_epoch,
    epoch_bar,
    mask_unscorable,
    not_classes,
    remap_items,
    saved_trained,
    semantic_codes_rules,
    unscorable,
    validation_ndcg,
    validation_rows,
)
from warehouse.errors import ReelsenseError
from warehouse.settings import check_ranges


@dataclass(frozen=True)
class LstmAttnConfig:
    dim: int = 64
    dropout: float = 0.2
    lr: float = 1e-3
    batch: int = 256
    max_epochs: int = 200
    patience: int = 10
    negatives: int = 1024  # shared sampled negatives per batch (catalogues above full_softmax_max)
    full_softmax_max: int = 4096
    valid_users: int = 10000
    # content-first items, as sasrec-content (ranker/sasrec.py): the settings that screening chose
    # there (benchmarks/content_first.py); lstm-attn had 0.5 / 0.5 before 2026-12-02.
    id_drop: float = 0.2  # share of items whose id correction is dropped whole in a training batch
    delta_ratio: float = 2.0  # rho: ||delta_i|| <= rho * ||W c_i||
    # As sasrec-content's: items without a trained delta borrow their K content neighbours' (20 @ 0.02,
    # chosen on sasrec-content, microlens-50k-history.md); on lstm-attn, since 2026-12-06, it took the
    # cold split's cold/warm from 0.13 to 0.22, and on the main split the natural cold targets' HR@10 from
    # 0.0085 to 0.0193 at the same weights (seed 0; README, "lstm-attn with borrowed corrections").
    cold_neighbours: int = 20
    cold_temperature: float = 0.02
    content_hidden: int = 0  # the content projection: 0 linear, N two layers through N units (as sasrec-content's)
    semantic_codes: int = 0  # K coarse and K x K fine content codes added to f(c), as sasrec-content's; 0: off
    unseen_negatives: bool = False  # as sasrec-content's: items training never sees are no classes unless true

    def __post_init__(self) -> None:
        check_ranges(
            self,
            positive=("dim", "lr", "batch", "max_epochs", "patience", "negatives", "valid_users", "delta_ratio", "cold_temperature"),
            shares=("dropout", "id_drop"),
            counts=("cold_neighbours", "full_softmax_max", "content_hidden", "semantic_codes"),  # full_softmax_max 0: always the sampled softmax
            rules=tuple(semantic_codes_rules(self.semantic_codes)),
        )


@dataclass(frozen=True)
class LossInputs:
    """What every training step of a fit reads (LstmAttn.loss_inputs): the behaviour labels of each
    row, the items that are not classes (padding, withheld), whether the softmax runs over every
    item, and the negatives' sampling distribution with its log-Q correction (log K q_i)."""

    labels: torch.Tensor
    excluded: torch.Tensor
    full: bool
    sampling: npt.NDArray[np.float64]
    log_q: torch.Tensor


class LstmAttnNet(nn.Module):
    def __init__(self, n_items: int, cfg: LstmAttnConfig, content_dim: int, n_heads: int) -> None:
        super().__init__()
        self.dim = cfg.dim
        self.items = ItemTower.for_config(n_items, content_dim, cfg)
        nn.init.normal_(self.items.ids.weight, std=0.1)
        self.event_emb = nn.Embedding(6, cfg.dim, padding_idx=0)
        self.step = nn.Linear(cfg.dim + 1, cfg.dim)
        self.lstm = nn.LSTM(cfg.dim, cfg.dim, batch_first=True)
        self.query = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.drop = Dropout(cfg.dropout)
        self.behaviours = nn.Linear(cfg.dim, n_heads - 1) if n_heads > 1 else None  # like / comment / ... given engagement

    def encode(
        self, vectors: torch.Tensor, hist_items: torch.Tensor, hist_events: torch.Tensor, hist_ratios: torch.Tensor, real: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """History (B, T) of rows of `vectors`, right-aligned -> states (B, T, d) and the mask of
        real steps (B, T); `real` is that mask when the rows are renumbered (0 is not padding)."""
        # (B, T, d), by index_select: its backward adds rows, about twice as fast as indexing's on a CPU
        items = vectors.index_select(0, hist_items.reshape(-1)).view(*hist_items.shape, vectors.shape[-1])
        x = torch.relu(self.step(torch.cat([items + self.event_emb(hist_events), hist_ratios.clamp(-1, 3).unsqueeze(-1)], -1)))
        states, _ = self.lstm(self.drop(x))
        return self.drop(states) + items, (hist_items > 0) if real is None else real

    def attention(self, states: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets (B, C, d) per row, or (C, d) shared by every row -> attention (B, T, C) and each
        state's match with each target, s_t . e (B, T, C). Laid out with T before C, so the softmax
        over the history runs on contiguous memory; an empty history attends to nothing."""
        columns = targets.transpose(-1, -2)  # (d, C) or (B, d, C)
        logits = (self.query(states) @ columns) / math.sqrt(self.dim)  # (B, T, C)
        weights = torch.softmax(logits.masked_fill(~mask[:, :, None], -1e9), dim=1) * mask[:, :, None]
        return weights, states @ columns

    def engage(self, states: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """score(e) = (s_T + sum_t a_t(e) s_t) . e -> scores (B, C), attention (B, T, C)."""
        weights, match = self.attention(states, mask, targets)
        last = (states[:, -1:] @ targets.transpose(-1, -2))[:, 0]  # (B, C)
        return last + (weights * match).sum(1), weights

    def engage_scores(self, states: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor, groups: int = 1) -> torch.Tensor:
        """engage's scores (B, C) alone, the attention run over each row's real steps only: rows
        sorted by how many steps their history has, cut into `groups`, each group's states trimmed
        to its longest history. engage's numbers to float32 rounding (padding's attention weight
        is exactly 0; sums run in another order), for a fraction of the (B, T, C) work: 18% of MicroLens-50K's history steps are real
        (benchmarks/lstm_attn_step.py)."""
        steps = states.shape[1]
        if len(states) == 0:
            return states.new_zeros(0, targets.shape[-2])
        span = torch.where(mask.any(1), steps - mask.int().argmax(1), 0)  # real steps, right-aligned
        order = torch.argsort(span, stable=True)
        sizes = [len(part) for part in order.tensor_split(min(groups, len(order))) if len(part)]
        ends = torch.as_tensor(np.cumsum(sizes) - 1, device=span.device)
        longest = span[order][ends].clamp(min=1).tolist()  # sorted: each group's last row has its longest history
        # One gather into sorted order, then views (split's backward is one concatenation).
        per_row = targets.index_select(0, order).split(sizes) if targets.dim() == 3 else [targets] * len(sizes)
        pieces = zip(states.index_select(0, order).split(sizes), mask[order].split(sizes), per_row)
        scores = [self.engage(s[:, steps - keep :], m[:, steps - keep :], t)[0] for (s, m, t), keep in zip(pieces, longest, strict=True)]
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order), device=order.device)
        return torch.cat(scores).index_select(0, inverse)

    def given_engaged(self, states: torch.Tensor, weights: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Logits (B, C, heads - 1) of each behaviour given that the user engages with the target (B, C, d)."""
        pooled = weights.transpose(1, 2) @ states  # (B, C, d)
        return self.behaviours(pooled * targets)


# Full ranking sorts its users by how many steps their history has and works in blocks of (users,
# items), each block's attention trimmed to its longest history (engage_scores): the (users, T,
# items) temporaries then stay small enough to be kept in cache and reused by the allocator (blocks
# of (256, 2048) over untrimmed histories made 42 MB temporaries, each freshly mapped and paged in,
# 2.5-3x slower on 2 cores). On MicroLens-50K's validation users (2 cores, benchmarks/
# lstm_attn_scoring.py) trimmed blocks of (128, 1024) took 1.1 s per 2,048 users against 2.8 s
# untrimmed at (64, 512). A GPU keeps the larger blocks it had (not measured there).
SCORE_BLOCK = {"cpu": (128, 1024), "gpu": (256, 2048)}
# A training batch's rows (and score_items' queries) are cut into this many groups by history length,
# each group's attention trimmed to its longest history: the (B, T, K) work of a MicroLens-50K batch
# falls to about a quarter (18% of its history steps are real), and a step from 87-99 to 44-60 ms
# (benchmarks/lstm_attn_step.py).
ATTENTION_GROUPS = 8


def _history(queries: Queries, rows: npt.NDArray[np.int64], device: str) -> tuple[torch.Tensor, ...]:
    return (
        torch.as_tensor(queries.hist_items[rows], device=device),
        torch.as_tensor(queries.hist_events[rows], device=device),
        torch.as_tensor(queries.hist_ratios[rows], device=device),
    )


class LstmAttn:
    probabilistic = False  # softmax scores, not log-odds
    version = ""

    def __init__(self, *, use_content: bool = True, config: LstmAttnConfig = LstmAttnConfig(), device: str = "cpu") -> None:
        self.name = "lstm-attn" if use_content else "lstm-attn-no-content"
        self.use_content, self.config, self.device = use_content, config, device
        self.net: LstmAttnNet | None = None
        self.heads: list[str] = []
        self.item_ids: list[str] = []
        self.trained: npt.NDArray[np.bool_] | None = None  # items a training row held (ranker/training.py unscorable)
        self.history: list[dict[str, float]] = []

    def _build(self, data: Dataset, heads: list[str] | None = None, seen: npt.NDArray[np.bool_] | None = None) -> None:
        content_dim = 0
        if self.use_content:
            check_content(data, self.name)
            content_dim = data.content.shape[1]
        self.heads = list(heads if heads is not None else data.behaviours)  # a loaded model keeps its trained heads
        self.item_ids = list(data.item_ids)
        self.trained = data.in_training.copy()  # a load replaces it with the checkpoint's
        self.net = LstmAttnNet(data.n_items, self.config, content_dim, len(self.heads)).to(self.device)
        self.net.items.set_items(data, data.in_training if seen is None else seen)  # seen: items with a trained delta

    def fit(self, data: Dataset, *, seed: int = 0, checkpoint: Path | None = None) -> None:
        """Train on `data`'s training rows; `checkpoint`: a file that keeps the fit's state after each
        epoch, from which a stopped fit continues (ranker/training.py FitCheckpoint)."""
        cfg = self.config
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        self.history = []
        self._build(data)
        self.net.items.fit_codes(seed)
        optimiser = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        train = np.flatnonzero(data.split == "train")
        valid = validation_rows(data, cfg.valid_users, seed)
        loss_inputs = self.loss_inputs(data)
        drop = torch.Generator().manual_seed(seed)
        stopper = EarlyStopping(cfg.patience)
        resume = FitCheckpoint.for_fit(checkpoint, self, data, seed)
        resume.track(self, self.net, optimiser, stopper, rng, drop, max_epochs=cfg.max_epochs)
        for epoch in range(resume.restore(), cfg.max_epochs):
            started = time.perf_counter()
            self.net.train()
            losses: list[float] = []
            bar = epoch_bar(minibatches(len(train), cfg.batch, rng), math.ceil(len(train) / cfg.batch), self.name, epoch)
            for rows in bar:
                idx = train[rows]
                keep = (torch.rand(data.n_items + 1, generator=drop) >= cfg.id_drop).to(self.device)
                loss = self.batch_loss(data, loss_inputs, idx, keep=keep, rng=rng)
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

    def loss_inputs(self, data: Dataset) -> LossInputs:
        labels = np.stack([data.labels[h] for h in self.heads[1:]], 1) if len(self.heads) > 1 else np.zeros((len(data.targets), 0), np.float32)
        excluded = torch.as_tensor(not_classes(data, content=self.use_content, unseen_negatives=self.config.unseen_negatives), device=self.device)
        excluded[0] = True
        sampling = np.where(excluded.cpu().numpy(), 0.0, np.maximum(data.train_counts, 1).astype(np.float64) ** 0.75)
        sampling /= sampling.sum()
        log_q = torch.as_tensor(np.log(np.maximum(sampling * self.config.negatives, 1e-30)), dtype=torch.float32, device=self.device)
        return LossInputs(torch.as_tensor(labels), excluded, data.n_items <= self.config.full_softmax_max, sampling, log_q)

    def batch_loss(self, data: Dataset, inputs: LossInputs, idx: npt.NDArray[np.int64], *, keep: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """The training loss of the rows `idx` (one step of fit): softmax cross-entropy over every
        item, or sampled (negatives drawn from `rng`), plus the behaviour heads' where there are
        several; `keep` (n_items + 1,) says which items keep their id correction this step."""
        cfg = self.config
        hist_items, hist_events, hist_ratios = _history(data.queries, idx, self.device)
        targets = torch.as_tensor(data.targets[idx], device=self.device)
        if inputs.full:
            vectors = self.net.items(keep if self.use_content else None)
            states, mask = self.net.encode(vectors, hist_items, hist_events, hist_ratios)
            scores = self.net.engage_scores(states, mask, vectors, ATTENTION_GROUPS)  # (B, n + 1)
            loss = nn.functional.cross_entropy(scores.masked_fill(inputs.excluded, float("-inf")), targets)
            rows = targets
        else:
            # Only the items this batch touches get a vector (positions renumbered), not all n.
            negatives = torch.as_tensor(rng.choice(len(inputs.sampling), cfg.negatives, p=inputs.sampling), device=self.device)
            used, position = torch.unique(torch.cat([hist_items.ravel(), targets, negatives, targets.new_zeros(1)]), return_inverse=True)
            where = position[: hist_items.numel()].view_as(hist_items)
            local = torch.full((data.n_items + 1,), -1, dtype=torch.long, device=self.device)
            local[used] = torch.arange(len(used), device=self.device)
            vectors = self.net.items(keep if self.use_content else None, rows=used)
            states, mask = self.net.encode(vectors, where, hist_events, hist_ratios, real=hist_items > 0)
            rows = local[targets]  # the targets' rows of `vectors`
            loss = self._sampled_loss(states, mask, vectors, rows, local[negatives], inputs.log_q[used])
        if len(self.heads) > 1:
            own = vectors.index_select(0, rows)[:, None]  # (B, 1, d)
            _, weights = self.net.engage(states, mask, own)
            given = self.net.given_engaged(states, weights, own)[:, 0]
            loss = loss + nn.functional.binary_cross_entropy_with_logits(given, inputs.labels[idx].to(self.device))
        return loss

    def _sampled_loss(
        self, states: torch.Tensor, mask: torch.Tensor, vectors: torch.Tensor, targets: torch.Tensor, negatives: npt.NDArray[np.int64], log_q: torch.Tensor
    ) -> torch.Tensor:
        """Softmax cross-entropy of each target against K shared negatives, log-Q corrected; a
        negative that is the row's own target is not a class for that row. Items are rows of
        `vectors` and `log_q`."""
        shared = torch.as_tensor(negatives, device=self.device)
        positive = self.net.engage_scores(states, mask, vectors.index_select(0, targets)[:, None], ATTENTION_GROUPS)  # (B, 1)
        negative = self.net.engage_scores(states, mask, vectors.index_select(0, shared), ATTENTION_GROUPS)  # (B, K)
        negative = (negative - log_q[shared]).masked_fill(shared[None, :] == targets[:, None], float("-inf"))
        logits = torch.cat([positive - log_q[targets][:, None], negative], 1)
        return nn.functional.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long, device=self.device))

    @torch.no_grad()
    def score_items(
        self, data: Dataset, queries: Queries, items: npt.NDArray[np.int64], head: str = "engage", content: npt.NDArray[np.float32] | None = None
    ) -> npt.NDArray[np.float32]:
        """Scores (Q, C) of each query's items (Q, C); a behaviour head adds log P(behaviour | engaged).
        `content` replaces the content vectors for this call (explanations)."""
        self.net.eval()
        vectors = self._vectors(content)
        out = []
        for rows in minibatches(len(queries), 1024):
            states, mask = self.net.encode(vectors, *_history(queries, rows, self.device))
            targets = vectors[torch.as_tensor(np.ascontiguousarray(items[rows]), device=self.device)]
            if head == "engage":
                scores = self.net.engage_scores(states, mask, targets, ATTENTION_GROUPS)
            else:
                scores, weights = self.net.engage(states, mask, targets)
                given = self.net.given_engaged(states, weights, targets)[..., self.heads.index(head) - 1]
                scores = scores + nn.functional.logsigmoid(given)
            out.append(scores.cpu().numpy())
        scores = np.concatenate(out) if out else np.zeros(items.shape, np.float32)
        return mask_unscorable(scores, items, unscorable(data, self.use_content, self.trained))

    @torch.no_grad()
    def score_all(self, data: Dataset, queries: Queries) -> npt.NDArray[np.float32]:
        self.net.eval()
        vectors = self._vectors(None)
        scores = np.empty((len(queries), data.n_items + 1), np.float32)
        users, items = SCORE_BLOCK["cpu" if self.device == "cpu" else "gpu"]
        by_length = np.argsort((queries.hist_items > 0).sum(1), kind="stable")  # blocks of like histories
        for block in minibatches(len(queries), users):
            rows = by_length[block]
            states, mask = self.net.encode(vectors, *_history(queries, rows, self.device))
            for start in range(0, data.n_items + 1, items):
                part = self.net.engage_scores(states, mask, vectors[start : start + items])
                scores[rows, start : start + part.shape[1]] = part.cpu().numpy()
        scores[:, unscorable(data, self.use_content, self.trained)] = -np.inf  # padding among them
        return scores

    @torch.no_grad()
    def attention(self, data: Dataset, queries: Queries, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Attention (Q, T) of each query's history when scoring its item (for explanations)."""
        self.net.eval()
        vectors = self._vectors(None)
        states, mask = self.net.encode(vectors, *_history(queries, np.arange(len(queries)), self.device))
        _, weights = self.net.engage(states, mask, vectors[torch.as_tensor(items, device=self.device)][:, None])
        return weights[:, :, 0].cpu().numpy()

    def _vectors(self, content: npt.NDArray[np.float32] | None) -> torch.Tensor:
        override = None if content is None or not self.use_content else torch.as_tensor(content, device=self.device)
        return self.net.items(content=override)

    def save(self, path: Path) -> None:
        torch.save(
            {
                "config": asdict(self.config),
                "heads": self.heads,
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
        correction, items it never saw (new since training) are content alone."""
        saved = torch.load(path, map_location="cpu", weights_only=False)
        if "config" not in saved:
            raise ReelsenseError(
                f"{path.parent.name} of {self.name} was saved by an older reelsense (BCE-trained lstm-attn); "
                f"retrain it with `reelsense train --models {self.name}`"
            )
        # A checkpoint from before borrowing keeps scoring cold items by content alone (as sasrec's).
        self.config, self.history = replace(LstmAttnConfig(), **{"cold_neighbours": 0, **saved["config"]}), saved["history"]
        state = saved["state"]
        seen = remap_items(state, "items.", saved["item_ids"], saved["has_delta"], data, name=self.name)
        self._build(data, saved["heads"], seen)
        self.trained = saved_trained(saved, data)
        self.net.load_state_dict(state)
        self.net.eval()
