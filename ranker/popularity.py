"""popularity: every user gets the items most often engaged with in training."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ranker.data import Dataset, Queries


class Popularity:
    name, probabilistic = "popularity", False
    version = ""
    heads = ["engage"]  # one objective; never mutated

    def __init__(self) -> None:
        self.counts = np.zeros(1)

    def fit(self, data: Dataset, *, seed: int = 0, checkpoint: Path | None = None) -> None:  # one pass: nothing to continue
        self.counts = data.train_counts.astype(np.float32)  # positives of the train split (ranker/data.py)

    def score_items(self, data: Dataset, queries: Queries, items: np.ndarray) -> np.ndarray:
        return np.log1p(self.counts[items])

    def score_all(self, data: Dataset, queries: Queries) -> np.ndarray:
        scores = np.tile(np.log1p(self.counts), (len(queries), 1))
        scores[:, 0] = -np.inf
        return scores

    def save(self, path: Path) -> None:
        with open(path, "wb") as handle:  # a handle: np.save would append .npy to a path
            np.save(handle, self.counts)

    def load(self, path: Path, data: Dataset) -> None:
        self.counts = np.load(path)
