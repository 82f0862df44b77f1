"""Batch scoring: each user's top-K items now, from candidates by embedding similarity, re-ranked.

1. `current_queries`: every user's latest history: the last positive interaction and the history
   before it (the ranker's own input layout), so a user is scored on everything known of them.
2. `similarity_candidates`: the user's interest vector (recency-weighted mean of the content vectors
   of the history) against every item's content vector, a brute-force matrix product in blocks of
   users (19k items x 64-384 dims is small enough that an ANN index does not pay), items already in
   the history excluded; users or items without content fall back to popularity.
3. `rerank`: the chosen ranker scores each user's candidates; the top K are kept.

Reads nothing and writes nothing: flows/score.py wires it to the warehouse.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ranker.data import Dataset, Queries


def current_queries(data: Dataset) -> Queries:
    """One query per user: the history before their latest positive, with that positive appended."""
    order = np.lexsort((data.event_ts, data.queries.users))
    users = data.queries.users[order]
    last = order[np.r_[users[1:] != users[:-1], True]] if len(order) else order  # each user's latest row
    q = data.queries.take(last)
    shift = lambda hist, newest: np.concatenate([hist[:, 1:], newest[:, None].astype(hist.dtype)], 1)  # noqa: E731
    return Queries(q.users, shift(q.hist_items, data.targets[last]), shift(q.hist_events, data.target_events[last]),
                   shift(q.hist_ratios, data.target_ratios[last]))


def interest_vectors(data: Dataset, queries: Queries, half_life: float = 5.0) -> npt.NDArray[np.float32]:
    """(Q, D) unit vectors: the history's content vectors, the newest weighing most (half-life in steps)."""
    length = queries.hist_items.shape[1]
    decay = 0.5 ** (np.arange(length)[::-1] / half_life)  # (T,), 1 for the newest step
    weights = decay[None, :] * (queries.hist_items > 0)  # (Q, T)
    vectors = np.einsum("qt,qtd->qd", weights, data.content[queries.hist_items])
    return (vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-9)).astype(np.float32)


def similarity_candidates(data: Dataset, queries: Queries, n_candidates: int, *, block: int = 1024) -> npt.NDArray[np.int64]:
    """(Q, C) item indices with the highest cosine to each user's interest, history items excluded.
    Ties (no content) are broken by training popularity, so cold users get the popular items."""
    n_candidates = min(n_candidates, data.n_items)
    # A tie-breaker far below any cosine difference: popularity rank, scaled into [0, 1e-4).
    popularity = np.argsort(np.argsort(data.train_counts)).astype(np.float32) / (len(data.train_counts) * 1e4)
    item_matrix = data.content.T  # (D, n_items + 1)
    out = np.empty((len(queries), n_candidates), np.int64)
    for start in range(0, len(queries), block):
        q = queries.take(np.arange(start, min(start + block, len(queries))))
        sims = interest_vectors(data, q) @ item_matrix + popularity  # (B, n_items + 1)
        sims[:, 0] = -np.inf
        np.put_along_axis(sims, q.hist_items, -np.inf, axis=1)  # seen items (and padding again)
        top = np.argpartition(-sims, n_candidates - 1, axis=1)[:, :n_candidates]
        out[start : start + len(q)] = np.take_along_axis(top, np.argsort(-np.take_along_axis(sims, top, 1), 1), 1)
    return out


def rerank(model, data: Dataset, queries: Queries, candidates: npt.NDArray[np.int64], k: int,
           *, block: int = 2048) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The model's top `k` of each row of candidates: item indices (Q, k) and scores (Q, k), best first."""
    k = min(k, candidates.shape[1])
    items = np.empty((len(queries), k), np.int64)
    scores = np.empty((len(queries), k), np.float32)
    for start in range(0, len(queries), block):
        rows = np.arange(start, min(start + block, len(queries)))
        scored = np.asarray(model.score_items(data, queries.take(rows), candidates[rows]), np.float32)  # (B, C)
        best = np.argsort(-scored, axis=1, kind="stable")[:, :k]
        items[rows] = np.take_along_axis(candidates[rows], best, 1)
        scores[rows] = np.take_along_axis(scored, best, 1)
    return items, scores
