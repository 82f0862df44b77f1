"""One shared suite for every ranker on a checkerboard of planted interests, and the sequence
builder's no-leakage property."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ranker.data import EVENT_INDEX, StaleSamples, build_sequences, ensure_samples, load_dataset, samples_build
from ranker.names import ALL_MODELS
from ranker.registry import build
from warehouse import db, store
from warehouse.schemas import EMBEDDINGS, EVENTS, ITEMS, user_partition
from warehouse.store import Warehouse

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _events(rows: list[tuple[str, str, int]]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"user_id": u, "item_id": i, "event_ts": START + timedelta(seconds=t), "event": "comment", "watch_ratio": None, "user_bucket": user_partition(u)}
            for u, i, t in rows
        ],
        schema=EVENTS.schema,
    )


@pytest.fixture(scope="module")
def checkerboard(tmp_path_factory):
    """Users of group A only engage with items a1-a4, users of group B with b1-b4; both groups'
    items are exactly as popular. Each user's held-out last item is from their own group."""
    wh = Warehouse(tmp_path_factory.mktemp("checkerboard"))
    rng = np.random.default_rng(0)
    rows = []
    for group in "ab":
        for u in range(30):
            for step in range(12):
                rows.append((f"{group}{u}", f"{group}{rng.integers(1, 5)}", step))
    store.append(wh, EVENTS, _events(rows))
    write_content(wh, {f"{g}{k}": (1.0 if g == "a" else -1.0) for g in "ab" for k in range(1, 5)})
    return dataset(wh, max_history=10)


def dataset(wh: Warehouse, max_history: int = 10):
    """The rankers' data of a test home: `samples` built from its events first (build-features)."""
    ensure_samples(wh, max_history)
    return load_dataset(wh, max_history)


def write_content(wh: Warehouse, items: dict[str, float], *, dim: int = 8, seed: int = 0, axis: int = 0) -> None:
    """Items with a text vector each: `items` maps an item id to its group's direction (+1 / -1
    along the first axis, or along `axis`), plus a little seeded noise, as extract-items would write them."""
    rng = np.random.default_rng(seed)
    now = datetime(2026, 2, 1, tzinfo=timezone.utc)
    ids = list(items)
    store.append(
        wh,
        ITEMS,
        pa.Table.from_pylist(
            [
                {
                    "item_id": i,
                    "title": f"item {i}",
                    "video_uri": None,
                    "audio_uri": None,
                    "duration_s": None,
                    "content_hash": f"h-{i}",
                    "source": "test",
                    "ingested_at": now,
                }
                for i in ids
            ],
            schema=ITEMS.schema,
        ),
    )
    vectors = rng.normal(0, 0.3, (len(ids), dim)).astype(np.float32)
    vectors[:, axis] += np.asarray([items[i] for i in ids], np.float32)
    store.append(
        wh,
        EMBEDDINGS,
        pa.table(
            {
                "item_id": ids,
                "modality": ["text"] * len(ids),
                "model": ["planted@1"] * len(ids),
                "dim": pa.array([dim] * len(ids), pa.int32()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
                "tags": pa.array([[] for _ in ids], pa.list_(pa.string())),
                "content_hash": [f"h-{i}" for i in ids],
                "created_at": pa.array([now] * len(ids), pa.timestamp("us", tz="UTC")),
                "fusion_weights": pa.nulls(len(ids), pa.map_(pa.string(), pa.float32())),
            }
        ).cast(EMBEDDINGS.schema),
    )
    db.refresh_views(wh)


@pytest.fixture(scope="module")
def trained(checkerboard):
    models = {}
    for name in ALL_MODELS:
        models[name] = build(name, "cpu", models)
        models[name].fit(checkerboard, seed=0)
    return models


@pytest.mark.parametrize("name", ALL_MODELS)
def test_the_held_out_item_outranks_the_other_groups_items(checkerboard, trained, name):
    data, model = checkerboard, trained[name]
    test = np.flatnonzero(data.split == "test")
    index = {item: i for i, item in enumerate(data.item_ids)}
    wins = []
    for row in test:
        group = data.queries.users[row][0]
        other = [index[f"{'b' if group == 'a' else 'a'}{k}"] for k in range(1, 5)]
        items = np.array([[data.targets[row], *other]])
        scores = model.score_items(data, data.queries.take(np.array([row])), items)[0]
        wins.append(scores[0] > scores[1:].max())
        all_scores = model.score_all(data, data.queries.take(np.array([row])))[0]
        assert all_scores.shape == (data.n_items + 1,) and all_scores[0] == -np.inf
    share = float(np.mean(wins))
    if name == "popularity":
        assert share < 0.8  # both groups' items are equally popular: it cannot tell the groups apart
    else:
        assert share >= 0.9, f"{name} ranked the right item first for only {share:.0%} of users"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_save_and_load_give_the_same_scores(checkerboard, trained, name, tmp_path):
    data, model = checkerboard, trained[name]
    queries = data.queries.take(np.flatnonzero(data.split == "test")[:5])
    before = model.score_all(data, queries)
    model.save(tmp_path / "model")
    fresh = build(name, "cpu", {"lstm-attn": trained["lstm-attn"]})
    fresh.load(tmp_path / "model", data)
    np.testing.assert_allclose(fresh.score_all(data, queries), before, rtol=1e-5, atol=1e-5)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["u1", "u2", "u3"]), st.sampled_from(["i1", "i2", "i3", "i4", "i5"]), st.integers(0, 6)), min_size=1, max_size=40))
def test_histories_hold_only_strictly_earlier_interactions(tmp_path_factory, rows):
    """Timestamps collide on purpose: events at the same time never see each other, and a history
    lists those of one timestamp in item order, whatever order they were stored in (review: the
    order they were read in, so two builds of the same events could differ)."""
    wh = Warehouse(tmp_path_factory.mktemp("leak"))
    store.append(wh, EVENTS, _events(rows))
    db.refresh_views(wh)
    table = build_sequences(wh, max_history=100).to_pylist()
    distinct = set(rows)  # an exact repeat is stored once
    for row in table:
        ts = int((row["event_ts"] - START).total_seconds())
        earlier = sorted((t, i) for u, i, t in distinct if u == row["user_id"] and t < ts)
        assert row["history_item_ids"] == [i for _, i in earlier]
    assert len(table) == len(distinct)
    positives = Counter(r["user_id"] for r in table)
    for user, n in positives.items():
        splits = Counter(r["split"] for r in table if r["user_id"] == user)
        assert splits == ({"train": n - 2, "valid": 1, "test": 1} if n >= 3 else {"train": n})


def test_lightgbm_ranks_every_item_outside_its_top_k_below_every_reranked_item(checkerboard, trained):
    data, model = checkerboard, trained["lightgbm"]
    model.top_k, saved_k = 3, model.top_k  # fewer than the items, so the cut is visible
    queries = data.queries.take(np.flatnonzero(data.split == "test"))
    try:
        base = model.base.score_all(data, queries)
        scores = model.score_all(data, queries)
    finally:
        model.top_k = saved_k
    for row in range(len(queries)):
        top = np.argsort(-base[row])[:3]
        rest = np.setdiff1d(np.arange(1, data.n_items + 1), top)
        assert scores[row, top].min() > scores[row, rest].max()
        # outside the top, the base model's order is kept
        assert (np.argsort(-scores[row, rest], kind="stable") == np.argsort(-base[row, rest], kind="stable")).all()


def test_lightgbm_keeps_the_items_its_base_cannot_score_at_minus_inf(checkerboard, trained, monkeypatch):
    """A top_k beyond the items the base can score takes -inf items into the re-ranked top; they must
    stay -inf (the trees gave them finite scores: review), and the others stay finite."""
    data, model = checkerboard, trained["lightgbm"]
    queries = data.queries.take(np.flatnonzero(data.split == "test"))
    base_all, cut = model.base.score_all, [1, 2]

    def without_two(d, q):
        scores = base_all(d, q).copy()
        scores[:, cut] = -np.inf
        return scores

    monkeypatch.setattr(model.base, "score_all", without_two)
    monkeypatch.setattr(model, "top_k", data.n_items + 1)
    scores = model.score_all(data, queries)
    assert np.isneginf(scores[:, [0, *cut]]).all() and np.isfinite(scores[:, 3:]).all()


def test_ranker_names_are_defined_once_and_unknown_names_are_config_errors():
    """ranker/names.py (importable without torch) and the registry list the same rankers, in order;
    a name that is not a ranker, or a re-ranker without its base, is a ConfigError saying what to do."""
    from ranker.names import NEEDS_BASE, READS_CONTENT
    from ranker.registry import RANKERS, build
    from warehouse.errors import ConfigError

    assert list(RANKERS) + list(NEEDS_BASE) == ALL_MODELS
    # `models` shows a content column only for these: the content rankers and lightgbm over lstm-attn.
    assert set(READS_CONTENT) == {name for name, make in RANKERS.items() if getattr(make("cpu"), "use_content", False)} | set(NEEDS_BASE)
    with pytest.raises(ConfigError, match="unknown ranker 'sasrec2'; pass one of popularity"):
        build("sasrec2", "cpu", {})
    from ranker.names import check_rankers

    with pytest.raises(
        ConfigError, match=r"^'id-sequence' is retired \(the GRU of earlier versions; sasrec is the id-only sequence peer now\); pass some of popularity"
    ):
        check_rankers(["sasrec", "id-sequence"])
    with pytest.raises(ConfigError, match=r"^'id-sequence' is retired \(.*\); unknown ranker 'nosuch'; pass some of"):
        check_rankers(["id-sequence", "nosuch"])  # review: the unknown name was left for a second try
    with pytest.raises(ConfigError, match="train lstm-attn first"):
        build("lightgbm", "cpu", {})


@pytest.mark.parametrize("name", ALL_MODELS)
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_scores_move_with_the_candidates_when_they_are_shuffled(checkerboard, trained, name, seed):
    """score_items is a function of each (user, item) pair: shuffling a user's candidates shuffles
    their scores the same way (no model may depend on where an item sits in the list)."""
    data, model = checkerboard, trained[name]
    rng = np.random.default_rng(seed)
    rows = rng.choice(np.flatnonzero(data.split == "test"), 3, replace=False)
    items = np.stack([rng.choice(np.arange(1, data.n_items + 1), 6, replace=False) for _ in rows])
    order = rng.permutation(6)
    queries = data.queries.take(rows)
    np.testing.assert_allclose(model.score_items(data, queries, items[:, order]), model.score_items(data, queries, items)[:, order], rtol=1e-5, atol=1e-5)


def test_the_dataset_is_the_samples_table_padded_right_aligned(tmp_path):
    """load_dataset pads `samples` with Arrow (no Python loop): each row's last `max_history` history
    steps, right-aligned and left-padded with 0, items and events by their codes; a window shorter
    than the stored one is cut from the left; a shard of users gets the whole warehouse's popularity."""
    rng = np.random.default_rng(3)
    wh = Warehouse(tmp_path)
    kinds = ["impression", "watch", "like", "comment"]
    rows = []
    for t in range(90):
        user, kind = f"u{rng.integers(0, 6)}", kinds[rng.integers(0, 4)]
        ratio = float(rng.integers(1, 10)) / 10 if kind == "watch" else None
        rows.append(
            {
                "user_id": user,
                "item_id": f"i{rng.integers(0, 9)}",
                "event_ts": START + timedelta(seconds=t),
                "event": kind,
                "watch_ratio": ratio,
                "user_bucket": user_partition(user),
            }
        )
    store.append(wh, EVENTS, pa.Table.from_pylist(rows, schema=EVENTS.schema))
    db.refresh_views(wh)
    ensure_samples(wh)
    stored = db.fetch(wh, "SELECT * FROM samples ORDER BY user_id, event_ts, item_id")
    assert {e for r in stored for e in r["history_events"]} >= {"impression", "watch", "like"}
    for window in (3, 20):
        data = load_dataset(wh, window)
        index = {item: i for i, item in enumerate(data.item_ids)}
        assert [data.item_ids[t] for t in data.targets] == [r["item_id"] for r in stored]
        assert data.target_events.tolist() == [EVENT_INDEX[r["event"]] for r in stored]
        for row, items, events, ratios in zip(stored, data.queries.hist_items, data.queries.hist_events, data.queries.hist_ratios):
            kept = row["history_item_ids"][-window:]
            pad = [0] * (window - len(kept))
            assert items.tolist() == pad + [index[i] for i in kept]
            assert events.tolist() == pad + [EVENT_INDEX[e] for e in row["history_events"][-window:]]
            assert ratios.tolist() == pytest.approx(pad + row["history_watch_ratios"][-window:])
    bucket = user_partition(stored[0]["user_id"])
    shard = load_dataset(wh, 20, buckets=[bucket])
    assert set(shard.queries.users) == {r["user_id"] for r in stored if user_partition(r["user_id"]) == bucket}
    np.testing.assert_array_equal(shard.train_counts, data.train_counts)
    np.testing.assert_array_equal(shard.in_training, data.in_training)


def test_an_empty_build_of_samples_is_current_and_a_pinned_build_must_still_be_there(tmp_path):
    """Only impressions so far: no positive interaction, zero samples, and that build is current
    (not rebuilt on every read). A reader pinned to a build refuses once samples was rebuilt."""
    wh = Warehouse(tmp_path)
    shown = [
        {
            "user_id": "u1",
            "item_id": f"i{k}",
            "event_ts": START + timedelta(seconds=k),
            "event": "impression",
            "watch_ratio": None,
            "user_bucket": user_partition("u1"),
        }
        for k in range(3)
    ]
    store.append(wh, EVENTS, pa.Table.from_pylist(shown, schema=EVENTS.schema))
    assert ensure_samples(wh) is not None and ensure_samples(wh) is None
    assert len(load_dataset(wh).targets) == 0
    build = samples_build(wh)
    store.append(wh, EVENTS, _events([("u1", "i0", 10)]))
    assert ensure_samples(wh) == "`events` changed since `samples` was built" and samples_build(wh) != build
    with pytest.raises(StaleSamples, match="rebuilt while this run read it"):
        load_dataset(wh, build=build)
    assert len(load_dataset(wh, build=samples_build(wh)).targets) == 1


def test_a_compaction_of_events_keeps_samples_current_and_a_new_event_still_makes_it_stale(tmp_path):
    """Probe: compaction changes the files of `events`, not its rows, yet the next command said
    "`events` changed since `samples` was built" and rebuilt it. A samples built from other files
    than those compacted stays stale."""
    wh = Warehouse(tmp_path)
    for k in range(3):  # three appends: three small files of u1's partition
        store.append(wh, EVENTS, _events([("u1", f"i{k}", k)]))
    assert ensure_samples(wh) is not None
    build = samples_build(wh)
    assert store.compact(wh, EVENTS) == (3, 1)
    assert ensure_samples(wh) is None and samples_build(wh) == build
    store.append(wh, EVENTS, _events([("u1", "i3", 3)]))
    store.append(wh, EVENTS, _events([("u1", "i4", 4)]))
    assert store.compact(wh, EVENTS) == (3, 1)  # samples was built before these two: still stale after
    assert ensure_samples(wh) == "`events` changed since `samples` was built" and samples_build(wh) != build
