"""What a new user broke in an hour (issue 17), each through the real CLI: `reelsense sql` is read-only
and prints any result; a copied or moved home answers from itself; `report` of an unknown run is an
error and reports of different runs live side by side; `explain` suggests a query that helps."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import write_csv

from flows.cli import main
from flows.console import count
from flows.rank import retrain_reason
from ranker.artifacts import fingerprint, rows_fingerprint
from ranker.data import load_dataset
from ranker.registry import build
from warehouse import db
from warehouse.errors import ConfigError, QueryError, ReelsenseError
from warehouse.store import Warehouse

HEADER = ["user_id", "item_id", "event_ts", "event", "watch_ratio"]
EVENTS = [
    ["u1", "v1", "2026-01-01T10:00:00Z", "watch", "0.75"],
    ["u1", "v2", "2026-01-01T10:01:00Z", "like", ""],
    ["u2", "v1", "2026-01-01T10:02:00Z", "like", ""],
    ["u3", "v3", "2026-01-01T10:03:00Z", "comment", ""],
]


def _ingest(home: Path, rows: list[list[str]], path: Path) -> None:
    assert main(["--home", str(home), "ingest", "events", str(write_csv(path, HEADER, rows))]) == 0


@pytest.fixture
def home(tmp_path: Path, capsys) -> Path:
    _ingest(tmp_path / "home", EVENTS, tmp_path / "events.csv")
    capsys.readouterr()
    return tmp_path / "home"


def _sql(home: Path, capsys, *args: str) -> tuple[int, str, str]:
    status = main(["--home", str(home), "sql", *args])
    out, err = capsys.readouterr()
    return status, out, err


def _files(home: Path) -> dict[str, bytes]:
    """Every file of the home but the lock file, with its bytes."""
    return {str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file() and "lock" not in p.name}


# -- 1. `reelsense sql` is read-only ------------------------------------------------------------------

ATTACKS = {
    "copy over a stored file": "COPY (SELECT * FROM events WHERE false) TO '{part}' (FORMAT parquet)",
    "copy a new file into a table": "COPY (SELECT 'x' AS a) TO '{home}/tables/items/part-x.parquet' (FORMAT parquet)",
    "export the database": "EXPORT DATABASE '{outside}/export'",
    "create a temp table": "CREATE TEMP TABLE t AS SELECT 1 AS a",
    "change a setting": "SET enable_external_access = true",
    "a second statement": "SELECT 1; COPY (SELECT 1 AS a) TO '{outside}/x.csv'",
    "attach another database": "ATTACH '{outside}/other.duckdb' AS other",
    "read a file outside the home": "SELECT * FROM read_csv('{outside}/secret.csv')",
    "read /etc/passwd": "SELECT * FROM read_csv('/etc/passwd')",
    "read outside through ..": "SELECT * FROM read_text('{home}/tables/../../secret.csv')",
    "read a sibling of tables/": "SELECT * FROM read_csv('{home}/tables_old/secret.csv')",
}


@pytest.mark.parametrize("attack", ATTACKS)
def test_sql_refuses_writes_settings_and_reads_outside_the_home(home, tmp_path, capsys, attack):
    outside = tmp_path / "outside"
    outside.mkdir()
    write_csv(outside / "secret.csv", ["secret"], [["hunter2"]])
    (home / "tables_old").mkdir()
    write_csv(home / "tables_old" / "secret.csv", ["secret"], [["hunter2"]])
    part = next((home / "tables" / "events").glob("*/*.parquet"))
    before = _files(home)
    status, out, err = _sql(home, capsys, ATTACKS[attack].format(part=part, home=home, outside=outside))
    assert status == 2, out
    assert err.startswith("reelsense: error: ") and err.count("\n") == 1 and "hunter2" not in out + err
    assert "read-only" in err or f"only under {home / 'tables'}" in err
    assert _files(home) == before and sorted(p.name for p in outside.iterdir()) == ["secret.csv"]
    status, out, _ = _sql(home, capsys, "SELECT count(*) AS n FROM events")
    assert status == 0 and "| 4 |" in out


def test_sql_still_reads_the_home_tables_and_stages_cannot_read_outside(home, tmp_path, capsys):
    status, out, _ = _sql(home, capsys, f"SELECT count(*) AS n FROM read_parquet('{home}/tables/events/*/*.parquet')")
    assert status == 0 and "| 4 |" in out
    status, out, _ = _sql(home, capsys, "DESCRIBE events")
    assert status == 0 and "user_id" in out
    write_csv(tmp_path / "secret.csv", ["secret"], [["hunter2"]])
    # The stages' in-memory connection (db.scratch, behind db.fetch) has the same settings.
    with pytest.raises(Exception, match="disabled by configuration"):
        db.fetch(Warehouse(home), f"SELECT * FROM read_csv('{tmp_path / 'secret.csv'}')")
    with pytest.raises(Exception, match="locked"):
        db.fetch(Warehouse(home), "SET enable_external_access = true")


# -- 6. a copied or moved home answers from itself -----------------------------------------------------


def test_a_copied_home_answers_from_the_copy_and_a_moved_one_still_works(home, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(home, copy, symlinks=True)  # cp -a
    _ingest(home, [["u9", "v9", "2026-01-02T00:00:00Z", "like", ""]], tmp_path / "more.csv")  # the original grows
    capsys.readouterr()
    count = "SELECT count(*) AS n, max(user_id) AS last_user FROM events"
    assert _sql(copy, capsys, count, "--format", "json")[1] == '[{"n": 4, "last_user": "u3"}]\n'
    assert _sql(home, capsys, count, "--format", "json")[1] == '[{"n": 5, "last_user": "u9"}]\n'
    moved = tmp_path / "moved"
    home.rename(moved)  # mv home moved: nothing is left at the old path
    status, out, err = _sql(moved, capsys, count, "--format", "json")
    assert (status, out) == (0, '[{"n": 5, "last_user": "u9"}]\n'), err
    # the moved home's own views now name its own files, for any DuckDB client
    assert not any(str(home) + "/" in str(sql) for _, sql in db.query(Warehouse(moved), "SELECT view_name, sql FROM duckdb_views()").to_pylist())


# -- 7. `reelsense sql` prints any result --------------------------------------------------------------


def test_sql_prints_repeated_column_names(home, capsys):
    status, out, _ = _sql(home, capsys, "SELECT 1 AS a, 2 AS a")
    assert status == 0 and "| a | a |" in out and "| 1 | 2 |" in out and out.rstrip().endswith("\n1 row")
    status, out, _ = _sql(home, capsys, "SELECT a.item_id, b.item_id FROM events a JOIN events b USING (user_id) WHERE a.item_id < b.item_id")
    assert status == 0 and "| item_id | item_id |" in out and "| v1      | v2      |" in out
    status, out, _ = _sql(home, capsys, "SELECT 1 AS a, 2 AS a", "--format", "json")
    assert json.loads(out) == [{"a": 1, "a_1": 2}]


def test_output_to_a_closed_pipe_exits_as_sigpipe_without_a_traceback(home):
    """Probe: `reelsense ingest ... | head -1` ended in a BrokenPipeError traceback."""
    import subprocess
    import sys

    # Buffered (a pipe's default: the table is written at the end) and unbuffered stdout (review:
    # the first raised only at Python's exit flush, after main() had returned).
    for unbuffered in (False, True):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"} | ({"PYTHONUNBUFFERED": "1"} if unbuffered else {})
        read, write = os.pipe()
        os.close(read)  # the reader (head) is gone before the command prints
        try:
            run = subprocess.run(
                [str(Path(sys.executable).parent / "reelsense"), "--home", str(home), "sql", "SELECT * FROM events"],
                stdout=write,
                stderr=subprocess.PIPE,
                env=env,
                text=True,
                timeout=120,
            )
        finally:
            os.close(write)
        assert run.returncode == 141, (unbuffered, run.stderr)  # 128 + SIGPIPE, as a shell reports a writer whose reader left
        assert run.stderr == "", (unbuffered, run.stderr)


@pytest.mark.parametrize("form, first", [("csv", b"n,pad\n"), ("table", b"+-")])
def test_a_reader_leaving_mid_output_ends_a_large_output_with_141(home, form, first):
    """Probe: with PYTHONUNBUFFERED the pipe took part of one large write, the rest was dropped
    unsaid, and `sql --format csv | head -1` exited 0 (the table, printed, as well)."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    query = "SELECT range AS n, repeat('x', 40) AS pad FROM range(100000)"  # about 5 MB: many times a pipe's buffer
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "reelsense"), "--home", str(home), "sql", query, "--format", form, "--max-rows", "100000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout.readline().startswith(first)
    proc.stdout.close()  # head -1: the reader leaves while the command is still writing
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err, err


def test_an_unbuffered_stdout_becomes_line_buffered_over_a_buffered_writer(monkeypatch):
    """What PYTHONUNBUFFERED (the Docker images') gives: a text layer on the raw file. The program's
    stdout retries a short write and still writes each line at its newline, not at exit."""
    import sys

    from flows.cli import _buffer_unbuffered_stdout

    read, write = os.pipe()
    os.set_blocking(read, False)  # nothing written yet fails the test (BlockingIOError) rather than hanging it
    try:
        monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.FileIO(write, "w", closefd=False), encoding="utf-8", write_through=True))
        _buffer_unbuffered_stdout()
        assert isinstance(sys.stdout.buffer, io.BufferedWriter)
        print("a line")
        assert os.read(read, 100) == b"a line\n"
    finally:
        os.close(read)
        os.close(write)


def test_ctrl_c_inside_a_duckdb_query_is_the_interrupted_line(home, capsys):
    """Probe: DuckDB noticed a Ctrl-C only when the query ended, minutes later, and then raised
    RuntimeError("Query interrupted"): a traceback and exit 1, where every other command says it was
    interrupted and exits 130."""
    import signal
    import threading

    # A scan of minutes, interrupted 2 s in, long after main() opened the warehouse.
    timer = threading.Timer(2.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        status, _, err = _sql(home, capsys, "SELECT max(hash(range)) AS h FROM range(100000000000)")
    finally:
        timer.cancel()
    assert status == 130 and err == "reelsense: interrupted\n", err  # a query writes nothing: no "finished writes" (probe)


def test_ctrl_c_interrupts_the_query_until_it_stops():
    """The query runs on a worker; Ctrl-C in the main thread interrupts its cursor, again until the
    worker ends (review: DuckDB drops an interrupt that comes before the query executes, and the
    main thread then waited for the whole query)."""
    import _thread
    import threading

    from warehouse.db import _interruptible

    class Cursor:  # a query that runs until interrupted, and ignores the first interrupt
        def __init__(self) -> None:
            self.calls, self.stopped, self.running = 0, threading.Event(), threading.Event()

        def interrupt(self) -> None:
            self.calls += 1
            if self.calls > 1:
                self.stopped.set()

        def run(self) -> None:
            self.running.set()
            self.stopped.wait(30)  # without a second interrupt, the whole "query" (and a failing test)
            raise RuntimeError("interrupted")

    cursor = Cursor()
    threading.Thread(target=lambda: cursor.running.wait() and _thread.interrupt_main(), daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        _interruptible(cursor, cursor.run)
    assert cursor.calls >= 2 and cursor.stopped.is_set()


def test_sql_reads_time_in_utc_whatever_the_machines_zone(home):
    """Review: the query's cursor, a connection of its own, ran in the machine's zone: a
    timestamp's date could be the day before."""
    import subprocess
    import sys

    run = subprocess.run(
        [str(Path(sys.executable).parent / "reelsense"), "--home", str(home), "sql", "SELECT current_setting('TimeZone') AS tz", "--format", "csv"],
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "America/New_York"},
        timeout=120,
    )
    assert run.returncode == 0 and run.stdout == "tz\nUTC\n", run.stderr


def test_a_full_disk_or_an_unwritable_path_is_a_one_line_error(home, tmp_path, capsys):
    """Probe: `sql ... > /dev/full` and `sample --out afile/sub` ended in tracebacks (and "Exception
    ignored" at exit): the path, the OS's reason and what to do, in one line."""
    import subprocess
    import sys

    if Path("/dev/full").exists():
        with open("/dev/full", "w") as full:
            run = subprocess.run(
                [str(Path(sys.executable).parent / "reelsense"), "--home", str(home), "sql", "SELECT * FROM events", "--format", "csv"],
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                timeout=120,
            )
        assert run.returncode == 1, run.stderr
        said = "reelsense: error: the output (stdout): No space left on device; free some space and rerun the same command"
        assert run.stderr == f"{said} (finished writes are kept)\n"
    (tmp_path / "afile").write_text("")
    assert main(["sample", "--out", str(tmp_path / "afile" / "sub")]) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path / 'afile' / 'sub'}: cannot make the folder (Not a directory: " in err and err.count("\n") == 1, err


def test_sql_shows_a_float_as_float_not_as_the_nearest_double(home, capsys):
    """Probe: `round(score, 3)` of a FLOAT score printed 2.9489998817443848."""
    query = "SELECT round(2.94899::FLOAT, 3) AS f, 0.1::DOUBLE AS d, NULL::FLOAT AS n, [0.1, NULL]::FLOAT[2] AS v"
    status, out, _ = _sql(home, capsys, query)
    assert status == 0 and "| 2.949 | 0.1 | NULL | [0.1, None] |" in out
    status, out, _ = _sql(home, capsys, query, "--format", "csv")
    assert status == 0 and out.splitlines()[1] == '2.949,0.1,,"[0.1, null]"'
    status, out, _ = _sql(home, capsys, query, "--format", "json")
    assert status == 0 and out.strip() == '[{"f": 2.949, "d": 0.1, "n": null, "v": [0.1, null]}]'
    # probe: inside a STRUCT or a MAP it was still the nearest double
    status, out, _ = _sql(home, capsys, "SELECT {'a': 0.1::FLOAT, 'b': [0.2::FLOAT]} AS s, MAP {'k': 0.3::FLOAT} AS m", "--format", "json")
    assert status == 0 and out.strip() == '[{"s": {"a": 0.1, "b": [0.2]}, "m": [["k", 0.3]]}]'


def test_sql_csv_keeps_nan_and_infinities_and_the_table_lines_up_wide_characters(home, capsys):
    """Probe: csv printed NaN and inf as "null"; a title in Chinese pushed its row's bars out of line."""
    query = "SELECT 'nan'::DOUBLE AS x, '-inf'::FLOAT AS y, '你好' AS t UNION ALL SELECT 1.5, 2, 'ab'"
    status, out, _ = _sql(home, capsys, query, "--format", "csv")
    assert status == 0 and out.splitlines() == ["x,y,t", "nan,-inf,你好", "1.5,2.0,ab"]
    status, out, _ = _sql(home, capsys, query, "--format", "json")  # JSON has no NaN: null, as documented
    assert status == 0 and json.loads(out) == [{"x": None, "y": None, "t": "你好"}, {"x": 1.5, "y": 2.0, "t": "ab"}]
    status, out, _ = _sql(home, capsys, query)
    lines = out.splitlines()
    assert status == 0 and "| nan | -inf | 你好 |" in lines and "| 1.5 | 2.0  | ab   |" in lines
    status, out, _ = _sql(home, capsys, "SELECT repeat('中', 30) AS t", "--width", "10")
    assert status == 0 and "| 中中中... |" in out.splitlines()
    # Marks that take no column of their own: an accent, Thai vowel and tone signs, a zero-width joiner (review).
    status, out, _ = _sql(home, capsys, "SELECT 'e\u0301' AS t UNION ALL SELECT 'สวัสดี' UNION ALL SELECT 'a\u200db' UNION ALL SELECT 'wxyz'")
    assert status == 0 and ["| e\u0301    |", "| สวัสดี |", "| a\u200db   |", "| wxyz |"] == out.splitlines()[3:7]
    # Emoji joined into one picture take its two columns: a family (joiners), a skin tone, a heart
    # with the emoji selector; two emoji side by side four (probe: measured by their parts).
    family, thumb, heart = "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f44d\U0001f3fd", "\u2764\ufe0f"
    query = f"SELECT '{family}' AS t UNION ALL SELECT '{thumb}' UNION ALL SELECT '{heart}' UNION ALL SELECT '\U0001f44d\U0001f44d' UNION ALL SELECT 'abcd'"
    status, out, _ = _sql(home, capsys, query)
    assert status == 0 and [f"| {family}   |", f"| {thumb}   |", f"| {heart}   |", "| \U0001f44d\U0001f44d |", "| abcd |"] == out.splitlines()[3:8]
    # Joined parts narrow on their own (health worker, couple with heart) are still one picture; a
    # joiner between CJK characters joins nothing (review).
    worker, couple, cjk = "\U0001f9d1\u200d\u2695\ufe0f", "\U0001f469\u200d\u2764\ufe0f\u200d\U0001f468", "\u4e2d\u200d\u6587"
    status, out, _ = _sql(home, capsys, f"SELECT '{worker}' AS t UNION ALL SELECT '{couple}' UNION ALL SELECT '{cjk}'")
    assert status == 0 and [f"| {worker}   |", f"| {couple}   |", f"| {cjk} |"] == out.splitlines()[3:6]


def test_sql_writes_intervals_blobs_and_decimals_as_duckdb_does_and_escapes_controls(home, capsys):
    """Probe: INTERVAL printed as MonthDayNano(...) and [0, 3, 0], a BLOB as b'\\x00ab', a DECIMAL
    as the string "0.10" in json, and a raw tab pushed the table's bars out of line. Review: quotes
    in a BLOB, a DECIMAL's digits past a double's, a control character in a column name."""
    query = (
        "SELECT INTERVAL '1 year 2 months 3 days 04:05:06.5' AS i, -INTERVAL 90 MINUTE AS n, '\\x00a\\x5C\"''q'::BLOB AS b, "
        "12345678901234567890.123456789::DECIMAL(38, 9) AS d, 1::HUGEINT AS h, [INTERVAL 1 DAY] AS l, [0.10::DECIMAL(4, 2)] AS ld, "
        "'a\tb' || chr(27) AS \"t\tx\""
    )
    status, out, _ = _sql(home, capsys, query, "--format", "csv")
    row = '1 year 2 months 3 days 04:05:06.5,-01:30:00,\\x00a\\x5C\\x22\\x27q,12345678901234567890.123456789,1,"[""1 day""]",[0.10],a\tb\x1b'
    assert status == 0 and out.splitlines()[1] == row
    status, out, _ = _sql(home, capsys, query, "--format", "json")
    assert status == 0 and out == (
        '[{"i": "1 year 2 months 3 days 04:05:06.5", "n": "-01:30:00", "b": "\\\\x00a\\\\x5C\\\\x22\\\\x27q", '
        '"d": 12345678901234567890.123456789, "h": 1, "l": ["1 day"], "ld": [0.10], "t\\tx": "a\\tb\\u001b"}]\n'
    )
    status, out, _ = _sql(home, capsys, query, "--width", "0")
    lines = out.splitlines()
    assert status == 0 and lines[1].endswith("| h | l         | ld     | t\\tx     |")
    cells = "| 1 year 2 months 3 days 04:05:06.5 | -01:30:00 | \\x00a\\x5C\\x22\\x27q | 12345678901234567890.123456789 | 1 |"
    assert lines[3] == cells + " ['1 day'] | [0.10] | a\\tb\\x1B |"


@pytest.mark.parametrize(
    "args, message",
    [
        (
            [
                "",
            ],
            "empty query",
        ),
        (["  -- only a comment\n"], "empty query"),
        (["SELECT 1", "--max-rows", "-1"], "--max-rows is -1"),
        (["SELECT 1", "--max-rows", "0"], "--max-rows is 0; expected 1 or more"),
        (["SELECT 1", "--width", "-5"], "--width is -5"),
        (["SELECT count(*) FROM events WHERE user_id = $user", "--param", "nobody=u1"], "the query has $user"),
        (["SELECT count(*) FROM events WHERE user_id = $user", "--param", "u1"], "expected NAME=VALUE"),
        (["SELECT $1"], "the query has placeholder $1 and no --param gives it a value"),
        (["SELECT $a AS x, $b AS y"], "the query has placeholders $a, $b and no --param gives them values"),
        # probe: DuckDB's raw "Parameter argument/count mismatch" and "Values were not provided"; a repeated name took the last
        (["SELECT $3 AS v, $1 AS w", "--param", "a", "--param", "b", "--param", "c"], "the query uses $3 but not $2: positional placeholders run"),
        (["SELECT $a AS x, $b AS y", "--param", "a=1"], "no --param gives $b a value; pass --param NAME=VALUE for each of $a, $b"),
        (["SELECT $a AS x", "--param", "a=1", "--param", "a=2"], "--param a=... is given twice ('1' and '2')"),
        # probe: DuckDB's own "Values were not provided for the following prepared statement parameters"
        (["SELECT $1 AS a, $2 AS b", "--param", "x"], "the query has placeholders up to $2 and 1 --param value; pass one --param VALUE per"),
        (["SELECT 1", "--param", "x"], "the query has no placeholder and 1 --param value"),
        (["SELECT $1 AS a, $who AS b", "--param", "5", "--param", "who=u1"], "mixes positional ($1, $2, ... or ?) and named ($name) placeholders"),
        (["INSTALL httpfs"], "found an INSTALL statement; the warehouse is read-only"),  # probe: "a LOAD statement"
        (["LOAD httpfs"], "found a LOAD statement"),
        (["-- a comment\nINSTALL httpfs"], "found an INSTALL statement"),  # review
        (["UPDATE EXTENSIONS"], "found an UPDATE statement"),  # review: a ValueError traceback from duckdb's statement type
        (["SELECT * FROM evnets"], 'Did you mean "events"?; the warehouse\'s tables and views: current_embeddings, embeddings, engagements, events,'),
        (["SELECT nosuchfn(1)"], "nosuchfn does not exist!"),
        (["SELECT lenght('a')"], 'lenght does not exist! Did you mean "length"?'),  # probe: the hint was dropped
        (["SELECT user_idd FROM events"], 'Candidate bindings: "user_id"'),
        (["SELECT substr()"], "Candidate functions: substr(string VARCHAR"),
    ],
)
def test_sql_bad_input_is_a_one_line_error(home, capsys, args, message):
    status, _, err = _sql(home, capsys, *args)
    assert status == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_sql_shows_whole_values_in_csv_json_and_wide_tables(home, capsys):
    query = "SELECT repeat('x', 120) || '|end' AS long, [1, 2] AS list, NULL AS nothing, 'a\nb' AS lines"
    status, out, _ = _sql(home, capsys, query)
    assert status == 0 and "|end" not in out and "..." in out  # the table cuts cells at 48 characters
    status, out, _ = _sql(home, capsys, query, "--width", "0")
    assert status == 0 and "x" * 120 + "|end" in out and "a\\nb" in out  # one line per row
    status, out, _ = _sql(home, capsys, query, "--format", "csv")
    assert status == 0
    assert list(csv.reader(io.StringIO(out))) == [["long", "list", "nothing", "lines"], ["x" * 120 + "|end", "[1, 2]", "", "a\nb"]]
    status, out, _ = _sql(home, capsys, query, "--format", "json")
    assert status == 0 and json.loads(out) == [{"long": "x" * 120 + "|end", "list": [1, 2], "nothing": None, "lines": "a\nb"}]


def test_sql_max_rows_limits_every_format(home, capsys):
    query = "SELECT user_id FROM events ORDER BY user_id, item_id"
    status, out, _ = _sql(home, capsys, query, "--max-rows", "2")
    assert status == 0 and out.rstrip().endswith("2 of 4 rows")
    status, out, err = _sql(home, capsys, query, "--format", "json", "--max-rows", "2")
    assert status == 0 and json.loads(out) == [{"user_id": "u1"}, {"user_id": "u1"}] and "2 of 4 rows" in err
    status, out, _ = _sql(home, capsys, query, "--format", "csv")
    assert out.splitlines() == ["user_id", "u1", "u1", "u2", "u3"]  # csv and json print every row by default


def test_sql_takes_named_and_positional_parameters(home, capsys):
    status, out, _ = _sql(
        home,
        capsys,
        "SELECT count(*) AS n FROM events WHERE user_id = $user AND event = $event",
        "--param",
        "user=u1",
        "--param",
        "event=like",
        "--format",
        "json",
    )
    assert status == 0 and json.loads(out) == [{"n": 1}]
    status, out, _ = _sql(
        home, capsys, "SELECT count(*) AS n FROM events WHERE user_id = $1 AND $2 = 'a=b'", "--param", "u1", "--param", "a=b", "--format", "json"
    )  # $1, $2 take values verbatim
    assert status == 0 and json.loads(out) == [{"n": 2}]


def test_bind_params_refuses_a_value_for_no_placeholder():
    with pytest.raises(QueryError, match=r"the query has \$a, \$b"):
        db.bind_params("SELECT $a, $b", ["a=1", "c=2"])


# -- 8. `report`: an unknown run is an error; each run has its own report ------------------------------


@pytest.fixture(scope="module")
def scored_home(ranked_home, tmp_path_factory) -> Path:
    """A copy of the trained tiny platform (its own scores and reports) with two score-batch runs:
    `full` (every user) and then `two` (2 users)."""
    from flows.score import score_batch

    home = tmp_path_factory.mktemp("scored") / "home"
    shutil.copytree(ranked_home.home, home, symlinks=True)
    score_batch(str(home), model="lstm-attn", k=3, run_id="full", device="cpu")
    score_batch(str(home), model="lstm-attn", k=3, run_id="two", users=["user00", "user01"], device="cpu")
    return home


def test_report_of_an_unknown_run_is_an_error_that_leaves_the_reports_untouched(scored_home, capsys):
    assert main(["--home", str(scored_home), "report", "--run-id", "full", "--plot-users", "1", "--device", "cpu"]) == 0
    capsys.readouterr()
    before = _files(scored_home)
    assert main(["--home", str(scored_home), "report", "--run-id", "nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "no scores with run id 'nonexistent'" in err and "two, full" in err and err.count("\n") == 1
    assert err.rstrip().endswith("leave out --run-id for the latest run")  # report's own wording, not explain's
    assert _files(scored_home) == before


def test_reports_of_different_runs_do_not_overwrite_each_other(scored_home, capsys):
    reports = scored_home / "reports"
    for run in ("full", "two"):
        assert main(["--home", str(scored_home), "report", "--run-id", run, "--plot-users", "1", "--device", "cpu"]) == 0
        out = capsys.readouterr().out
        assert out.rstrip().endswith(f"; {reports / run / 'index.html'}"), out  # the path printed is the run's
    full, two = (reports / run / "index.html" for run in ("full", "two"))
    assert "scores from run full" in full.read_text() and "scores from run two" in two.read_text()
    assert (reports / "full" / "plots" / "attention.png").exists() and (reports / "two" / "plots" / "attention.png").exists()
    explained = {run: json.loads((reports / run / "report.json").read_text())["explanations"] for run in ("full", "two")}
    assert explained == {"full": 36 * 3, "two": 2 * 3}
    # A 2-user run gets 2 user pages (it used to get one per user of the warehouse); --pages caps them.
    pages = {run: sorted(p.name for p in (reports / run / "users").glob("*.html")) for run in ("full", "two")}
    assert len(pages["full"]) == 36 and pages["two"] == ["user00.html", "user01.html"]
    index = (reports / "index.html").read_text()
    assert "href='two/index.html'>two</a> (latest)" in index and "href='full/index.html'>full</a><" in index
    assert (reports / "latest").read_text() == "two/index.html\n"
    # reporting the older run again keeps `two` the latest: latest is the newest scored run
    assert main(["--home", str(scored_home), "report", "--run-id", "full", "--plot-users", "0", "--device", "cpu"]) == 0
    assert (reports / "latest").read_text() == "two/index.html\n" and "scores from run two" in two.read_text()
    # the order is the warehouse's, not a report's stored time (review: a report written before
    # 2026-12-07 keeps its run's last-row time, later than the next run's first)
    from flows.report import write_runs_index

    stored = json.loads((reports / "full" / "report.json").read_text())
    (reports / "full" / "report.json").write_text(json.dumps(stored | {"scored_at": "2999-01-01T00:00:00+00:00"}))
    write_runs_index(Warehouse(scored_home))
    assert (reports / "latest").read_text() == "two/index.html\n" and "2999" not in (reports / "index.html").read_text()
    assert not [p.name for p in reports.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    assert main(["--home", str(scored_home), "report", "--run-id", "full", "--pages", "5", "--plot-users", "0"]) == 0
    assert "108 explanations, 5 user pages" in capsys.readouterr().out
    assert len(list((reports / "full" / "users").glob("*.html"))) == 5
    assert "pages for the 5 most active of its 36 users" in full.read_text()
    assert main(["--home", str(scored_home), "report", "--run-id", "full", "--pages", "1", "--plot-users", "0"]) == 0
    assert "108 explanations, 1 user page;" in capsys.readouterr().out


def test_a_run_is_explained_by_the_lstm_attn_version_that_scored_it_not_a_newer_one(ranked_home, tmp_path, capsys, caplog):
    """Runs scored by lstm-attn A are explained by A after a retrain makes B the latest; once A is
    gone from the registry (deleted by hand: prune keeps the versions of the runs it keeps) the
    report says so and falls back to the latest."""
    from flows.rank import train_rankers
    from flows.score import score_batch
    from ranker import artifacts

    home = tmp_path / "home"
    shutil.copytree(ranked_home.home, home, symlinks=True)
    for run in ("old", "pruned"):
        score_batch(str(home), model="lstm-attn", k=3, run_id=run, users=["user00", "user01"], device="cpu")
    models = Warehouse(home).models_dir
    scored = artifacts.latest(models, "lstm-attn")["version"]
    train_rankers(str(home), models=["lstm-attn"], device="cpu", force=True, settings={"lstm-attn": {"max_epochs": 1}})
    newer = artifacts.latest(models, "lstm-attn")["version"]
    assert newer != scored

    def explained_by(run: str) -> set[str]:
        table = db.query(Warehouse(home), "SELECT DISTINCT model_version FROM explanations WHERE run_id = ?", [run])
        return {v.split("+")[0] for v in table.column("model_version").to_pylist()}  # lstm-attn@V[+lightgbm@W]

    assert main(["--home", str(home), "report", "--run-id", "old", "--plot-users", "0", "--device", "cpu"]) == 0
    assert explained_by("old") == {f"lstm-attn@{scored}"}
    shutil.rmtree(models / "rankers" / "lstm-attn" / scored)
    assert main(["--home", str(home), "report", "--run-id", "pruned", "--plot-users", "0", "--device", "cpu"]) == 0
    warned = [r for r in caplog.records if "which cannot explain it now" in r.getMessage()]  # logged by the task, as a warning
    assert warned and all(r.levelno == logging.WARNING for r in warned)
    assert f"the run was scored by lstm-attn@{scored}, which cannot explain it now (no model lstm-attn version {scored}" in warned[0].getMessage()
    assert explained_by("pruned") == {f"lstm-attn@{newer}"}


def test_report_and_align_with_a_bad_truth_file_is_a_one_line_error(scored_home, tmp_path, capsys, monkeypatch):
    import flows.align

    monkeypatch.setattr(flows.align, "align_items", lambda *a, **k: pytest.fail("align ran for a bad --topics file"))
    (tmp_path / "items.csv").write_text("item_id,title\n")
    (tmp_path / "other.json").write_text('{"users": {}}')
    bad = ((tmp_path / "missing.json", "FileNotFoundError"), (tmp_path / "items.csv", "JSONDecodeError"))
    for truth, reason in bad:
        assert main(["--home", str(scored_home), "report", "--run-id", "full", "--truth", str(truth)]) == 2
        err = capsys.readouterr().err
        assert f"--truth {truth}: not a sample's truth.json ({reason}" in err and err.count("\n") == 1
        assert f"(the demo's: {scored_home / 'sample' / 'truth.json'})" in err  # probe: it named the default home's
    # probe: align --topics read the file after aligning, and a bad one was a traceback (exit 1)
    for truth, reason in (*bad, (tmp_path / "other.json", "KeyError")):
        assert main(["--home", str(scored_home), "align", "--topics", str(truth)]) == 2
        err = capsys.readouterr().err
        assert f"--topics {truth}: not a sample's truth.json ({reason}" in err and err.count("\n") == 1


def test_explain_of_an_unknown_item_suggests_a_query_that_lists_items(scored_home, capsys):
    assert main(["--home", str(scored_home), "explain", "--user", "user00", "--item", "v9999"]) == 2
    err = capsys.readouterr().err
    assert "unknown item 'v9999'" in err and "SELECT item_id, title FROM items" in err and "user_id" not in err
    assert main(["--home", str(scored_home), "explain", "--user", "nobody", "--item", "i000"]) == 2
    err = capsys.readouterr().err
    assert "unknown user 'nobody'" in err and "SELECT DISTINCT user_id FROM events" in err and "FROM items" not in err
    assert main(["--home", str(scored_home), "explain", "--user", "user00", "--item", "i000", "--run-id", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "no scores with run id 'nosuch'; the runs are" in err and err.count("\n") == 1
    assert err.rstrip().endswith("leave out --run-id for the latest run that scored the pair")


def test_models_of_a_home_that_does_not_exist_is_an_error(tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "empty").mkdir()
    for home in ("nowhere", "a-file", "empty"):  # probe: a file or an empty folder said "no trained models", exit 0
        assert main(["--home", str(tmp_path / home), "models"]) == 2, home
        assert ("is a file, not a folder" if home == "a-file" else "no warehouse at") in capsys.readouterr().err, home


def test_suggested_commands_name_the_home_the_command_was_given(tmp_path, capsys, monkeypatch):
    """Probe: a suggested `reelsense train` (in an error or a note) ran on the default home, not the
    user's --home; commands the tool suggests carry --home unless it is the default."""
    monkeypatch.setenv("REELSENSE_HOME", str(tmp_path / "default"))
    home = tmp_path / "my home"
    (home / "models").mkdir(parents=True)
    assert main(["--home", str(home), "models"]) == 0
    assert f"run `reelsense --home '{home}' train`" in capsys.readouterr().out
    assert main(["--home", str(tmp_path / "none"), "evaluate"]) == 2
    assert f"run `reelsense --home {tmp_path / 'none'} ingest events FILE`, then `reelsense --home {tmp_path / 'none'} train`" in capsys.readouterr().err
    monkeypatch.setenv("REELSENSE_HOME", str(home))  # the home a bare `reelsense` finds: nothing to add
    for argv in (["models"], ["--home", str(home), "models"]):
        assert main(argv) == 0
        assert "run `reelsense train`" in capsys.readouterr().out, argv
    from flows.console import runnable

    odd = tmp_path / "a\\1 \\U b"  # review: a backslash in the home was read as a regex escape
    assert main(["--home", str(odd), "evaluate"]) == 2
    assert f"run `reelsense --home '{odd}' ingest events FILE`" in capsys.readouterr().err
    assert runnable("`reelsense train`") == "`reelsense train`"  # forgotten when that command ended


def test_a_flow_run_no_command_line_started_names_its_home(tmp_path, prefect_harness, monkeypatch):
    """Probe: flows that `reelsense serve` runs in worker processes suggested bare `reelsense ...`
    commands in their logs and reports; whoever reads them runs the command from another shell."""
    from prefect import flow

    from flows.console import name_home, runnable

    @flow
    def served(home: str) -> tuple[str, str]:
        return runnable("run `reelsense train`, not reelsense-x or reelsense score-batch"), runnable("<code>reelsense evaluate</code>", markup=True)

    home = tmp_path / "a home"
    text, markup = served(str(home))
    assert text == f"run `reelsense --home '{home}' train`, not reelsense-x or reelsense score-batch"
    assert markup == f"<code>reelsense --home &#x27;{home}&#x27; evaluate</code>"
    monkeypatch.chdir(tmp_path)  # review: a relative home is named as the reader's shell can find it
    assert served("rel")[0].startswith(f"run `reelsense --home {tmp_path / 'rel'} train`")
    assert runnable("`reelsense train`") == "`reelsense train`"  # outside a flow run nothing is added
    name_home(home, home, ["train"])  # the command line ran the flow on its default home: its rule holds
    try:
        assert served(str(home))[0] == "run `reelsense train`, not reelsense-x or reelsense score-batch"
    finally:
        name_home(None)


def test_a_prefect_server_that_does_not_start_is_a_one_line_error(tmp_path):
    # Probe finding: on a busy machine the local Prefect server missed Prefect's 20 s start-up
    # window and `reelsense features` printed a 40-line RuntimeError traceback. A wait of 0 s makes
    # the same failure certain.
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="0", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    _ingest(tmp_path / "home", EVENTS, tmp_path / "events.csv")
    run = subprocess.run(
        [str(Path(sys.executable).parent / "reelsense"), "--home", str(tmp_path / "home"), "features"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("reelsense: error:")]
    assert len(errors) == 1 and "Prefect server did not start within 0 s" in errors[0] and "PREFECT_API_URL" in errors[0]
    # Beside it only Prefect's own start/stop lines of the temporary server (every flow command prints them).
    assert all("temporary server" in line or "prefect.io/docs" in line or line in errors for line in run.stderr.strip().splitlines()), run.stderr


@pytest.mark.parametrize(
    "text, message",
    [
        ("[sasrec2]\npatience = 3\n", "[sasrec2] is not a ranker with settings; use tables named [bpr-mf], [sasrec]"),
        ("[popularity]\nk = 3\n", "[popularity] is not a ranker with settings"),
        ("[sasrec]\npatiense = 3\n", "[sasrec]: unknown keys ['patiense']; expected some of"),
        ('[sasrec]\npatience = "3"\n', "[sasrec]: patience must be int (default 10), got '3'"),
        ("[lstm-attn]\nlr = true\n", "[lstm-attn]: lr must be float (default 0.001), got True"),
        ("[sasrec\n", "not valid TOML"),
        ("[sasrec]\nheads = 3\n", "[sasrec]: dim 64 must be a multiple of heads 3"),
        ("[sasrec]\ndropout = 1.5\n", "[sasrec]: dropout must be in [0, 1), got 1.5"),
        ("[sasrec]\nmax_epochs = 0\n", "[sasrec]: max_epochs must be above 0, got 0"),
        ("[lstm-attn]\nbatch = 0\n", "[lstm-attn]: batch must be above 0, got 0"),
        ("[sasrec-content]\ncold_neighbours = -1\n", "[sasrec-content]: cold_neighbours must be a whole number of at least 0, got -1"),
        ("[sasrec]\ncold_neighbours = 5\n", "[sasrec] has no content path: cold_neighbours applies only to the content rankers"),
        ("[sasrec]\nborrow_dropped = true\n", "borrow_dropped applies only to the content rankers ([sasrec-content]); remove it from [sasrec]"),
        ("[sasrec-content]\nborrow_dropped = 1\n", "[sasrec-content]: borrow_dropped must be bool (default False), got 1"),
        (
            "[sasrec-content]\nborrow_dropped = true\ncold_neighbours = 0\n",
            "borrow_dropped borrows from the cold_neighbours nearest items, and cold_neighbours is 0",
        ),
        ("[bpr-mf]\nreg = -1.0\n", "[bpr-mf]: reg must be 0 or above, got -1.0"),
        ("max_epochs = 2\n", "`max_epochs = 2` sits outside a table; settings go in a table named after their ranker"),
        # Every mistake of a table at once, each named by its key (probe, 2026-12-03: one at a time, as `SasrecConfig.`).
        ("[sasrec]\ndropout = 1.5\nmax_epochs = 0\n", "rankers.toml [sasrec]: max_epochs must be above 0, got 0; dropout must be in [0, 1), got 1.5\n"),
        ('[sasrec]\npatiense = 3\nlr = "x"\n', "[sasrec]: unknown keys ['patiense']; expected some of ['attn_dropout'"),
        ('[sasrec]\npatiense = 3\nlr = "x"\n', "; lr must be float (default 0.001), got 'x'\n"),
        # A key of another ranker says whose it is.
        ("[lstm-attn]\nborrow_dropped = true\n", "[lstm-attn]: unknown keys ['borrow_dropped']; expected some of"),
        ("[lstm-attn]\nborrow_dropped = true\n", "; borrow_dropped is a setting of [sasrec-content]\n"),
        ("[sasrec]\nnegatives = 5\n", "; negatives is a setting of [lstm-attn]"),
        ("[lstm-attn]\nfull_softmax_max = -5\n", "[lstm-attn]: full_softmax_max must be a whole number of at least 0, got -5"),
    ],
)
def test_train_settings_with_a_mistake_are_one_line_errors_before_training(home, tmp_path, capsys, text, message):
    err = settings_error(capsys, tmp_path / "rankers.toml", text, ["--home", str(home), "train", "--models", "sasrec"])
    assert message in err, err
    assert not (home / "models").exists()  # nothing trained


@pytest.mark.parametrize(
    "text, mistakes",
    [
        (  # every table's mistakes, not the first table's (probe, 2026-12-03)
            '[sasrec]\npatiense = 3\ndropout = 1.5\n[lstm-attn]\nborrow_dropped = true\nbatch = 0\n[sasrec-content]\ncold_neighbours = -1\nlr = "x"\n',
            [
                "unknown keys ['patiense']",
                "dropout must be in [0, 1)",
                "unknown keys ['borrow_dropped']",
                "borrow_dropped is a setting of [sasrec-content]",
                "batch must be above 0",
                "cold_neighbours must be a whole number",
                "lr must be float",
            ],
        ),
        # within a table: ranges and rules as well as unknown keys and types
        (
            '[sasrec]\npatiense = 3\ndropout = 1.5\nmax_epochs = 0\nlr = "x"\n',
            ["unknown keys ['patiense']", "dropout must be", "max_epochs must be", "lr must be float"],
        ),
        ("[sasrec]\nheads = 3\ndropout = 1.5\n", ["dim 64 must be a multiple of heads 3", "dropout must be in [0, 1)"]),
        # an id-only table: the content keys refused, and the other mistakes named too
        (
            "[sasrec]\ncold_neighbours = 5\npatiense = 3\ndropout = 2.0\n",
            ["cold_neighbours applies only", "remove it from [sasrec]", "unknown keys ['patiense']", "dropout must be"],
        ),
        (
            "max_epochs = 2\n[sasrec]\npatiense = 3\n[lightgbm]\nk = 1\n",
            ["`max_epochs = 2` sits outside a table", "unknown keys ['patiense']", "[lightgbm] is not a ranker with settings"],
        ),
    ],
)
def test_every_mistake_of_a_rankers_toml_is_named_at_once(home, tmp_path, capsys, text, mistakes):
    err = settings_error(capsys, tmp_path / "rankers.toml", text, ["--home", str(home), "train", "--models", "sasrec"])
    assert [m for m in mistakes if m not in err] == [], err
    if "[sasrec]\ncold_neighbours" in text:  # the id-only table's expected keys leave out the ones it refuses
        assert "cold_neighbours'" not in err.split("expected some of")[1], err


def test_every_mistake_of_an_extract_or_shifts_toml_is_named_at_once(tmp_path):
    from extractors.config import load_config
    from ranker.shifts import ShiftConfig
    from warehouse.settings import override, read_toml

    path = tmp_path / "extract.toml"
    path.write_text('n_frames = 0\nprefetch_batches = 0\nframe_sampling = "nearest"\ndecode_workers = -1\nmodalities = ["frames", "smell"]\n')
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    for mistake in ("n_frames must be at least 1", "prefetch_batches must be at least 1", "frame_sampling 'nearest'", "decode_workers must be 0", "'smell'"):
        assert mistake in str(refused.value)
    path = tmp_path / "shifts.toml"
    path.write_text("window = 0\nalpha = 1.5\npermutations = -1\n")
    with pytest.raises(ConfigError) as refused:
        override(ShiftConfig(), read_toml(path), str(path))
    for mistake in ("window must be above 0", "permutations must be above 0", "alpha is a significance level"):
        assert mistake in str(refused.value)


def settings_error(capsys, path, text: str, argv: list[str]) -> str:
    """Write `text` to the settings file `path`, run the command with `--config path`; it must exit
    2 with a one-line error, which is returned."""
    path.write_text(text)
    assert main([*argv, "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_semantic_codes_beyond_the_items_training_sees_are_refused_before_any_fit(ranked_home, tmp_path, capsys):
    """Probe: with [sasrec-content] and [lstm-attn] tables, sasrec-content trained and was saved, then
    lstm-attn's semantic_codes (more than the items) stopped the command, naming no table."""
    home = tmp_path / "home"
    shutil.copytree(ranked_home.home, home)
    text = "[sasrec-content]\nsemantic_codes = 2\nmax_epochs = 1\n\n[lstm-attn]\nsemantic_codes = 1000\n"
    err = settings_error(capsys, tmp_path / "codes.toml", text, ["--home", str(home), "train", "--models", "sasrec-content,lstm-attn", "--device", "cpu"])
    items = int(load_dataset(Warehouse(home)).in_training.sum())
    assert f"[lstm-attn] semantic_codes = 1000 is more than the {items} items with content that training sees" in err, err
    assert f"set it to at most {items} (0 turns the codes off)" in err, err
    assert not (home / "models" / "rankers" / "sasrec-content").exists()  # nothing trained


def test_train_settings_are_used_stored_and_retrain_when_changed(ranked_home, tmp_path, capsys):
    home = tmp_path / "home"
    shutil.copytree(ranked_home.home, home)
    settings = tmp_path / "rankers.toml"
    versions = []
    for epochs in (2, 2, 3):
        settings.write_text(f"[sasrec]\nmax_epochs = {epochs}\nlr = 0.002\n")
        assert main(["--home", str(home), "train", "--models", "sasrec", "--device", "cpu", "--config", str(settings)]) == 0
        out = capsys.readouterr().out
        meta = json.loads((home / "models" / "rankers" / "sasrec" / out.split("version ")[-1].strip() / "meta.json").read_text())
        assert meta["config"]["max_epochs"] == epochs and meta["config"]["lr"] == 0.002 and len(meta["history"]) <= epochs
        versions.append((meta["version"], "reused" in out))
    assert versions[1] == (versions[0][0], True)  # the same settings: the model is reused
    assert versions[2][0] != versions[0][0] and not versions[2][1]  # changed settings: trained again
    # What the log says when it trains again (probe: every model retrained after an upgrade, silently).
    first = json.loads((home / "models" / "rankers" / "sasrec" / versions[0][0] / "meta.json").read_text())
    data = load_dataset(Warehouse(home))
    assert retrain_reason(first, build("sasrec", "cpu", {}, {"max_epochs": 3, "lr": 0.002}), data, 0) == "its settings changed (max_epochs 2 -> 3)"
    assert retrain_reason(first, build("sasrec", "cpu", {}, {"max_epochs": 2, "lr": 0.002}), data, 1) == "the seed changed (0 -> 1)"
    assert "the ranker code changed" in retrain_reason({**first, "code_version": "older"}, build("sasrec", "cpu", {}, {"max_epochs": 2, "lr": 0.002}), data, 0)
    # A setting added since, at its default, is the code's change (probe: "content_hidden None -> 0").
    older = {**first, "code_version": "older", "config": {k: v for k, v in first["config"].items() if k != "content_hidden"}}
    says = retrain_reason(older, build("sasrec", "cpu", {}, {"max_epochs": 2, "lr": 0.002}), data, 0)
    assert says.startswith("the ranker code changed") and "settings" not in says, says
    # New events that add a behaviour head are named as such, not as changed items (probe, 2026-12-04).
    fewer = {**first, "feature_schema": {**first["feature_schema"], "behaviours": first["feature_schema"]["behaviours"][:-1]}}
    heads = ", ".join(first["feature_schema"]["behaviours"])
    says = retrain_reason(fewer, build("sasrec", "cpu", {}, {"max_epochs": 2, "lr": 0.002}), data, 0)
    assert says == f"the behaviour heads changed ({', '.join(first['feature_schema']['behaviours'][:-1])} -> {heads})", says
    other_items = {**first, "feature_schema": {**first["feature_schema"], "n_items": 1}}
    assert retrain_reason(other_items, build("sasrec", "cpu", {}, {"max_epochs": 2, "lr": 0.002}), data, 0) == "the items or content changed"
    # New items renumber the rows without changing them (probe: "its training rows changed" after
    # only `ingest items`): the rows are named only when they changed by item id, or cannot be told.
    first_id = min(data.item_ids[1:])
    path = tmp_path / "first.csv"
    path.write_text(f"item_id,title,video_uri\n0{first_id},an item that sorts first,\n")
    assert main(["--home", str(home), "ingest", "items", str(path)]) == 0
    renumbered = load_dataset(Warehouse(home))
    assert renumbered.item_ids[1] == f"0{first_id}" and fingerprint(renumbered) != fingerprint(data)
    assert rows_fingerprint(renumbered) == rows_fingerprint(data) == first["rows_fingerprint"]
    sasrec = build("sasrec", "cpu", {}, {"max_epochs": 2, "lr": 0.002})
    assert retrain_reason(first, sasrec, renumbered, 0) == "the items or content changed"
    moved = "its training rows changed (new events or a samples rebuild)"
    assert retrain_reason({**first, "rows_fingerprint": "other"}, sasrec, renumbered, 0) == f"{moved}; the items or content changed"
    unknown = {k: v for k, v in first.items() if k != "rows_fingerprint"}  # saved by an older reelsense
    assert retrain_reason(unknown, sasrec, renumbered, 0) == f"{moved}, or new items renumbered them; the items or content changed"
    assert retrain_reason({**unknown, "data_fingerprint": "other"}, sasrec, data, 0) == moved  # the same items: the rows changed


def test_align_settings_with_an_unknown_key_are_a_one_line_error(home, tmp_path, capsys):
    align = ["--home", str(home), "align"]
    err = settings_error(capsys, tmp_path / "align.toml", "epoch = 3\n", align)
    assert "align.toml: unknown keys ['epoch']; expected some of ['batch_size', 'dim', 'epochs'" in err
    assert "align.toml: epochs must be above 0, got 0" in settings_error(capsys, tmp_path / "align.toml", "epochs = 0\n", align)


@pytest.mark.parametrize(
    "text, message",
    [
        ('decode_workers = "2"\n', "extract.toml: decode_workers must be int (default 0), got '2'"),
        ('modalities = "frames"\n', "extract.toml: modalities must be tuple"),
        ("prefetch_batches = 0\n", "extract.toml: prefetch_batches must be at least 1, got 0"),
        ('frame_sampling = "nearest"\n', "extract.toml: frame_sampling 'nearest' is not one of exact, keyframes"),
        ("decode_short_side = 64\n", "extract.toml: decode_short_side must be 0 (not scaled) or at least 224"),
    ],
)
def test_extract_settings_with_a_mistake_are_one_line_errors_naming_the_file(home, tmp_path, capsys, text, message):
    err = settings_error(capsys, tmp_path / "extract.toml", text, ["--home", str(home), "extract"])
    assert message in err, err


@pytest.mark.parametrize("args, least", [(["--limit", "0"], 1), (["--limit", "-1"], 1), (["--shards", "-1"], 0)])
def test_extract_refuses_counts_below_their_least(home, capsys, args, least):
    with pytest.raises(SystemExit) as exit_:
        main(["--home", str(home), "extract", *args])
    assert exit_.value.code == 2 and f"expected {least} or more" in capsys.readouterr().err


def test_the_extract_lines_failures_query_names_the_home(scored_home, capsys, monkeypatch):
    """Probe: run as printed, the query listing the quarantined items read the default home."""
    import flows.extract

    summary = {"embedded": 2, "skipped": 0, "quarantined": 1, "audio_missing": 0, "vectors": 6, "seconds": 1.0, "items_per_s": 2.0}
    monkeypatch.setattr(flows.extract, "run_extract", lambda *args, **kwargs: summary)
    assert main(["--home", str(scored_home), "extract"]) == 0
    assert f'; reelsense --home {scored_home} sql "SELECT item_id, stage, error FROM quarantined_items ' in capsys.readouterr().out


def test_extract_refuses_a_local_and_a_running_dask_cluster_at_once(home, capsys, monkeypatch):
    monkeypatch.setenv("REELSENSE_DASK_ADDRESS", "tcp://127.0.0.1:1")  # the env's address, then --dask-workers
    assert main(["--home", str(home), "extract", "--dask-workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "--dask-workers 2 starts a local cluster and --dask-address tcp://127.0.0.1:1 uses a running one" in err
    assert "unset it for a local cluster" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--seed", "-1"],
        ["evaluate", "--seed", "-1"],
        ["align", "--seed", "x"],
        ["sample", "--out", "s", "--seed", "-1"],
        ["demo", "--seed", str(2**31)],
    ],
)
def test_a_seed_is_a_whole_number_from_zero(home, capsys, argv):
    """Probe: `sample --seed -1` and `evaluate --seed -1` ended in numpy's tracebacks, and
    `train --seed -1` was taken."""
    with pytest.raises(SystemExit) as exit_:
        main(["--home", str(home), *argv])
    assert exit_.value.code == 2 and "a seed is a whole number from 0 to 2147483647" in capsys.readouterr().err


@pytest.mark.parametrize("count", ["0", "-3"])
def test_evaluate_refuses_max_users_below_one_as_it_parses(tmp_path, capsys, count):
    """Probe: `evaluate --max-users 0` was refused only once the flow's imports had run (and only
    where the home had events)."""
    with pytest.raises(SystemExit) as exit_:
        main(["--home", str(tmp_path / "none"), "evaluate", "--max-users", count])
    assert exit_.value.code == 2 and f"--max-users: {count}: expected 1 or more; leave it out to evaluate every test user" in capsys.readouterr().err


@pytest.mark.parametrize("shards", ["0", "-2"])
def test_score_refuses_fewer_than_one_shard(home, capsys, shards):
    with pytest.raises(SystemExit) as exit_:
        main(["--home", str(home), "score", "--model", "popularity", "--shards", shards])
    assert exit_.value.code == 2 and "expected 1 or more" in capsys.readouterr().err


def test_prune_keeps_the_newest_runs_their_reports_and_the_model_versions_they_use(ranked_home, tmp_path, capsys):
    """lstm-attn v1 (lightgbm re-ranks it), retrained as v2 for run `old` (reported), retrained as
    v3 for run `new`. Keeping one run removes old's scores, explanations and report, and v2, which
    only old used; v3 (latest, used by new) and v1 (lightgbm's base) stay."""
    from flows.score import score_batch

    home = tmp_path / "home"
    shutil.copytree(ranked_home.home, home, symlinks=True)
    rankers = home / "models" / "rankers"
    versions = [(rankers / "lstm-attn" / "LATEST").read_text().strip()]
    for run_id, users in (("old", ["user00", "user01"]), ("new", ["user02"])):
        assert main(["--home", str(home), "train", "--models", "lstm-attn", "--force", "--device", "cpu"]) == 0
        versions.append((rankers / "lstm-attn" / "LATEST").read_text().strip())
        score_batch(str(home), model="lstm-attn", k=3, run_id=run_id, users=users, device="cpu")
    assert main(["--home", str(home), "report", "--run-id", "old", "--plot-users", "0", "--device", "cpu"]) == 0
    v1, v2, v3 = versions
    assert json.loads(next((rankers / "lightgbm").glob("*/meta.json")).read_text())["base_version"] == v1
    capsys.readouterr()
    assert main(["--home", str(home), "prune", "--keep-runs", "0"]) == 2
    assert "--keep-runs must be at least 1" in capsys.readouterr().err
    wh = Warehouse(home)
    older = db.fetch(wh, "SELECT count(DISTINCT run_id) AS runs, count(*) AS n FROM scores WHERE run_id <> 'new'")[0]
    explained = db.fetch(wh, "SELECT count(*) AS n FROM explanations WHERE run_id <> 'new'")[0]["n"]
    assert older["runs"] >= 1 and explained >= 6  # old, and any run the shared fixture holds
    from flows.report import run_dir

    reports = sum(run_dir(wh, r["run_id"]).exists() for r in db.fetch(wh, "SELECT DISTINCT run_id FROM scores WHERE run_id <> 'new'"))
    assert reports >= 1  # old's
    assert main(["--home", str(home), "prune", "--keep-runs", "1"]) == 0
    out = capsys.readouterr().out
    removed = f"removed {count(older['runs'], 'run')} ({older['n']} scores, {explained} explanations, {count(reports, 'report')})"
    assert f"kept 1 run (new); {removed} and 1 model version no kept run uses" in out, out
    assert db.fetch(wh, "SELECT DISTINCT run_id FROM scores") == [{"run_id": "new"}]
    assert db.fetch(wh, "SELECT count(*) AS n FROM explanations WHERE run_id = 'old'") == [{"n": 0}]
    assert not (home / "reports" / "old").exists() and "old/index.html" not in (home / "reports" / "index.html").read_text()
    assert sorted(p.name for p in (rankers / "lstm-attn").iterdir() if p.is_dir()) == sorted([v1, v3])
    assert main(["--home", str(home), "prune", "--keep-runs", "1"]) == 0  # again: nothing more to remove
    assert "removed 0 runs (0 scores, 0 explanations, 0 reports) and 0 model versions" in capsys.readouterr().out
    # The last report gone (here by a replace of its run): the index says how to write one.
    assert main(["--home", str(home), "report", "--run-id", "new", "--plot-users", "0", "--device", "cpu"]) == 0
    assert "new/index.html" in (home / "reports" / "index.html").read_text()
    score_batch(str(home), model="lstm-attn", k=3, run_id="new", users=["user03"], device="cpu", replace=True)
    index = (home / "reports" / "index.html").read_text()
    assert "new/index.html" not in index and f"reelsense --home {home.absolute()} report</code> writes" in index, index
    assert not (home / "reports" / "latest").exists()


def test_prune_keeps_the_lightgbm_that_explains_a_kept_run_of_an_older_lstm_attn(ranked_home, tmp_path, capsys):
    """Probe: a kept run scored by an older lstm-attn is explained with the newest lightgbm over that
    version; prune deleted that lightgbm (neither latest nor any run's model), and the run's report
    then went without LightGBM's feature contributions."""
    from flows.score import score_batch

    home = tmp_path / "home"
    shutil.copytree(ranked_home.home, home, symlinks=True)
    rankers = home / "models" / "rankers"
    old_base, old_ctr = ((rankers / name / "LATEST").read_text().strip() for name in ("lstm-attn", "lightgbm"))
    score_batch(str(home), model="lstm-attn", k=3, run_id="kept", users=["user00"], device="cpu")
    assert main(["--home", str(home), "train", "--models", "lstm-attn,lightgbm", "--force", "--device", "cpu"]) == 0
    assert main(["--home", str(home), "prune", "--keep-runs", "1"]) == 0
    assert (rankers / "lightgbm" / old_ctr).is_dir() and (rankers / "lstm-attn" / old_base).is_dir()
    capsys.readouterr()
    assert main(["--home", str(home), "report", "--run-id", "kept", "--plot-users", "0", "--device", "cpu"]) == 0
    models = db.fetch(Warehouse(home), "SELECT DISTINCT model_version FROM explanations WHERE run_id = 'kept'")
    assert models == [{"model_version": f"lstm-attn@{old_base}+lightgbm@{old_ctr}"}], models


def test_a_report_removes_folders_of_reports_whose_process_died(tmp_path):
    """Ctrl-C or a crash mid-report leaves `.<run>.tmp-<pid>-<tag>/` (figures, pages) behind; the
    next report of any run removes those of dead processes and keeps a live writer's."""
    import subprocess
    import sys

    from flows.report import run_folder

    wh = Warehouse(tmp_path / "home")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    pid = int(dead.stdout)  # exited: no process runs under this pid now (unless reused at once)
    wh.reports_dir.mkdir(parents=True)
    abandoned = [wh.reports_dir / f".run-a.tmp-{pid}-0123abcd", wh.reports_dir / f".run-b.old-{pid}-89abcdef"]
    live = wh.reports_dir / f".run-c.tmp-{os.getpid()}-0123abcd"
    unrelated = wh.reports_dir / ".notes-1-x"
    for folder in (*abandoned, live, unrelated):
        (folder / "pages").mkdir(parents=True)
    with run_folder(wh, "run-d") as work:
        (work / "index.html").write_text("report")
    assert not any(folder.exists() for folder in abandoned)
    assert live.exists() and unrelated.exists()
    assert (wh.reports_dir / "run-d" / "index.html").read_text() == "report"


def test_main_called_in_process_leaves_the_callers_ctrl_c_alone(tmp_path, monkeypatch):
    """Only the `reelsense` program exits at once on Ctrl-C: a caller of main() (a test, a
    notebook) would otherwise be ended, its other children stopped, by a Ctrl-C meant for it."""
    import signal

    def spy(signum, handler):
        raise AssertionError(f"main() installed a handler for signal {signum}")

    monkeypatch.setattr(signal, "signal", spy)
    assert main(["--home", str(tmp_path / "home"), "score", "--replace"]) == 2


def test_force_retrains_the_models_named_not_the_base_added_for_them(ranked_home, tmp_path, capsys):
    """Probe, 2026-12-03: `train --models lightgbm --force` retrained lstm-attn (its base) too."""
    from ranker import artifacts

    home = tmp_path / "home"
    shutil.copytree(ranked_home.home, home, symlinks=True)
    models = Warehouse(home).models_dir
    base, ctr = artifacts.latest(models, "lstm-attn")["version"], artifacts.latest(models, "lightgbm")["version"]
    assert main(["--home", str(home), "train", "--models", "lightgbm", "--force", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "so lstm-attn is trained (or reused) too (--force retrains only the models named: add lstm-attn to --models to retrain it too)" in out
    assert artifacts.latest(models, "lstm-attn")["version"] == base and artifacts.latest(models, "lightgbm")["version"] != ctr
    assert re.search(r"train-ranker: lstm-attn +reused", out) and not re.search(r"train-ranker: lightgbm +reused", out)


def test_the_tables_tell_the_reference_from_a_model_not_paired():
    """Probe: the "vs sasrec" column read "-" both on sasrec's own row and where nothing was paired."""
    from flows.console import vs_reference

    paired = {"vs_sasrec": {"unmasked": {"diff": 0.0012, "ci95": [-0.0001, 0.0025]}}}
    assert vs_reference("lstm-attn", paired, "unmasked") == "+0.0012 (-0.0001, +0.0025)"
    assert vs_reference("sasrec", {}, "unmasked") == "reference"
    assert vs_reference("lstm-attn", paired, "masked") == "not paired"
    from flows.console import unpaired_note

    assert unpaired_note({"models": {"sasrec": {}, "lstm-attn": paired}}) is None
    note = unpaired_note({"models": {"popularity": {}, "lstm-attn": paired, "bpr-mf": {}}, "seed": 0})
    assert note == (
        "not paired: no sasrec was evaluated over the same users with popularity, bpr-mf; "
        "`reelsense evaluate --models popularity,bpr-mf,sasrec` pairs them, with a sasrec trained on this data (`reelsense train --models sasrec`)"
    )
    # The same evaluation again (review): its seed and its quick sample; no training advice where sasrec is in the table.
    quick = unpaired_note({"models": {"sasrec": {}, "bpr-mf": {}}, "seed": 3, "max_users": 500})
    again = "`reelsense evaluate --models bpr-mf,sasrec --seed 3 --max-users 500` pairs them"
    assert quick == f"not paired: no sasrec was evaluated over the same users with bpr-mf; {again}"
    # Probe: after `train --models sasrec --force` and `evaluate --models sasrec`, the kept rows were
    # said to have no sasrec over the same users; it was another sasrec version.
    rows = {"sasrec": {"version": "s2"}, "bpr-mf": {"was_paired_with": "s1"}, "popularity": {"was_paired_with": "s1"}}
    retrained = unpaired_note({"models": rows, "seed": 0, "kept_from_earlier": ["bpr-mf", "popularity"]})
    assert retrained == (
        "not paired: the rows of bpr-mf, popularity are kept from an earlier evaluate, paired there with sasrec s1; this table's "
        "sasrec is s2, evaluated without them (a kept row stores no per-user ranks to pair again); "
        "`reelsense evaluate --models bpr-mf,popularity,sasrec` pairs them"
    )
    # Probe: sasrec's row left the table (another seed), and the note said to train one that was there.
    other_seed = {"models": {"bpr-mf": {}}, "seed": 1, "dropped_from_earlier": {"sasrec": "the earlier evaluate had other seed"}}
    assert unpaired_note(other_seed).endswith("`reelsense evaluate --models bpr-mf,sasrec --seed 1` pairs them")
    assert unpaired_note({**other_seed, "train_before_evaluate": ["sasrec"]}).endswith("(`reelsense train --models sasrec`)")
    # Probe: a quick evaluate of popularity alone said to train the sasrec that was there; evaluate records it now.
    quick = {"models": {"popularity": {}}, "seed": 0, "max_users": 50}
    assert unpaired_note({**quick, "reference_trained": True}).endswith("`reelsense evaluate --models popularity,sasrec --max-users 50` pairs them")
    assert unpaired_note({**quick, "reference_trained": False}).endswith("(`reelsense train --models sasrec`)")
    mixed = unpaired_note({"models": {**rows, "itemknn": {}}, "seed": 0, "kept_from_earlier": ["bpr-mf", "popularity"]})
    assert "(a kept row stores no per-user ranks to pair again); no sasrec was evaluated over the same users with itemknn; " in mixed


def test_a_lightgbm_row_over_another_lstm_attn_than_the_tables_is_said():
    """Probe: after lstm-attn was retrained and evaluated alone, the kept lightgbm row re-ranked the
    old lstm-attn, and neither the table nor the report said so."""
    from flows.console import other_base_note, results_lines

    row = {"unmasked": {"overall": {"ndcg@10": 0.1, "hr@10": 0.2}, "natural_cold_items": {"users": 0}}, "masked": {"overall": {"ndcg@10": 0.1}}}
    results = {
        "models": {"lstm-attn": {**row, "version": "new"}, "lightgbm": {**row, "version": "g1", "base_version": "old"}},
        "kept_from_earlier": ["lightgbm"],
    }
    said = (
        "the lightgbm row re-ranks lstm-attn old, not this table's new: `reelsense train --models lightgbm` trains one over it, "
        "then `reelsense evaluate --models lightgbm` measures it"
    )
    assert other_base_note(results) == said and said in results_lines(results)
    seeded = other_base_note({**results, "seed": 3, "max_users": 500})  # review: the table's seed and sample, or its other rows go
    assert seeded is not None and seeded.endswith("then `reelsense evaluate --models lightgbm --seed 3 --max-users 500` measures it")
    results["models"]["lstm-attn"]["train_seed"] = 1  # probe: without it, following the advice fitted a third lstm-attn at seed 0
    reuses = "`reelsense train --models lightgbm --seed 1` trains one over it with the seed and settings of this table's lstm-attn, then"
    assert reuses in other_base_note(results)
    results["models"]["lstm-attn"]["train_settings"] = {"max_epochs": 2, "dim": 32}  # review: a base of other settings is not reused either
    assert other_base_note(results).endswith(
        "`reelsense train --models lightgbm --seed 1 --config FILE` trains one over it with the seed and settings of this table's lstm-attn "
        "(FILE: a rankers TOML whose [lstm-attn] table sets dim = 32, max_epochs = 2), then `reelsense evaluate --models lightgbm` measures it"
    )
    results["models"]["lightgbm"]["base_version"] = "new"
    assert other_base_note(results) is None
    del results["models"]["lightgbm"]["base_version"]  # a row of an older results.json: nothing to compare
    assert other_base_note(results) is None


def test_a_kept_row_loses_its_pairing_once_its_sasrec_leaves_the_table(tmp_path):
    """Review: `evaluate --models popularity` after sasrec was retrained kept lstm-attn's paired
    difference against the old sasrec, which the table no longer showed."""
    from flows.rank import merged_models

    models = tmp_path / "models"
    for name, version in (("lstm-attn", "v1"), ("sasrec", "v2")):
        (models / "rankers" / name / version).mkdir(parents=True)
        (models / "rankers" / name / version / "meta.json").write_text(json.dumps({"name": name, "version": version}))
        (models / "rankers" / name / "LATEST").write_text(version)
    keys = {"data_fingerprint": "f", "seed": 0, "evaluation": "full: every test user", "code_version": "c", "protocol": {"content": "t"}}
    pairing = {"vs_sasrec": {"unmasked": {}}, "vs_sasrec_version": "v1"}
    earlier = {**keys, "models": {"sasrec": {"version": "v1"}, "lstm-attn": {"version": "v1", **pairing}}}
    (tmp_path / "results.json").write_text(json.dumps(earlier))
    now = {**keys, "models": {"popularity": {"version": "p1"}}}
    merged = merged_models(tmp_path / "results.json", now, ["popularity"], models)
    assert list(merged) == ["popularity", "lstm-attn"] and "vs_sasrec" not in merged["lstm-attn"]  # sasrec v1 is stale: gone, and the pairing with it
    assert merged["lstm-attn"]["was_paired_with"] == "v1"  # what the note names
    (models / "rankers" / "sasrec" / "LATEST").write_text("v1")
    (models / "rankers" / "sasrec" / "v1").mkdir()
    (models / "rankers" / "sasrec" / "v1" / "meta.json").write_text(json.dumps({"name": "sasrec", "version": "v1"}))
    merged = merged_models(tmp_path / "results.json", now, ["popularity"], models)
    assert list(merged) == ["popularity", "sasrec", "lstm-attn"] and merged["lstm-attn"]["vs_sasrec_version"] == "v1"  # kept beside it
    # Review: a lightgbm row of a results.json written before rows recorded their base gets it from
    # the registry, so the note on another base can be said; and without --dataset the name stays.
    (models / "rankers" / "lightgbm" / "g1").mkdir(parents=True)
    (models / "rankers" / "lightgbm" / "g1" / "meta.json").write_text(json.dumps({"name": "lightgbm", "version": "g1", "base_version": "v0"}))
    (models / "rankers" / "lightgbm" / "LATEST").write_text("g1")
    (tmp_path / "results.json").write_text(json.dumps({**earlier, "dataset": "tiny", "models": {"lightgbm": {"version": "g1"}}}))
    now = {**keys, "dataset": "/some/home", "models": {"popularity": {"version": "p1"}}}
    merged = merged_models(tmp_path / "results.json", now, ["popularity"], models, given_dataset=False)
    assert merged["lightgbm"]["base_version"] == "v0" and now["dataset"] == "tiny"


def test_the_commands_a_suggestion_names_are_the_clis():
    """flows/console.py keeps the CLI's subcommands for flow runs in worker processes (review: it
    built the whole CLI there); a command added to one and not the other fails here."""
    import argparse

    from flows.cli import build_parser
    from flows.console import COMMANDS

    parser = build_parser()
    names = [name for action in parser._actions if isinstance(action, argparse._SubParsersAction) for name in action.choices]
    assert COMMANDS == tuple(names)


def test_rows_an_evaluate_leaves_out_are_named_with_why(tmp_path):
    """Probe: the first evaluate after an upgrade wrote two rows and dropped six silently; beside a
    kept sasrec row the note said no sasrec was evaluated over the same users; a cold-item HR@10 of
    1.0000 over one user read as leakage without its count."""
    from flows.console import dropped_note, results_lines
    from flows.rank import merged_models

    models = tmp_path / "models"
    for name in ("sasrec", "bpr-mf"):
        (models / "rankers" / name / "v1").mkdir(parents=True)
        (models / "rankers" / name / "v1" / "meta.json").write_text(json.dumps({"name": name, "version": "v1"}))
        (models / "rankers" / name / "LATEST").write_text("v1")
    keys = {"data_fingerprint": "f", "seed": 0, "evaluation": "full: every test user", "code_version": "c", "protocol": {"content": "t"}}
    earlier = {"sasrec": {"version": "v1"}, "bpr-mf": {"version": "v0"}, "id-sequence": {"version": "i1"}, "itemknn": {"version": "k1"}}
    (tmp_path / "results.json").write_text(json.dumps({**keys, "models": earlier}))
    upgraded = {**keys, "code_version": "d", "models": {"popularity": {"version": "p1"}}}
    assert list(merged_models(tmp_path / "results.json", upgraded, ["popularity"], models)) == ["popularity"]
    assert upgraded["dropped_from_earlier"] == {
        "sasrec": "the earlier evaluate had other ranker code",
        "bpr-mf": "the earlier evaluate had other ranker code",
        "id-sequence": "a retired ranker name",
        "itemknn": "no longer trained",  # not in the registry
    }
    same = {**keys, "models": {"popularity": {"version": "p1"}}}
    assert list(merged_models(tmp_path / "results.json", same, ["popularity"], models)) == ["popularity", "sasrec"]
    assert same["dropped_from_earlier"]["bpr-mf"] == "retrained since the earlier evaluate"  # v0 is not its latest
    # Only what can be measured again is in the command, with the evaluation's seed and quick sample.
    note = dropped_note({**upgraded, "seed": 3, "max_users": 50})
    assert note == (
        "no longer in the table (sasrec, bpr-mf: the earlier evaluate had other ranker code; id-sequence: a retired ranker name; "
        "itemknn: no longer trained); `reelsense evaluate --models sasrec,bpr-mf --seed 3 --max-users 50` measures them here"
    )
    # Probe: a model of other data was sent to `evaluate`, which refused it: train it first.
    assert dropped_note({**upgraded, "train_before_evaluate": ["bpr-mf"]}).endswith(
        "`reelsense evaluate --models sasrec` measures them here; bpr-mf no longer fit the data: "
        "`reelsense train --models bpr-mf`, then `reelsense evaluate --models bpr-mf`"
    )
    same["dropped_from_earlier"] = {"bpr-mf": "retrained since the earlier evaluate"}

    row = {"version": "v", "ctr_sampled": {}}
    for protocol in ("unmasked", "masked"):
        row[protocol] = {"overall": {"ndcg@10": 0.1, "hr@10": 0.2}, "natural_cold_items": {"hr@10": 1.0, "users": 1}}
    table = "\n".join(results_lines({**same, "models": {"popularity": row, "sasrec": row}, "kept_from_earlier": ["sasrec"]}))
    assert "1.0000 (1)" in table and "cold items HR@10 (n)" in table
    assert "no longer in the table (bpr-mf: retrained since the earlier evaluate); `reelsense evaluate --models bpr-mf` measures them here" in table
    assert "not paired: sasrec's row is kept from an earlier evaluate, which stores no per-user ranks to pair with popularity;" in table


def test_a_copied_homes_report_says_where_its_results_were_evaluated(tmp_path):
    """Probe: after `cp -a home home2`, home2's report named home and its evaluate command, which would act there."""
    from flows.report_rankers import _moved_note

    here, there = tmp_path / "home2", tmp_path / "home"
    here.mkdir()
    assert _moved_note({"home": str(here.resolve())}, here) == ""
    assert _moved_note({}, here) == ""  # results written before the home was recorded: nothing to compare
    note = _moved_note({"home": str(there)}, here)
    assert f"Evaluated in {there}, another path than this home's (copied, moved or mounted elsewhere)" in note
    assert "<code>reelsense evaluate</code> evaluates here" in note


def test_a_runs_stale_ctr_stage_after_a_retrain_points_to_rescoring(monkeypatch, tmp_path):
    """Probe: after new items, `ingest items`, `extract`, `align` and a retrain of every model, the
    report of an older run warned that its LightGBM stage needs exactly those steps again; newer
    models exist, so the way out is rescoring the run."""
    import flows.explainers as explainers
    from ranker import artifacts

    said: list[str] = []
    registry = [{"name": "lightgbm", "version": "g1", "base_version": "b1"}, {"name": "lightgbm", "version": "g2", "base_version": "b2"}]
    monkeypatch.setattr(explainers, "say", lambda message, level=None: said.append(message))
    monkeypatch.setattr(explainers, "_explainer", lambda wh, data, device, version: f"lstm-attn {version}")
    monkeypatch.setattr(artifacts, "checked_meta", lambda *a, **k: None)
    monkeypatch.setattr(artifacts, "list_models", lambda models_dir: registry)
    monkeypatch.setattr(artifacts, "latest", lambda models_dir, name: registry[-1] if name == "lightgbm" else {"name": "lstm-attn", "version": "b2"})
    # flows/latest.py reads the LATEST file once and its version's meta.json by name
    metas = {("lightgbm", m["version"]): m for m in registry} | {("lstm-attn", "b2"): {"name": "lstm-attn", "version": "b2"}}
    monkeypatch.setattr(artifacts, "read_meta", lambda models_dir, name, version: metas[(name, version)])
    for name, version in (("lightgbm", "g2"), ("lstm-attn", "b2")):  # the LATEST files the stand-ins above read
        (tmp_path / "rankers" / name).mkdir(parents=True)
        (tmp_path / "rankers" / name / "LATEST").write_text(version)
    fits = {"g2": True}

    def check_with_base(models_dir, name, data, *, version, match):
        if not fits.get(version):
            raise artifacts.ModelMismatch(f"lightgbm {version} does not fit either")

    monkeypatch.setattr(artifacts, "check_with_base", check_with_base)

    def stale(*args, **kwargs):
        raise artifacts.ModelMismatch(f"lightgbm g1 does not fit the warehouse's features; {kwargs['fix']}")

    monkeypatch.setattr(artifacts, "load_with_base", stale)
    wh = SimpleNamespace(models_dir=tmp_path)
    model, ctr = explainers.load_explainers(wh, None, "cpu", "lstm-attn@b1", "r1")
    assert (model, ctr) == ("lstm-attn b1", None)
    assert said == [
        "explanations without LightGBM's feature contributions: the run's lightgbm g1 does not fit the warehouse now, and a newer "
        "one (g2) was trained since; `reelsense score --run-id r1 --model lstm-attn --replace` (with the --k and --users it was "
        "scored with) rescores the run with the latest models, and `reelsense report --run-id r1` then explains it with them"
    ]
    retrain = [
        "explanations without LightGBM's feature contributions: lightgbm g1 does not fit the warehouse's features; "
        "train on this data to explain with it: `reelsense train --models lstm-attn,lightgbm`"
    ]
    fits["g2"] = False  # the newer stage does not fit the warehouse either: a rescore would not help
    said.clear()
    explainers.load_explainers(wh, None, "cpu", "lstm-attn@b1", "r1")
    assert said == retrain
    fits["g2"], registry[-1]["base_version"] = True, "b0"  # it fits, but over an lstm-attn other than the latest
    said.clear()
    explainers.load_explainers(wh, None, "cpu", "lstm-attn@b1", "r1")
    assert said == retrain
    registry.pop()  # g1 is the latest: the data changed under it, and retraining is the way out
    (tmp_path / "rankers" / "lightgbm" / "LATEST").write_text("g1")
    said.clear()
    explainers.load_explainers(wh, None, "cpu", "lstm-attn@b1", "r1")
    assert said == [
        "explanations without LightGBM's feature contributions: lightgbm g1 does not fit the warehouse's features; "
        "train on this data to explain with it: `reelsense train --models lstm-attn,lightgbm`"
    ]

    # Probe: the run's own lstm-attn no longer fits (new items since); the advice was to train, which
    # cannot make that version fit (and `explain` repeated it after the retrain): rescoring the run can,
    # where the latest lstm-attn (b2) is newer and fits; where it does not fit either, training is the way.
    misfits = {"b1"}

    def checked_meta(models_dir, name, data, *, version, match, fix=None):
        if version in misfits:
            raise artifacts.ModelMismatch(f"{name} {version} does not fit the warehouse's items; {fix or 'retrain it'}")

    monkeypatch.setattr(artifacts, "checked_meta", checked_meta)
    said.clear()
    explainers.load_explainers(wh, None, "cpu", "lstm-attn@b1", "r1")
    assert said[0] == (
        "the run was scored by lstm-attn@b1, which cannot explain it now (lstm-attn b1 does not fit the warehouse's items; "
        "`reelsense score --run-id r1 --model lstm-attn --replace` (with the --k and --users it was scored with) rescores the run "
        "with the latest models, and `reelsense report --run-id r1` then explains it with them); explaining it with the latest models"
    )
    misfits.add("b2")  # review: the latest misfits too (content changed, nothing retrained): a rescore would be refused
    said.clear()
    explainers.load_explainers(wh, None, "cpu", "lstm-attn@b1", "r1")
    assert said[0] == (
        "the run was scored by lstm-attn@b1, which cannot explain it now (lstm-attn b1 does not fit the warehouse's items; "
        "train on this data to explain with it: `reelsense train --models lstm-attn`); explaining it with the latest models"
    )
    # Probe 48: the run's own older lstm-attn has no lightgbm over it: it went unsaid; the latest pair fits, so a rescore explains with both
    misfits.clear()
    registry[:] = [{"name": "lightgbm", "version": "g3", "base_version": "b2"}]
    metas[("lightgbm", "g3")] = registry[0]
    (tmp_path / "rankers" / "lightgbm" / "LATEST").write_text("g3")
    fits["g3"] = True

    def warnings_explaining(scored_by: str) -> list[str]:
        said.clear()
        explainers.load_explainers(wh, None, "cpu", scored_by, "r1")
        return said

    assert warnings_explaining("lstm-attn@b0") == [
        "explanations without LightGBM's feature contributions: no lightgbm was trained over lstm-attn b0, which scored the run; "
        "`reelsense score --run-id r1 --model lstm-attn --replace` (with the --k and --users it was scored with) rescores the run "
        "with the latest models, and `reelsense report --run-id r1` then explains it with them"
    ]
    # Probe 48: the latest lstm-attn has none over it and the data changed since it was trained: `train --models lightgbm`
    # trains a new lstm-attn too (the advice said "over it")
    registry[0]["base_version"] = "b1"
    metas[("lstm-attn", "b2")]["data_fingerprint"] = "then"
    monkeypatch.setattr(artifacts, "fingerprint", lambda data: "now")
    assert warnings_explaining("sasrec@s1") == [
        "explanations without LightGBM's feature contributions: no lightgbm was trained over lstm-attn b2, the latest, and the data "
        "changed since it was trained: `reelsense train --models lightgbm` trains a new lstm-attn and one over that; "
        "`reelsense report --run-id r1` then explains with them"
    ]


def test_version_names_the_installed_package(capsys, monkeypatch):
    """Probe: there was no --version."""
    from importlib import metadata

    from flows import cli

    calls = []
    monkeypatch.setattr(cli, "_installed_version", lambda: calls.append(1) or metadata.version("reelsense"))
    cli.build_parser().parse_args(["models"])
    assert calls == []  # read only when asked
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"reelsense {metadata.version('reelsense')}\n"


def test_report_refuses_negative_pages_naming_the_option_given(home, capsys):
    """Probe: `report --plot-users -1` said "--pages and --plot-users take 0 or more, got 300 and -1",
    quoting a --pages never passed, and only once the home was read."""
    for option in ("--plot-users", "--pages"):
        with pytest.raises(SystemExit) as exit_info:
            main(["--home", str(home), "report", option, "-1"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and f"argument {option}: -1: expected 0 or more" in err, err


def test_a_latest_that_is_a_folder_stops_train_before_any_fit(tmp_path, capsys):
    """Probe: `train` with a LATEST turned into a folder fitted for a minute, then failed writing
    LATEST (three tracebacks); the advice said to write a version into the folder."""
    import tiny_platform

    home = tmp_path / "home"
    tiny_platform.build(home)  # events and vectors; nothing trained
    rankers = home / "models" / "rankers"
    marker = rankers / "lstm-attn" / "LATEST"
    marker.mkdir(parents=True)
    before = sorted(p.name for p in (rankers / "lstm-attn").iterdir())
    capsys.readouterr()
    assert main(["--home", str(home), "train", "--models", "lightgbm"]) == 2  # lightgbm re-ranks lstm-attn
    err = capsys.readouterr().err
    assert f"{marker} is a folder, not the file that names lstm-attn's latest version: remove it (`rm -r {marker}`)" in err, err
    assert "Traceback" not in err and sorted(p.name for p in (rankers / "lstm-attn").iterdir()) == before  # nothing trained


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--models", "nosuch"], "unknown ranker 'nosuch'"),
        (["evaluate", "--models", "nosuch"], "unknown ranker 'nosuch'"),
        (["score", "--retrieval", "similarity", "--candidates", "5", "--k", "10"], "need k <= candidates"),
        (["score", "--run-id", "a b"], "cannot name the run's folder"),
        (["score", "--users", " , "], "names no user"),
        (["score", "--version", "../lstm-attn/20261206T151445-b7c3bb44"], "is not a version name"),
        (["prune", "--keep-runs", "0"], "--keep-runs must be at least 1"),
        (["extract", "--config", "/nonexistent/extract.toml"], "does not exist"),
        (["train", "--models", "sasrec,,"], "--models 'sasrec,,' has an empty name"),  # probe: read as sasrec
        (["score", "--model", "id-sequence"], "'id-sequence' is retired"),  # probe: argparse's bare "invalid choice"
        (["score", "--model", "sasrec", "--version", "20261206T151445-b7c3bb44"], "no model sasrec version 20261206T151445-b7c3bb44"),
        (["report", "--run-id", "nope"], "no scores in"),
        (["explain", "--user", "nosuch", "--item", "v1"], "unknown user 'nosuch' (no events)"),
        (["explain", "--user", "u1", "--item", "v1", "--run-id", "nope"], "no scores in"),
        (["train", "--config", "/nonexistent/rankers.toml"], "does not exist"),
    ],
)
def test_a_bad_argument_is_refused_before_torch_is_imported(home, argv, message):
    """Importing a flow takes 3-4 s on 2 cores (torch and Prefect): the CLI checks the arguments
    before it, so a mistake is named at once (probe: 4-5 s for each of these)."""
    done = _without_torch(home, argv)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert "torch not imported" in done.stdout


def _without_torch(home: Path, argv: list[str], env: dict[str, str] | None = None):
    """`reelsense --home HOME ARGV` in a fresh interpreter (this one has torch already) that prints
    whether torch was imported; `env`: variables to set for it."""
    import subprocess
    import sys

    code = (
        "import sys; from flows.cli import main; status = main(sys.argv[1:]); "
        "print('torch imported' if 'torch' in sys.modules else 'torch not imported'); sys.exit(status)"
    )
    return subprocess.run(
        [sys.executable, "-c", code, "--home", str(home), *argv], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


def test_a_run_user_or_version_mistake_on_a_scored_home_is_refused_before_torch_is_imported(scored_home):
    """Review: the cases above meet an empty home's "no scores" first; these need runs to check against."""
    u, i = db.fetch(  # a pair run `full` scored and run `two` did not
        Warehouse(scored_home), "SELECT user_id, item_id FROM scores WHERE run_id = 'full' AND user_id NOT IN ('user00', 'user01') LIMIT 1"
    )[0].values()
    for argv, message in (
        (["report", "--run-id", "nope"], "no scores with run id 'nope'; the runs are (newest first): two, full"),
        (["report", "--run-id", "FULL"], "no scores with run id 'FULL' (did you mean 'full'?); the runs are"),  # probe: case aside
        (["explain", "--user", u, "--item", i, "--run-id", "nope"], "no scores with run id 'nope'"),
        (["explain", "--user", u, "--item", i, "--run-id", "two"], f"run 'two' did not score item {i!r} for user {u!r}"),
        (["score", "--users", "ghost,nobody"], "none of the users given to --users has events: ghost, nobody"),
        (["score", "--model", "sasrec", "--version", "nope"], "no model sasrec version nope"),
    ):
        done = _without_torch(scored_home, argv)
        assert done.returncode != 0 and message in done.stderr, (argv, done.stderr)
        assert "torch not imported" in done.stdout, argv
    # serve without a server: said first (probe: after 4.7 s of imports and a warning about ranker settings)
    done = _without_torch(scored_home, ["serve"], env={"PREFECT_API_URL": "http://127.0.0.1:1/api"})
    assert done.returncode != 0 and "no Prefect server answers at PREFECT_API_URL=http://127.0.0.1:1/api" in done.stderr, done.stderr
    assert "torch not imported" in done.stdout


def test_training_a_content_ranker_on_a_home_without_items_says_to_ingest_items(home, capsys):
    """Probe: the advice was `reelsense extract`, which then said "no items": two errors to the cause."""
    assert main(["--home", str(home), "train", "--models", "lstm-attn"]) == 2
    err = capsys.readouterr().err
    assert "has no items to embed: run `reelsense" in err and "ingest items FILE`, then `reelsense" in err
    # and score (probe 48: it said to train lstm-attn, which then refused), with the id-only way
    assert main(["--home", str(home), "score"]) == 2
    err = capsys.readouterr().err
    assert "no trained lstm-attn in" in err and "content vectors, which the warehouse lacks: `reelsense" in err and "ingest items FILE`" in err, err
    assert "or score with an id-only ranker (`report` explains no run before those steps): `reelsense" in err and "score --model sasrec`" in err
    # and so does report, whose explanations come from lstm-attn (probe: it said to train one, which refused)
    from flows.explainers import load_explainers
    from ranker.data import ensure_samples

    wh = Warehouse(home)
    ensure_samples(wh)
    with pytest.raises(ReelsenseError, match=r"which the warehouse lacks: `reelsense ingest items FILE` \(item_id,title,video_uri\), `reelsense extract`"):
        load_explainers(wh, load_dataset(wh), "cpu")
    items = write_csv(home / "items.csv", ["item_id", "title", "video_uri"], [["i1", "a title", ""]])
    assert main(["--home", str(home), "ingest", "items", str(items)]) == 0
    with pytest.raises(ReelsenseError, match=r"which the warehouse lacks: `reelsense extract` \(and `reelsense align` for several") as refused:
        load_explainers(wh, load_dataset(wh), "cpu")
    assert "ingest items" not in str(refused.value) and str(refused.value).count("train --models lstm-attn") == 1  # said once (probe 49)


def test_report_and_explain_without_content_vectors_name_the_way_there(home, capsys):
    """Probe 48: `report` in a home without content vectors said what to do only after ~15 s of
    starting its flow; it refuses before torch loads now, also where the only vectors are raw ones
    of one modality, which align cannot fuse (reviews: "extract, align" did nothing there).
    `explain` gives the item's own reason first, and the whole way where no item has content."""
    from datetime import datetime, timezone

    import pyarrow as pa

    from warehouse import store
    from warehouse.schemas import EMBEDDINGS, FAILURES, SCORES

    wh, now = Warehouse(home), datetime.now(timezone.utc)
    row = {"run_id": "r1", "user_id": "u1", "item_id": "v2", "score": 1.0, "rank": 1, "model_version": "sasrec@v", "scored_at": now}
    store.append(wh, SCORES, pa.Table.from_pylist([row], schema=SCORES.schema))  # as an id-only ranker's run leaves it
    report = ["report", "--run-id", "r1"]
    done = _without_torch(home, report)
    assert done.returncode == 2 and "explanations come from lstm-attn (its attention and modality contributions), whichever" in done.stderr
    assert "which the warehouse lacks: `reelsense" in done.stderr and "ingest items FILE`" in done.stderr, done.stderr
    assert "torch not imported" in done.stdout
    assert main(["--home", str(home), "explain", "--user", "u1", "--item", "v1"]) == 2
    err = capsys.readouterr().err
    assert "cannot explain item 'v1' for user 'u1': no item has a content vector yet, so lstm-attn" in err and "ingest items FILE`" in err, err
    assert err.rstrip().endswith("train --models lstm-attn`"), err
    # probe 50: --run-id of a run that did not score the pair said "compute one now", which cannot work here;
    # and an unknown item's hint queried the empty `items`
    assert main(["--home", str(home), "explain", "--user", "u1", "--item", "v1", "--run-id", "r1"]) == 2
    err = capsys.readouterr().err
    assert "no run scored it, and none can be computed now: explanations come from lstm-attn" in err and "compute one now" not in err, err
    assert "whichever ranker" not in err and "and lstm-attn needs the items' content vectors" in err, err
    assert main(["--home", str(home), "explain", "--user", "u1", "--item", "nope"]) == 2
    assert 'sql "SELECT DISTINCT item_id FROM events ORDER BY item_id LIMIT 5"` lists some items' in capsys.readouterr().err
    # Items: v1's media undecodable, v2 with frames vectors only: no vector a ranker reads, and align has one modality
    (home / "garbage.mp4").write_bytes(b"not a video")
    rows = [[item, "", str(home / "garbage.mp4")] for item in ("v1", "v2")]
    items = write_csv(home / "items.csv", ["item_id", "title", "video_uri"], rows)
    assert main(["--home", str(home), "ingest", "items", str(items)]) == 0
    hashes = {r["item_id"]: r["content_hash"] for r in db.fetch(wh, "SELECT item_id, content_hash FROM items")}
    frames = {"item_id": "v2", "modality": "frames", "model": "f@1", "dim": 2, "vector": [1.0, 0.0], "tags": None, "content_hash": hashes["v2"],
              "created_at": now, "fusion_weights": None}  # fmt: skip
    store.append(wh, EMBEDDINGS, pa.Table.from_pylist([frames], schema=EMBEDDINGS.schema))
    failure = {"stage": "extract-items", "source": "x", "item_id": "v1", "user_id": None, "error": "moov atom not found",
               "record": json.dumps({"item_id": "v1", "content_hash": hashes["v1"]}), "failed_at": now}  # fmt: skip
    store.append(wh, FAILURES, pa.Table.from_pylist([failure], schema=FAILURES.schema))
    done = _without_torch(home, report)
    said = "which the warehouse lacks: the items have frames vectors only, and `reelsense"
    assert done.returncode == 2 and said in done.stderr and "align` needs two modalities on at least 2 items: ingest the items again" in done.stderr
    assert "torch not imported" in done.stdout, done.stderr
    assert "; extract skips the 1 item whose media it could not decode until they are fixed and ingested again (`reelsense" in done.stderr
    capsys.readouterr()
    assert main(["--home", str(home), "explain", "--user", "u1", "--item", "v1"]) == 2
    err = capsys.readouterr().err
    assert "cannot explain item 'v1' for user 'u1': it has no content vector, so lstm-attn (which explains, and ranks items by their" in err
    assert "cannot score it: extract could not decode its media (moov atom not found) and skips it until they are fixed" in err, err


def test_a_misspelt_table_to_compact_gets_the_near_name(home, capsys):
    """Probe: `compact evnets` listed the tables but suggested nothing, where `sql` does."""
    assert main(["--home", str(home), "compact", "evnets"]) == 2
    err = capsys.readouterr().err
    assert "unknown table 'evnets'; did you mean 'events'? pass some of " in err, err
    assert main(["--home", str(home), "compact", "zzz"]) == 2 and "did you mean" not in capsys.readouterr().err
