"""The evaluation harness: every ranker, the same split, the same queries, the same negatives.

- Full ranking of the test target against ALL items (history items included: none are masked),
  HR@10/20 and NDCG@10/20, with bootstrap 95% intervals over users (one test target per user).
- CTR-style metrics on sampled negatives (25 uniform + 25 popularity-proportional per target,
  seeded, shared by all models): AUC, GAUC (per user), logloss for models whose scores are log-odds.
- Slices: overall; cold_users (the same users' histories cut to their last 1-3 steps, labelled
  as cut); cold_items (test targets never seen in training, scored by content where a model has it).
"""

from __future__ import annotations

import numpy as np

from ranker.base import sample_negatives
from ranker.data import Dataset, Queries
from ranker.metrics import auc, bootstrap_ci, gauc, hit_rate, logloss, ndcg, target_ranks


def evaluation_slices(data: Dataset, *, max_users: int, seed: int) -> dict[str, tuple[np.ndarray, Queries]]:
    rng = np.random.default_rng(seed)
    test = np.flatnonzero(data.split == "test")
    rows = np.sort(rng.choice(test, min(max_users, len(test)), replace=False))
    queries = data.queries.take(rows)
    keep = 1 + np.arange(len(rows)) % 3  # 1, 2 or 3 history steps
    cold_item_rows = test[data.train_counts[data.targets[test]] == 0]
    if len(cold_item_rows) > max_users:
        cold_item_rows = np.sort(rng.choice(cold_item_rows, max_users, replace=False))
    return {
        "overall": (rows, queries),
        "cold_users": (rows, queries.cut(keep)),
        "cold_items": (cold_item_rows, data.queries.take(cold_item_rows)),
    }


def evaluate_model(model, data: Dataset, slices: dict, *, seed: int, batch: int = 256) -> dict[str, dict]:
    out = {}
    for name, (rows, queries) in slices.items():
        if len(rows) == 0:
            out[name] = {"users": 0}
            continue
        targets = data.targets[rows]
        ranks = np.concatenate([
            target_ranks(model.score_all(data, queries.take(part)), targets[part])
            for part in np.array_split(np.arange(len(rows)), max(1, len(rows) // batch))
        ])
        result: dict[str, float | int | list] = {"users": int(len(rows))}
        for k in (10, 20):
            for metric, values in ((f"hr@{k}", hit_rate(ranks, k)), (f"ndcg@{k}", ndcg(ranks, k))):
                result[metric] = float(values.mean())
                result[f"{metric}_ci95"] = list(bootstrap_ci(values, seed=seed))
        result.update(ctr_metrics(model, data, rows, queries, seed=seed))
        out[name] = result
    return out


def ctr_metrics(model, data: Dataset, rows: np.ndarray, queries: Queries, *, seed: int) -> dict[str, float | None]:
    rng = np.random.default_rng(seed + 7)
    uniform, popular = sample_negatives(data, len(rows) * 25, rng)
    items = np.concatenate([data.targets[rows][:, None], uniform.reshape(len(rows), 25), popular.reshape(len(rows), 25)], 1)
    scores = model.score_items(data, queries, items)
    labels = np.zeros_like(scores)
    labels[:, 0] = 1
    users = np.repeat(queries.users, items.shape[1])
    result = {"auc": auc(labels.ravel(), scores.ravel()), "gauc": gauc(users, labels.ravel(), scores.ravel()),
              "logloss": logloss(labels.ravel(), 1 / (1 + np.exp(-scores.ravel()))) if model.probabilistic else None}
    heads = getattr(model, "heads", [])
    for head in heads[1:]:  # per-behaviour heads of lstm-attn: like, comment on the sample
        head_scores = model.score_items(data, queries, items, head=head)
        head_labels = np.zeros_like(head_scores)
        head_labels[:, 0] = data.labels[head][rows]
        result[f"auc_{head}"] = auc(head_labels.ravel(), head_scores.ravel())
    return result
