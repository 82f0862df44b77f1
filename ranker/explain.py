"""Why an item was ranked for a user: attention, modality contributions, CTR feature contributions,
and the same in plain words.

- attention: lstm-attn's target-aware weights over the user's history (one per history step);
- modality contributions, two ways: the fusion weights align-items gave the target item's
  modalities, and leave-one-modality-out on lstm-attn: the score minus the score when that
  modality is removed from every item's fused vector (history and target alike), i.e. how much
  of its score (a softmax logit for lstm-attn) the model owes to seeing that modality;
- LightGBM's per-feature contributions (`pred_contrib`) where the CTR stage is trained;
- `summary`: the explanation in words, built from the items' tags (see the `item_tags` view).

No I/O here: flows/analyze.py reads the tables and writes `explanations`.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import numpy.typing as npt
import torch

from ranker.base import minibatches
from ranker.data import EVENT_INDEX, Dataset, ModalityVectors, Queries
from warehouse.progress import progress

MODALITY_WORDS = {"frames": "the picture", "audio": "the music", "text": "the title"}
EVENT_VERBS = {
    EVENT_INDEX[event]: verb for event, verb in {"impression": "saw", "watch": "watched", "like": "liked", "comment": "commented on", "share": "shared"}.items()
}


@torch.no_grad()
def leave_one_modality_out(
    model, data: Dataset, queries: Queries, items: npt.NDArray[np.int64], modalities: ModalityVectors | None
) -> tuple[list[str], npt.NDArray[np.float32]]:
    """(names, (Q, M)): lstm-attn's score of each query's item minus its score without each
    modality. Without aligned modalities the content is one block, taken out as a whole."""
    full = model.score_items(data, queries, items[:, None])[:, 0]
    kind = data.content_source.split(":")[0]
    names = modalities.names if modalities is not None else ([kind] if kind != "none" else [])
    out = np.zeros((len(queries), len(names)), np.float32)
    for i, name in enumerate(names):
        content = modalities.fused_without(name) if modalities is not None else np.zeros_like(data.content)
        with np.errstate(invalid="ignore"):  # an item without content scores -inf both ways: NaN, "nothing to take out"
            out[:, i] = full - model.score_items(data, queries, items[:, None], content=content)[:, 0]  # the model is not changed
    return names, out


def attention(model, data: Dataset, queries: Queries, items: npt.NDArray[np.int64], *, block: int = 1024) -> npt.NDArray[np.float32]:
    """(Q, T) lstm-attn attention over each query's history when scoring its item."""
    parts = [model.attention(data, queries.take(rows), items[rows]) for rows in minibatches(len(queries), block)]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(queries.hist_items.shape, np.float32)


def when(seconds_before: float) -> str:
    """'within a day of your last visit', 'a day before your last visit', '3 days before your last
    visit', ... for an interaction this long before the user's latest event of any kind (an
    impression counts: a visit), not before today, as the data may be old; a day is 24 hours."""
    days = seconds_before / 86400
    if days < 1:
        return "within a day of your last visit"
    if days < 2:
        return "a day before your last visit"
    if days < 14:
        return f"{int(days)} days before your last visit"
    return f"{int(days // 7)} weeks before your last visit"


def label(tags: dict[str, list[str]]) -> str:
    """An item in a word or two: its first hashtag, else keyword, else music or picture tag."""
    for kind in ("hashtag", "keyword", "music", "picture"):
        if tags.get(kind):
            return ("#" if kind == "hashtag" else "") + tags[kind][0]
    return "untagged"


def summarise(
    *,
    attention_weights: npt.NDArray[np.float32],
    history_tags: list[dict[str, list[str]]],
    history_events: list[int],
    history_age_s: list[float],
    modality_names: list[str],
    contributions: npt.NDArray[np.float32],
    target_tags: dict[str, list[str]],
    history_items: list[str] | None = None,
    target_has: npt.NDArray[np.bool_] | None = None,
) -> str:
    """The explanation in words: the history items that carried most of the attention (grouped by
    label, with what the user did and when), then which modality mattered most, with its tags.
    `target_has`: which modalities the item itself has (its fusion weights above 0; default all):
    only those are compared (probe: "the picture mattered" of an item without a video, whose
    frames' contribution was that of the history's pictures)."""
    order = np.argsort(-attention_weights)
    chosen, mass = [], 0.0
    for i in order:  # the fewest history items holding half of the attention
        if attention_weights[i] <= 0 or mass >= 0.5:
            break
        chosen.append(i)
        mass += float(attention_weights[i])
    parts = []
    if chosen:
        # The tag most of those items share names the group ('#travel' for #travel/#nature and #vlog/#travel).
        shared = Counter(tag for i in chosen for tag in _topic_tags(history_tags[i]))
        top_label = shared.most_common(1)[0][0] if shared else "untagged"
        group = [i for i in chosen if top_label in _topic_tags(history_tags[i])] or chosen
        group_mass = float(sum(attention_weights[i] for i in group))
        count = len({history_items[i] for i in group}) if history_items else len(group)  # a video seen twice counts once
        verbs = sorted({EVENT_VERBS.get(history_events[i], "saw") for i in group}, key=list(EVENT_VERBS.values()).index)
        newest = min(history_age_s[i] for i in group)
        noun = "video" if count == 1 else "videos"
        # "mostly" only where the group holds most of the attention (probe: "mostly" at 16%).
        lead = "mostly" if round(group_mass * 100) >= 50 else "in part"  # as the share is printed
        parts.append(
            f"{lead} because of the {count} {top_label} {noun} you {' or '.join(verbs)} "
            f"(the most recent {when(newest)}; {group_mass:.0%} of the attention, on {len(group)} of your "
            f"{len(history_tags)} recent interactions)"
        )
    else:
        parts.append("no history to go on: ranked by the item's content and popularity")
    has = np.ones(len(modality_names), bool) if target_has is None else np.asarray(target_has, bool)
    own = [(m, c) for m, c, h in zip(modality_names, contributions, has) if h]
    if not np.isfinite(contributions).all():  # the item has no content vector: nothing to take out
        parts.append("it has no content vector, so no modality contributed")
    elif own:  # only the item's own modalities are compared
        lacks = " or ".join(MODALITY_WORDS.get(m, m).removeprefix("the ") for m, h in zip(modality_names, has) if not h)
        said = f"it has no {lacks}; " if lacks else ""
        if len(own) > 1:
            ranked = sorted(own, key=lambda x: -x[1])
            (best, best_c), (worst, worst_c) = ranked[0], ranked[-1]
            best_c, worst_c = round(float(best_c), 2) + 0.0, round(float(worst_c), 2) + 0.0  # signs as shown (+ 0.0: no -0.00)
            first, last = _modality_phrase(best, target_tags), _modality_phrase(worst, target_tags)
            # By sign (probe: "mattered more" stood over a cost of -0.22, a modality that lowered the score)
            if worst_c >= 0:
                compared = f"{first} mattered more than {last} (leaving it out costs {best_c:+.2f} vs {worst_c:+.2f} of the score)"
            elif best_c > 0:
                compared = f"{first} added to the score and {last} took from it (leaving each out costs {best_c:+.2f} and {worst_c:+.2f})"
            else:
                compared = f"no modality added to the score: {first} took least from it, {last} most (leaving each out costs {best_c:+.2f} and {worst_c:+.2f})"
            parts.append(said + compared)
        else:
            cost = round(float(own[0][1]), 2) + 0.0
            change = f"added {cost:+.2f} to" if cost >= 0 else f"took {-cost:.2f} from"  # review: "added -1.16"
            parts.append(f"{said}its {own[0][0]} content {change} the score")
    return "; ".join(parts)


def _topic_tags(tags: dict[str, list[str]]) -> list[str]:
    """The tags that name an item's topic: hashtags, else title keywords, else music tags."""
    for kind, prefix in (("hashtag", "#"), ("keyword", ""), ("music", "")):
        if tags.get(kind):
            return [prefix + t for t in tags[kind][:3]]
    return []


def _modality_phrase(modality: str, tags: dict[str, list[str]]) -> str:
    words = MODALITY_WORDS.get(modality, modality)
    kind = {"frames": "picture", "audio": "music", "text": "hashtag"}.get(modality)
    shown = tags.get(kind or "", [])[:2] or (tags.get("keyword", [])[:2] if modality == "text" else [])
    return f"{words} ({', '.join(shown)})" if shown else words


def explain_pairs(
    model,
    data: Dataset,
    queries: Queries,
    items: npt.NDArray[np.int64],
    *,
    modalities: ModalityVectors | None,
    item_tags: dict[str, dict[str, list[str]]],
    history_age_s: npt.NDArray[np.float64],
    ctr=None,
) -> list[dict]:
    """One explanation per (query, item) pair, as rows of the `explanations` table (less run_id
    and model_version). history_age_s (Q, T): how long before the user's latest interaction each
    history step happened. `ctr`: a trained LightGBMCtr over `model`, for feature contributions."""
    weights = attention(model, data, queries, items)  # (Q, T)
    names, contributions = leave_one_modality_out(model, data, queries, items, modalities)
    fusion = modalities.weights[items] if modalities is not None else np.ones((len(items), len(names)), np.float32)
    features = ctr.contributions(data, queries, items[:, None])[:, 0] if ctr is not None else None  # (Q, F + 1)
    feature_names = [*ctr.feature_names, "bias"] if ctr is not None else None
    rows = []
    for q in progress(range(len(queries)), desc="explanations", unit="pair", leave=False, disable=len(queries) < 10_000):
        steps = np.flatnonzero(queries.hist_items[q] > 0)
        hist_ids = [data.item_ids[i] for i in queries.hist_items[q, steps]]
        target = data.item_ids[items[q]]
        summary = summarise(
            attention_weights=weights[q, steps],
            history_tags=[item_tags.get(i, {}) for i in hist_ids],
            history_events=queries.hist_events[q, steps].tolist(),
            history_age_s=history_age_s[q, steps].tolist(),
            modality_names=names,
            contributions=contributions[q],
            target_tags=item_tags.get(target, {}),
            history_items=hist_ids,
            target_has=fusion[q] > 0,
        )
        rows.append(
            {
                "user_id": str(queries.users[q]),
                "item_id": target,
                "history_item_ids": hist_ids,
                "attention": weights[q, steps].tolist(),
                "modality_names": names,
                "modality_contributions": contributions[q].tolist(),
                "fusion_weights": fusion[q].tolist(),
                "feature_names": feature_names,
                "feature_contributions": features[q].tolist() if features is not None else None,
                "summary": summary,
            }
        )
    return rows


def profile_words(profile: dict[str, list[tuple[str, float]]]) -> str:
    """A user's profile in a sentence, from their weighted tags by kind (see analysis/profiles.sql)."""
    parts = []
    topics = profile.get("hashtag") or profile.get("keyword") or []
    if topics:
        shown = [("#" if profile.get("hashtag") else "") + t for t, _ in topics[:3]]
        parts.append(f"into {_and(shown)} ({sum(s for _, s in topics[:3]):.0%} of their tagged engagement)")
    if profile.get("music"):
        parts.append(f"music that sounds {_and([t for t, _ in profile['music'][:3]])}")
    if profile.get("picture"):
        parts.append(f"pictures the image model calls {_and([t for t, _ in profile['picture'][:2]])}")
    return "; ".join(parts) if parts else "no tagged engagement yet"


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def step_ages(queries: Queries, item_ids: list[str], last_seen: dict[tuple[str, str], float]) -> npt.NDArray[np.float64]:
    """(Q, T) seconds between each history step's latest event (`last_seen`: (user, item) -> epoch
    seconds, every event kind, impressions included) and the user's latest event; 0 for padding."""
    newest: dict[str, float] = {}
    for (user, _), ts in last_seen.items():
        newest[user] = max(ts, newest.get(user, ts))
    ages = np.zeros(queries.hist_items.shape, np.float64)
    for q, user in enumerate(queries.users):
        for t, item in enumerate(queries.hist_items[q]):
            if item:
                ages[q, t] = newest[user] - last_seen.get((user, item_ids[item]), newest[user])
    return ages


def attention_matrix(rows: list[dict], tags: dict) -> tuple[npt.NDArray[np.float32], list[str], list[str]]:
    """A user's explanation rows that share one history (their current one), stacked for the
    attention heat map: (items x history steps), the history's labels, the items' labels."""
    history = rows[0]["history_item_ids"]
    same = [r for r in rows if r["history_item_ids"] == history]
    matrix = np.asarray([r["attention"] for r in same], np.float32)
    return matrix, [label(tags.get(i, {})) for i in history], [f"{r['item_id']} {label(tags.get(r['item_id'], {}))}" for r in same]


def mean_contributions(rows_by_user: dict[str, list[dict]], users: list[str]) -> npt.NDArray[np.float32]:
    """(users, modalities): each user's leave-one-modality-out contributions averaged over their
    scored items."""
    return np.asarray([np.mean([r["modality_contributions"] for r in rows_by_user[u]], 0) for u in users], np.float32).reshape(len(users), -1)
