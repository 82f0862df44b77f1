"""The Parquet store: schema round trips, idempotent appends, atomic files, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from warehouse import db, store
from warehouse.errors import ReelsenseError, SchemaError
from warehouse.schemas import EMBEDDINGS, EVENT_TYPES, EVENTS, ITEMS, TABLES, user_partition
from warehouse.store import Warehouse

ids = st.text(min_size=1, max_size=12)  # any unicode: quotes, semicolons, emoji
moments = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)).map(
    lambda d: d.replace(microsecond=d.microsecond)
)
ratios = st.none() | st.floats(min_value=0, max_value=50, width=32)


def event_row(user_id: str, item_id: str, ts: datetime, event: str, ratio: float | None) -> dict:
    return {"user_id": user_id, "item_id": item_id, "event_ts": ts, "event": event, "watch_ratio": ratio, "user_bucket": user_partition(user_id)}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(ids, ids, moments, st.sampled_from(EVENT_TYPES), ratios), max_size=30))
def test_events_round_trip_through_parquet_and_duckdb(tmp_path_factory, rows):
    wh = Warehouse(tmp_path_factory.mktemp("home"))
    batch = pa.Table.from_pylist([event_row(*r) for r in rows], schema=EVENTS.schema)
    result = store.append(wh, EVENTS, batch)
    unique = {(r[0], r[1], r[2], r[3]): r for r in reversed(rows)}  # the first row of each key wins
    assert result.written == len(unique) and result.duplicates == len(rows) - len(unique)
    back = store.read(wh, EVENTS).to_pylist()
    assert sorted(map(_event_key, back)) == sorted(map(_event_key, [event_row(*r) for r in unique.values()]))
    db.refresh_views(wh)
    assert db.query(wh, "SELECT count(*) AS n FROM events").column("n")[0].as_py() == len(unique)


def _event_key(row: dict) -> tuple:
    return (row["user_id"], row["item_id"], row["event_ts"], row["event"], row["watch_ratio"], row["user_bucket"])


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(ids, st.none() | st.text(max_size=40)), max_size=20, unique_by=lambda r: r[0]))
def test_items_round_trip(tmp_path_factory, rows):
    wh = Warehouse(tmp_path_factory.mktemp("home"))
    now = datetime.now(timezone.utc)
    items = [
        {"item_id": i, "title": t, "video_uri": None, "audio_uri": None, "duration_s": None, "content_hash": f"h-{i}", "source": "test", "ingested_at": now}
        for i, t in rows
    ]
    store.append(wh, ITEMS, pa.Table.from_pylist(items, schema=ITEMS.schema))
    back = {r["item_id"]: r["title"] for r in store.read(wh, ITEMS).to_pylist()}
    assert back == dict(rows)


def test_append_twice_writes_once(wh):
    batch = pa.Table.from_pylist([event_row("u1", "i1", datetime(2026, 1, 1, tzinfo=timezone.utc), "like", None)], schema=EVENTS.schema)
    assert store.append(wh, EVENTS, batch) == store.WriteResult(written=1, duplicates=0)
    assert store.append(wh, EVENTS, batch) == store.WriteResult(written=0, duplicates=1)
    assert len(list(wh.part_files(EVENTS))) == 1


def test_append_with_compare_sorts_rows_into_written_duplicates_and_conflicts_in_one_scan(wh):
    """`compare`: a row repeating a key with other values is a conflict (against the stored row
    where there is one, else the batch's first of the key); the same values are a duplicate. A key a
    hand-made file holds twice is still one conflict per batch row, not two."""
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    watch = [event_row("u1", "i1", t, "watch", ratio) for ratio in (0.2, 0.9, 0.2)]
    rows = [*watch, event_row("u1", "i2", t, "like", None)]
    first = store.append(wh, EVENTS, pa.Table.from_pylist(rows, schema=EVENTS.schema), compare=("watch_ratio",))
    assert (first.written, first.duplicates) == (2, 1)
    assert [(c.row, c.stored, c.first["watch_ratio"]) for c in first.conflicts] == [(1, False, pytest.approx(0.2))]
    # i2's like again, now with a ratio (a conflict with the stored null); i1's 0.2 again (a duplicate)
    again = [event_row("u1", "i2", t, "like", 0.5), event_row("u1", "i1", t, "watch", 0.2), event_row("u1", "i3", t, "watch", 0.4)]
    second = store.append(wh, EVENTS, pa.Table.from_pylist(again, schema=EVENTS.schema), compare=("watch_ratio",))
    assert (second.written, second.duplicates) == (1, 1)
    assert [(c.row, c.stored, c.first) for c in second.conflicts] == [(0, True, {"watch_ratio": None})]
    folder = next(wh.part_files(EVENTS)).parent  # a file that repeats a stored key (append never writes one)
    pq.write_table(pa.Table.from_pylist([event_row("u1", "i1", t, "watch", 0.2)], schema=EVENTS.schema), folder / "part-by-hand.parquet")
    third = store.append(wh, EVENTS, pa.Table.from_pylist([event_row("u1", "i1", t, "watch", 0.7)], schema=EVENTS.schema), compare=("watch_ratio",))
    assert (third.written, third.duplicates, len(third.conflicts)) == (0, 0, 1)
    # review: a hand-made row of the key with the batch's value; the stored 0.2 still makes it a conflict
    pq.write_table(pa.Table.from_pylist([event_row("u1", "i1", t, "watch", 0.7)], schema=EVENTS.schema), folder / "part-by-hand-2.parquet")
    for _ in range(5):  # whichever the join meets first
        fourth = store.append(wh, EVENTS, pa.Table.from_pylist([event_row("u1", "i1", t, "watch", 0.7)], schema=EVENTS.schema), compare=("watch_ratio",))
        assert (fourth.written, fourth.duplicates, len(fourth.conflicts)) == (0, 0, 1)


def test_missing_column_is_a_schema_error(wh):
    with pytest.raises(SchemaError, match=r"lacks columns \['event'"):
        store.append(wh, EVENTS, pa.table({"user_id": ["u"], "item_id": ["i"], "event_ts": [1]}))


def test_half_written_file_is_invisible_and_cleaned_up(wh):
    batch = pa.Table.from_pylist([event_row("u1", "i1", datetime(2026, 1, 1, tzinfo=timezone.utc), "like", None)], schema=EVENTS.schema)
    store.append(wh, EVENTS, batch)
    db.refresh_views(wh)
    # What a writer killed mid-write leaves behind: a truncated temp file.
    stale = next(wh.part_files(EVENTS)).parent / ".part-crashed.parquet.tmp"
    stale.write_bytes(b"PAR1 truncated")
    assert db.query(wh, "SELECT count(*) AS n FROM events").column("n")[0].as_py() == 1
    store.append(wh, EVENTS, batch)
    assert not stale.exists()


def _append_overlapping(home: str, start: int) -> None:
    wh = Warehouse(home)
    ts = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for chunk in range(start, start + 40, 10):
        rows = [event_row(f"u{i}", "i", ts, "watch", 0.5) for i in range(chunk, chunk + 10)]
        store.append(wh, EVENTS, pa.Table.from_pylist(rows, schema=EVENTS.schema))


def test_concurrent_writers_store_each_row_once(wh):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_overlapping, args=(str(wh.home), s)) for s in (0, 20)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    users = store.read(wh, EVENTS).column("user_id").to_pylist()
    assert sorted(users) == sorted(f"u{i}" for i in range(60))


def _compact_events(home: str, started: str) -> None:
    Path(started).touch()
    store.compact(Warehouse(home), EVENTS)


def test_a_compaction_waits_until_running_readers_are_done(wh):
    """Compaction removes files that readers glob without the table lock: it waits for every reader
    holding `store.reading` (db.connect, db.analysis, db.fetch, store.read hold it), so no query
    loses a file mid-read or sees a merged file beside its small ones."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for hour in range(3):
        store.append(wh, EVENTS, pa.Table.from_pylist([event_row("u1", "i", start.replace(hour=hour), "like", None)], schema=EVENTS.schema))
    started = wh.home / "compaction-started"
    with store.reading(wh):
        compaction = multiprocessing.get_context("spawn").Process(target=_compact_events, args=(str(wh.home), str(started)))
        compaction.start()
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists()
        time.sleep(1.0)  # three one-row files merge in milliseconds when nothing holds them back
        assert compaction.is_alive() and len(list(wh.part_files(EVENTS))) == 3
    compaction.join(60)
    assert compaction.exitcode == 0 and len(list(wh.part_files(EVENTS))) == 1
    assert store.read(wh, EVENTS).num_rows == 3


def test_a_remover_inside_a_reading_scope_of_the_same_thread_is_an_error_not_a_hang(wh):
    """flock locks belong to the open file: a thread reading and then compacting would wait for
    itself forever. It is refused at once."""
    store.append(wh, EVENTS, pa.Table.from_pylist([event_row("u1", "i", datetime(2026, 1, 1, tzinfo=timezone.utc), "like", None)], schema=EVENTS.schema))
    with store.reading(wh), store.reading(wh):  # nested readers are fine
        with pytest.raises(RuntimeError, match="would wait for itself"):
            store.drop_partitions(wh, EVENTS, {"0"})
    assert store.compact(wh, EVENTS) == (1, 1)  # outside: nothing to merge, and no lock taken


def test_embeddings_keep_fixed_width_and_support_cosine_search(wh):
    now = datetime.now(timezone.utc)
    rng = np.random.default_rng(0)
    for model, dim in (("a@1", 4), ("b@1", 3)):
        vectors = rng.normal(size=(3, dim)).astype(np.float32)
        vectors[1] = vectors[0] * 2  # same direction as item 0
        batch = pa.table(
            {
                "item_id": ["x", "y", "z"],
                "modality": ["frames"] * 3,
                "model": [model] * 3,
                "dim": [dim] * 3,
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
                "tags": [["t"], None, []],
                "content_hash": ["h"] * 3,
                "created_at": [now] * 3,
            }
        )
        store.append(wh, EMBEDDINGS, batch)
    files = list(wh.part_files(EMBEDDINGS))
    assert len(files) == 2 and all(f.parent.name == "modality=frames" for f in files)
    assert {pq.read_schema(f).field("vector").type.list_size for f in files} == {3, 4}
    db.refresh_views(wh)
    nearest = db.query(
        wh,
        """
        SELECT b.item_id FROM embeddings a JOIN embeddings b USING (model)
        WHERE a.item_id = $item AND b.item_id <> a.item_id AND a.model = $model
        ORDER BY array_cosine_similarity(a.vector::FLOAT[4], b.vector::FLOAT[4]) DESC LIMIT 1""",
        {"item": "x", "model": "a@1"},
    )
    assert nearest.column("item_id").to_pylist() == ["y"]


def test_current_embeddings_hold_only_the_current_contents_vectors_and_title(wh):
    """An item whose title changed keeps both versions' vectors in `embeddings`; `current_embeddings`
    and the vector views show the new version's vector and title only."""
    t0, t1 = datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 2, tzinfo=timezone.utc)
    item = {"item_id": "x", "video_uri": None, "audio_uri": None, "duration_s": None, "source": "test"}
    store.append(
        wh,
        ITEMS,
        pa.Table.from_pylist(
            [
                {**item, "title": "old title", "content_hash": "h1", "ingested_at": t0},
                {**item, "item_id": "y", "title": "other", "content_hash": "h9", "ingested_at": t0},
            ],
            schema=ITEMS.schema,
        ),
    )
    store.append(wh, ITEMS, pa.Table.from_pylist([{**item, "title": "new title", "content_hash": "h2", "ingested_at": t1}], schema=ITEMS.schema))
    store.append(
        wh,
        EMBEDDINGS,
        pa.table(
            {
                "item_id": ["x", "x", "y"],
                "modality": ["text"] * 3,
                "model": ["m@1"] * 3,
                "dim": [2] * 3,
                "vector": pa.FixedSizeListArray.from_arrays(pa.array([1.0, 0.0, 0.0, 1.0, 1.0, 1.0], pa.float32()), 2),
                "tags": [[], [], []],
                "content_hash": ["h1", "h2", "h9"],
                "created_at": [t0, t1, t0],
            }
        ),
    )
    db.refresh_views(wh)
    assert db.query(wh, "SELECT count(*) AS n FROM embeddings").column("n")[0].as_py() == 3
    current = db.query(wh, "SELECT item_id, content_hash, title, vector FROM current_embeddings ORDER BY item_id").to_pylist()
    assert [(r["item_id"], r["content_hash"], r["title"], r["vector"]) for r in current] == [
        ("x", "h2", "new title", [0.0, 1.0]),
        ("y", "h9", "other", [1.0, 1.0]),
    ]
    view = db.query(wh, "SELECT item_id, title FROM vectors_text_m ORDER BY item_id").to_pylist()
    assert view == [{"item_id": "x", "title": "new title"}, {"item_id": "y", "title": "other"}]


def test_stages_see_a_new_vector_model_as_soon_as_its_file_lands(wh):
    """`scratch` remembers which vector views to make until a file of `embeddings` changes: a model
    appended (or its files compacted) is visible to the next read of the same process."""
    now = datetime.now(timezone.utc)

    def add(model: str) -> None:
        store.append(
            wh,
            EMBEDDINGS,
            pa.table(
                {
                    "item_id": ["x"],
                    "modality": ["text"],
                    "model": [model],
                    "dim": [2],
                    "vector": pa.FixedSizeListArray.from_arrays(pa.array([1.0, 0.0], pa.float32()), 2),
                    "tags": [[]],
                    "content_hash": ["h"],
                    "created_at": [now],
                }
            ),
        )

    def views() -> set[str]:
        rows = db.fetch(wh, "SELECT view_name FROM duckdb_views() WHERE view_name LIKE 'vectors_%'")
        return {r["view_name"] for r in rows}

    add("first@1")
    assert views() == views() == {"vectors_text_first"}
    add("second@1")
    assert views() == {"vectors_text_first", "vectors_text_second"}
    store.compact(wh, EMBEDDINGS)
    assert views() == {"vectors_text_first", "vectors_text_second"}
    add("first@1+keyframes256")  # a sampling of its inputs gets a view of its own; the newest does not take the name
    assert views() == {"vectors_text_first", "vectors_text_second", "vectors_text_first_keyframes256"}


def test_every_table_has_a_view_from_the_start(wh):
    db.refresh_views(wh)
    for name, spec in TABLES.items():
        empty = db.query(wh, f"SELECT * FROM {name}")
        assert empty.num_rows == 0 and empty.column_names == spec.schema.names


def _embedding_batch(items: list[str], value: float, dim: int = 3) -> pa.Table:
    now = datetime.now(timezone.utc)
    vectors = np.full((len(items), dim), value, np.float32)
    return pa.table(
        {
            "item_id": items,
            "modality": ["text"] * len(items),
            "model": ["m@1"] * len(items),
            "dim": [dim] * len(items),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
            "tags": [[] for _ in items],
            "content_hash": ["h"] * len(items),
            "created_at": [now] * len(items),
        }
    )


def test_replace_swaps_rows_with_the_same_key_and_keeps_the_rest(wh):
    store.append(wh, EMBEDDINGS, _embedding_batch(["a", "b", "c"], 1.0))
    result = store.replace(wh, EMBEDDINGS, _embedding_batch(["b", "d"], 2.0))
    assert result == store.WriteResult(written=2, duplicates=1)
    rows = {r["item_id"]: r["vector"][0] for r in store.read(wh, EMBEDDINGS).to_pylist()}
    assert rows == {"a": 1.0, "b": 2.0, "c": 1.0, "d": 2.0}


def test_replace_reads_only_the_partitions_its_rows_belong_to(wh):
    """A report replaces its run's explanations: another partition is never read (an unreadable file
    there is left alone), so the cost does not grow with the other runs."""
    store.append(wh, EMBEDDINGS, _embedding_batch(["a", "b"], 1.0))
    other = wh.table_dir(EMBEDDINGS) / "modality=frames"
    other.mkdir()
    (other / "part-damaged.parquet").write_bytes(b"not parquet")
    assert store.replace(wh, EMBEDDINGS, _embedding_batch(["b"], 2.0)) == store.WriteResult(written=1, duplicates=1)
    text = [p for p in wh.part_files(EMBEDDINGS) if p.parent.name == "modality=text"]
    values = sorted(v for p in text for v in pq.read_table(p).column("vector").to_pylist())
    assert [v[0] for v in values] == [1.0, 2.0] and (other / "part-damaged.parquet").read_bytes() == b"not parquet"


@pytest.mark.parametrize("landed", [True, False])
def test_a_replace_cut_short_is_rolled_forward_or_back(wh, landed):
    """What `replace` leaves if killed between its journal and its last unlink."""
    store.append(wh, EMBEDDINGS, _embedding_batch(["a", "b"], 1.0))
    old = next(wh.part_files(EMBEDDINGS))
    folder = old.parent
    new = store._write_atomic(folder, _embedding_batch(["a", "b"], 2.0).drop_columns(["modality"]), EMBEDDINGS)
    missing = "modality=text/part-never-written.parquet"
    journal = {
        "add": [str(new.relative_to(wh.table_dir(EMBEDDINGS)))] + ([] if landed else [missing]),
        "remove": [str(old.relative_to(wh.table_dir(EMBEDDINGS)))],
    }
    (wh.table_dir(EMBEDDINGS) / ".journal.json").write_text(json.dumps(journal))
    store.append(wh, EMBEDDINGS, _embedding_batch([], 0.0))  # any writer recovers first
    values = sorted(r["vector"][0] for r in store.read(wh, EMBEDDINGS).to_pylist())
    assert values == ([2.0, 2.0] if landed else [1.0, 1.0])
    assert not (wh.table_dir(EMBEDDINGS) / ".journal.json").exists()


def test_a_home_from_an_earlier_version_gets_the_views_it_lacks_on_open(wh):
    import duckdb

    store.append(wh, EVENTS, pa.Table.from_pylist([event_row("u", "i", datetime(2026, 1, 1, tzinfo=timezone.utc), "like", None)], schema=EVENTS.schema))
    db.refresh_views(wh)
    con = duckdb.connect(str(wh.db_path))
    con.execute("DROP VIEW engagements")  # as a home made before the view existed (e0e4dac)
    con.close()
    assert db.query(wh, "SELECT count(*) AS n FROM engagements").column("n")[0].as_py() == 1
    con = duckdb.connect(str(wh.db_path))
    con.execute("DROP VIEW current_embeddings")  # an older home still
    con.close()
    assert db.query(wh, "SELECT count(*) AS n FROM current_embeddings").column("n")[0].as_py() == 0


def test_engagements_are_the_events_that_are_more_than_an_impression(wh):
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = [event_row("u", "a", at, "impression", None), event_row("u", "a", at, "watch", 0.5), event_row("u", "b", at, "impression", None)]
    rows += [event_row("v", "b", at, "share", None)]
    store.append(wh, EVENTS, pa.Table.from_pylist(rows, schema=EVENTS.schema))
    db.refresh_views(wh)
    got = db.fetch(wh, "SELECT user_id, item_id, event FROM engagements ORDER BY user_id")
    assert got == [{"user_id": "u", "item_id": "a", "event": "watch"}, {"user_id": "v", "item_id": "b", "event": "share"}]
    assert db.analysis(wh, "known_pair", {"user": "u", "item": "b"}).to_pylist() == [{"events": 3, "item": 2, "engaged": 0}]


def _text_vectors(model: str, dim: int, items: list[str], seed: int) -> pa.Table:
    vectors = np.random.default_rng(seed).normal(size=(len(items), dim)).astype(np.float32)
    now = datetime.now(timezone.utc)
    return pa.table(
        {
            "item_id": items,
            "modality": ["text"] * len(items),
            "model": [model] * len(items),
            "dim": [dim] * len(items),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
            "tags": [None] * len(items),
            "content_hash": ["h"] * len(items),
            "created_at": [now] * len(items),
        }
    )


def test_compact_merges_small_files_per_partition_and_schema_and_keeps_every_row(wh):
    """Six appends of events (two users, two partitions) and of two embedding models of different
    widths: compaction leaves one file per partition for events, one per model width for
    embeddings, and exactly the same rows (vectors bit for bit)."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for step in range(6):
        rows = [event_row(u, f"i{step}", start.replace(hour=step), "like", None) for u in ("u1", "u2")]
        store.append(wh, EVENTS, pa.Table.from_pylist(rows, schema=EVENTS.schema))
        store.append(wh, EMBEDDINGS, _text_vectors("a@1", 4, [f"x{step}"], step))
        store.append(wh, EMBEDDINGS, _text_vectors("b@1", 3, [f"x{step}"], 10 + step))
    events, embeddings = store.read(wh, EVENTS), store.read(wh, EMBEDDINGS)
    buckets = {user_partition("u1"), user_partition("u2")}
    assert store.compact(wh, EVENTS) == (12, len(buckets))
    assert store.compact(wh, EMBEDDINGS) == (12, 2)
    assert {pq.read_schema(f).field("vector").type.list_size for f in wh.part_files(EMBEDDINGS)} == {3, 4}
    assert store.read(wh, EVENTS).sort_by("event_ts").equals(events.sort_by("event_ts"))
    by_key = lambda t: sorted(t.to_pylist(), key=lambda r: (r["model"], r["item_id"]))  # noqa: E731
    assert by_key(store.read(wh, EMBEDDINGS)) == by_key(embeddings)
    assert store.compact(wh, EVENTS) == (len(buckets), len(buckets))  # nothing left to merge
    db.refresh_views(wh)
    assert db.query(wh, "SELECT count(*) AS n FROM events").column("n")[0].as_py() == 12


def test_compaction_merges_into_files_of_bounded_size(wh, monkeypatch):
    """Eleven small files of one partition, merged into files of about SMALL_FILE_BYTES (here a
    few files' worth): several merged files, not one unbounded one; every key is still found."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for step in range(11):
        row = event_row("u1", "i", start.replace(minute=step), "like", None)
        store.append(wh, EVENTS, pa.Table.from_pylist([row], schema=EVENTS.schema))
    size = max(path.stat().st_size for path in wh.part_files(EVENTS))
    monkeypatch.setattr(store, "SMALL_FILE_BYTES", 3 * size)
    before, after = store.compact(wh, EVENTS)
    assert before == 11 and 3 <= after <= 6
    assert store.read(wh, EVENTS).num_rows == 11
    again = store.append(wh, EVENTS, store.read(wh, EVENTS))
    assert again == store.WriteResult(written=0, duplicates=11)


def test_the_nightly_maintenance_compacts_only_partitions_that_gathered_enough_small_files(wh, prefect_harness):
    """maintain-warehouse (the scheduled compaction): a partition of four small files is merged, one
    of two is left as it is, and the table keeps exactly its rows."""
    from flows.maintain import maintain_warehouse

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for step, users in enumerate([("u1", "u2"), ("u1", "u2"), ("u1",), ("u1",)]):
        rows = [event_row(u, "i", start.replace(hour=step), "like", None) for u in users]
        store.append(wh, EVENTS, pa.Table.from_pylist(rows, schema=EVENTS.schema))
    before = store.read(wh, EVENTS).sort_by([("user_id", "ascending"), ("event_ts", "ascending")])
    result = maintain_warehouse(str(wh.home), min_files=3)
    assert result["events"] == {"files_before": 6, "files_after": 3}
    files = lambda user: list((wh.table_dir(EVENTS) / f"user_bucket={user_partition(user)}").glob("*.parquet"))  # noqa: E731
    assert len(files("u1")) == 1 and len(files("u2")) == 2
    assert store.read(wh, EVENTS).sort_by([("user_id", "ascending"), ("event_ts", "ascending")]).equals(before)
    with pytest.raises(ValueError, match="at least 2"):
        store.compact(wh, EVENTS, min_files=1)


def test_a_row_in_the_wrong_partition_is_refused(wh):
    """Appends check keys within the partition a key decides: a row whose user_bucket is not its
    user's would escape that check, so it is refused."""
    row = event_row("u1", "i", datetime(2026, 1, 1, tzinfo=timezone.utc), "like", None)
    store.append(wh, EVENTS, pa.Table.from_pylist([row], schema=EVENTS.schema))
    row["user_bucket"] = (row["user_bucket"] + 1) % 16
    with pytest.raises(SchemaError, match="1 rows have a user_bucket that their user_id does not give"):
        store.append(wh, EVENTS, pa.Table.from_pylist([row], schema=EVENTS.schema))
    assert store.read(wh, EVENTS).num_rows == 1


def test_an_append_reads_only_the_partitions_its_keys_can_live_in(wh):
    """Events are partitioned by user: an append of one user's events never opens another
    partition's files (here one is unreadable), so its cost follows the batch, not the table."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    users = [f"u{i}" for i in range(40)]
    mine, other = "u0", next(u for u in users if user_partition(u) != user_partition("u0"))
    store.append(wh, EVENTS, pa.Table.from_pylist([event_row(u, "i", start, "like", None) for u in (mine, other)], schema=EVENTS.schema))
    (wh.table_dir(EVENTS) / f"user_bucket={user_partition(other)}" / "part-broken.parquet").write_bytes(b"not parquet")
    batch = pa.Table.from_pylist([event_row(mine, "i", start, "like", None), event_row(mine, "j", start, "like", None)], schema=EVENTS.schema)
    assert store.append(wh, EVENTS, batch) == store.WriteResult(written=1, duplicates=1)
    with pytest.raises(duckdb.Error):  # a table whose key does not decide the partition still reads every file
        (wh.table_dir(ITEMS)).mkdir(parents=True)
        (wh.table_dir(ITEMS) / "part-broken.parquet").write_bytes(b"not parquet")
        now = datetime.now(timezone.utc)
        store.append(
            wh,
            ITEMS,
            pa.Table.from_pylist(
                [
                    {
                        "item_id": "a",
                        "title": "t",
                        "video_uri": None,
                        "audio_uri": None,
                        "duration_s": None,
                        "content_hash": "h",
                        "source": "test",
                        "ingested_at": now,
                    }
                ],
                schema=ITEMS.schema,
            ),
        )


def test_a_days_append_opens_no_earlier_days_file_however_many_there_are(wh, monkeypatch):
    """The flat-append property, counted rather than timed: within a partition, an append reads
    only the files whose key ranges overlap its batch. Thirty days of one user's events make thirty
    files; a new day opens none of them, a day sent again opens exactly its own file, and a lost or
    garbled range cache costs nothing but time."""
    opened: list[int] = []
    new_rows = store._new_rows
    monkeypatch.setattr(store, "_new_rows", lambda spec, batch, files: opened.append(len(files or [])) or new_rows(spec, batch, files))
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def day(d: int) -> pa.Table:
        at = start + timedelta(days=d)
        return pa.Table.from_pylist([event_row("u0", f"i{(d * 7 + k) % 11}", at + timedelta(hours=k), "like", None) for k in range(3)], schema=EVENTS.schema)

    for d in range(30):
        assert store.append(wh, EVENTS, day(d)).written == 3
    partition = wh.table_dir(EVENTS) / f"user_bucket={user_partition('u0')}"
    assert len(list(partition.glob("*.parquet"))) == 30
    assert opened == [0] * 30
    # The index lists the files in one record batch, not one chunk per append (each chunk is paid
    # for by every later append's compute over it).
    with pa.ipc.open_file(partition / store.KEY_RANGES) as index:
        assert index.num_record_batches == 1 and index.read_all().num_rows >= 29
    assert store.append(wh, EVENTS, day(12)) == store.WriteResult(written=0, duplicates=3)
    assert opened[-1] == 1
    late = pa.Table.from_pylist([event_row("u0", "i8", start + timedelta(days=12, minutes=30), "like", None)], schema=EVENTS.schema)
    assert store.append(wh, EVENTS, late) == store.WriteResult(written=1, duplicates=0)  # in day 12's ranges, a new key
    assert opened[-1] == 1
    (partition / store.KEY_RANGES).write_text("not an Arrow file")
    assert store.append(wh, EVENTS, day(20)) == store.WriteResult(written=0, duplicates=3)
    (partition / store.KEY_RANGES).unlink()
    assert store.append(wh, EVENTS, day(25)) == store.WriteResult(written=0, duplicates=3)
    assert store.append(wh, EVENTS, day(30)).written == 3 and opened[-1] == 0
    assert store.read(wh, EVENTS).num_rows == 31 * 3 + 1


USERS = ["u1", "u2", "u\u00e9", "v"]  # one partition or several, names ordered by code point


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.tuples(st.sampled_from(USERS), st.sampled_from(["a", "b", "\U0001f600"]), st.integers(0, 5)), max_size=6), max_size=6))
def test_appends_cut_by_key_ranges_store_each_key_exactly_once(tmp_path_factory, batches):
    """Whatever the batches and their overlaps, the range cut never lets a stored key in twice
    nor keeps a new one out: the table ends up holding each distinct key once."""
    wh = Warehouse(tmp_path_factory.mktemp("home"))
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    keys = set()
    for rows in batches:
        batch = pa.Table.from_pylist([event_row(u, i, start + timedelta(hours=h), "like", None) for u, i, h in rows], schema=EVENTS.schema)
        fresh = {(u, i, h) for u, i, h in rows} - keys
        assert store.append(wh, EVENTS, batch).written == len(fresh)
        keys |= fresh
    stored = store.read(wh, EVENTS).to_pylist()
    assert sorted((r["user_id"], r["item_id"], int((r["event_ts"] - start).total_seconds() // 3600)) for r in stored) == sorted(keys)


def test_scores_of_an_older_home_move_into_run_partitions_and_a_run_drops_alone(tmp_path):
    """Before schema version 4 `scores` was one flat folder; the first reader moves its rows into
    run_id= folders (journaled, one file at a time), a run id that cannot name a folder goes to
    `failures` whole, and dropping one run removes its folder only. Numeric run ids stay strings."""
    wh = Warehouse(tmp_path)
    now = datetime(2026, 3, 1, tzinfo=timezone.utc)
    rows = [
        {"run_id": run, "user_id": f"u{k}", "item_id": f"i{k}", "score": 1.0 - k / 10, "rank": k + 1, "model_version": "popularity@1", "scored_at": now}
        for run in ("7", "007", "nightly 1")
        for k in range(3)
    ]
    folder = wh.table_dir(TABLES["scores"])
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=TABLES["scores"].schema), folder / "part-legacy.parquet")
    assert wh.has_rows_on_disk(TABLES["scores"])  # the flat file counts before it is moved
    got = db.fetch(wh, "SELECT run_id, count(*) AS n FROM scores GROUP BY run_id ORDER BY run_id")
    assert got == [{"run_id": "007", "n": 3}, {"run_id": "7", "n": 3}]
    kept = db.fetch(wh, "SELECT stage, record FROM failures")
    assert len(kept) == 3 and {json.loads(r["record"])["run_id"] for r in kept} == {"nightly 1"} and kept[0]["stage"] == "migrate-scores"
    assert not [f for f in folder.glob("*.parquet") if f.is_file()]
    assert sorted(p.name for p in folder.glob("run_id=*")) == ["run_id=007", "run_id=7"]
    assert store.read(wh, TABLES["scores"]).num_rows == 6
    assert store.drop_partitions(wh, TABLES["scores"], {"7", "missing"}) == 3
    assert not (folder / "run_id=7").exists()
    assert db.fetch(wh, "SELECT DISTINCT run_id FROM scores") == [{"run_id": "007"}]
    again = store.append(wh, TABLES["scores"], pa.Table.from_pylist(rows[3:6], schema=TABLES["scores"].schema))
    assert again.written == 0 and again.duplicates == 3  # the run's own partition holds its keys


def test_explanations_of_an_older_home_move_into_run_partitions_and_a_run_drops_alone(tmp_path):
    """Before schema version 5 `explanations` was one flat folder (and before 3 it had no
    fusion_weights): the first reader moves it into run_id= folders, the view shows every column
    in schema order, and removing one run leaves the other run's files untouched."""
    wh = Warehouse(tmp_path)
    spec = TABLES["explanations"]
    old_schema = spec.schema.remove(spec.schema.get_field_index("fusion_weights"))
    rows = [
        {"run_id": run, "user_id": f"u{k}", "item_id": f"i{k}", "model_version": "lstm-attn@1", "attention": [0.5, 0.5], "summary": f"{run}-{k}"}
        for run in ("night-1", "night-2")
        for k in range(2)
    ]
    folder = wh.table_dir(spec)
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=old_schema), folder / "part-legacy.parquet")
    got = db.fetch(wh, "SELECT * FROM explanations ORDER BY summary")
    assert [r["summary"] for r in got] == ["night-1-0", "night-1-1", "night-2-0", "night-2-1"]
    assert list(got[0]) == spec.schema.names and got[0]["run_id"] == "night-1" and got[0]["fusion_weights"] is None
    assert sorted(p.name for p in folder.glob("run_id=*")) == ["run_id=night-1", "run_id=night-2"]
    assert not [f for f in folder.glob("*.parquet") if f.is_file()]
    other = sorted((folder / "run_id=night-2").glob("*.parquet"))
    stamps = [f.stat().st_mtime_ns for f in other]
    from flows.score import remove_runs

    assert remove_runs(wh, spec, {"night-1"}) == 2
    assert not (folder / "run_id=night-1").exists()
    assert sorted((folder / "run_id=night-2").glob("*.parquet")) == other and [f.stat().st_mtime_ns for f in other] == stamps
    assert db.fetch(wh, "SELECT DISTINCT run_id FROM explanations") == [{"run_id": "night-2"}]


@pytest.mark.parametrize("run_id", ["a b", "v2.parquet", "x.tmp", "abc\n", "r" * 201])
def test_a_run_id_that_cannot_name_its_folder_is_refused_before_a_run(run_id):
    from flows.arguments import check_arguments

    assert not store.partition_value_ok(run_id)
    with pytest.raises(ReelsenseError, match="cannot name the run's folder"):
        check_arguments("popularity", 10, 200, run_id)


def test_a_run_remover_says_once_that_it_waits_for_a_running_report(wh):
    """prune and `score --replace` wait for a report holding the runs; `on_wait` (their "waiting
    for a running report" line) is called once when they have to wait, never when the lock is free."""
    import threading

    held, release, waited = threading.Event(), threading.Event(), []

    def report() -> None:
        with store.runs_lock(wh, exclusive=False):
            held.set()
            release.wait(30)

    reporter = threading.Thread(target=report)
    reporter.start()
    assert held.wait(30)
    with store.runs_lock(wh, exclusive=True, on_wait=lambda: (waited.append("busy"), release.set())):
        assert not reporter.is_alive() or release.is_set()
    reporter.join(30)
    with store.runs_lock(wh, exclusive=True, on_wait=lambda: waited.append("free")):
        pass
    assert waited == ["busy"]


def test_quarantined_items_lists_only_what_an_item_has_not_got_past(wh):
    """Probe: the printed failures query listed items embedded since. The view keeps a failure of
    the item's current content that no later vector of the failed modality (and model) answers,
    and extract's planner holds back exactly the undecodable media it lists."""
    from warehouse.schemas import FAILURES

    t0, t1, t2 = (datetime(2026, 1, d, tzinfo=timezone.utc) for d in (1, 2, 3))
    item = {"title": "t", "video_uri": "v.mp4", "audio_uri": None, "duration_s": None, "source": "test", "ingested_at": t0}
    names = ("media", "fixed", "forced", "frames", "audio", "text", "before", "stale", "other", "aligned")
    items = [{**item, "item_id": i, "content_hash": f"h-{i}"} for i in names]
    items.append({**item, "item_id": "fixed", "content_hash": "h-fixed-new", "ingested_at": t2})  # fixed media, ingested again
    items.append({**item, "item_id": "stale", "content_hash": "h-stale-old", "ingested_at": t0 - timedelta(days=1)})  # an earlier version
    store.append(wh, ITEMS, pa.Table.from_pylist(items, schema=ITEMS.schema))

    def failure(item_id, stage, at, error="failed", model=None):
        record = {"item_id": item_id, "content_hash": f"h-{item_id}", **({"model": model} if model else {})}
        return {"stage": stage, "source": "v.mp4", "item_id": item_id, "user_id": None, "error": error, "record": json.dumps(record), "failed_at": at}

    failures = [
        failure("media", "extract-items", t0),  # still undecodable
        failure("media", "extract-items", t1, "failed again"),  # tried again (--force): one row per stage, the latest
        failure("fixed", "extract-items", t0),  # its earlier content
        failure("forced", "extract-items", t0),  # then embedded by --force
        failure("frames", "extract-items:frames:encoder", t0, model="f@1"),  # a text vector since: still refused
        failure("audio", "extract-items:audio:encoder", t0),  # an audio vector since (no model recorded: any): got past it
        failure("text", "extract-items:audio", t0),  # no audio track: recorded, not quarantined
        failure("before", "extract-items:frames:encoder", t1, model="f@1"),  # its vector is older than the refusal
        failure("stale", "extract-items:frames:encoder", t0, model="f@1"),  # a vector since, but of its earlier content
        failure("other", "extract-items:frames:encoder", t0, model="f@2"),  # a vector since, but of another model
        failure("aligned", "extract-items", t0),  # an aligned vector since: made from others, answers nothing
    ]
    store.append(wh, FAILURES, pa.Table.from_pylist(failures, schema=FAILURES.schema))
    assert store.append(wh, FAILURES, pa.Table.from_pylist([{**failures[8], "failed_at": t2}], schema=FAILURES.schema)).written == 0  # word for word: kept once
    vectors = [("fixed", "frames", "h-fixed-new", t2, "f@1"), ("forced", "frames", "h-forced", t1, "f@1"), ("frames", "text", "h-frames", t1, "t@1")]
    vectors += [("audio", "audio", "h-audio", t1, "a@1"), ("media", "text", "h-media", t2, "t@1"), ("before", "frames", "h-before", t0, "f@1")]
    vectors += [("stale", "frames", "h-stale-old", t1, "f@1"), ("other", "frames", "h-other", t1, "f@1"), ("aligned", "frames", "h-aligned", t1, "aligned@x")]
    store.append(
        wh,
        EMBEDDINGS,
        pa.Table.from_pylist(
            [
                {"item_id": i, "modality": m, "model": model, "dim": 1, "vector": [1.0], "tags": [], "content_hash": h, "created_at": at}
                for i, m, h, at, model in vectors
            ],
            schema=EMBEDDINGS.schema,
        ),
    )
    db.refresh_views(wh)
    expected = [
        ("aligned", "extract-items", t0),
        ("before", "extract-items:frames:encoder", t1),
        ("frames", "extract-items:frames:encoder", t0),
        ("media", "extract-items", t1),  # a title vector does not get past undecodable media
        ("other", "extract-items:frames:encoder", t0),
        ("stale", "extract-items:frames:encoder", t0),
    ]
    rows = db.fetch(wh, "SELECT item_id, stage, failed_at FROM quarantined_items ORDER BY item_id")
    assert [(r["item_id"], r["stage"], r["failed_at"]) for r in rows] == expected
    stored = db.query(wh, "SELECT item_id FROM quarantined_items ORDER BY item_id, stage").column("item_id").to_pylist()  # the database's own view
    assert stored == [e[0] for e in expected]
    held = db.analysis(wh, "failed_extractions", {"stage": "extract-items"}).to_pylist()
    assert sorted(r["item_id"] for r in held) == ["aligned", "media"]  # what extract skips: the media the view lists
    assert db.QUARANTINED_ITEMS == 'reelsense sql "SELECT item_id, stage, error FROM quarantined_items ORDER BY item_id, stage" --format csv'
