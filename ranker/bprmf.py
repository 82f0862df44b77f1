"""bpr-mf: matrix factorisation trained with the BPR pairwise loss (Rendle et al. 2009).

One uniformly drawn negative per training pair, Adam, and early stopping on validation NDCG@10
ranked against all items (the same watch as sasrec's: patience 10, the best epoch's weights kept),
so the peer is trained to convergence rather than for a fixed number of epochs.

A user seen in training is scored with their learned factor. A query whose history was cut (the
cold-user slice), or a user not seen in training, is folded in: the mean factor of its history
items stands for the user, so what the model learned from the cut-away history is not used.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ranker.base import minibatches
from ranker.data import Dataset, Queries
from ranker.training import EarlyStopping, FitCheckpoint, end_epoch, epoch_bar, mask_unscorable, not_classes, unscorable, validation_ndcg, validation_rows
from warehouse.settings import check_ranges


@dataclass(frozen=True)
class BprMfConfig:
    dim: int = 64
    lr: float = 5e-3
    reg: float = 1e-5  # L2 on the factors of each batch, per row
    batch: int = 4096  # training pairs per step
    max_epochs: int = 300
    patience: int = 10  # epochs without a validation gain before stopping (RecBole's stopping_step)
    valid_users: int = 10000  # validation NDCG@10 on a seeded sample of the validation rows, each epoch

    def __post_init__(self) -> None:
        check_ranges(self, positive=("dim", "lr", "batch", "max_epochs", "patience", "valid_users"), non_negative=("reg",))


class BprMF:
    name, probabilistic = "bpr-mf", False
    version = ""
    heads = ["engage"]  # one objective; never mutated

    def __init__(self, config: BprMfConfig = BprMfConfig()) -> None:
        self.config = config
        self.user_index: dict[str, int] = {}
        self.users: nn.Embedding | None = None
        self.items: nn.Embedding | None = None
        self.history: list[dict[str, float]] = []
        self.trained: np.ndarray | None = None  # items a training row held (ranker/training.py unscorable)

    def _build(self, n_users: int, n_items: int) -> None:
        self.users = nn.Embedding(n_users, self.config.dim)
        self.items = nn.Embedding(n_items + 1, self.config.dim, padding_idx=0)
        self.bias = nn.Embedding(n_items + 1, 1, padding_idx=0)
        for emb in (self.users, self.items):
            nn.init.normal_(emb.weight, std=0.01)
        nn.init.zeros_(self.bias.weight)

    def fit(self, data: Dataset, *, seed: int = 0, checkpoint: Path | None = None) -> None:
        """Train on `data`'s training rows; `checkpoint`: a file that keeps the fit's state after each
        epoch, from which a stopped fit continues (ranker/training.py FitCheckpoint)."""
        cfg = self.config
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        train = np.flatnonzero(data.split == "train")
        users = sorted(set(data.queries.users[train]))
        self.user_index = {u: i for i, u in enumerate(users)}
        self._build(len(users), data.n_items)
        self.trained = data.in_training.copy()
        # Negatives are drawn uniformly from the items that are classes: not the cold split's withheld
        # items, which training must not see at all (where none is withheld: every item, as before).
        classes = np.flatnonzero(~not_classes(data, content=False))[1:]
        u = torch.as_tensor([self.user_index[x] for x in data.queries.users[train]])
        pos = torch.as_tensor(data.targets[train])
        weights = nn.ModuleList([self.users, self.items, self.bias])  # what early stopping keeps
        optimiser = torch.optim.Adam(weights.parameters(), lr=cfg.lr)
        valid = validation_rows(data, cfg.valid_users, seed)
        stopper = EarlyStopping(cfg.patience)
        self.history = []
        resume = FitCheckpoint.for_fit(checkpoint, self, data, seed)
        resume.track(self, weights, optimiser, stopper, rng, max_epochs=cfg.max_epochs)
        for epoch in range(resume.restore(), cfg.max_epochs):
            started, losses = time.perf_counter(), []
            for rows in epoch_bar(minibatches(len(train), cfg.batch, rng), math.ceil(len(train) / cfg.batch), self.name, epoch):
                neg = torch.as_tensor(classes[rng.integers(0, len(classes), len(rows))])
                ub, pb = self.users(u[rows]), self.items(pos[rows])
                nb = self.items(neg)
                diff = (ub * (pb - nb)).sum(1) + (self.bias(pos[rows]) - self.bias(neg)).squeeze(1)
                loss = -nn.functional.logsigmoid(diff).mean() + cfg.reg * (ub.pow(2).sum() + pb.pow(2).sum() + nb.pow(2).sum()) / len(rows)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                losses.append(loss.item())
            score = validation_ndcg(self, data, valid) if len(valid) else -float(np.mean(losses))
            end_epoch(self, epoch, losses, score, started)
            stop = stopper.should_stop(score, weights)
            resume.save(stop)
            if stop:
                break
        stopper.restore(weights)

    @torch.no_grad()
    def _user_vectors(self, queries: Queries) -> torch.Tensor:
        hist = torch.as_tensor(queries.hist_items)
        folded = self.items(hist).sum(1) / (hist > 0).sum(1, keepdim=True).clamp_min(1)
        if queries.cold:
            return folded
        known = torch.as_tensor([self.user_index.get(u, -1) for u in queries.users])
        learned = self.users(known.clamp_min(0))
        return torch.where((known >= 0)[:, None], learned, folded)

    @torch.no_grad()
    def score_items(self, data: Dataset, queries: Queries, items: np.ndarray) -> np.ndarray:
        users = self._user_vectors(queries)  # (Q, d)
        items_t = torch.as_tensor(np.ascontiguousarray(items))
        scores = ((self.items(items_t) * users[:, None, :]).sum(-1) + self.bias(items_t).squeeze(-1)).numpy()
        return mask_unscorable(scores, items, unscorable(data, False, self.trained))

    @torch.no_grad()
    def score_all(self, data: Dataset, queries: Queries) -> np.ndarray:
        scores = (self._user_vectors(queries) @ self.items.weight.T + self.bias.weight.T).numpy()
        scores[:, unscorable(data, False, self.trained)] = -np.inf  # padding among them
        return scores

    def save(self, path: Path) -> None:
        state = {name: getattr(self, name).state_dict() for name in ("users", "items", "bias")}
        trained = None if self.trained is None else torch.as_tensor(self.trained)
        torch.save({"config": asdict(self.config), "history": self.history, "user_index": self.user_index, "trained": trained, **state}, path)

    def load(self, path: Path, data: Dataset) -> None:
        state = torch.load(path, weights_only=False)
        # A checkpoint from before BprMfConfig has no config: only its width matters to load it.
        self.config = BprMfConfig(**state["config"]) if "config" in state else BprMfConfig(dim=state["users"]["weight"].shape[1])
        self.history = state.get("history", [])
        self.user_index = state["user_index"]
        self._build(len(self.user_index), data.n_items)
        # A checkpoint from before it recorded what training held scores every item, as it did then.
        self.trained = None if state.get("trained") is None else torch.as_tensor(state["trained"]).numpy().astype(bool)
        for name in ("users", "items", "bias"):
            getattr(self, name).load_state_dict(state[name])
