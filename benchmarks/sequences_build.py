"""How long the `samples` build query (warehouse/sql/features/sequences.sql) takes on a home's
events, at this checkout and at other commits, and whether each commit's query gives the same rows
as this checkout's. Read-only: the query runs into temporary tables of a read-only connection, and
nothing is written to the home.

    .venv/bin/python benchmarks/sequences_build.py --home .reelsense-microlens --commits 46002b9,0e7bf23

2026-12-07 on MicroLens-50K (359,708 samples), one DuckDB thread, beside a niced benchmark:
46002b9 (history in read order) 1.15 s, 0e7bf23 (an ordered list() over the RANGE frame) 12.76 s,
c41959f (a ROWS frame cut to the strictly earlier rows) 1.10 s; the same rows in all three.
Never asserted in tests.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

import duckdb

from warehouse.schemas import EVENT_PARTITIONS

SQL = Path("warehouse/sql/features/sequences.sql")


def query_at(commit: str | None) -> str:
    """The build query at `commit` (None: this checkout's file)."""
    if commit is None:
        return SQL.read_text()
    return subprocess.run(["git", "show", f"{commit}:{SQL}"], capture_output=True, text=True, check=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True, help="a reelsense home with events (its DuckDB file is opened read-only)")
    parser.add_argument("--commits", default="", help="comma-separated commits whose query to time and compare")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-history", type=int, default=20)
    args = parser.parse_args()
    database = Path(args.home) / "reelsense.duckdb"
    if not database.is_file():
        raise SystemExit(f"{database}: no such file; run `reelsense --home {args.home} ingest ...` first")
    con = duckdb.connect(str(database), read_only=True)
    con.execute(f"SET threads = {int(args.threads)}")
    params = {"buckets": list(range(EVENT_PARTITIONS)), "max_history": args.max_history}
    names = ["this checkout"] + [c for c in args.commits.split(",") if c]
    for i, name in enumerate(names):
        started = time.perf_counter()
        con.execute(f"CREATE TEMP TABLE built_{i} AS {query_at(None if i == 0 else name)}", params)
        seconds = time.perf_counter() - started
        rows = con.sql(f"SELECT count(*) FROM built_{i}").fetchall()[0][0]
        differ = ""
        if i:
            one = con.sql(f"SELECT count(*) FROM (SELECT * FROM built_{i} EXCEPT ALL SELECT * FROM built_0)").fetchall()[0][0]
            other = con.sql(f"SELECT count(*) FROM (SELECT * FROM built_0 EXCEPT ALL SELECT * FROM built_{i})").fetchall()[0][0]
            differ = f"; rows not in this checkout's build: {one}, this checkout's rows not in it: {other}"
        print(f"{name}: {rows:,} samples in {seconds:.2f} s{differ}")


if __name__ == "__main__":
    main()
