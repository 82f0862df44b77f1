"""Ranking and CTR metrics, checked against hand-computed values in tests/test_metrics.py."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def target_ranks(scores: npt.NDArray[np.float32], targets: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """1-based rank of each row's target among all columns; ties share the average rank, so a
    constant scorer gets the middle rank, not the best one. A target scored -inf (an item the model
    has nothing to score with, or a masked one) is never served: it takes the last rank, not the
    average of the other -inf items', which a small catalogue could put in the top 10 (review)."""
    target_scores = scores[np.arange(len(scores)), targets][:, None]
    greater = (scores > target_scores).sum(1)
    ties = (scores == target_scores).sum(1) - 1
    return np.where(np.isneginf(target_scores[:, 0]), float(scores.shape[1]), 1 + greater + ties / 2)


def hit_rate(ranks: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.float64]:
    return (ranks <= k).astype(np.float64)


def ndcg(ranks: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.float64]:
    """One relevant item per query, so the ideal DCG is 1."""
    return np.where(ranks <= k, 1.0 / np.log2(ranks + 1), 0.0)


def auc(labels: npt.NDArray[np.float32], scores: npt.NDArray[np.float32]) -> float:
    """Probability that a random positive outscores a random negative (ties count one half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    values = np.concatenate([pos, neg])[order]
    # average ranks over ties
    _, first, counts = np.unique(values, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2
    ranks[order] = np.repeat(average, counts)
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def gauc(groups: npt.NDArray[np.object_], labels: npt.NDArray[np.float32], scores: npt.NDArray[np.float32]) -> float:
    """AUC per group (user), averaged with weights = the group's number of rows; groups with one class skipped."""
    total, weight = 0.0, 0
    order = np.argsort(groups, kind="mergesort")
    groups, labels, scores = groups[order], labels[order], scores[order]
    bounds = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1], True])
    for start, end in zip(bounds[:-1], bounds[1:]):
        value = auc(labels[start:end], scores[start:end])
        if not np.isnan(value):
            total += value * (end - start)
            weight += end - start
    return total / weight if weight else float("nan")


def logloss(labels: npt.NDArray[np.float32], probabilities: npt.NDArray[np.float32]) -> float:
    p = np.clip(probabilities.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def bootstrap_ci(values: npt.NDArray[np.float64], *, n_resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean, resampling users (one value per user)."""
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_resamples, len(values)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))
