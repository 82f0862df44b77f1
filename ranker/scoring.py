"""Batch scoring: each user's top-K items now, by the model's own ranking of every item (default) or
from candidates by embedding similarity, re-ranked.

1. `current_queries`: every user's latest history: the last positive interaction and the history
   before it (the ranker's own input layout), so a user is scored on everything known of them.
2. `engaged_pairs`: what each user may no longer be recommended: every item they engaged with (any
   event other than a bare impression, at any time: warehouse/sql/analysis/engaged_items.sql), not
   only the items still in their last-N history. Items a user was only shown stay eligible.
3. Retrieval, one of two (`RETRIEVALS`):
   - `model_top` (`model`, the default): the ranker scores every item (`score_all`: for the dot-product
     rankers a matrix product, in blocks of users), engaged items excluded, and the top K are kept.
     What is served is then what the evaluation's masked protocol measures.
   - `similarity_candidates` then `rerank` (`similarity`): the user's interest vector (recency-weighted
     mean of the content vectors of the history) against every item's content vector, a brute-force
     matrix product in blocks of users (`rows_per_block`), engaged items excluded; users or items without content fall
     back to popularity; the ranker re-scores those candidates only. Cheaper for a ranker whose
     full scoring is costly, but it can only serve what the candidates hold (on MicroLens-50K 200
     candidates hold 11.8% of the test targets, and the model's own top 200 several times more).
   Padding and items the model scores -inf never make the top K: a user with fewer than K unseen
   items gets fewer items (0 fills the row).

The ranker evaluation's "history masked" protocol masks the same engaged set, and its
`scoring_path` (ranker/evaluate.py) measures both retrievals as score-batch runs them: how many test
targets the top `n_candidates` hold, and NDCG@10 of the top 10 written. Reads nothing and writes
nothing: flows/score.py wires it to the warehouse.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ranker.data import Dataset, Queries
from ranker.names import RETRIEVALS

# Scores held at once (users x items): 128 MB of float32; with the model's own arrays, the copy
# and the selection masks, a block's peak is a few times that (1,024 users at MicroLens's 19,221 items).
BLOCK_CELLS = 1 << 25


def rows_per_block(n_items: int, most: int = 1024) -> int:
    """Users scored at once against every item: at most `most`, fewer for large catalogues."""
    return max(1, min(most, BLOCK_CELLS // (n_items + 1)))


def current_queries(data: Dataset) -> Queries:
    """One query per user: the history before their latest positive, with that positive appended."""
    order = np.lexsort((data.event_ts, data.queries.users))
    users = data.queries.users[order]
    last = order[np.r_[users[1:] != users[:-1], True]] if len(order) else order  # each user's latest row
    q = data.queries.take(last)
    shift = lambda hist, newest: np.concatenate([hist[:, 1:], newest[:, None].astype(hist.dtype)], 1)  # noqa: E731
    return Queries(
        q.users, shift(q.hist_items, data.targets[last]), shift(q.hist_events, data.target_events[last]), shift(q.hist_ratios, data.target_ratios[last])
    )


def interest_vectors(data: Dataset, queries: Queries, half_life: float = 5.0) -> npt.NDArray[np.float32]:
    """(Q, D) unit vectors: the history's content vectors, the newest weighing most (half-life in steps)."""
    length = queries.hist_items.shape[1]
    decay = 0.5 ** (np.arange(length)[::-1] / half_life)  # (T,), 1 for the newest step
    weights = decay[None, :] * (queries.hist_items > 0)  # (Q, T)
    vectors = np.einsum("qt,qtd->qd", weights, data.content[queries.hist_items])
    return (vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-9)).astype(np.float32)


def engaged_pairs(data: Dataset, queries: Queries, user_ids: Sequence[str], item_ids: Sequence[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(query rows, item indices), sorted by row: the (user, item) pairs of the engaged set mapped
    onto `queries` (one query per user, as `current_queries` gives) and the item vocabulary of `data`.
    Pairs of users without a query, or of items outside the vocabulary (ingested since), are dropped."""
    row_of = {user: row for row, user in enumerate(queries.users)}
    index = {item: i for i, item in enumerate(data.item_ids) if i}
    pairs = [(row_of[u], index[i]) for u, i in zip(user_ids, item_ids) if u in row_of and i in index]
    pairs_array = np.asarray(sorted(pairs), np.int64).reshape(-1, 2)
    return pairs_array[:, 0], pairs_array[:, 1]


def similarity_candidates(
    data: Dataset, queries: Queries, n_candidates: int, *, engaged: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]], block: int | None = None
) -> npt.NDArray[np.int64]:
    """(Q, C) item indices with the highest cosine to each user's interest, best first, never an
    item of `engaged` (`engaged_pairs`); 0 (padding) where a user has fewer than C unseen items.
    Ties (no content) are broken by training popularity, so cold users get the popular items."""
    n_candidates = min(n_candidates, data.n_items)
    # A tie-breaker far below any cosine difference: popularity rank, scaled into [0, 1e-4).
    popularity = np.argsort(np.argsort(data.train_counts)).astype(np.float32) / (len(data.train_counts) * 1e4)
    item_matrix = data.content.T  # (D, n_items + 1)
    engaged_rows, engaged_items = engaged
    block = block or rows_per_block(data.n_items)
    out = np.empty((len(queries), n_candidates), np.int64)
    for start in range(0, len(queries), block):
        stop = min(start + block, len(queries))
        q = queries.take(np.arange(start, stop))
        sims = interest_vectors(data, q) @ item_matrix + popularity  # (B, n_items + 1)
        sims[:, 0] = -np.inf  # padding
        lo, hi = np.searchsorted(engaged_rows, [start, stop])
        sims[engaged_rows[lo:hi] - start, engaged_items[lo:hi]] = -np.inf
        top = np.argpartition(-sims, n_candidates - 1, axis=1)[:, :n_candidates]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(sims, top, 1), 1, kind="stable"), 1)
        out[start:stop] = np.where(np.isfinite(np.take_along_axis(sims, top, 1)), top, 0)  # engaged: none
    return out


def rerank(
    model, data: Dataset, queries: Queries, candidates: npt.NDArray[np.int64], k: int, *, block: int | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The model's top `k` of each row of candidates: item indices (Q, k) and scores (Q, k), best
    first. Padding candidates (0) and candidates the model scores -inf are never kept: a row with
    fewer than `k` others ends in 0s (score -inf)."""
    k = min(k, candidates.shape[1])
    block = block or rows_per_block(data.n_items if data is not None else 0, most=2048)  # sasrec* score candidates through score_all
    items = np.empty((len(queries), k), np.int64)
    scores = np.empty((len(queries), k), np.float32)
    for start in range(0, len(queries), block):
        rows = np.arange(start, min(start + block, len(queries)))
        real = candidates[rows] > 0  # (B, C)
        # Models are shown a real item in place of padding (item 1), whose score is then discarded.
        shown = np.where(real, candidates[rows], 1)
        scored = np.asarray(model.score_items(data, queries.take(rows), shown), np.float32)  # (B, C)
        # A candidate the model cannot score (-inf: sasrec-content on an item without content) is
        # dropped like padding, never written as a recommendation.
        scored = np.where(real & ~np.isnan(scored), scored, -np.inf)
        best = np.argsort(-scored, axis=1, kind="stable")[:, :k]
        scores[rows] = np.take_along_axis(scored, best, 1)
        items[rows] = np.where(np.isneginf(scores[rows]), 0, np.take_along_axis(candidates[rows], best, 1))
    return items, scores


def top_by_index(scored: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.int64]:
    """(B, k) column indices of each row's k highest values, best first, ties to the lower index
    (also among the values tied at the k-th place). In place: `scored` is negated and restored."""
    np.negative(scored, out=scored)  # ascending order of -score
    kth = np.partition(scored, k - 1, axis=1)[:, k - 1 : k]  # (B, 1): the k-th best
    better = scored < kth
    tied = scored == kth  # -inf scores are +inf here: tied with each other, so filled by index too
    need = k - better.sum(1, keepdims=True)
    keep = better | (tied & (np.cumsum(tied, axis=1) <= need))  # exactly k per row, in index order
    top = np.nonzero(keep)[1].reshape(len(scored), k)
    order = np.argsort(np.take_along_axis(scored, top, 1), axis=1, kind="stable")
    np.negative(scored, out=scored)
    return np.take_along_axis(top, order, 1)


def model_top(
    model, data: Dataset, queries: Queries, k: int, *, engaged: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]], block: int | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The model's own top `k` of every item for each query: item indices (Q, k) and scores (Q, k),
    best first, never an item of `engaged` (`engaged_pairs`), padding, or an item the model scores
    -inf or NaN (a content ranker on an item without content); a row with fewer than `k` such items
    ends in 0s (score -inf). Ties go to the lower item index, at the cut too (`top_by_index`): the
    same scores always write the same rows, and popularity's or itemknn's many equal scores do not
    depend on how a partition happened to fall. A re-ranker (lightgbm) re-ranks its base model's top
    `top_k` of the same items, so that its trees are spent on items the user may be served."""
    if getattr(model, "base", None) is not None:  # a re-ranker (lightgbm): its base's own top unseen items, re-ranked
        candidates, _ = model_top(model.base, data, queries, max(k, model.top_k), engaged=engaged, block=block)
        return rerank(model, data, queries, candidates, k)
    k = min(k, data.n_items)
    engaged_rows, engaged_items = engaged
    block = block or rows_per_block(data.n_items)
    items = np.empty((len(queries), k), np.int64)
    scores = np.empty((len(queries), k), np.float32)
    for start in range(0, len(queries), block):
        stop = min(start + block, len(queries))
        scored = np.array(model.score_all(data, queries.take(np.arange(start, stop))), np.float32, copy=True)  # (B, n_items + 1)
        scored[np.isnan(scored)] = -np.inf
        scored[:, 0] = -np.inf  # padding
        lo, hi = np.searchsorted(engaged_rows, [start, stop])
        scored[engaged_rows[lo:hi] - start, engaged_items[lo:hi]] = -np.inf
        top = top_by_index(scored, k)
        scores[start:stop] = np.take_along_axis(scored, top, 1)
        items[start:stop] = np.where(np.isneginf(scores[start:stop]), 0, top)
    return items, scores


def retrieve(
    model,
    data: Dataset,
    queries: Queries,
    k: int,
    *,
    engaged: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]],
    retrieval: str = RETRIEVALS[0],
    n_candidates: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """score-batch's top `k` per query by `retrieval` (module docstring): (Q, k) items and scores."""
    if retrieval == "model":
        return model_top(model, data, queries, k, engaged=engaged)
    if retrieval == "similarity":
        return rerank(model, data, queries, similarity_candidates(data, queries, n_candidates, engaged=engaged), k)
    raise ValueError(f"unknown retrieval {retrieval!r}; use one of {', '.join(RETRIEVALS)}")
