"""itemknn: items engaged with by the same users are similar (cosine over the user-item matrix of
training engagements); a query scores an item by its similarity to the history items."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ranker.data import Dataset, Queries


class ItemKNN:
    name, probabilistic = "itemknn", False
    version = ""
    heads = ["engage"]  # one objective; never mutated

    def __init__(self, neighbours: int = 100) -> None:
        self.neighbours = neighbours
        self.similarity: sp.csr_matrix | None = None

    def fit(self, data: Dataset, *, seed: int = 0, checkpoint: Path | None = None) -> None:  # one pass: nothing to continue
        train = np.flatnonzero(data.split == "train")
        users, user_rows = np.unique(data.queries.users[train], return_inverse=True)
        matrix = sp.csr_matrix((np.ones(len(train), np.float32), (user_rows, data.targets[train])), shape=(len(users), data.n_items + 1))
        matrix.data[:] = 1.0  # repeats count once
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(0))).ravel() + 1e-6
        similarity = (matrix.T @ matrix).tocsr().astype(np.float32)
        similarity = sp.diags(1 / norms) @ similarity @ sp.diags(1 / norms)
        similarity.setdiag(0)
        self.similarity = _top_k_per_row(similarity.tocsr(), self.neighbours)

    def score_items(self, data: Dataset, queries: Queries, items: np.ndarray) -> np.ndarray:
        scores = self.score_all(data, queries)
        return np.take_along_axis(scores, items, axis=1)

    def score_all(self, data: Dataset, queries: Queries) -> np.ndarray:
        rows = np.repeat(np.arange(len(queries)), queries.hist_items.shape[1])
        cols = queries.hist_items.ravel()
        history = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(queries), data.n_items + 1))
        history.data[:] = 1.0
        scores = np.asarray((history @ self.similarity).todense(), dtype=np.float32)
        scores[:, 0] = -np.inf
        return scores

    def save(self, path: Path) -> None:
        path.write_bytes(pickle.dumps(self.similarity))

    def load(self, path: Path, data: Dataset) -> None:
        self.similarity = pickle.loads(path.read_bytes())


def _top_k_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    rows, cols, vals = [], [], []
    for row in range(matrix.shape[0]):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        if end - start > k:
            keep = start + np.argpartition(-matrix.data[start:end], k)[:k]
        else:
            keep = np.arange(start, end)
        rows.append(np.full(len(keep), row))
        cols.append(matrix.indices[keep])
        vals.append(matrix.data[keep])
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=matrix.shape)
