"""The evaluation harness: every ranker, the same split, the same queries, paired over users.

- Full ranking of each test target against ALL items under two protocols, side by side:
  `unmasked` (history items keep their scores: RecBole's default for sequential models) and
  `masked` (every item the user engaged with before the target is removed, the target itself
  excepted: MicroLens's official code, and what score-batch does). HR@10/20 and NDCG@10/20 with
  bootstrap 95% intervals over users (one test target per user).
- Paired comparisons: the per-user NDCG@10 difference of each model to a reference model
  (`sasrec`), with a paired bootstrap 95% interval (the same resampled users for both models).
- CTR-style metrics on sampled negatives (25 uniform + 25 popularity-proportional per target,
  seeded, shared by all models): AUC, GAUC, logloss where scores are log-odds.
- Slices named for what they are: overall; natural_cold_items (test targets never seen in
  training, ranked among all items); warm_items (the other test targets). The withheld-users and
  withheld-items splits, which need their own training run, are in ranker/coldstart.py.
- The scoring path as score-batch runs it (`scoring_path`), for both of its retrievals
  (ranker/scoring.py): `model` (the default: the model's own ranking of every item) and
  `similarity` (200 similarity candidates re-ranked): the share of test targets among the top 200
  (recall@200 of the candidate generator), and NDCG@10 / HR@10 of the top 10 the model writes.
  Items engaged with before are never served, so a repeated target is a miss there (its share is
  reported as `repeat_targets`).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import numpy.typing as npt

from ranker.base import sample_negatives
from ranker.data import EVENT_INDEX, Dataset, Queries
from ranker.metrics import auc, bootstrap_ci, gauc, hit_rate, logloss, ndcg, target_ranks
from ranker.names import CANDIDATES, RETRIEVALS
from ranker.scoring import model_top, rerank, similarity_candidates
from warehouse.errors import ReelsenseError

PROTOCOLS = ("unmasked", "masked")


def test_rows(data: Dataset, *, max_users: int | None, seed: int) -> npt.NDArray[np.int64]:
    """Every test row (one per user), or a seeded sample of `max_users` of them."""
    test = np.flatnonzero(data.split == "test")
    if not len(test):
        raise ReelsenseError(
            "no test users: a user needs at least 3 positive interactions (the last is the test target, the one before validation); ingest more events"
        )
    if max_users is None or len(test) <= max_users:
        return test
    return np.sort(np.random.default_rng(seed).choice(test, max_users, replace=False))


def evaluation_slices(data: Dataset, rows: npt.NDArray[np.int64]) -> dict[str, npt.NDArray[np.int64]]:
    """Positions into `rows` of each slice."""
    cold = ~data.in_training[data.targets[rows]]
    return {"overall": np.arange(len(rows)), "natural_cold_items": np.flatnonzero(cold), "warm_items": np.flatnonzero(~cold)}


def earlier_items(data: Dataset, rows: npt.NDArray[np.int64]) -> list[npt.NDArray[np.int64]]:
    """For each row, the items its user engaged with before it, as score-batch defines engaged
    (any event but a bare impression): every earlier positive target of the user (not only the
    last MAX_HISTORY steps), and the history steps that were more than an impression. This is the
    set the masked protocol removes. (A weak watch older than the history window is not in it.)"""
    by_user: dict[str, list[int]] = defaultdict(list)
    for row in np.argsort(data.event_ts, kind="stable"):
        by_user[data.queries.users[row]].append(int(row))
    out = []
    for row in rows:
        mine = by_user[data.queries.users[row]]
        earlier = [data.targets[r] for r in mine if data.event_ts[r] < data.event_ts[row]]
        engaged = data.queries.hist_items[row][data.queries.hist_events[row] > EVENT_INDEX["impression"]]
        out.append(np.unique(np.concatenate([np.asarray(earlier, np.int64), engaged])))
    return out


def mask_seen(scores: npt.NDArray[np.float32], seen: list[npt.NDArray[np.int64]], targets: npt.NDArray[np.int64]) -> None:
    """In place: items seen before are -inf, except each row's own target (and padding stays -inf)."""
    for i, items in enumerate(seen):
        keep = scores[i, targets[i]]
        scores[i, items] = -np.inf
        scores[i, targets[i]] = keep
    scores[:, 0] = -np.inf


def ranks_by_protocol(
    model, data: Dataset, rows: npt.NDArray[np.int64], queries: Queries, *, batch: int = 512, seen: list[npt.NDArray[np.int64]] | None = None
) -> dict[str, npt.NDArray[np.float64]]:
    """1-based rank of each row's target among all items, under both protocols (one scoring pass);
    `seen`: `earlier_items(data, rows)`, when the caller has it already."""
    targets = data.targets[rows]
    seen = earlier_items(data, rows) if seen is None else seen
    out: dict[str, list] = {p: [] for p in PROTOCOLS}
    for start in range(0, len(rows), batch):
        part = np.arange(start, min(start + batch, len(rows)))
        scores = np.array(model.score_all(data, queries.take(part)), dtype=np.float32, copy=True)
        out["unmasked"].append(target_ranks(scores, targets[part]))
        mask_seen(scores, [seen[i] for i in part], targets[part])
        out["masked"].append(target_ranks(scores, targets[part]))
    return {p: np.concatenate(v) if v else np.zeros(0) for p, v in out.items()}


def ranking_metrics(ranks: npt.NDArray[np.float64], *, seed: int) -> dict[str, float | int | list[float]]:
    result: dict[str, float | int | list[float]] = {"users": int(len(ranks))}
    if not len(ranks):
        return result
    for k in (10, 20):
        for metric, values in ((f"hr@{k}", hit_rate(ranks, k)), (f"ndcg@{k}", ndcg(ranks, k))):
            result[metric] = float(values.mean())
            result[f"{metric}_ci95"] = list(bootstrap_ci(values, seed=seed))
    return result


def paired_bootstrap(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], *, n_resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """Mean of a - b over the same users, with a 95% percentile interval from resampling users
    (both models see the same resample), and the ratio of the means."""
    if len(a) != len(b) or not len(a):
        raise ValueError(f"paired bootstrap needs two equal, non-empty arrays, got {len(a)} and {len(b)}")
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n_resamples, len(diff)))].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"diff": float(diff.mean()), "ci95": [float(low), float(high)], "ratio": float(np.mean(a) / np.mean(b)) if np.mean(b) > 0 else None}


def evaluate_model(model, data: Dataset, rows: npt.NDArray[np.int64], *, seed: int, ctr_users: int = 2000) -> tuple[dict, dict[str, npt.NDArray[np.float64]]]:
    """Metrics of one model per protocol and slice, and its per-user ranks (for paired comparisons)."""
    queries = data.queries.take(rows)
    seen = earlier_items(data, rows)
    ranks = ranks_by_protocol(model, data, rows, queries, seen=seen)
    slices = evaluation_slices(data, rows)
    result = {p: {name: ranking_metrics(ranks[p][pos], seed=seed) for name, pos in slices.items()} for p in PROTOCOLS}
    sample = np.sort(np.random.default_rng(seed + 3).choice(len(rows), min(ctr_users, len(rows)), replace=False))
    result["ctr_sampled"] = {"users": int(len(sample)), **ctr_metrics(model, data, rows[sample], queries.take(sample), seed=seed)}
    for retrieval in RETRIEVALS:  # "scoring_path": the default, model; "scoring_path_similarity"
        key = "scoring_path" if retrieval == RETRIEVALS[0] else f"scoring_path_{retrieval}"
        result[key] = scoring_path(model, data, rows, seed=seed, seen=seen, retrieval=retrieval)
    return result, ranks


def scoring_path(
    model,
    data: Dataset,
    rows: npt.NDArray[np.int64],
    *,
    n_candidates: int = CANDIDATES,
    k: int = 10,
    seed: int = 0,
    seen: list[npt.NDArray[np.int64]] | None = None,
    retrieval: str = RETRIEVALS[0],
) -> dict[str, float | int | list[float] | str]:
    """What score-batch would serve for each test row (ranker/scoring.py), every item engaged with
    before removed (the target too: score-batch never recommends a repeat, so a repeated target is
    a miss here, unlike in the masked protocol): with `retrieval` "model", the model's own top
    `n_candidates` of every item; with "similarity", `n_candidates` items by embedding similarity to
    the history, re-ranked by `model`; the target's place in the top `k` written.
    `candidate_recall`: the share of targets among those `n_candidates` (`candidates` of them: fewer
    where the catalogue is smaller); `repeat_targets`: the share of targets engaged with before,
    which no candidate list holds."""
    queries = data.queries.take(rows)
    targets = data.targets[rows]
    seen = earlier_items(data, rows) if seen is None else seen
    engaged = (
        np.repeat(np.arange(len(rows)), [len(s) for s in seen]).astype(np.int64),
        np.concatenate(seen).astype(np.int64) if seen else np.zeros(0, np.int64),
    )
    if retrieval == "model":
        candidates, _ = model_top(model, data, queries, n_candidates, engaged=engaged)  # best first: the top k are written
        top = candidates[:, :k]
    else:
        candidates = similarity_candidates(data, queries, n_candidates, engaged=engaged)
        top, _ = rerank(model, data, queries, candidates, k)
    recalled = (candidates == targets[:, None]).any(1).astype(np.float64)
    hit = top == targets[:, None]
    ranks = np.where(hit.any(1), hit.argmax(1) + 1, np.inf)  # beyond the written top k: a miss
    repeats = np.array([t in s for s, t in zip(seen, targets)], bool)
    result: dict[str, float | int | list[float] | str] = {
        "retrieval": retrieval,
        "users": int(len(rows)),
        "candidates": int(candidates.shape[1]),
        "repeat_targets": float(repeats.mean()) if len(rows) else 0.0,
    }
    if len(rows):
        for name, values in (("candidate_recall", recalled), (f"hr@{k}", hit_rate(ranks, k)), (f"ndcg@{k}", ndcg(ranks, k))):
            result[name] = float(values.mean())
            result[f"{name}_ci95"] = list(bootstrap_ci(values, seed=seed))
    return result


def compare_to(reference: dict[str, npt.NDArray[np.float64]], ranks: dict[str, npt.NDArray[np.float64]], *, seed: int) -> dict[str, dict[str, float]]:
    """NDCG@10 of a model minus the reference's, paired over the same users, per protocol."""
    return {p: paired_bootstrap(ndcg(ranks[p], 10), ndcg(reference[p], 10), seed=seed) for p in PROTOCOLS}


def ctr_metrics(model, data: Dataset, rows: np.ndarray, queries: Queries, *, seed: int) -> dict[str, float | None]:
    rng = np.random.default_rng(seed + 7)
    uniform, popular = sample_negatives(data, len(rows) * 25, rng)
    items = np.concatenate([data.targets[rows][:, None], uniform.reshape(len(rows), 25), popular.reshape(len(rows), 25)], 1)
    scores = model.score_items(data, queries, items)
    finite = np.where(np.isfinite(scores), scores, np.nanmin(np.where(np.isfinite(scores), scores, np.nan)) - 1)
    labels = np.zeros_like(scores)
    labels[:, 0] = 1
    users = np.repeat(queries.users, items.shape[1])
    result = {
        "auc": auc(labels.ravel(), finite.ravel()),
        "gauc": gauc(users, labels.ravel(), finite.ravel()),
        "logloss": logloss(labels.ravel(), 1 / (1 + np.exp(-finite.ravel()))) if model.probabilistic else None,
    }
    for head in model.heads[1:]:  # per-behaviour heads of lstm-attn: like, comment on the sample
        head_scores = model.score_items(data, queries, items, head=head)
        head_labels = np.zeros_like(head_scores)
        head_labels[:, 0] = data.labels[head][rows]
        result[f"auc_{head}"] = auc(head_labels.ravel(), head_scores.ravel())
    return result
