"""Metrics against values computed by hand, and the ranking invariants they rest on (hypothesis)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ranker.evaluate import mask_seen
from ranker.metrics import auc, bootstrap_ci, gauc, hit_rate, logloss, ndcg, target_ranks


def test_ranks_hits_and_ndcg_by_hand():
    scores = np.array([[0.0, 0.9, 0.5, 0.7], [0.0, 0.1, 0.2, 0.3], [0.0, 1.0, 1.0, 1.0]], np.float32)
    ranks = target_ranks(scores, np.array([2, 3, 1]))
    assert ranks.tolist() == [3.0, 1.0, 2.0]  # row 3: three-way tie -> average of ranks 1..3 is 2
    assert hit_rate(ranks, 1).tolist() == [0, 1, 0]
    assert ndcg(ranks, 2) == pytest.approx([0.0, 1.0, 1 / np.log2(3)])
    # A target at -inf is never served: the last rank (4 columns), not the -inf items' average (3)
    unscored = np.array([[-np.inf, 0.3, -np.inf, -np.inf]], np.float32)
    assert target_ranks(unscored, np.array([2])).tolist() == [4.0] and hit_rate(target_ranks(unscored, np.array([2])), 3).tolist() == [0]


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


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_masking_only_lowers_history_items_and_never_the_target(data):
    """The masked protocol: items seen before fall to -inf, every other item keeps its score, so the
    target's rank can only improve; a target the user saw before keeps its own score."""
    n_items = data.draw(st.integers(2, 12))
    scores = np.asarray([data.draw(st.lists(st.floats(-5, 5, width=32), min_size=n_items + 1, max_size=n_items + 1))], np.float32)
    target = np.asarray([data.draw(st.integers(1, n_items))])
    seen = np.asarray(sorted(data.draw(st.sets(st.integers(1, n_items)))), np.int64)
    masked = scores.copy()
    mask_seen(masked, [seen], target)
    assert masked[0, target[0]] == scores[0, target[0]]
    for item in range(1, n_items + 1):
        if item in seen and item != target[0]:
            assert masked[0, item] == -np.inf
        else:
            assert masked[0, item] == scores[0, item]
    assert target_ranks(masked, target)[0] <= target_ranks(scores, target)[0]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_targets_rank_does_not_depend_on_the_order_of_the_items(data):
    n_items = data.draw(st.integers(1, 12))
    scores = np.asarray([data.draw(st.lists(st.sampled_from([-1.0, 0.0, 0.5, 2.0]), min_size=n_items, max_size=n_items))], np.float32)
    target = data.draw(st.integers(0, n_items - 1))
    order = np.asarray(data.draw(st.permutations(range(n_items))))
    moved = int(np.flatnonzero(order == target)[0])
    assert target_ranks(scores[:, order], np.asarray([moved]))[0] == target_ranks(scores, np.asarray([target]))[0]
