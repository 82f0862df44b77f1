"""Metrics against values computed by hand."""

import numpy as np
import pytest

from ranker.metrics import auc, bootstrap_ci, gauc, hit_rate, logloss, ndcg, target_ranks


def test_ranks_hits_and_ndcg_by_hand():
    scores = np.array([[0.0, 0.9, 0.5, 0.7], [0.0, 0.1, 0.2, 0.3], [0.0, 1.0, 1.0, 1.0]], np.float32)
    ranks = target_ranks(scores, np.array([2, 3, 1]))
    assert ranks.tolist() == [3.0, 1.0, 2.0]  # row 3: three-way tie -> average of ranks 1..3 is 2
    assert hit_rate(ranks, 1).tolist() == [0, 1, 0]
    assert ndcg(ranks, 2) == pytest.approx([0.0, 1.0, 1 / np.log2(3)])


def test_auc_gauc_and_logloss_by_hand():
    labels = np.array([1, 0, 1, 0], np.float32)
    assert auc(labels, np.array([0.9, 0.1, 0.4, 0.5], np.float32)) == 0.75  # 3 of the 4 pairs right
    assert auc(labels, np.array([0.5, 0.5, 0.5, 0.5], np.float32)) == 0.5
    users = np.array(["a", "a", "b", "b", "b"], dtype=object)
    # a: perfect (2 rows); b: 1 positive, 2 negatives, one above it -> 0.5 (3 rows) => (2*1 + 3*0.5)/5
    assert gauc(users, np.array([1, 0, 1, 0, 0], np.float32), np.array([0.9, 0.1, 0.5, 0.7, 0.2], np.float32)) == pytest.approx(0.7)
    assert logloss(np.array([1, 0], np.float32), np.array([0.5, 0.5], np.float32)) == pytest.approx(np.log(2))


def test_bootstrap_interval_contains_the_mean_and_narrows_with_data():
    rng = np.random.default_rng(0)
    small, large = rng.random(50), rng.random(5000)
    lo, hi = bootstrap_ci(large)
    assert lo < large.mean() < hi
    assert (hi - lo) < np.subtract(*bootstrap_ci(small)[::-1])
