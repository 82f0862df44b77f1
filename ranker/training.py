"""What the trainable sequence rankers (`sasrec*`, `lstm-attn*`) share: the content-first item
tower, early stopping on validation NDCG@10 from full ranking, the per-epoch progress, the state
kept after every epoch so that a stopped fit continues where it stopped (`FitCheckpoint`; bpr-mf
uses it too), and loading item parameters by item id (so items added after training are scored
without retraining).

Content-first items (after Pembek et al., RecSys 2025): item i is
    e_i = W c_i + delta_i,   ||delta_i|| <= rho * ||W c_i||,
(with `semantic_codes` K > 0, off by default, W c_i also gets two trained code embeddings, see ItemTower)
with c_i the item's frozen content vector (fused, else text; looked up from the warehouse at load
time, never stored in a checkpoint), W a learned projection, and delta_i a trainable id correction
kept small by the norm bound. In each training batch delta is dropped whole for a seeded share of
items, so the content path also learns from positives. Items never seen in training have no
delta of their own; at inference each borrows a weighted mean of the (bounded) deltas of the
`cold_neighbours` items with a trained delta nearest it by content cosine, weights softmax(cosine /
`cold_temperature`), so a new item gets the collaborative correction of items like it, near
duplicates most (0 neighbours: W c_i alone). Gradient steps do not borrow by default (a dropped
item is then W c_i alone); with `borrow_dropped` (sasrec-content, off by default: measured no
better, benchmarks/results/microlens-50k-history.md) a trained item whose delta a batch drops borrows its trained neighbours'
corrections (itself excluded) as a cold item will at inference. Validation scores the model as it
will serve, with borrowing, so early stopping may pick another epoch. The weights sum
to 1 however far the nearest items are: an item unlike every trained one still borrows in full (a
known limit). An explanation that replaces the content keeps the borrowed correction, as a trained
item keeps its own delta (the neighbours are those of the real content); its semantic codes, where
on, are those of the replacing content. Without content (the
id-only rankers) e_i is an id embedding.
"""

from __future__ import annotations

import hashlib
import io
import math
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from ranker.data import Dataset, MissingContent
from ranker.metrics import ndcg, target_ranks
from ranker.names import rerankers_of
from warehouse import store
from warehouse.errors import ConfigError, ReelsenseError
from warehouse.progress import progress

SEMANTIC_CODES_MAX = 1024  # the fine codes are a K x K table: 1,048,576 rows at most


def semantic_codes_rules(value: Any) -> list[str]:
    """The configs' rule for `semantic_codes` beyond being a count: a K x K table that fits."""
    if isinstance(value, int) and not isinstance(value, bool) and value > SEMANTIC_CODES_MAX:
        return [
            f"semantic_codes must be at most {SEMANTIC_CODES_MAX} (its fine codes are a K x K table), got {value}; "
            "set it lower (64 was measured; 0 turns the codes off)"
        ]
    return []


def not_classes(data: Dataset, *, content: bool, unseen_negatives: bool = False) -> npt.NDArray[np.bool_]:
    """The items (n_items + 1,) that a training softmax leaves out, full or sampled: those withheld
    from training entirely (the cold-start split) and, for a content-first model unless
    `unseen_negatives`, every item training never sees (no training row holds it: no delta of its
    own). As negatives only, such items teach the content projection to score their content low: on
    a home that retrains after new uploads, the uploads still without engagement fell from 247 of
    4,020 top-20 places (scored without retraining) to none after the retrain (probe, 2026-12-06). An
    id-only model keeps them as classes: it has nothing but training to place them by."""
    if len(data.in_training) != data.n_items + 1:
        raise ValueError(f"not_classes: in_training holds {len(data.in_training)} items, not n_items + 1 = {data.n_items + 1} (load_dataset sets it)")
    excluded = data.withheld.copy() if len(data.withheld) else np.zeros(data.n_items + 1, bool)
    if content and not unseen_negatives:
        excluded |= ~data.in_training
    excluded[0] = False  # padding: the losses leave it out themselves
    return excluded


def unscorable(data: Dataset, content: bool, trained: npt.NDArray[np.bool_] | None) -> npt.NDArray[np.bool_]:
    """The items (n_items + 1,) a ranker has nothing to score with, ranked below every other item.
    A content-first model: those without content. An id-only model: those no training row holds
    (`trained`, the model's record of `data.in_training` at its fit; None for a checkpoint saved
    before it kept one, which scores every item as it did then). Such an item was at most a
    negative in training, so its place says nothing about any user, yet it could outscore most
    items (a demo home's item with one event, a user's test target, was in 35 of 201 users' sasrec
    top-10s; none since 2026-12-06). Padding (0) is always unscorable."""
    if content:
        out = ~np.asarray(data.scorable, bool)
    elif trained is None:
        out = np.zeros(data.n_items + 1, bool)
    else:
        out = ~np.asarray(trained, bool)
    out = out.copy()
    out[0] = True
    return out


def mask_unscorable(scores: npt.NDArray[np.float32], items: npt.NDArray[np.int64], unscorable_items: npt.NDArray[np.bool_]) -> npt.NDArray[np.float32]:
    """`scores` (Q, C) of `items` (Q, C), with the unscorable items' at -inf."""
    return np.where(unscorable_items[items], -np.inf, scores).astype(np.float32)


def saved_trained(saved: dict[str, Any], data: Dataset) -> npt.NDArray[np.bool_] | None:
    """A checkpoint's `trained` record on `data`'s vocabulary, by item id (an item new since
    training: False); None where the checkpoint has none."""
    if saved.get("trained") is None:
        return None
    return by_item_id(saved["item_ids"], torch.as_tensor(saved["trained"]), data)


def items_for_codes(data: Dataset) -> int:
    """How many items a codebook of semantic codes is built from: those with content that training sees."""
    return int((data.in_training & (np.abs(data.content).sum(axis=1) > 0)).sum())


def too_many_codes(codes: int, items: int, where: str) -> ConfigError:
    return ConfigError(
        f"{where} {codes} is more than the {items} items with content that training sees, so some codes would have no item; "
        f"set it to at most {items} (0 turns the codes off)"
    )


class ItemTower(nn.Module):
    """Item vectors (n_items + 1, d): id embeddings (content_dim 0) or f(c) + bounded delta, where f is
    a linear projection W c, or with `content_hidden` > 0 two layers (W2 GELU(W1 c)) of that width;
    with `semantic_codes` K > 0, f(c) also adds the item's coarse and fine code embeddings (after
    Singh et al., RecSys 2024: residual k-means of the content over the items training sees, K and
    K x K codes; the delta's bound counts them in f(c))."""

    def __init__(
        self,
        n_items: int,
        dim: int,
        content_dim: int,
        delta_ratio: float,
        neighbours: int = 0,
        temperature: float = 0.02,
        borrow_dropped: bool = False,
        content_hidden: int = 0,
        semantic_codes: int = 0,
    ) -> None:
        super().__init__()
        self.ids = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.proj: nn.Module | None = None
        if content_dim:
            two = nn.Sequential(nn.Linear(content_dim, content_hidden), nn.GELU(), nn.Linear(content_hidden, dim)) if content_hidden else None
            self.proj = two or nn.Linear(content_dim, dim)
        # Semantic ids (off at 0): two codes per item from residual k-means of its content, a coarse
        # one (K topics) and a fine one (K x K), each a trained embedding shared by the items with
        # that code, so an item never seen in training gets what was learnt for items like it.
        self.semantic_codes = semantic_codes if content_dim else 0
        if self.semantic_codes:
            self.coarse = nn.Embedding(self.semantic_codes, dim)
            self.fine = nn.Embedding(self.semantic_codes**2, dim)
            for table in (self.coarse, self.fine):
                nn.init.normal_(table.weight, std=0.02)
            # The codebook is part of the model (saved); each item's codes are not: they are
            # assigned from the content looked up at load, so new items get codes too.
            self.register_buffer("centroids", torch.zeros(2, self.semantic_codes, content_dim))
            self.register_load_state_dict_post_hook(lambda tower, _keys: tower.assign_codes())
        self.register_buffer("codes", torch.zeros(n_items + 1, 2, dtype=torch.long), persistent=False)
        self.register_buffer("has_code", torch.zeros(n_items + 1, dtype=torch.bool), persistent=False)
        self.delta_ratio, self.neighbours, self.temperature = delta_ratio, neighbours, temperature
        self.borrow_dropped = borrow_dropped
        # Looked up from the warehouse on load, never saved: new items score without retraining.
        self.register_buffer("content", torch.zeros(n_items + 1, max(content_dim, 1)), persistent=False)
        self.register_buffer("has_delta", torch.zeros(n_items + 1, dtype=torch.bool), persistent=False)
        # Items with content and no trained delta (cold), the `neighbours` items with a delta nearest
        # each by content cosine, and their weights softmax(cosine / temperature): at inference a
        # cold item borrows that weighted mean of their deltas.
        self.register_buffer("cold", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("cold_donors", torch.zeros(0, max(neighbours, 1), dtype=torch.long), persistent=False)
        self.register_buffer("cold_weights", torch.zeros(0, max(neighbours, 1)), persistent=False)
        # Training only (borrow_dropped): every trained item's nearest other trained items and weights,
        # so an item whose delta a batch drops borrows as a cold item will at inference.
        self.register_buffer("train_donors", torch.zeros(0, max(neighbours, 1), dtype=torch.long), persistent=False)
        self.register_buffer("train_weights", torch.zeros(0, max(neighbours, 1)), persistent=False)

    @classmethod
    def for_config(cls, n_items: int, content_dim: int, cfg: Any) -> ItemTower:
        """The tower a ranker's config sets (SasrecConfig, LstmAttnConfig: the same field names;
        borrow_dropped is sasrec-content's alone)."""
        return cls(
            n_items,
            cfg.dim,
            content_dim,
            cfg.delta_ratio,
            cfg.cold_neighbours,
            cfg.cold_temperature,
            getattr(cfg, "borrow_dropped", False),
            cfg.content_hidden,
            cfg.semantic_codes,
        )

    def forward(self, keep: torch.Tensor | None = None, content: torch.Tensor | None = None, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Every item's vector (n_items + 1, d), or only those of `rows` (R,) -> (R, d). `keep`
        (n_items + 1,) bool drops deltas whole; `content` replaces the content vectors for this
        call (explanations leave a modality out this way, without touching the model's buffer)."""
        every = rows is None
        rows = torch.arange(self.ids.num_embeddings, device=self.ids.weight.device) if rows is None else rows
        if self.proj is None:
            return self.ids(rows) * (rows > 0).unsqueeze(-1)  # padding: zeros
        replaced = content is not None
        content = self.content if content is None else content
        base = self.proj(content[rows])  # (R, d)
        if self.semantic_codes:  # replaced content (an explanation) gets the codes of what replaced it
            codes, has_code = self._codes(content) if replaced else (self.codes, self.has_code)
            base = base + self._code_vectors(codes[rows], has_code[rows])
        deltas = self._bounded(self.ids(rows), base)
        mask = self.has_delta[rows] if keep is None else self.has_delta[rows] & keep[rows]
        vectors = base + deltas * mask.unsqueeze(-1)
        borrowing = len(self.cold) if keep is None else (self.borrow_dropped and len(self.train_donors))
        if borrowing:  # cold items (inference) or dropped ones (training, borrow_dropped) borrow their neighbours' corrections
            if not every:  # the donors may lie outside `rows`
                base = self.proj(content)
                if self.semantic_codes:
                    base = base + self._code_vectors(codes, has_code)
                deltas = self._bounded(self.ids.weight, base)
            if keep is None:
                vectors = vectors + self._borrowed(base, deltas)[rows]
            else:
                vectors = vectors + self._borrowed_when_dropped(base, deltas, keep)[rows]
        return vectors * (rows > 0).unsqueeze(-1)  # padding: zeros

    def _code_vectors(self, codes: torch.Tensor, has_code: torch.Tensor) -> torch.Tensor:
        """(R, d): each item's coarse plus fine code embedding; zeros for items without content."""
        vectors = self.coarse(codes[:, 0]) + self.fine(codes[:, 0] * self.semantic_codes + codes[:, 1])
        return vectors * has_code.unsqueeze(-1)

    def fit_codes(self, seed: int) -> None:
        """The codebook from the items training sees (content and a trained delta), by residual
        k-means seeded with `seed`: K unit centroids of the unit content vectors (spherical), then K
        centroids of what each item's coarse centroid leaves; then every item's codes."""
        if not self.semantic_codes:
            return
        trained = torch.nonzero(self.has_delta & self.has_code).squeeze(1)  # has_code: content (set_items)
        if len(trained) < self.semantic_codes:
            raise too_many_codes(self.semantic_codes, len(trained), "semantic_codes")
        generator = torch.Generator().manual_seed(seed)
        unit = nn.functional.normalize(self.content[trained], dim=1)
        coarse = _kmeans(unit, self.semantic_codes, generator, spherical=True)
        residual = unit - coarse[_nearest_centroid(unit, coarse, spherical=True)]
        self.centroids.copy_(torch.stack([coarse, _kmeans(residual, self.semantic_codes, generator, spherical=False)]))
        self.assign_codes()
        # A code no trained item has starts at zero (nothing learnt), not at its random start: an
        # item that lands there at inference gets its other code and f(c), no noise (review).
        with torch.no_grad():
            codes = self.codes[trained]
            for table, used in ((self.coarse, codes[:, 0]), (self.fine, codes[:, 0] * self.semantic_codes + codes[:, 1])):
                unused = torch.ones(table.num_embeddings, dtype=torch.bool, device=used.device)
                unused[used] = False
                table.weight[unused] = 0.0

    def assign_codes(self) -> None:
        """Every item's (coarse, fine) codes from its content and the codebook (after a fit or a load)."""
        if self.semantic_codes:
            self.codes, self.has_code = self._codes(self.content)

    def _codes(self, content: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        unit = nn.functional.normalize(content, dim=1)
        coarse = _nearest_centroid(unit, self.centroids[0], spherical=True)
        fine = _nearest_centroid(unit - self.centroids[0][coarse], self.centroids[1], spherical=False)
        has_code = content.abs().sum(dim=1) > 0  # padding and items without content have none
        has_code[0] = False
        return torch.stack([coarse, fine], dim=1), has_code

    def _bounded(self, delta: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """delta scaled down where it is longer than delta_ratio * ||base|| (row-wise)."""
        bound = self.delta_ratio * base.detach().norm(dim=-1, keepdim=True)
        return delta * torch.clamp(bound / (delta.norm(dim=-1, keepdim=True) + 1e-12), max=1.0)

    def _borrowed(self, base: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        """(n_items + 1, d) from every item's projected content and bounded delta: each cold item's
        correction, the similarity-weighted mean of its neighbours' deltas (bounded again by its own
        projected content); zeros elsewhere."""
        out = torch.zeros_like(base)
        for cold, donors, weights in zip(self.cold.split(8192), self.cold_donors.split(8192), self.cold_weights.split(8192)):  # (8192, K, d) at most
            out[cold] = self._bounded((weights.unsqueeze(-1) * deltas[donors]).sum(1), base[cold])
        return out

    def _borrowed_when_dropped(self, base: torch.Tensor, deltas: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(n_items + 1, d): for each trained item whose delta `keep` drops, the similarity-weighted
        mean of its trained neighbours' deltas (itself excluded), bounded by its own content; zeros
        elsewhere (an item without content has no neighbours: zero weights). Training then sees what
        inference does for an item without a correction."""
        dropped = torch.nonzero(self.has_delta & ~keep).squeeze(1)
        out = torch.zeros_like(base)
        for part in dropped.split(8192):  # (8192, K, d) at most
            donors, weights = self.train_donors[part], self.train_weights[part]
            out[part] = self._bounded((weights.unsqueeze(-1) * deltas[donors]).sum(1), base[part])
        return out

    def prepare_training(self, data: Dataset) -> None:
        """With borrow_dropped: each trained item's nearest other trained items by content cosine
        (once per fit; content is frozen), between the items inference borrows between (a trained
        delta and content), in tables indexed by item; other rows keep zero weights."""
        if not (self.borrow_dropped and self.neighbours and self.proj is not None):
            return
        trained = np.flatnonzero(self.has_delta.cpu().numpy() & data.scorable)
        if len(trained) < 2:
            return
        rows, donors, weights = self._nearest(trained, trained)
        self.train_donors = torch.zeros(len(self.content), donors.shape[1], dtype=torch.long, device=donors.device).index_copy_(0, rows, donors)
        self.train_weights = torch.zeros(len(self.content), weights.shape[1], device=weights.device).index_copy_(0, rows, weights)

    def set_items(self, data: Dataset, seen: npt.NDArray[np.bool_]) -> None:
        if self.proj is not None:
            self.content.copy_(torch.as_tensor(data.content, device=self.content.device))
        self.has_delta.copy_(torch.as_tensor(seen, device=self.has_delta.device))
        self.has_delta[0] = False
        self.cold, self.cold_donors, self.cold_weights = self.content_neighbours(data, seen)
        self.assign_codes()  # from this content (before a fit or a load, the codebook is zeros: both set it again)

    def content_neighbours(self, data: Dataset, seen: npt.NDArray[np.bool_]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The cold items (content, no trained delta), for each its `neighbours` nearest items with
        a trained delta by cosine of the content vectors, and their weights, softmax(cosine /
        temperature) over those neighbours; none without content or neighbours."""
        device = self.content.device
        donors = np.flatnonzero(seen & data.scorable)
        donors = donors[donors > 0]
        cold = np.flatnonzero(~seen & data.scorable)
        cold = cold[cold > 0]
        if self.proj is None or not self.neighbours or not len(cold) or not len(donors):
            width = max(self.neighbours, 1)
            return torch.zeros(0, dtype=torch.long, device=device), torch.zeros(0, width, dtype=torch.long, device=device), torch.zeros(0, width, device=device)
        return self._nearest(cold, donors)

    def _nearest(self, items: npt.NDArray[np.int64], donors: npt.NDArray[np.int64]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`items` as a tensor, for each its `neighbours` nearest `donors` by content cosine (never
        itself), and their weights softmax(cosine / temperature)."""
        device = self.content.device
        unit = nn.functional.normalize(self.content, dim=1)
        item_t, donor_t = torch.as_tensor(items, device=device), torch.as_tensor(donors, device=device)
        donor_units = unit[donor_t].T.contiguous()  # (D, donors), once
        k = min(self.neighbours, len(donors) - int(np.isin(items, donors).any()))
        nearest = []
        for part in item_t.split(2048):  # (2048, donors) at a time
            sims = unit[part] @ donor_units
            sims[part.unsqueeze(1) == donor_t.unsqueeze(0)] = -math.inf  # not itself
            nearest.append(sims.topk(k, dim=1))
        weights = torch.softmax(torch.cat([n.values for n in nearest]) / self.temperature, dim=1)
        return item_t, donor_t[torch.cat([n.indices for n in nearest])], weights


def _nearest_centroid(x: torch.Tensor, centroids: torch.Tensor, *, spherical: bool) -> torch.Tensor:
    """(N,) index of each row's nearest centroid: the largest cosine (unit rows and centroids) or
    the smallest euclidean distance; in blocks of 8,192 rows."""
    out = []
    for part in x.split(8192):
        if spherical:
            out.append((part @ centroids.T).argmax(dim=1))
        else:
            out.append(((centroids * centroids).sum(1) - 2 * part @ centroids.T).argmin(dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=x.device)


def _kmeans(x: torch.Tensor, k: int, generator: torch.Generator, *, spherical: bool, iterations: int = 25) -> torch.Tensor:
    """(k, D) centroids of the rows of `x` by Lloyd's k-means from k rows drawn with `generator`
    (with replacement when there are fewer rows than k); spherical: unit centroids, cosine. A
    centroid left without rows keeps its place."""
    first = torch.randperm(len(x), generator=generator)[:k] if len(x) >= k else torch.randint(len(x), (k,), generator=generator)
    centroids = x[first.to(x.device)].clone()
    for _ in range(iterations):
        nearest = _nearest_centroid(x, centroids, spherical=spherical)
        counts = torch.bincount(nearest, minlength=k).unsqueeze(1)
        sums = torch.zeros_like(centroids).index_add_(0, nearest, x)
        moved = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        centroids = nn.functional.normalize(moved, dim=1) if spherical else moved
    return centroids


class Dropout(nn.Module):
    """nn.Dropout's computation (zero each element with probability p in training, scale the rest
    by 1 / (1 - p)), its mask drawn with torch.rand on a CPU: on 2 cores torch's bernoulli_ took
    1.9-2.3 ms for a (128, 20, 64) batch against 0.7-1.1 ms (benchmarks/sasrec_step.py; sasrec
    draws 5 a step). On a GPU, torch's own."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.is_cuda or self.p == 1.0:  # a GPU has torch's fused kernel (review)
            return nn.functional.dropout(x, self.p, training=True)
        return x * (torch.rand_like(x) >= self.p) / (1.0 - self.p)


def remap_items(
    state: dict[str, torch.Tensor], prefix: str, saved_items: list[str], saved_has_delta: torch.Tensor, data: Dataset, *, name: str
) -> npt.NDArray[np.bool_]:
    """Move a checkpoint's per-item rows (`<prefix>ids.weight`) onto `data`'s vocabulary, by item id:
    items it was trained on keep their row, items new since training get zeros and no delta.
    Returns which items have a trained delta. A content projection of another width is refused."""
    width = state.get(f"{prefix}proj.weight", state.get(f"{prefix}proj.0.weight"))  # linear, or the first of two layers
    if width is not None and width.shape[1] != data.content.shape[1]:
        raise MissingContent(
            f"{name} was trained on {width.shape[1]}-d content vectors, the warehouse gives "
            f"{data.content.shape[1]}-d ({data.content_source}); retrain it with `reelsense train --models {','.join([name, *rerankers_of(name)])}`"
        )
    rows = saved_rows(saved_items, data)
    known = rows >= 0
    weights = state[f"{prefix}ids.weight"]
    ids = torch.zeros(data.n_items + 1, weights.shape[1])
    ids[torch.as_tensor(known)] = weights[torch.as_tensor(rows[known])]
    state[f"{prefix}ids.weight"] = ids
    return by_item_id(saved_items, saved_has_delta, data)


def saved_rows(saved_items: list[str], data: Dataset) -> npt.NDArray[np.int64]:
    """For each of `data`'s items, its row in a checkpoint saved with `saved_items` (-1: new since)."""
    old = {item: i for i, item in enumerate(saved_items)}
    return np.asarray([old.get(item, -1) for item in data.item_ids], np.int64)


def by_item_id(saved_items: list[str], saved_mask: torch.Tensor, data: Dataset) -> npt.NDArray[np.bool_]:
    """A checkpoint's per-item flags on `data`'s vocabulary, by item id; an item new since: False."""
    rows = saved_rows(saved_items, data)
    known = rows >= 0
    out = np.zeros(data.n_items + 1, bool)
    out[known] = saved_mask.cpu().numpy().astype(bool)[rows[known]]
    return out


class EarlyStopping:
    """Keep the weights of the best validation score; stop after `patience` epochs without a gain."""

    def __init__(self, patience: int) -> None:
        self.patience, self.best, self.waited, self.state = patience, -math.inf, 0, None

    def should_stop(self, score: float, net: nn.Module) -> bool:
        if score > self.best + 1e-4:
            self.best, self.waited = score, 0
            self.state = {k: v.clone() for k, v in net.state_dict().items()}
            return False
        self.waited += 1
        return self.waited >= self.patience

    def restore(self, net: nn.Module) -> None:
        """Put back the best epoch's weights (none when no epoch gave a finite score: kept as trained)."""
        if self.state is not None:
            net.load_state_dict(self.state)
        net.eval()


class FitCheckpoint:
    """A fit's whole state after each finished epoch, written to `path`, so that a fit stopped part
    way (Ctrl-C, a killed process, the end of a session) continues from its last finished epoch
    instead of from the first. It holds the weights, the optimiser, early stopping (the best weights
    and the epochs waited), the epoch history, and every random stream the fit draws from (numpy's
    for batches and sampled negatives, torch's for dropout and id drop), so a continued fit ends
    with the model one uninterrupted fit ends with (a test holds the weights to torch.equal).

    A saved state is continued only under the same key: ranker/artifacts.py reuse_key (the training
    rows, items, content vectors, settings, seed and ranker code) plus what else the fit reads (the
    histories' event types and watch ratios, the behaviour labels, the users) and the device. A file
    with another key is replaced after this fit's first epoch. Once the fit is over the file says
    so, and a process stopped between the fit and storing its result does not train again; the
    caller deletes the file (`discard`) once the result is stored. A file that cannot be written
    (a full disk) is said once and the fit goes on without it. `path` None: no file.

    Use: `track(...)` the fit's objects, `restore()` before the first epoch (the epoch to run
    next), `save(stopped)` after each. `model.fit_continued_after` is set to the epochs an earlier
    process had finished (0: one uninterrupted fit)."""

    def __init__(self, path: Path | None, key: str, *, name: str) -> None:
        self.path, self.key, self.name = path, key, name
        self.parts: dict[str, Any] = {}
        self.about: dict[str, Any] = {}  # the seed, settings and code version, for messages (stopped_fit)

    @staticmethod
    def for_fit(path: Path | None, model: Any, data: Dataset, seed: int) -> FitCheckpoint:
        """The checkpoint of `model`'s fit on `data` with `seed` (its key is computed only when there is a file)."""
        if path is None:
            return FitCheckpoint(None, "", name=model.name)
        from ranker.artifacts import code_version, reuse_key  # not at import time: artifacts builds rankers

        digest = hashlib.sha256(reuse_key(model.name, model, data, seed).encode())
        for array in (data.queries.hist_events, data.queries.hist_ratios, data.queries.users.astype(str), *(data.labels[k] for k in sorted(data.labels))):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(str(getattr(model, "device", "cpu")).encode())
        fit = FitCheckpoint(Path(path), digest.hexdigest()[:16], name=model.name)
        config = getattr(model, "config", None)
        fit.about = {
            "seed": seed,
            "config": asdict(config) if is_dataclass(config) and not isinstance(config, type) else None,
            "code": code_version(),
            "device": str(getattr(model, "device", "cpu")),
        }
        return fit

    def track(
        self,
        model: Any,
        net: nn.Module,
        optimiser: torch.optim.Optimizer,
        stopper: EarlyStopping,
        rng: np.random.Generator,
        *streams: torch.Generator,
        max_epochs: int,
    ) -> None:
        """What the fit keeps between epochs: `model.history`, the weights of `net`, the optimiser,
        early stopping, the numpy generator and torch generators of its own (besides torch's global one)."""
        self.parts = {"model": model, "net": net, "optimiser": optimiser, "stopper": stopper, "rng": rng, "streams": streams, "max_epochs": max_epochs}
        model.fit_continued_after = 0

    def restore(self) -> int:
        """Load a saved state of this fit; returns the epoch to run next (0 when there is none to
        continue, `max_epochs` when the fit had finished)."""
        if self.path is None or not self.path.exists():
            return 0
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)  # tensors and plain values: no code runs from the file
        except Exception as error:  # unreadable: said, and trained from the start
            self._say(f"cannot continue from {self.path} ({type(error).__name__}: {error}); training from epoch 1")
            return 0
        if not isinstance(state, dict) or state.get("key") != self.key:
            was = stopped_fit(self.path, state)
            done = f"{was['epochs']} epoch{'s' if was['epochs'] != 1 else ''} finished" if was["epochs"] else "no epoch known"
            self._say(f"{self.path} holds a stopped fit ({done}) of {differences(was, self.about)}; training from epoch 1, which replaces it")
            return 0
        p = self.parts
        try:
            p["net"].load_state_dict(state["net"])
            p["optimiser"].load_state_dict(state["optimiser"])
            p["stopper"].best, p["stopper"].waited, p["stopper"].state = state["best"], state["waited"], state["best_state"]
            p["model"].history = state["history"]
            p["rng"].bit_generator.state = state["numpy"]
            torch.set_rng_state(state["torch"])
            if state["cuda"] is not None:
                torch.cuda.set_rng_state_all(state["cuda"])
            for stream, saved in zip(p["streams"], state["streams"], strict=True):
                stream.set_state(saved)
        except Exception as error:  # the key matched, so this is a damaged file: part of it may be loaded already
            raise ReelsenseError(
                f"{self.name}: {self.path} is a stopped fit of this data that could not be loaded "
                f"({type(error).__name__}: {error}); delete it to train from epoch 1"
            ) from error
        done = p["model"].fit_continued_after = len(state["history"])
        if state["finished"]:
            self._say(f"the fit in {self.path} had finished after {done} epochs; not training again")
            return int(p["max_epochs"])
        self._say(f"continuing a stopped fit after epoch {done} ({self.path})")
        return done

    def save(self, stopped: bool) -> None:
        """Write the state after an epoch (`stopped`: early stopping ended the fit), whole or not at
        all (warehouse/store.py write_atomic)."""
        if self.path is None:
            return
        p = self.parts
        state = {
            "key": self.key,
            **self.about,
            "finished": stopped or len(p["model"].history) >= p["max_epochs"],
            "net": p["net"].state_dict(),
            "optimiser": p["optimiser"].state_dict(),
            "best": p["stopper"].best,
            "waited": p["stopper"].waited,
            "best_state": p["stopper"].state,
            "history": p["model"].history,
            "numpy": p["rng"].bit_generator.state,
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
            "streams": [stream.get_state() for stream in p["streams"]],
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            store.write_atomic(self.path, buffer.getvalue())
        except OSError as error:
            self._say(f"cannot keep the fit's state in {self.path} ({error}); training on without it (a stop now starts over)")
            discard(self.path)
            self.path = None

    def holds_this_fit(self) -> bool:
        """Whether the file is a checkpoint of this very fit (a caller that reuses a saved model
        removes only such a file; a stopped fit of other settings stays for its own `train`)."""
        return self.path is not None and self.path.is_file() and stopped_fit(self.path)["key"] == self.key

    def _say(self, text: str) -> None:
        print(f"{self.name}: {text}", file=sys.stderr, flush=True)


def discard(path: Path) -> None:
    """Delete a fit's checkpoint (its result is stored, or it is of no use) and any temporary file
    of a write that was cut short. Something else at that path (a folder) is left alone."""
    for temp in path.parent.glob(f".{path.name}.*.tmp"):
        temp.unlink(missing_ok=True)
    if not path.is_dir():
        path.unlink(missing_ok=True)


def stopped_fit(path: Path, state: Any = None) -> dict[str, Any]:
    """What a checkpoint file holds, for messages and `reelsense models`: `epochs` finished,
    `finished`, `seed`, `config`, `code`, `device` (None where unknown), `key`, and `readable`. `state`: the
    file's content when already loaded."""
    if state is None:
        try:  # mapped, not read: only the small fields are touched
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:
            state = None
    if not isinstance(state, dict) or "key" not in state:
        return {"readable": False, "epochs": 0, "finished": False, "seed": None, "config": None, "code": None, "key": None, "device": None}
    return {
        "readable": True,
        "epochs": len(state.get("history") or []),
        "finished": bool(state.get("finished")),
        **{k: state.get(k) for k in ("seed", "config", "code", "key", "device")},
    }


def differences(was: dict[str, Any], now: dict[str, Any]) -> str:
    """How a stopped fit (`stopped_fit`) differs from this one (FitCheckpoint.about), in words."""
    if not was["readable"]:
        return "an unknown kind (not a checkpoint reelsense wrote)"
    if was["seed"] is None and was["config"] is None and was["code"] is None:
        return "unknown seed, settings and code (a checkpoint that does not record them)"
    changed = []
    if was["seed"] is not None and was["seed"] != now.get("seed"):
        changed.append(f"seed {was['seed']} (now {now.get('seed')})")
    old, new = was["config"] or {}, now.get("config") or {}
    # A setting the stopped fit's config lacks was added since: a change of the code, said below (review).
    keys = sorted(old.keys() | new.keys()) if was["config"] is not None else []
    settings = [f"{k} {old.get(k)!r} (now {new.get(k)!r})" for k in keys if k in old and old.get(k) != new.get(k)]
    if settings:
        changed.append("settings " + ", ".join(settings))
    if was["code"] is not None and was["code"] != now.get("code"):
        changed.append("other ranker code")
    if was.get("device") is not None and was["device"] != now.get("device"):
        changed.append(f"device {was['device']} (now {now.get('device')})")
    return "; ".join(changed) if changed else "other data (rows, items, content, histories or labels)"


def next_item_sequences(data: Dataset) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The training rows as sequences whose every labelled step is one (prefix, next item) pair,
    for models that predict the next item at each step of a causal encoder (SASRec as Kang &
    McAuley train it): one encoder pass per user instead of one per training row.

    Returns `inputs` (S, T), histories as stored (right-aligned), and `labels` (S, T): the target
    at each step whose prefix is a training row's history, 0 elsewhere (no loss). Each user's last
    training row is one sequence; an earlier training row of the user is a label inside it when its
    history is exactly that sequence's prefix and its target the next step, and a sequence of its
    own otherwise (events sharing a timestamp, which never see each other, or a history window that
    no longer starts where the last row's does). So the labelled pairs are exactly the training
    rows with a history, no more, no fewer (a test checks it). Rows are grouped by user in time
    order (sequences.sql's ORDER BY)."""
    hist, targets, users = data.queries.hist_items, data.targets, data.queries.users
    train = np.flatnonzero(data.split == "train")
    if not len(train):
        return hist[:0], hist[:0]
    length = hist.shape[1]
    last_rows = train[np.r_[users[train][1:] != users[train][:-1], True]]
    sequence_of = {users[row]: i for i, row in enumerate(last_rows)}
    real = (hist > 0).sum(1)
    labels = np.zeros((len(last_rows), length), np.int64)
    extra: list[int] = []
    for row in train[real[train] > 0]:
        i = sequence_of[users[row]]
        last = last_rows[i]
        if row == last:
            labels[i, -1] = targets[row]
            continue
        m, n = real[row], real[last]  # the row's history is a prefix of the last row's (length n)?
        prefix = hist[last, length - n : length - n + m]
        if m < n and np.array_equal(prefix, hist[row, length - m :]) and hist[last, length - n + m] == targets[row]:
            labels[i, length - n + m - 1] = targets[row]
        else:
            extra.append(row)
    extra_rows = np.asarray(extra, np.int64)
    extra_labels = np.zeros((len(extra_rows), length), np.int64)
    extra_labels[:, -1] = targets[extra_rows]
    return np.concatenate([hist[last_rows], hist[extra_rows]]), np.concatenate([labels, extra_labels])


def validation_rows(data: Dataset, limit: int, seed: int) -> npt.NDArray[np.int64]:
    """The validation rows early stopping watches: all of them, or a seeded sample of `limit`."""
    valid = np.flatnonzero(data.split == "valid")
    if len(valid) > limit:
        valid = np.sort(np.random.default_rng(seed + 1).choice(valid, limit, replace=False))
    return valid


def validation_ndcg(model: Any, data: Dataset, rows: npt.NDArray[np.int64]) -> float:
    """Mean NDCG@10 of the validation targets ranked against every item (history not masked)."""
    values = [
        ndcg(target_ranks(model.score_all(data, data.queries.take(part)), data.targets[part]), 10) for part in np.array_split(rows, max(1, len(rows) // 2048))
    ]  # blocks: (2048, n_items) at a time
    return float(np.concatenate(values).mean())


def epoch_bar(batches: Iterable[Any], steps: int, name: str, epoch: int) -> Iterator[Any]:
    """A progress bar within an epoch (on stderr; hidden for epochs of fewer than 20 batches)."""
    return progress(batches, total=steps, desc=f"{name} epoch {epoch + 1}", unit="batch", leave=False, disable=steps < 20)


def end_epoch(model: Any, epoch: int, losses: list[float], score: float, started: float) -> None:
    """Record the epoch in `model.history` and print its one line: loss, validation NDCG@10, seconds."""
    seconds = time.perf_counter() - started
    model.history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "valid_ndcg@10": score, "seconds": round(seconds, 1)})
    print(f"{model.name} epoch {epoch + 1}: loss {np.mean(losses):.4f}, valid NDCG@10 {score:.4f}, {seconds:.0f}s", file=sys.stderr, flush=True)
