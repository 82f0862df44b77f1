"""lightgbm: the CTR stage. It re-ranks the top candidates of lstm-attn with gradient-boosted
trees over engineered features: the candidate's cosine similarity to the user's mean interest
vector and to the most recent items (content), its popularity and coldness, the history length,
and the lstm-attn score. Trained on the validation split (targets against the base model's top
candidates and sampled negatives), so the base score it learns from is not the base model's own
training data; `pred_contrib` gives per-feature contributions for explanations.
"""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np

from ranker.base import sample_negatives
from ranker.data import Dataset, Queries

FEATURES = ("base_score", "cos_mean_interest", "cos_last_item", "max_cos_last3", "log_popularity", "cold_item", "history_length")


class LightGBMCtr:
    name, probabilistic = "lightgbm", True
    version = ""
    heads = ["engage"]  # one objective; never mutated
    feature_names = list(FEATURES)

    def __init__(self, base, *, top_k: int = 100, train_users: int = 5000, hard_negatives: int = 20) -> None:
        self.base, self.top_k, self.train_users, self.hard_negatives = base, top_k, train_users, hard_negatives
        self.booster: lgb.Booster | None = None

    def features(self, data: Dataset, queries: Queries, items: np.ndarray, base_scores: np.ndarray) -> np.ndarray:
        """(Q, C) candidates -> (Q * C, len(FEATURES))."""
        content = data.content
        hist = content[queries.hist_items]  # (Q, T, D)
        present = (queries.hist_items > 0)[..., None]
        mean = (hist * present).sum(1)
        mean /= np.linalg.norm(mean, axis=1, keepdims=True) + 1e-9
        cand = content[items]  # (Q, C, D)
        cos_mean = np.einsum("qcd,qd->qc", cand, mean)
        cos_recent = np.einsum("qcd,qtd->qct", cand, hist[:, -3:])  # last three steps
        counts = data.train_counts[items]
        length = np.broadcast_to((queries.hist_items > 0).sum(1, keepdims=True), items.shape)
        columns = [base_scores, cos_mean, cos_recent[..., -1], cos_recent.max(-1), np.log1p(counts), ~data.in_training[items], length]
        return np.stack([np.asarray(c, np.float32) for c in columns], -1).reshape(-1, len(FEATURES))

    def fit(self, data: Dataset, *, seed: int = 0, checkpoint: Path | None = None) -> None:  # one pass: nothing to continue
        rng = np.random.default_rng(seed)
        valid = np.flatnonzero(data.split == "valid")
        rows = np.sort(rng.choice(valid, min(self.train_users, len(valid)), replace=False))
        queries = data.queries.take(rows)
        scores = self.base.score_all(data, queries)
        top = np.argsort(-scores, axis=1)[:, : self.hard_negatives + 1]
        uniform, popular = (x.reshape(len(rows), -1) for x in sample_negatives(data, len(rows) * 10, rng))
        items = np.concatenate([data.targets[rows][:, None], top, uniform, popular], 1)
        labels = (items == data.targets[rows][:, None]).astype(np.float32)
        labels[:, 1:] = np.where(items[:, 1:] == items[:, :1], np.nan, 0)  # a sampled copy of the target: drop
        x = self.features(data, queries, items, np.take_along_axis(scores, items, 1))
        keep = ~np.isnan(labels.ravel())
        train = lgb.Dataset(x[keep], labels.ravel()[keep], feature_name=list(FEATURES))
        # The base model's score may only raise the prediction (monotone): with little training data
        # the trees otherwise carve noise out of it.
        params = {
            "objective": "binary",
            "learning_rate": 0.05,
            "num_leaves": 31,
            "min_data_in_leaf": 20,
            "monotone_constraints": [1] + [0] * (len(FEATURES) - 1),
            "seed": seed,
            "deterministic": True,
            # One thread: the fit's rows are few (a validation sample's candidates), and OpenMP threads
            # that spin while another process holds a core took 145-195 s for a 0.9 s fit (probes,
            # 2026-12-06: 2 threads, or 0 = OpenMP's default, on 2 shared cores; the same trees).
            "num_threads": 1,
            "verbose": -1,
        }
        self.booster = lgb.train(params, train, num_boost_round=200)

    def score_items(self, data: Dataset, queries: Queries, items: np.ndarray) -> np.ndarray:
        base = self.base.score_items(data, queries, items)
        raw = self.booster.predict(self.features(data, queries, items, base), raw_score=True)
        return raw.reshape(items.shape).astype(np.float32)

    def contributions(self, data: Dataset, queries: Queries, items: np.ndarray) -> np.ndarray:
        """Per-feature contributions (Q, C, features + bias) to the log-odds, from pred_contrib."""
        base = self.base.score_items(data, queries, items)
        contrib = self.booster.predict(self.features(data, queries, items, base), pred_contrib=True)
        return contrib.reshape(*items.shape, len(FEATURES) + 1)

    def score_all(self, data: Dataset, queries: Queries) -> np.ndarray:
        """The base model's ranking, with its top `top_k` re-ordered by the trees: in each row every
        item outside the top `top_k` scores below every re-ranked item (its base order kept). An item
        the base scores -inf (nothing to score it with) stays -inf, also inside the top `top_k` (a
        row with fewer scorable items: review)."""
        scores = self.base.score_all(data, queries)
        top = np.argsort(-scores, axis=1)[:, : self.top_k]
        scorable = np.isfinite(np.take_along_axis(scores, top, axis=1))
        reranked = np.where(scorable, self.score_items(data, queries, top), -np.inf)  # (Q, top_k)
        finite = np.where(np.isfinite(scores), scores, -np.inf)
        row_max = finite.max(1, keepdims=True)
        row_max = np.where(np.isfinite(row_max), row_max, 0.0)
        lowest = np.where(scorable, reranked, np.inf).min(1, keepdims=True)
        lowest = np.where(np.isfinite(lowest), lowest, 0.0)
        # Shift the rest so that its best item sits 1 below the row's lowest re-ranked score.
        out = scores - row_max + (lowest - 1)
        np.put_along_axis(out, top, reranked, axis=1)
        out[:, 0] = -np.inf
        return out.astype(np.float32)

    def save(self, path: Path) -> None:
        self.booster.save_model(str(path))

    def load(self, path: Path, data: Dataset) -> None:
        self.booster = lgb.Booster(model_file=str(path))
