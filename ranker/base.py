"""The ranker interface, negative sampling shared by the trainable rankers, and batching helpers.

A ranker scores (query, item) pairs, where a query is a user and a history. Every ranker runs in
the same harness (ranker/evaluate.py) on the same split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import torch

from ranker.data import Dataset, Queries


class Ranker(Protocol):
    name: str
    probabilistic: bool  # scores are log-odds of engaging (logloss is meaningful)
    version: str  # the registry's version once saved or loaded (ranker/artifacts.py); "" before
    heads: list[str]  # what it predicts: ["engage"], then per-behaviour heads ("like", ...) where it has them

    def fit(self, data: Dataset, *, seed: int = 0, checkpoint: Path | None = None) -> None:
        """Train on `data`'s training rows with `seed`. Rankers trained in epochs keep their state in
        `checkpoint` after each one and continue from it (ranker/training.py FitCheckpoint); the others
        fit in one pass and ignore it."""
        ...

    def score_items(self, data: Dataset, queries: Queries, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Scores (Q, C) of items (Q, C) for each query."""
        ...

    def score_all(self, data: Dataset, queries: Queries) -> npt.NDArray[np.float32]:
        """Scores (Q, n_items + 1) of every item; column 0 (padding) is -inf."""
        ...

    def save(self, path: Path) -> None: ...

    def load(self, path: Path, data: Dataset) -> None: ...


def sample_negatives(data: Dataset, n: int, rng: np.random.Generator) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """`n` uniform and `n` popularity-proportional item indices (never the padding index)."""
    uniform = rng.integers(1, data.n_items + 1, n)
    weights = data.train_counts[1:].astype(np.float64) + 1e-3
    popular = 1 + rng.choice(data.n_items, size=n, p=weights / weights.sum())
    return uniform, popular


def all_items(data: Dataset, n_queries: int) -> npt.NDArray[np.int64]:
    return np.broadcast_to(np.arange(data.n_items + 1), (n_queries, data.n_items + 1))


def minibatches(n: int, size: int, rng: np.random.Generator | None = None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, size):
        yield order[start : start + size]


def device_for(preference: str = "auto") -> str:
    if preference != "auto":
        return preference
    return "cuda" if torch.cuda.is_available() else "cpu"
