"""Ingest with validation: each bad-row case is quarantined with its reason, nothing is lost twice."""

from __future__ import annotations

import json
import os
import shlex
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_csv

from flows.cli import main
from warehouse import db, store
from warehouse.errors import InputFileError, ReelsenseError
from warehouse.ingest import ingest_events, ingest_items, parse_timestamp
from warehouse.schemas import ITEMS

EVENT_HEADER = ["user_id", "item_id", "event_ts", "event", "watch_ratio"]

GOOD_EVENTS = [
    ["u1", "v1", "2026-01-01T10:00:00Z", "watch", "0.75"],
    ["u1", "v1", "2026-01-01T10:00:01Z", "like", ""],
    ["u2", "v2", "1767261600", "impression", ""],  # Unix seconds
    ["u'2; DROP TABLE events;--", 'v"3😀', "2026-01-02 08:30:00", "comment", ""],
    ["u3", "v1", "2026-01-03T00:00:00+02:00", "share", "1.4"],  # >1: watched again
]
BAD_EVENTS = {
    "missing user_id": ["", "v1", "2026-01-01T10:00:00Z", "watch", "0.5"],
    "missing item_id": ["u9", "", "2026-01-01T10:00:00Z", "watch", "0.5"],
    "unknown event type 'buy'": ["u9", "v1", "2026-01-01T10:00:00Z", "buy", ""],
    "unparseable event_ts 'yesterday'": ["u9", "v1", "yesterday", "watch", "0.5"],
    "missing event_ts": ["u9", "v1", "", "watch", "0.5"],
    "watch_ratio is NaN": ["u9", "v1", "2026-01-01T10:00:00Z", "watch", "nan"],
    "watch_ratio -0.2 is out of range": ["u9", "v1", "2026-01-01T10:00:00Z", "watch", "-0.2"],
    "watch_ratio 'lots' is not a number": ["u9", "v1", "2026-01-01T10:00:00Z", "watch", "lots"],
    "event_ts '-5' is before 1970-01-01": ["u9", "v1", "-5", "watch", ""],
    "event_ts '2999-01-01T00:00:00Z' (2999-01-01) is in the future": ["u9", "v1", "2999-01-01T00:00:00Z", "watch", ""],
    "event_ts '1767261600000' is out of range for Unix seconds (milliseconds? divide by 1000)": ["u9", "v1", "1767261600000", "watch", ""],
    "event_ts '0001-01-01T00:00:00+01:00' is out of range": ["u9", "v1", "0001-01-01T00:00:00+01:00", "watch", ""],
}


def counts(wh) -> dict[str, int]:
    return db.table_counts(wh)


def test_good_and_bad_events_are_separated_with_reasons(wh, tmp_path):
    rows = GOOD_EVENTS + [GOOD_EVENTS[0]] + list(BAD_EVENTS.values())  # one exact duplicate
    report = ingest_events(wh, write_csv(tmp_path / "events.csv", EVENT_HEADER, rows))
    assert (report.accepted, report.quarantined, report.duplicates) == (len(GOOD_EVENTS), len(BAD_EVENTS), 1)
    assert report.accepted + report.quarantined + report.duplicates == report.input_rows == len(rows)
    db.refresh_views(wh)
    errors = db.query(wh, "SELECT error, record FROM failures WHERE stage = 'ingest-events'").to_pylist()
    assert len(errors) == len(BAD_EVENTS)
    for reason in BAD_EVENTS:
        assert any(e["error"].startswith(reason) for e in errors), reason
    # The raw record is kept so the row can be fixed and replayed.
    assert any(json.loads(e["record"])["event"] == "buy" for e in errors)


def test_ids_are_stored_verbatim_and_queried_with_parameters(wh, tmp_path):
    ingest_events(wh, write_csv(tmp_path / "events.csv", EVENT_HEADER, GOOD_EVENTS))
    db.refresh_views(wh)
    odd_user = "u'2; DROP TABLE events;--"
    found = db.query(wh, "SELECT item_id FROM events WHERE user_id = $1", [odd_user])
    assert found.column("item_id").to_pylist() == ['v"3😀']
    assert counts(wh)["events"] == len(GOOD_EVENTS)


def test_non_utf8_text_is_quarantined(wh, tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes(b"user_id,item_id,event_ts,event\nu1,v1,2026-01-01T00:00:00Z,like\nu\xff\xfe,v1,2026-01-01T00:00:00Z,like\n")
    report = ingest_events(wh, path)
    assert (report.accepted, report.quarantined) == (1, 1)
    db.refresh_views(wh)
    assert "user_id is not valid UTF-8" in db.query(wh, "SELECT error FROM failures").column("error")[0].as_py()


def test_a_csv_line_with_the_wrong_number_of_fields_is_quarantined_and_the_rest_kept(wh, tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes(
        b"user_id,item_id,event_ts,event\n"
        b"u1,v1,2026-01-01T00:00:00Z,like\n"
        b"u2,v2,2026-01-01T00:00:00Z,like,extra,fields\n"  # an unquoted comma too many
        b"u3,v3\n"
        b"u3,v3\n"  # the same bad line twice: two failures, told apart by line number
        b"u4,v4,2026-01-02T00:00:00Z,watch\n"
    )
    report = ingest_events(wh, path)
    assert (report.input_rows, report.accepted, report.quarantined) == (5, 2, 3)
    db.refresh_views(wh)
    assert sorted(db.query(wh, "SELECT user_id FROM events").column("user_id").to_pylist()) == ["u1", "u4"]
    failures = db.query(wh, "SELECT error, record FROM failures ORDER BY error").to_pylist()
    assert [f["error"] for f in failures] == [
        "line 3: expected 4 fields (user_id, item_id, event_ts, event), found 6; quote a field that holds a comma",
        "line 4: expected 4 fields (user_id, item_id, event_ts, event), found 2; a field is missing",
        "line 5: expected 4 fields (user_id, item_id, event_ts, event), found 2; a field is missing",
    ]
    assert json.loads(failures[0]["record"]) == {"line": "u2,v2,2026-01-01T00:00:00Z,like,extra,fields"}  # to fix and replay


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])  # with a byte-order mark, and without one
def test_a_utf16_csv_is_refused_with_what_to_do(wh, tmp_path, encoding):
    """Probe: a UTF-16 file was refused with a header spaced by NUL bytes."""
    path = tmp_path / "events.csv"
    path.write_bytes("user_id,item_id,event_ts,event\nu1,v1,2026-01-01T00:00:00Z,like\n".encode(encoding))
    with pytest.raises(InputFileError, match="the file is UTF-16 .*; save it as CSV UTF-8") as caught:
        ingest_events(wh, path)
    assert "\x00" not in str(caught.value)


def test_a_malformed_line_that_is_not_utf8_is_quarantined_too(wh, tmp_path):
    path = tmp_path / "items.csv"
    path.write_bytes(b"item_id,title,video_uri\nv1,first,\nv\xe9,caf\xe9,,extra\nv3,third,\n")
    report = ingest_items(wh, path)
    assert (report.input_rows, report.accepted, report.quarantined) == (3, 2, 1)
    db.refresh_views(wh)
    error = db.query(wh, "SELECT error FROM failures").column("error")[0].as_py()
    assert error == "line 3: expected 3 fields (item_id, title, video_uri), found 4; quote a field that holds a comma"


@pytest.mark.parametrize("odd_byte", [b"", b"\xe9"], ids=["utf8", "latin1"])  # the fast and the slow reader
def test_a_quote_never_closed_refuses_the_file_instead_of_swallowing_it(wh, tmp_path, odd_byte):
    path = tmp_path / "events.csv"
    good = b"".join(b"u%d,v1,2026-01-01T00:00:00Z,like\n" % i for i in range(50))
    path.write_bytes(b"user_id,item_id,event_ts,event\nu0,v1" + odd_byte + b',2026-01-01T00:00:00Z,like\nu1,"v2,2026-01-01,like\n' + good)
    with pytest.raises(InputFileError, match="opens a quote that is never closed"):
        ingest_events(wh, path)
    assert not list(wh.home.rglob("*.parquet"))  # nothing written, not even to failures


def test_reingest_changes_no_count(wh, tmp_path):
    events = write_csv(tmp_path / "events.csv", EVENT_HEADER, GOOD_EVENTS + list(BAD_EVENTS.values()))
    (tmp_path / "clip.mp4").write_bytes(b"not decoded at ingest")
    items = write_csv(tmp_path / "items.csv", ["item_id", "title", "video_uri"], [["v1", "cats #pets", "clip.mp4"], ["v2", "missing clip", "nope.mp4"]])
    for _ in range(2):
        ingest_events(wh, events)
        ingest_items(wh, items)
        db.refresh_views(wh)
        assert counts(wh) == {**counts(wh), "events": len(GOOD_EVENTS), "items": 1, "failures": len(BAD_EVENTS) + 1}
    second = ingest_events(wh, events)
    assert (second.accepted, second.duplicates) == (0, len(GOOD_EVENTS))


def test_an_event_again_with_another_watch_ratio_is_quarantined_not_counted_a_duplicate(wh, tmp_path):
    """Probe: a watch at 0.2 and the same watch at 0.95 (same user, item, time and type) were counted
    as a duplicate and the 0.95 lost without a word, in one file and against a stored event. The
    first is kept; the other is quarantined naming both ratios; exact repeats stay duplicates, and a
    ratio stored as float32 is the same ratio."""
    watch = ["u1", "v1", "2026-01-01T10:00:00Z", "watch"]
    first = ingest_events(wh, write_csv(tmp_path / "a.csv", EVENT_HEADER, [[*watch, "0.2"], [*watch, "0.95"], [*watch, "0.2"], GOOD_EVENTS[1]]))
    assert (first.accepted, first.quarantined, first.duplicates) == (2, 1, 1)
    again = ingest_events(wh, write_csv(tmp_path / "b.csv", EVENT_HEADER, [[*watch, "0.9"], [*watch, "0.2"], [*watch, ""], GOOD_EVENTS[1], GOOD_EVENTS[2]]))
    assert (again.accepted, again.quarantined, again.duplicates) == (1, 2, 2)
    db.refresh_views(wh)
    assert [r["watch_ratio"] for r in db.fetch(wh, "SELECT watch_ratio FROM events WHERE event = 'watch'")] == [pytest.approx(0.2)]
    errors = [r["error"] for r in db.fetch(wh, "SELECT error FROM failures ORDER BY error")]
    stem = "the 'watch' event of user 'u1' on item 'v1' at 2026-01-01T10:00:00+00:00"
    assert errors == [
        f"{stem} appears earlier in this file with watch_ratio 0.2, this row has 0.95; an event is stored once per user, item, time and type: "
        "the first is kept (fix the source, or give a repeated event its own event_ts)",
        f"{stem} is already stored with watch_ratio 0.2, this row has 0.9; an event is stored once per user, item, time and type: "
        "the first is kept (fix the source, or give a repeated event its own event_ts)",
        f"{stem} is already stored with watch_ratio 0.2, this row has empty; an event is stored once per user, item, time and type: "
        "the first is kept (fix the source, or give a repeated event its own event_ts)",
    ]


def test_bad_items_are_quarantined(wh, tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"x")
    path = tmp_path / "items.csv"
    path.write_bytes(
        b"item_id,title,video_uri\n"
        b"a,first,videos/a.mp4\n"
        b",no id,\n"
        b"b,gone,videos/b.mp4\n"
        b"c,caf\xe9 latin-1,\n"
        b"a,first,videos/a.mp4\n"
        b"a,other title,videos/a.mp4\n"
        b"d,,\n"
    )
    report = ingest_items(wh, path)
    assert (report.accepted, report.quarantined, report.duplicates) == (2, 4, 1)
    db.refresh_views(wh)
    errors = " | ".join(db.query(wh, "SELECT error FROM failures ORDER BY error").column("error").to_pylist())
    for reason in (
        "missing item_id",
        f"video_uri 'videos/b.mp4': no such local file (looked for {tmp_path / 'videos' / 'b.mp4'}); a relative path is read from the items file's folder",
        "title is not valid UTF-8",
        "item_id 'a' appears again in this file with different content",
    ):
        assert reason in errors
    stored = db.query(wh, "SELECT item_id, video_uri FROM items ORDER BY item_id").to_pylist()
    assert stored == [{"item_id": "a", "video_uri": str((tmp_path / "videos" / "a.mp4").resolve())}, {"item_id": "d", "video_uri": None}]


def test_changed_item_content_adds_a_version_and_the_view_shows_the_newest(wh, tmp_path):
    ingest_items(wh, write_csv(tmp_path / "a.csv", ["item_id", "title", "video_uri"], [["v1", "old title", ""]]))
    ingest_items(wh, write_csv(tmp_path / "b.csv", ["item_id", "title", "video_uri"], [["v1", "new title", ""]]))
    db.refresh_views(wh)
    assert db.query(wh, "SELECT title FROM items").column("title").to_pylist() == ["new title"]


def test_an_item_changed_back_to_earlier_content_shows_the_latest_ingest(wh, tmp_path):
    # Probe finding: the third ingest (the old title again) was counted as a duplicate of the first
    # version, and the view kept showing "new title".
    old = write_csv(tmp_path / "a.csv", ["item_id", "title", "video_uri"], [["v1", "old title", ""]])
    ingest_items(wh, old)
    ingest_items(wh, write_csv(tmp_path / "b.csv", ["item_id", "title", "video_uri"], [["v1", "new title", ""]]))
    back = ingest_items(wh, old)
    assert (back.accepted, back.duplicates) == (1, 0)
    db.refresh_views(wh)
    assert db.query(wh, "SELECT title FROM items").column("title").to_pylist() == ["old title"]
    again = ingest_items(wh, old)  # the current version again: a duplicate, nothing written
    assert (again.accepted, again.duplicates) == (0, 1)
    assert store.read(wh, ITEMS).num_rows == 3  # three versions: old, new, old


def test_parquet_input_with_typed_columns(wh, tmp_path):
    # The first name with a byte-order mark, which Parquet keeps (review: it passed the column check, then was dropped)
    table = pa.table(
        {"\ufeffuser_id": [1, 2], "item_id": [10, 11], "event_ts": pa.array([0, 60], pa.timestamp("s")), "event": ["watch", "like"], "watch_ratio": [0.5, None]}
    )
    pq.write_table(table, tmp_path / "events.parquet")
    report = ingest_events(wh, tmp_path / "events.parquet")
    assert report.accepted == 2 and report.ignored_columns == ()
    # A repeated name in Parquet: the one-line error, not pyarrow's dataset dump (probe)
    names = ["user_id", "item_id", "event_ts", "event", "watch_ratio", "item_id"]
    repeated = pa.Table.from_arrays([table.column(0), *table.columns[1:], table.column(1)], names=names)
    pq.write_table(repeated, tmp_path / "twice.parquet")
    with pytest.raises(ReelsenseError, match="column item_id appears more than once"):
        ingest_events(wh, tmp_path / "twice.parquet")
    db.refresh_views(wh)
    assert sorted(db.query(wh, "SELECT user_id FROM events").column("user_id").to_pylist()) == ["1", "2"]


def test_a_time_without_a_zone_is_read_as_utc(wh, tmp_path):
    """As the README says: ISO text without an offset and a Parquet timestamp without a time zone are
    UTC, whatever the machine's zone; an offset is honoured. Each row below is 10:00 UTC on 2026-01-01."""
    rows = [["u1", "v1", "2026-01-01T10:00:00", "watch", ""], ["u2", "v1", "2026-01-01T12:00:00+02:00", "watch", ""]]
    naive = pa.table({"user_id": ["u3"], "item_id": ["v1"], "event_ts": pa.array([1767261600], pa.timestamp("s")), "event": ["watch"]})
    pq.write_table(naive, tmp_path / "events.parquet")
    zone = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"  # a machine 5 hours behind UTC
    time.tzset()
    try:
        ingest_events(wh, write_csv(tmp_path / "events.csv", ["user_id", "item_id", "event_ts", "event", "watch_ratio"], rows))
        ingest_events(wh, tmp_path / "events.parquet")
    finally:
        os.environ.pop("TZ") if zone is None else os.environ.update(TZ=zone)
        time.tzset()
    db.refresh_views(wh)
    got = db.query(wh, "SELECT user_id, epoch(event_ts)::BIGINT AS t FROM events ORDER BY user_id").to_pylist()
    assert got == [{"user_id": u, "t": 1767261600} for u in ("u1", "u2", "u3")]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ("folder", "a folder, not a file"),
        ("fifo", "not a regular file"),  # probe: /dev/null was "no such file"
        (b"user,item\nu1,v1\n", "found columns [user, item]; expected user_id, item_id, event_ts, event (optional: watch_ratio)"),
        # probe: a semicolon-separated file was one column, without a word why
        (b"user_id;item_id;event_ts;event\nu1;v1;2026-01-01T00:00:00Z;watch\n", "the header looks separated by ';': reelsense reads comma-separated files"),
        # probe: a repeated column was a pyarrow traceback; also where the file is not UTF-8 (read in Python)
        (b"user_id,item_id,event_ts,event,event\nu1,v1,2026-01-01T00:00:00Z,watch,like\n", "column event appears more than once"),
        (b"user_id,item_id,event_ts,event,event\nu1,v\xff,2026-01-01T00:00:00Z,watch,like\n", "column event appears more than once"),
    ],
)
def test_whole_file_errors_are_one_line_with_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "events.csv"
    if content == "folder":
        path.mkdir()
    elif content == "fifo":
        os.mkfifo(path)
    elif content is not None:
        path.write_bytes(content)
    status = main(["--home", str(tmp_path / "home"), "ingest", "events", str(path)])
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and str(path) in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_ingest_prints_counts_and_why_rows_were_quarantined(tmp_path, capsys):
    buy, sell = BAD_EVENTS["unknown event type 'buy'"], ["u8", "v1", "2026-01-01T10:00:00Z", "sell", ""]
    bad = [buy, sell, ["u7", *buy[1:]]] + [BAD_EVENTS[reason] for reason in list(BAD_EVENTS)[3:7]]
    path = write_csv(tmp_path / "events.csv", EVENT_HEADER, GOOD_EVENTS + bad)
    assert main(["--home", str(tmp_path / "home"), "ingest", "events", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    # Probe: only `sql ... FROM failures` said why; now the most frequent kinds of error (review:
    # errors that differ only in a quoted value are one kind), then the query that lists every row.
    assert f"{len(GOOD_EVENTS)} accepted, {len(bad)} quarantined, 0 duplicates" in out[0]
    assert out[1] == "  3 rows like: unknown event type 'buy'; expected one of impression, watch, like, comment, share"
    assert out[2].startswith("  1 row: ") and len(out) == 6 and out[4] == "  ... and 2 other kinds of error"  # 5 kinds, 3 shown
    home = tmp_path / "home"  # the home given: the command runs as printed (probe: it read the default home)
    query = f"SELECT error, record FROM failures WHERE source = '{path}'"
    assert out[5] == f"""  every quarantined row, as ingest read it: reelsense --home {home} sql "{query}" --format csv"""
    assert main(["--home", str(tmp_path / "home"), "sql", f"SELECT count(*) AS n FROM failures WHERE source = '{path}'", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == str(len(bad))


def test_ingest_names_the_columns_it_does_not_read(tmp_path, capsys):
    """Probe: an `extra` column was dropped without a word."""
    path = write_csv(tmp_path / "events.csv", [*EVENT_HEADER, "extra", "device", "extra"], [row + ["x", "y", "z"] for row in GOOD_EVENTS])
    assert main(["--home", str(tmp_path / "home"), "ingest", "events", str(path)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.endswith(f"{len(GOOD_EVENTS)} accepted, 0 quarantined, 0 duplicates; ignored columns extra, device")


def test_ingest_says_when_events_name_items_that_items_does_not_hold(tmp_path, capsys):
    """Probe, 2026-12-03: such events were accepted without a word, and evaluate then counted 121
    items where `items` held 120."""
    home = str(tmp_path / "home")
    items = write_csv(tmp_path / "items.csv", ["item_id", "title", "video_uri"], [["v1", "a title", ""]])
    assert main(["--home", home, "ingest", "items", str(items)]) == 0
    capsys.readouterr()
    assert main(["--home", home, "ingest", "events", str(write_csv(tmp_path / "events.csv", EVENT_HEADER, GOOD_EVENTS))]) == 0
    note = capsys.readouterr().out.splitlines()[-1]
    assert note.startswith("note: these events name 2 items that `items` does not hold ('v\"3😀', 'v2'): they count in the catalogue")
    assert note.endswith(
        f"until `reelsense --home {home} ingest items FILE` adds them and `reelsense --home {home} extract` embeds them "
        f"(then `reelsense --home {home} align`, where the home's items are aligned)"
    )
    # A later file naming only held items says nothing, though the table still names v2 (probe).
    assert main(["--home", home, "ingest", "events", str(write_csv(tmp_path / "v1.csv", EVENT_HEADER, [["u9", "v1", "1767261600", "watch", ""]]))]) == 0
    assert "note:" not in capsys.readouterr().out
    more = write_csv(tmp_path / "more.csv", ["item_id", "title", "video_uri"], [["v2", "b", ""], ['v"3😀', "c", ""]])
    assert main(["--home", home, "ingest", "items", str(more)]) == 0
    assert main(["--home", home, "ingest", "events", str(tmp_path / "events.csv")]) == 0
    assert "note:" not in capsys.readouterr().out


def test_a_utf16_microlens_pairs_file_is_refused_not_read_as_ids(tmp_path, capsys):
    """Probe, 2026-12-03: the pairs reader decoded UTF-16 lines as UTF-8 (NUL bytes are valid UTF-8)
    and would have stored ids spaced by NULs."""
    root = tmp_path / "ml"
    root.mkdir()
    (root / "x_titles.csv").write_text("item,title\n1,a title\n2,another\n", encoding="utf-8")
    (root / "x_pairs.tsv").write_text("u1\t1 2\n", encoding="utf-16")
    assert main(["--home", str(tmp_path / "home"), "ingest", "microlens", str(root)]) == 2
    assert f"{root / 'x_pairs.tsv'}: the file is UTF-16 (or holds NUL bytes), not UTF-8 text; save it as UTF-8 text" in capsys.readouterr().err
    assert not store.Warehouse(tmp_path / "home").has_rows_on_disk(ITEMS)  # refused before the titles were written (review)
    # A byte-order mark is no part of the first user id; a second tab made the third field an item (probes).
    (root / "x_pairs.tsv").write_text("u1\t1 2\t\nno-items-line\nu2\t1\t2\n", encoding="utf-8-sig")  # a trailing tab is no field (review)
    assert main(["--home", str(tmp_path / "home"), "ingest", "microlens", str(root)]) == 0
    # probe: "3 rows" counted two pairs and a bad line together
    out = capsys.readouterr().out
    assert "events: 2 pairs and 2 bad lines in x_pairs.tsv: 2 accepted, 2 quarantined, 0 duplicates" in out
    assert "line 3: more than one tab; expected `user_id<TAB>item ids` with the item ids separated by spaces" in out
    assert db.fetch(store.Warehouse(tmp_path / "home"), "SELECT DISTINCT user_id FROM events") == [{"user_id": "u1"}]


def test_a_user_on_two_microlens_lines_is_quarantined_not_given_the_same_timestamps_twice(tmp_path, capsys):
    """Probe, 2026-12-05: a second line for u1 restarted its ordinals, so two items shared each second."""
    root = tmp_path / "ml"
    root.mkdir()
    (root / "x_titles.csv").write_text("item,title\n1,a\n2,b\n3,c\n", encoding="utf-8")
    (root / "x_pairs.tsv").write_text("u1\t1 2\n\nu2\t2\n \r\nu1\t3\n\n", encoding="utf-8")  # blank lines are no users (probe)
    home = tmp_path / "home"
    assert main(["--home", str(home), "ingest", "microlens", str(root)]) == 0
    out = capsys.readouterr().out
    assert "events: 3 pairs and 1 bad line in x_pairs.tsv: 3 accepted, 1 quarantined, 0 duplicates" in out
    assert "line 5: user 'u1' is already listed on line 1; MicroLens lists each user once, in chronological order: merge the two lines" in out
    rows = db.fetch(store.Warehouse(home), "SELECT user_id, item_id, epoch(event_ts) AS t FROM events ORDER BY user_id, t")
    assert rows == [{"user_id": "u1", "item_id": "1", "t": 0}, {"user_id": "u1", "item_id": "2", "t": 1}, {"user_id": "u2", "item_id": "2", "t": 0}]


def test_the_printed_failures_query_is_one_shell_word_whatever_the_path():
    from warehouse.ingest import IngestReport

    for source in ("/data/new events.csv", '/tmp/it\'s "x" $HOME.csv'):
        line = IngestReport("events", source, 2, 1, 1, 0, (("missing user_id", 1),)).reason_lines()[-1]
        words = shlex.split(line.split("as ingest read it: ", 1)[1])
        assert words[:2] == ["reelsense", "sql"] and words[3:] == ["--format", "csv"]
        assert words[2] == "SELECT error, record FROM failures WHERE source = '" + source.replace("'", "''") + "'"


def test_sql_is_read_only_and_missing_warehouse_is_explained(tmp_path, capsys):
    home = tmp_path / "home"
    assert main(["--home", str(home), "sql", "SELECT 1"]) == 2
    assert "no warehouse at" in capsys.readouterr().err
    main(["--home", str(home), "ingest", "events", str(write_csv(tmp_path / "e.csv", EVENT_HEADER, GOOD_EVENTS))])
    capsys.readouterr()
    assert main(["--home", str(home), "sql", "CREATE TABLE t AS SELECT 1"]) == 2
    assert "read-only" in capsys.readouterr().err
    assert main(["--home", str(home), "sql", "SELECT count(*) AS n FROM events WHERE user_id = $1", "--param", "u1"]) == 0
    assert "| 2 " in capsys.readouterr().out


def _ingest_items_at(home: str, path: str) -> int:
    from warehouse.store import Warehouse

    return ingest_items(Warehouse(home), path).accepted


def test_concurrent_ingests_of_the_same_items_store_each_row_once(wh, tmp_path):
    # Review finding: the current-version check ran outside the table lock, so two ingests of one
    # file at the same time both stored every row. It now runs inside `store.append`, under the lock.
    import multiprocessing

    path = write_csv(tmp_path / "many.csv", ["item_id", "title", "video_uri"], [[f"v{i}", f"title {i}", ""] for i in range(500)])
    with multiprocessing.get_context("fork").Pool(2) as pool:
        accepted = pool.starmap(_ingest_items_at, [(str(wh.home), str(path))] * 2)
    assert sorted(accepted) == [0, 500]
    assert store.read(wh, ITEMS).num_rows == 500


def _ingest_events_at(home: str, path: str) -> tuple[int, int]:
    report = ingest_events(store.Warehouse(home), path)
    return report.accepted, report.quarantined


def test_concurrent_ingests_of_one_watch_at_two_ratios_store_one_and_quarantine_the_other(wh, tmp_path):
    """Review: the ratio check ran before append took the table lock, so two ingests at once both
    passed it and the second ratio was lost as a duplicate again. It runs inside append, under the lock."""
    import multiprocessing

    files = [write_csv(tmp_path / f"{r}.csv", EVENT_HEADER, [["u1", f"v{i}", "2026-01-01T10:00:00Z", "watch", r] for i in range(300)]) for r in ("0.2", "0.95")]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        outcomes = pool.starmap(_ingest_events_at, [(str(wh.home), str(f)) for f in files])
    assert sorted(outcomes) == [(0, 300), (300, 0)]
    db.refresh_views(wh)
    assert db.table_counts(wh)["events"] == 300 and db.table_counts(wh)["failures"] == 300


@pytest.mark.parametrize(
    "value, says",
    [
        (1767261600000, "event_ts '1767261600000' is out of range for Unix seconds (milliseconds? divide by 1000)"),  # typed int64 column
        (1767261600000.0, "event_ts '1767261600000' is out of range for Unix seconds (milliseconds? divide by 1000)"),  # typed double column
        # Probe, 2026-12-02: microseconds got the milliseconds hint, and a double 1e300 was quoted as 301 digits.
        (1767261600000000, "event_ts '1767261600000000' is out of range for Unix seconds (microseconds? divide by 1000000)"),
        (1767261600000000000, "event_ts '1767261600000000000' is out of range for Unix seconds (nanoseconds? divide by 1000000000)"),
        (1e300, "event_ts '1e+300' is out of range for Unix seconds"),
        ("nan", "unparseable event_ts 'nan'; expected ISO-8601 or Unix seconds"),
        ("1e400", "unparseable event_ts '1e400'; expected ISO-8601 or Unix seconds"),
        ("0001-01-01 00:00+01:00", "event_ts '0001-01-01 00:00+01:00' is out of range"),
        (None, "missing event_ts"),  # a null cell of a typed Parquet column
    ],
)
def test_a_bad_event_time_is_quoted_as_the_input_wrote_it(value, says):
    assert parse_timestamp(value) == (None, says)


def test_an_event_type_with_spaces_and_a_lowercase_iso_time_are_read_as_meant(wh, tmp_path):
    """Probe: spaces around event_ts and watch_ratio were trimmed but ' watch ' was an unknown type,
    and RFC 3339's lowercase 't' and 'z' were unparseable."""
    rows = [["u1", "v1", "2026-01-12t10:00:00z", " watch ", " 0.6 "], ["u1", "v2", " 2026-01-12T10:00:01Z ", "like", ""]]
    report = ingest_events(wh, write_csv(tmp_path / "events.csv", EVENT_HEADER, rows))
    assert (report.accepted, report.quarantined) == (2, 0)
    db.refresh_views(wh)
    stored = db.fetch(wh, "SELECT item_id, event, epoch(event_ts) AS t FROM events ORDER BY item_id")
    assert [(r["item_id"], r["event"], r["t"]) for r in stored] == [("v1", "watch", 1768212000), ("v2", "like", 1768212001)]
