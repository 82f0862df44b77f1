"""Cold start, named for what it is: a split whose training never sees some items or some users.

`cold_split(data, item_share=0.2, user_share=0.1, seed)`:
- withheld items: a seeded share of the items that occur in the data. Rows whose target is one
  of them leave the training and validation rows, they are cut out of every training and
  validation history (the histories are re-packed), and `Dataset.withheld` keeps them out of the
  training softmax as negatives too, so training never sees them at all;
- withheld users: a seeded share of the users; none of their rows is trained or validated on.
The returned `Dataset` is the one to train on (its `in_training` shows the withheld items as
never seen). `item_cold_rows` and `user_cold_rows` give the rows to evaluate on, from the
original data:
- item-cold: test rows of the users kept in training, labelled cold (target withheld) or warm;
  their histories are as observed (an item that exists at serving time is in the history);
- user-cold: for each withheld user, the row predicting their (k+1)-th positive from their first
  k, for k in 1, 2, 3, 5: the user is new to the model, only those k interactions are known.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from ranker.data import EVENT_INDEX, Dataset, Queries, training_counts

NEW_USER_STEPS = (1, 2, 3, 5)


@dataclass
class ColdSplit:
    train_data: Dataset
    withheld_items: npt.NDArray[np.bool_]  # (n_items + 1,)
    withheld_users: set[str]


def cold_split(data: Dataset, *, item_share: float = 0.2, user_share: float = 0.1, seed: int = 0) -> ColdSplit:
    rng = np.random.default_rng(seed)
    present = np.unique(np.concatenate([data.targets, data.queries.hist_items.ravel()]))
    present = present[present > 0]
    withheld = np.zeros(data.n_items + 1, bool)
    withheld[rng.choice(present, int(round(item_share * len(present))), replace=False)] = True
    users = np.unique(data.queries.users)
    cold_users = set(rng.choice(users, int(round(user_share * len(users))), replace=False).tolist())
    user_cold = np.isin(data.queries.users, list(cold_users))
    trainable = (data.split != "test") & ~user_cold & ~withheld[data.targets]
    split = np.where(trainable, data.split, "excluded").astype(object)
    hist = _without(data.queries, withheld)
    counts, seen = training_counts(data.targets, split, hist.hist_items, data.n_items)
    train = replace(data, queries=hist, split=split, train_counts=counts, in_training=seen, withheld=withheld)
    return ColdSplit(train, withheld, cold_users)


def _without(queries: Queries, withheld: npt.NDArray[np.bool_]) -> Queries:
    """Histories with the withheld items cut out and the rest re-packed to the right."""
    keep = (queries.hist_items > 0) & ~withheld[queries.hist_items]
    # Stable sort that moves kept steps to the right, in their order.
    order = np.argsort(keep, axis=1, kind="stable")
    take = lambda a: np.where(np.take_along_axis(keep, order, 1), np.take_along_axis(a, order, 1), 0)  # noqa: E731
    return Queries(queries.users, take(queries.hist_items), take(queries.hist_events), take(queries.hist_ratios).astype(np.float32), queries.cold)


def item_cold_rows(data: Dataset, split: ColdSplit) -> dict[str, npt.NDArray[np.int64]]:
    """Test rows of users kept in training, by whether their target was withheld."""
    test = np.flatnonzero((data.split == "test") & ~np.isin(data.queries.users, list(split.withheld_users)))
    cold = split.withheld_items[data.targets[test]]
    return {"cold_targets": test[cold], "warm_targets": test[~cold]}


def user_cold_rows(data: Dataset, split: ColdSplit) -> dict[int, npt.NDArray[np.int64]]:
    """For each k, one row per withheld user with more than k engagements: the earliest row whose
    history holds exactly k engagements (watch, like, comment, share; bare impressions in the
    history are context, not interactions) and whose window still holds the whole history."""
    mine = np.isin(data.queries.users, list(split.withheld_users))
    engaged = (data.queries.hist_events > EVENT_INDEX["impression"]).sum(1)
    full = (data.queries.hist_items > 0).sum(1) < data.queries.hist_items.shape[1]
    out = {}
    for k in NEW_USER_STEPS:
        rows = np.flatnonzero(mine & full & (engaged == k))
        # The earliest such row per user (rows of one user are in time order).
        _, first = np.unique(data.queries.users[rows], return_index=True)
        out[k] = np.sort(rows[first])
    return out
