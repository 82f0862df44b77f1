"""Parquet storage of the warehouse tables: atomic, idempotent, partitioned appends.

Layout under `<home>/tables/<table>/`: immutable `part-*.parquet` files (inside `column=value/`
folders for partitioned tables). A write
1. conforms the batch to the table's Arrow schema (`SchemaError` when a column is missing),
2. drops rows whose key is already stored, or repeated within the batch (idempotency),
3. writes each partition to a hidden temp file, fsyncs it and renames it into place.
Readers glob `*.parquet`, so they never see a half-written file, and a crash mid-write leaves at
most a `.tmp` file that the next writer removes. An exclusive `flock` per table serialises the
dedupe-then-write step, so concurrent writers of overlapping rows store each row exactly once.

`replace` (extract `--force`, a report's explanations of its run) swaps stored rows for new ones with the same key. It
rewrites the affected files under a journal (`.journal.json`: the files it adds and removes), so a
crash between writing and removing is rolled forward or back by the next writer: rows are never
lost or doubled.

Costs stay with the batch, not the table: where the key decides the partition (events by user,
embeddings by modality), an append checks its keys against the partitions it writes only, and
within them against the files whose range of every key column overlaps the batch's. Each
partition folder keeps those ranges in `.key_ranges.arrow` (file name -> each key column's min
and max), an index of facts about immutable files (part names are never reused): a file it does
not know is read once and added, and entries of files that are gone are dropped, so a lost or
garbled index costs time, never correctness. A day of events, or a batch of items extracted
in id order, then opens no older file at all. Within the files read, the scan is cut to the
batch's range of each key column (row groups outside are skipped on their statistics). `compact` merges each
partition's small files (every append writes one per partition) into files of about
`SMALL_FILE_BYTES`, under the same journal. It removes files, and readers glob without taking
the table lock, so it runs as maintenance, never inside an append: by hand (`reelsense compact`)
or nightly as the `maintain-warehouse` deployment (flows/maintain.py), which merges only the
partitions that have gathered `COMPACT_MIN_FILES` small files. Whatever removes files waits for
the running readers first (`reading`).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from warehouse.errors import SchemaError
from warehouse.faults import crash_point
from warehouse.schemas import SCHEMA_VERSION, TABLES, TableSpec

_PARTITION_VALUE = re.compile(r"^[A-Za-z0-9_.-]+$")
# DuckDB types of the partition columns (hive folder names are text).
_HIVE_TYPES = {pa.string(): "VARCHAR", pa.int16(): "SMALLINT"}
# Beside a derived table's files: what it was built from (see `overwrite`).
BUILT_FROM = ".built_from.json"
# Beside each partition's files: each file's range of every key column (see `_overlapping_files`).
KEY_RANGES = ".key_ranges.arrow"
# Beside a partition's files: what its rows were made from (see `record_partition`).
MADE_FROM = ".made_from.json"
# In <home>/tables/: readers hold it shared, whatever removes files exclusively (see `reading`).
READERS_LOCK = ".readers.lock"
# Compaction merges files under SMALL_FILE_BYTES into files of about that size (bounded memory).
SMALL_FILE_BYTES = 32 * 1024 * 1024
# The nightly maintenance (flows/maintain.py) merges a partition once it holds this many small
# files: appends stay flat without it (key ranges), but every reader globs every file.
COMPACT_MIN_FILES = 32


class Warehouse:
    """Paths of one reelsense home. Creating it touches nothing on disk."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.home = Path(home).absolute()

    @property
    def tables_dir(self) -> Path:
        return self.home / "tables"

    @property
    def db_path(self) -> Path:
        return self.home / "reelsense.duckdb"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    def table_dir(self, spec: TableSpec) -> Path:
        return self.tables_dir / spec.name

    def parquet_glob(self, spec: TableSpec) -> str:
        pattern = "*/*.parquet" if spec.partition_by else "*.parquet"
        return str(self.table_dir(spec) / pattern)

    def has_rows_on_disk(self, spec: TableSpec) -> bool:
        # Files of a table written before it was partitioned count too: the next reader or writer
        # moves them into partitions (`_recover`).
        return next(self.part_files(spec), None) is not None or bool(_flat_files(self.table_dir(spec)))

    def part_files(self, spec: TableSpec) -> Iterator[Path]:
        root = self.table_dir(spec)
        if not root.exists():
            return iter(())
        return root.glob("*/*.parquet" if spec.partition_by else "*.parquet")


@dataclass(frozen=True)
class Conflict:
    """A batch row whose key is stored, or held by an earlier row of its batch, with other values of
    append's `compare` columns: `first` holds those values (of the stored row where `stored`)."""

    row: int
    first: dict[str, Any]
    stored: bool


@dataclass(frozen=True)
class WriteResult:
    written: int
    duplicates: int
    conflicts: tuple[Conflict, ...] = ()


def conform(spec: TableSpec, batch: pa.Table) -> pa.Table:
    """Select and cast `batch` to the table's schema, in schema order."""
    for name in spec.added_later:
        if name not in batch.column_names:
            batch = batch.append_column(name, pa.nulls(batch.num_rows, spec.schema.field(name).type))
    missing = [name for name in spec.schema.names if name not in batch.column_names]
    if missing:
        raise SchemaError(f"{spec.name}: batch lacks columns {missing}; found {batch.column_names}, expected {spec.schema.names}")
    columns = []
    for field in spec.schema:
        column = batch.column(field.name)
        if field.name in spec.variable_width and pa.types.is_fixed_size_list(column.type):
            # One file holds one model's vectors: keep its fixed width.
            columns.append(column.cast(pa.list_(field.type.value_type, column.type.list_size)))
            continue
        try:
            columns.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SchemaError(f"{spec.name}.{field.name} has type {column.type}, expected {field.type}: {exc}") from exc
        if not field.nullable and column.null_count:
            raise SchemaError(f"{spec.name}.{field.name} has {column.null_count} nulls; it is required")
    fields = [pa.field(f.name, col.type, nullable=f.nullable) for f, col in zip(spec.schema, columns)]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def append(wh: Warehouse, spec: TableSpec, batch: pa.Table, *, compare: tuple[str, ...] = ()) -> WriteResult:
    """Store the rows of `batch` whose key is not stored yet; return what was written and skipped.
    With `compare` columns, a row whose key is stored (or held by an earlier row of the batch) with
    other values of them is no duplicate but a conflict: not written, and returned for the caller
    to report (ingest: the same event again with another watch ratio). Checked under the table's
    lock, in the one scan of the stored rows that also finds the new keys."""
    batch = conform(spec, batch)
    table_dir = wh.table_dir(spec)
    table_dir.mkdir(parents=True, exist_ok=True)
    with _table_lock(table_dir):
        stored = _colliding_files(wh, spec, batch)
        if compare and batch.num_rows:
            fresh_rows, conflicts = _fresh_and_conflicts(spec, batch, stored, compare)
            fresh = batch.take(pa.array(fresh_rows, pa.int64()))
        else:
            fresh, conflicts = _new_rows(spec, batch, stored), ()
        if fresh.num_rows:
            _write_partitions(spec, table_dir, fresh)
            crash_point("append:after-write")
    return WriteResult(written=fresh.num_rows, duplicates=batch.num_rows - len(conflicts) - fresh.num_rows, conflicts=conflicts)


def _fresh_and_conflicts(
    spec: TableSpec, batch: pa.Table, stored_glob: str | list[str] | None, compare: tuple[str, ...]
) -> tuple[npt.NDArray[np.int64], tuple[Conflict, ...]]:
    """One scan of the stored rows for both: the rows of `batch` to write (first of their key in the
    batch, key not stored) and the conflicts, the rows whose key a stored row holds with other
    `compare` values or, where none is stored, the batch's first row of that key (nulls equal, as for
    the key). The rest are duplicates."""
    if spec.latest_by:
        raise ValueError(f"{spec.name}: compare is for tables of one row per key, not versioned ones")
    columns = list(dict.fromkeys([*spec.key, *compare]))
    rows = batch.select(columns).append_column("_row", pa.array(range(batch.num_rows), pa.int64()))

    def same_key(a: str, b: str) -> str:
        return " AND ".join(f"{a}.{_quote(k)} IS NOT DISTINCT FROM {b}.{_quote(k)}" for k in spec.key)

    def differs(a: str, b: str) -> str:
        return "(" + " OR ".join(f"{a}.{_quote(c)} IS DISTINCT FROM {b}.{_quote(c)}" for c in compare) + ")"

    keys = ", ".join(_quote(k) for k in spec.key)
    firsts = f"(SELECT * FROM batch_rows QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY _row) = 1)"
    if stored_glob is None:
        stored, params = f"(SELECT {', '.join(_quote(c) for c in columns)} FROM batch_rows WHERE false)", list[Any]()
    else:
        relation, params = _stored_relation(spec, batch, stored_glob)
        stored = f"(SELECT {', '.join(_quote(c) for c in columns)} FROM {relation})"
    # The stored row where there is one, else the batch's first of the key: the row's `first` values.
    held = ", ".join(f"CASE WHEN s._row_stored THEN s.{_quote(c)} ELSE f.{_quote(c)} END AS _held{i}" for i, c in enumerate(compare))
    sql = (
        f"SELECT b._row AS _row, coalesce(s._row_stored, false) AS _stored, b._row = f._row AS _first, "
        f"coalesce(CASE WHEN s._row_stored THEN {differs('b', 's')} ELSE {differs('b', 'f')} END, false) AS _conflict, {held} "
        f"FROM batch_rows b JOIN {firsts} f ON {same_key('f', 'b')} "
        f"LEFT JOIN (SELECT *, true AS _row_stored FROM {stored}) s ON {same_key('s', 'b')} ORDER BY b._row"
    )
    con = duckdb.connect()
    try:
        con.register("batch_rows", rows)
        found = con.sql(sql, params=params).to_arrow_table()
    finally:
        con.close()
    # A key stored twice (append never writes that; a hand-made file could) joins a row twice: one
    # result per row, a conflict where either stored row conflicts (review: the join's order decided).
    joined, clash = found.column("_row").to_numpy(), found.column("_conflict").to_numpy(zero_copy_only=False)
    order = np.lexsort((~clash, joined))  # by row, conflicts first
    once = order[np.unique(joined[order], return_index=True)[1]]
    found = found.take(pa.array(once, pa.int64()))
    row, is_stored, first, conflict = (found.column(c).to_numpy(zero_copy_only=False) for c in ("_row", "_stored", "_first", "_conflict"))
    held_rows = found.filter(pa.array(conflict)).select([f"_held{i}" for i in range(len(compare))]).to_pylist()
    conflicts = tuple(
        Conflict(row=int(r), first=dict(zip(compare, values.values())), stored=bool(s))
        for r, s, values in zip(row[conflict], is_stored[conflict], held_rows, strict=True)
    )
    return row[first & ~is_stored & ~conflict], conflicts


def _stored_relation(spec: TableSpec, batch: pa.Table, stored_glob: str | list[str]) -> tuple[str, list]:
    """The stored rows that can share a key with `batch`, as SQL over read_parquet and its
    parameters: the current version of versioned entities, and only rows whose every key column lies
    within the batch's range of it (filters DuckDB pushes into the Parquet scan, so row groups outside
    the ranges, earlier days of events or other score runs, are skipped on their statistics instead of
    read; a column with nulls in the batch is not filtered: a null key matches a stored null)."""
    stored = f"read_parquet(?, hive_partitioning = {_hive_option(spec)})"
    if spec.latest_by:  # versioned entities: only the current version counts as already stored
        stored = f"(SELECT * FROM {stored} QUALIFY row_number() OVER (PARTITION BY {_quote(spec.latest_by)} ORDER BY {spec.version_order}) = 1)"
    params: list = [stored_glob]
    ranges = []
    for name in spec.key:
        column = batch.column(name)
        if column.null_count == 0:
            low, high = pc.min_max(column).values()
            ranges.append(f"{_quote(name)} BETWEEN ? AND ?")
            params += [low.as_py(), high.as_py()]
    if ranges:
        stored = f"(SELECT * FROM {stored} WHERE {' AND '.join(ranges)})"
    return stored, params


def _colliding_files(wh: Warehouse, spec: TableSpec, batch: pa.Table) -> list[str] | None:
    """The stored files a batch's keys could collide with (None: none stored). Where the key
    decides the partition, only the partitions the batch writes; else every file of the table."""
    if not wh.has_rows_on_disk(spec):
        return None
    if spec.partition_by is None or spec.partition_of is None:
        return [wh.parquet_glob(spec)]
    column, partition = spec.partition_of
    wrong = [key for key, value in zip(batch.column(column).to_pylist(), batch.column(spec.partition_by).to_pylist()) if partition(key) != value]
    if wrong:  # a row in the wrong partition would escape the duplicate check: refuse it
        raise SchemaError(
            f"{spec.name}: {len(wrong)} rows have a {spec.partition_by} that their {column} does not give "
            f"(first: {column} {wrong[0]!r}); the partition of a row follows from its key (warehouse/schemas.py)"
        )
    return _partition_globs(wh.table_dir(spec), spec, batch)


def _partition_globs(table_dir: Path, spec: TableSpec, batch: pa.Table) -> list[str] | None:
    """The stored files of the partitions `batch` writes whose key ranges overlap the batch's
    (None: none)."""
    folders = [table_dir / f"{spec.partition_by}={value}" for value in pc.unique(batch.column(spec.partition_by)).to_pylist()]
    return _overlapping_files(spec, [folder for folder in folders if folder.is_dir()], batch) or None


def _overlapping_files(spec: TableSpec, folders: list[Path], batch: pa.Table) -> list[str]:
    """The files in `folders` that could hold a key of `batch`: for every key column the batch has
    no null in, the file's [min, max] overlaps the batch's (a file holding only nulls there cannot
    match). Ranges come from each folder's KEY_RANGES index (Arrow, memory-mapped, compared
    vectorised: the cost per stored file is a few microseconds); files it lacks are read (key
    columns only) and added, files gone are dropped. Tables of versioned entities (`latest_by`) are
    not cut."""
    columns = [k for k in spec.key if k != spec.partition_by]
    schema = _ranges_schema(spec, columns)
    wanted = {name: pc.min_max(_comparable(batch.column(name))).values() for name in columns if batch.column(name).null_count == 0}
    found: list[str] = []
    for folder in folders:
        listing = pa.array(sorted(n for n in os.listdir(folder) if n.endswith(".parquet") and not n.startswith(".")), pa.string())
        stored = _read_ranges(folder / KEY_RANGES, schema)
        index = stored.filter(pc.is_in(stored.column("name"), value_set=listing))
        unreadable, added = [], []
        for name in listing.filter(pc.invert(pc.is_in(listing, value_set=index.column("name")))).to_pylist():
            row = _file_ranges(folder / name, columns)
            if row is None:
                unreadable.append(name)  # always scanned, so that DuckDB says what is wrong with it
            else:
                added.append(row)
        if added:
            index = pa.concat_tables([index, pa.Table.from_pylist(added, schema=schema)])
        if added or index.num_rows != stored.num_rows:
            _write_ranges(folder / KEY_RANGES, index)
        keep = pa.array([True] * index.num_rows, pa.bool_())
        for name, (low, high) in () if spec.latest_by else wanted.items():
            inside = pc.and_kleene(pc.less_equal(index.column(f"{name}.min"), high), pc.greater_equal(index.column(f"{name}.max"), low))
            # a column the file lacks cannot rule it out; an all-null one (min null) does
            keep = pc.and_kleene(keep, pc.fill_null(pc.or_kleene(pc.invert(index.column(f"{name}.present")), inside), False))
        found += [str(folder / name) for name in index.filter(keep).column("name").to_pylist() + unreadable]
    return found


def _comparable_type(arrow_type: pa.DataType) -> pa.DataType:
    """Key ranges are kept as plain values: times as integers (their order is the same)."""
    if pa.types.is_temporal(arrow_type):
        return pa.int64() if arrow_type.bit_width == 64 else pa.int32()
    return arrow_type


def _comparable(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    return column.cast(_comparable_type(column.type))


def _ranges_schema(spec: TableSpec, columns: list[str]) -> pa.Schema:
    fields = [pa.field("name", pa.string())]
    for name in columns:
        kind = _comparable_type(spec.schema.field(name).type)
        fields += [pa.field(f"{name}.min", kind), pa.field(f"{name}.max", kind), pa.field(f"{name}.present", pa.bool_())]
    return pa.schema(fields)


def _file_ranges(path: Path, columns: list[str]) -> dict[str, Any] | None:
    """One index row: each key column's [min, max] in a stored file (None, None if all null;
    present False if the file lacks the column), or None if the file cannot be read here."""
    row: dict[str, Any] = {"name": path.name}
    try:
        present = [name for name in columns if name in pq.read_schema(path).names]
        rows = pq.read_table(path, columns=present)
        for name in columns:
            low, high = pc.min_max(_comparable(rows.column(name))).values() if name in present else (pa.scalar(None), pa.scalar(None))
            row |= {f"{name}.min": low.as_py(), f"{name}.max": high.as_py(), f"{name}.present": name in present}
    except (pa.ArrowException, OSError):  # unreadable, or a key column of another type
        return None
    return row


def _read_ranges(path: Path, schema: pa.Schema) -> pa.Table:
    """A folder's KEY_RANGES index; empty when missing, unreadable or of another schema (it is then
    rebuilt from the files)."""
    try:
        table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
        table.validate(full=True)  # offsets and lengths checked: a damaged file is rebuilt, never computed on
    except (pa.ArrowException, OSError):
        return schema.empty_table()
    return table if table.schema.equals(schema) else schema.empty_table()


def _write_ranges(path: Path, index: pa.Table) -> None:
    """Written atomically and fsynced like any file: an index whose rename survived a power cut
    but whose pages did not could still parse, with wrong ranges, and let a duplicate in."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, index.schema) as writer:
        # One record batch: an index grown by one row per append would otherwise be read back as
        # one chunk per file, and every compute over it pays per chunk (66 ms at 800 files).
        writer.write_table(index.combine_chunks())
    write_atomic(path, sink.getvalue().to_pybytes())


def compact(wh: Warehouse, spec: TableSpec, *, min_files: int = 2) -> tuple[int, int]:
    """Merge the small files of every partition of a table that holds at least `min_files` of them
    into files of about SMALL_FILE_BYTES (files already that large are left alone). Journaled like
    `replace`: a crash at any point leaves the old files or the new ones, never both or neither,
    once the next reader or writer recovers. It waits for running readers and holds new ones until
    it is done (`reading`). Returns (files before, files after)."""
    if min_files < 2:
        raise ValueError(f"min_files must be at least 2 (one file has nothing to merge with), got {min_files}")
    table_dir = wh.table_dir(spec)
    if not table_dir.exists():
        return 0, 0
    if not any(len(_small_files(folder)) >= min_files for folder in {path.parent for path in wh.part_files(spec)}):
        count = sum(1 for _ in wh.part_files(spec))  # nothing to merge: readers are not held up
        return count, count
    with _readers_lock(wh, exclusive=True), _table_lock(table_dir):
        state = files_state(wh, spec)
        folders = sorted({path.parent for path in wh.part_files(spec)})
        for folder in folders:
            if len(_small_files(folder)) >= min_files:
                _compact_folder(spec, table_dir, folder)
        _carry_built_from(wh, spec, state)
        return len(state), sum(1 for _ in wh.part_files(spec))


def _carry_built_from(wh: Warehouse, spec: TableSpec, was: list[list[Any]]) -> None:
    """Compaction changes a table's files, not its rows: a derived table built from exactly the files
    before it (samples from events) is recorded as built from the files after it, so the next command
    does not rebuild it for nothing (probe: every compaction made `samples` stale). The caller holds
    the readers' lock exclusively, so no build or overwrite runs meanwhile; a crash before this line
    leaves the old record, which only costs that rebuild."""
    now = files_state(wh, spec)
    for other in TABLES.values():
        record = built_from(wh, other)
        if record is not None and record.get(spec.name) == was:
            _write_json_atomic(wh.table_dir(other) / BUILT_FROM, {**record, spec.name: now})


def _small_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.glob("*.parquet") if path.stat().st_size < SMALL_FILE_BYTES)


def _compact_folder(spec: TableSpec, table_dir: Path, folder: Path) -> None:
    """Rewrite the small files of one partition folder as files of about SMALL_FILE_BYTES, one
    file schema each (embeddings of different widths stay apart), one journaled swap per merged
    file so memory holds one output at a time; the caller holds the table lock."""
    groups: dict[str, list[Path]] = {}
    for path in _small_files(folder):
        groups.setdefault(pq.read_schema(path).remove_metadata().to_string(), []).append(path)
    for files in groups.values():
        chunks: list[list[Path]] = [[]]
        size = 0
        for path in files:
            if chunks[-1] and size >= SMALL_FILE_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(path)
            size += path.stat().st_size
        for chunk in chunks:
            if len(chunk) > 1:
                rows = pa.concat_tables(pq.read_table(f).replace_schema_metadata(None) for f in chunk)
                _swap(table_dir, spec, [(folder, rows, _new_part_name())], chunk)


def overwrite(wh: Warehouse, spec: TableSpec, batch: pa.Table, *, built_from: dict[str, Any] | None = None) -> WriteResult:
    """Make `batch` the whole table (derived tables such as samples are rebuilt, not appended);
    journaled like `replace`, so readers see the old table or the new one, never a mix after recovery.
    `built_from` records what a derived table was made from (`built_from()` reads it back): the
    record is removed before the swap and written after it, so a crash in between leaves the table
    without a record, never with the record of other rows."""
    batch = conform(spec, batch)
    table_dir = wh.table_dir(spec)
    table_dir.mkdir(parents=True, exist_ok=True)
    record = table_dir / BUILT_FROM
    with _readers_lock(wh, exclusive=True), _table_lock(table_dir):
        record.unlink(missing_ok=True)
        old_files = sorted(wh.part_files(spec))
        removed = sum(pq.read_metadata(path).num_rows for path in old_files)
        writes = [(folder, part, _new_part_name()) for folder, part in _partitions(spec, table_dir, batch)] if batch.num_rows else []
        _swap(table_dir, spec, writes, old_files)
        if built_from is not None:
            _write_json_atomic(record, built_from)
    return WriteResult(written=batch.num_rows, duplicates=removed)


def partition_value_ok(value: object) -> bool:
    """Whether `value` can name a partition folder (`column=value/`): letters, digits, '_', '-' and
    '.', at most 200 characters, and not a name the store's own globs would take for a file."""
    text = str(value)
    return bool(_PARTITION_VALUE.fullmatch(text)) and len(text) <= 200 and not text.endswith((".parquet", ".tmp", ".json"))


def drop_partitions(wh: Warehouse, spec: TableSpec, values: set[str]) -> int:
    """Remove whole partitions of a partitioned table (e.g. score runs), journaled like `replace`;
    returns the rows removed. Costs the removed partitions, not the table."""
    table_dir = wh.table_dir(spec)
    with _readers_lock(wh, exclusive=True), _table_lock(table_dir):
        folders = [table_dir / f"{spec.partition_by}={value}" for value in sorted(values) if partition_value_ok(value)]
        doomed = [f for folder in folders if folder.is_dir() for f in sorted(folder.glob("*.parquet"))]
        removed = sum(pq.read_metadata(path).num_rows for path in doomed)
        if doomed:
            _swap(table_dir, spec, [], doomed)
        for folder in folders:
            (folder / KEY_RANGES).unlink(missing_ok=True)
            (folder / MADE_FROM).unlink(missing_ok=True)
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    return removed


def record_partition(wh: Warehouse, spec: TableSpec, value: str, record: dict[str, Any]) -> None:
    """Keep `record`, what the rows of one partition (`column=value/`) are made from, beside its
    files: written whole (`write_atomic`), replacing an earlier one, and removed with the partition
    (`drop_partitions`). A score run's: the digest of the data it ranked from (flows/score.py).
    Per partition, not per row: no column to add to files written before."""
    folder = _partition_folder(wh.table_dir(spec), spec, value)
    folder.mkdir(parents=True, exist_ok=True)
    with _table_lock(wh.table_dir(spec)):  # a writer's recovery removes hidden .tmp files: not this one mid-write (review)
        write_atomic(folder / MADE_FROM, json.dumps(record))


def partition_record(wh: Warehouse, spec: TableSpec, value: str) -> dict[str, Any] | None:
    """The record `record_partition` kept for one partition, or None where it kept none; a record
    that cannot be read is an error (review: read as none, it turned the check it serves off)."""
    path = _partition_folder(wh.table_dir(spec), spec, value) / MADE_FROM
    what = f"it records what the rows of {spec.name} {spec.partition_by}={value} were made from"
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"{path} cannot be read ({exc}); {what}") from exc
    if not isinstance(record, dict):
        raise SchemaError(f"{path} cannot be read (it holds {type(record).__name__}, not a record); {what}")
    return record


def empty_partitions(wh: Warehouse, spec: TableSpec) -> list[str]:
    """The partition values whose folder holds no rows (a record or an index left by a run that wrote
    none, or by a removal cut short): `prune` removes them."""
    root = wh.table_dir(spec)
    if spec.partition_by is None or not root.is_dir():
        return []
    folders = [f for f in root.glob(f"{spec.partition_by}=*") if f.is_dir()]
    return sorted(f.name.split("=", 1)[1] for f in folders if not any(f.glob("*.parquet")))


def built_from(wh: Warehouse, spec: TableSpec) -> dict[str, Any] | None:
    """What the derived table `spec` was last built from (`overwrite(..., built_from=)`), or None."""
    path = wh.table_dir(spec) / BUILT_FROM
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def files_state(wh: Warehouse, spec: TableSpec) -> list[list[Any]]:
    """The files of a table by name and size, sorted: it changes with every append, compaction or
    replace (part names are never reused), and survives copying the home (mtimes do not)."""
    root = wh.table_dir(spec)
    try:
        return sorted([str(f.relative_to(root)), f.stat().st_size] for f in wh.part_files(spec))
    except FileNotFoundError:  # a file compacted away between listing and stat: a changing table
        return [["<changing>", -1]]


def _swap(table_dir: Path, spec: TableSpec, writes: list[tuple[Path, pa.Table, str]], old_files: list[Path]) -> None:
    """Write the new files and remove the old ones under a journal (see `_recover`)."""
    journal = table_dir / ".journal.json"
    _write_json_atomic(
        journal,
        {
            "add": [str((folder / name).relative_to(table_dir)) for folder, _, name in writes],
            "remove": [str(path.relative_to(table_dir)) for path in old_files],
        },
    )
    for folder, part, name in writes:
        _write_atomic(folder, part, spec, name)
    crash_point("swap:after-add")
    for path in old_files:
        path.unlink()
    journal.unlink()


def _new_rows(spec: TableSpec, batch: pa.Table, stored_glob: str | list[str] | None) -> pa.Table:
    """Rows of `batch` that are first in the batch for their key and whose key is not in the
    files matching `stored_glob` (a glob or a list of globs; None: nothing stored)."""
    if batch.num_rows == 0:
        return batch
    keys = batch.select(list(spec.key)).append_column("_row", pa.array(range(batch.num_rows), pa.int64()))
    if stored_glob is None:  # only the batch's own repeats: Arrow groups them (nulls as one value, as DuckDB's PARTITION BY)
        first = keys.group_by(list(spec.key), use_threads=False).aggregate([("_row", "min")]).column("_row_min")
        return batch.take(pa.array(np.sort(first.to_numpy()), pa.int64()))
    con = duckdb.connect()
    con.register("batch_keys", keys)
    key_cols = ", ".join(_quote(k) for k in spec.key)
    sql = f"SELECT _row FROM batch_keys QUALIFY row_number() OVER (PARTITION BY {key_cols} ORDER BY _row) = 1"
    match = " AND ".join(f"s.{_quote(k)} IS NOT DISTINCT FROM b.{_quote(k)}" for k in spec.key)
    stored, params = _stored_relation(spec, batch, stored_glob)
    sql = f"SELECT b._row FROM ({sql}) f JOIN batch_keys b USING (_row) WHERE NOT EXISTS (SELECT 1 FROM {stored} s WHERE {match})"
    rows = con.execute(sql + " ORDER BY b._row", params).fetchnumpy()["_row"]
    con.close()
    return batch.take(pa.array(rows, pa.int64()))


def _write_partitions(spec: TableSpec, table_dir: Path, rows: pa.Table) -> list[Path]:
    """Write `rows` as one new file per partition value; return the files."""
    return [_write_atomic(folder, part, spec) for folder, part in _partitions(spec, table_dir, rows)]


def _partitions(spec: TableSpec, table_dir: Path, rows: pa.Table) -> list[tuple[Path, pa.Table]]:
    if spec.partition_by is None:
        return [(table_dir, rows)]
    column = rows.column(spec.partition_by)
    parts = []
    for value in pc.unique(column).to_pylist():
        folder = _partition_folder(table_dir, spec, value)
        folder.mkdir(exist_ok=True)
        parts.append((folder, rows.filter(pc.equal(column, value)).drop_columns([spec.partition_by])))
    return parts


def _partition_folder(table_dir: Path, spec: TableSpec, value: object) -> Path:
    """The folder of one partition (`column=value/`); SchemaError where `value` cannot name one."""
    if not partition_value_ok(value):
        raise SchemaError(f"{spec.name}.{spec.partition_by} value {value!r} cannot name a partition folder; use letters, digits, '_', '-' or '.'")
    return table_dir / f"{spec.partition_by}={value}"


def _new_part_name() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"


def _write_atomic(folder: Path, rows: pa.Table, spec: TableSpec, name: str | None = None) -> Path:
    name = name or _new_part_name()
    tmp = folder / f".{name}.tmp"
    metadata = {b"reelsense.table": spec.name.encode(), b"reelsense.schema_version": str(SCHEMA_VERSION).encode()}
    pq.write_table(rows.replace_schema_metadata(metadata), tmp, compression="zstd")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    final = folder / name
    crash_point("write:before-rename")
    os.replace(tmp, final)
    _fsync_dir(folder)
    return final


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace(wh: Warehouse, spec: TableSpec, batch: pa.Table) -> WriteResult:
    """Store `batch`, replacing any stored rows with the same key (returned as `duplicates`)."""
    batch = _new_rows(spec, conform(spec, batch), stored_glob=None)  # first row per key
    table_dir = wh.table_dir(spec)
    table_dir.mkdir(parents=True, exist_ok=True)
    with _readers_lock(wh, exclusive=True), _table_lock(table_dir):
        old_files = _files_with_keys(wh, spec, batch)
        kept = [_rows_without_keys(spec, path, batch) for path in old_files]
        removed = sum(pq.read_metadata(path).num_rows for path in old_files) - sum(t.num_rows for t in kept)
        writes = [(folder, part, _new_part_name()) for rows in [batch, *kept] if rows.num_rows for folder, part in _partitions(spec, table_dir, rows)]
        _swap(table_dir, spec, writes, old_files)
    return WriteResult(written=batch.num_rows, duplicates=removed)


def _files_with_keys(wh: Warehouse, spec: TableSpec, batch: pa.Table) -> list[Path]:
    """The stored files that hold a key of `batch`: read among the files it could collide with only
    (`_colliding_files`: a run's explanations replaced without reading any other run's)."""
    stored = _colliding_files(wh, spec, batch) if batch.num_rows else None
    if stored is None:
        return []
    con = duckdb.connect()
    con.register("batch_keys", batch.select(list(spec.key)))
    hive = _hive_option(spec)
    match = " AND ".join(f"s.{_quote(k)} IS NOT DISTINCT FROM b.{_quote(k)}" for k in spec.key)
    files = con.execute(
        f"SELECT DISTINCT s.filename FROM read_parquet(?, hive_partitioning = {hive}, filename = true) s JOIN batch_keys b ON {match}", [stored]
    ).fetchall()
    con.close()
    return sorted(Path(f) for (f,) in files)


def _rows_without_keys(spec: TableSpec, path: Path, batch: pa.Table) -> pa.Table:
    """The rows of one stored file whose key is not in `batch`, with its partition column restored."""
    rows = pq.read_table(path)
    if spec.partition_by:
        value = path.parent.name.split("=", 1)[1]
        field = spec.schema.field(spec.partition_by)
        rows = rows.append_column(spec.partition_by, pa.array([value] * rows.num_rows).cast(field.type))
    rows = conform(spec, rows)
    con = duckdb.connect()
    con.register("stored", rows.select(list(spec.key)).append_column("_row", pa.array(range(rows.num_rows), pa.int64())))
    con.register("batch_keys", batch.select(list(spec.key)))
    match = " AND ".join(f"s.{_quote(k)} IS NOT DISTINCT FROM b.{_quote(k)}" for k in spec.key)
    keep = con.execute(f"SELECT _row FROM stored s WHERE NOT EXISTS (SELECT 1 FROM batch_keys b WHERE {match}) ORDER BY _row").fetchnumpy()["_row"]
    con.close()
    return rows.take(pa.array(keep, pa.int64()))


def _write_json_atomic(path: Path, value: object) -> None:
    write_atomic(path, json.dumps(value))


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a whole file so that a reader (or a crash) sees the old file or the new one, never half
    of one: a hidden temporary file, fsync, rename, fsync of the folder. Used for the registry's
    metadata and LATEST pointers, the align model, results.json/.md and the reports' index files
    (a report's own folder is written aside and swapped in whole, flows/report.py)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _temp_files(folder: Path) -> Iterator[Path]:
    """Hidden `.*.tmp` files under `folder` (a crashed writer's), found with os.scandir: every
    write passes here, and a partition may hold thousands of files (a Path.rglob costs ~3 us each)."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                yield Path(entry.path)
            elif entry.is_dir(follow_symlinks=False):
                yield from _temp_files(Path(entry.path))


def _recover(table_dir: Path) -> None:
    """Finish or undo what a crashed writer left; runs under the table lock, before any write."""
    for tmp in _temp_files(table_dir):
        tmp.unlink(missing_ok=True)
    journal = table_dir / ".journal.json"
    if not journal.exists():
        return
    plan = json.loads(journal.read_text())
    if all((table_dir / name).exists() for name in plan["add"]):
        doomed = plan["remove"]  # every new file landed: roll forward
    else:
        doomed = plan["add"]  # some new file is missing: roll back, the old files are intact
    for name in doomed:
        (table_dir / name).unlink(missing_ok=True)
    journal.unlink()


# Tables that were flat and became partitioned by run_id: `scores` (schema version 4) and
# `explanations` (5).
PARTITIONED_LATER = ("scores", "explanations")


def _flat_files(table_dir: Path) -> list[Path]:
    """Files directly in a table folder of PARTITIONED_LATER (written before it was partitioned)."""
    if table_dir.name not in PARTITIONED_LATER or not table_dir.exists():
        return []
    return sorted(f for f in table_dir.glob("*.parquet") if f.is_file())


def _partition_flat_files(table_dir: Path) -> None:
    """Move the files a table held before it was partitioned into its partition folders, one file
    at a time (memory stays with the file), each journaled like `replace` so that a crash is
    finished by the next lock holder; rows already in their partition are not written twice. Rows
    whose partition value cannot name a folder (a free-form run id of an older home) go to
    `failures` with the row as JSON, so that the rest of the home works and nothing is lost."""
    spec = TABLES.get(table_dir.name)
    if spec is None or spec.partition_by is None:
        return
    for path in _flat_files(table_dir):
        rows = conform(spec, pq.read_table(path).replace_schema_metadata(None))
        values = rows.column(spec.partition_by)
        ok = pa.array([partition_value_ok(v) for v in values.to_pylist()], pa.bool_())
        _quarantine_rows(table_dir, spec, rows.filter(pc.invert(ok)), path)
        movable = rows.filter(ok)
        fresh = _new_rows(spec, movable, _partition_globs(table_dir, spec, movable))
        _swap(table_dir, spec, [(folder, part, _new_part_name()) for folder, part in _partitions(spec, table_dir, fresh)], [path])


def _quarantine_rows(table_dir: Path, spec: TableSpec, rows: pa.Table, path: Path) -> None:
    if not rows.num_rows:
        return
    error = f"{spec.name}.{spec.partition_by} cannot name a partition folder (letters, digits, '_', '-', '.'); the row is kept here"
    now = datetime.now(timezone.utc)
    record = [json.dumps(r, default=str) for r in rows.to_pylist()]
    batch = pa.table(
        {
            "stage": [f"migrate-{spec.name}"] * rows.num_rows,
            "source": [path.name] * rows.num_rows,
            "item_id": rows.column("item_id") if "item_id" in rows.column_names else pa.nulls(rows.num_rows, pa.string()),
            "user_id": rows.column("user_id") if "user_id" in rows.column_names else pa.nulls(rows.num_rows, pa.string()),
            "error": [error] * rows.num_rows,
            "record": record,
            "failed_at": pa.array([now] * rows.num_rows, pa.timestamp("us", tz="UTC")),
        }
    )
    append(Warehouse(table_dir.parent.parent), TABLES["failures"], batch)  # <home>/tables/<table>


def recover(wh: Warehouse) -> list[str]:
    """Finish or undo the journaled writes a crashed writer left, in every table (readers call this
    before they read, so they never see a replace half done); returns the tables recovered."""
    done = []
    for spec_dir in sorted(wh.tables_dir.glob("*/")) if wh.tables_dir.exists() else []:
        if (spec_dir / ".journal.json").exists() or _flat_files(spec_dir):
            with _table_lock(spec_dir):  # recovery runs under the lock, before the block
                done.append(spec_dir.name)
    return done


@contextmanager
def _table_lock(table_dir: Path) -> Iterator[None]:
    with open(table_dir / ".lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            _recover(table_dir)
            _partition_flat_files(table_dir)
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextmanager
def reading(wh: Warehouse) -> Iterator[None]:
    """Held (shared) while DuckDB reads a home's Parquet files through globs (`db.connect`,
    `db.analysis`, `db.fetch`, `refresh_views`, `read`, the feature SQL): whatever removes files
    (`compact`, `replace`, `overwrite`, `drop_partitions`) takes it exclusively, so it never removes a file that
    a running query globbed, and a query never sees a merged file beside the small ones it replaces.
    Readers never wait for each other. Taken before any table lock, and never held while writing:
    the removers take it before their table lock, so this order is what keeps a reader and a
    remover from waiting on each other. A crashed remover's journal (or an older home's flat files)
    is dealt with first, under the exclusive lock, so no reader's own recovery removes files under
    another's query. A remover called while this thread reads is an error, not a silent hang (flock
    locks belong to the open file, so the thread would wait for itself)."""
    while True:
        with _readers_lock(wh, exclusive=False):
            if not _needs_recovery(wh):
                _READING.depth = getattr(_READING, "depth", 0) + 1
                try:
                    yield
                finally:
                    _READING.depth -= 1
                return
        with _readers_lock(wh, exclusive=True):
            recover(wh)


_READING = threading.local()  # how many `reading` scopes this thread is inside


def _needs_recovery(wh: Warehouse) -> bool:
    if not wh.tables_dir.exists():
        return False
    return any((d / ".journal.json").exists() or _flat_files(d) for d in wh.tables_dir.iterdir() if d.is_dir())


@contextmanager
def runs_lock(wh: Warehouse, *, exclusive: bool, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Score runs as a whole: a report (analyze) holds it shared while it writes a run's
    explanations and report; what deletes runs (`prune`, `score --replace`) holds it exclusively,
    so it waits for running reports instead of deleting a run under them. Taken before any other
    lock. `on_wait` is called once if the lock is not free at once (to say why nothing happens)."""
    wh.home.mkdir(parents=True, exist_ok=True)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    with open(wh.home / ".runs.lock", "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle.fileno(), mode)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextmanager
def _readers_lock(wh: Warehouse, *, exclusive: bool) -> Iterator[None]:
    if exclusive and getattr(_READING, "depth", 0) > 0:
        raise RuntimeError(
            "a compaction, replace or removal was called inside `store.reading` of the same thread: it would wait for itself; leave the reading scope first"
        )
    wh.tables_dir.mkdir(parents=True, exist_ok=True)
    with open(wh.tables_dir / READERS_LOCK, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextmanager
def shared_lock(wh: Warehouse, spec: TableSpec) -> Iterator[None]:
    """Hold a table steady while reading it: writers (`_table_lock`, exclusive) wait until the
    read ends. A replace a crashed writer left half done is finished first."""
    table_dir = wh.table_dir(spec)
    table_dir.mkdir(parents=True, exist_ok=True)
    with open(table_dir / ".lock", "a+") as handle:
        while True:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
            if not (table_dir / ".journal.json").exists():
                break
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)  # a crashed writer's journal: recover, then retry
            with _table_lock(table_dir):
                pass
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _hive_option(spec: TableSpec) -> str:
    """read_parquet's hive_partitioning value: the partition column typed as the schema says (a run
    id "7" stays a string, a day stays text)."""
    if spec.partition_by is None:
        return "false"
    return f"true, hive_types = {{'{spec.partition_by}': {_HIVE_TYPES[spec.schema.field(spec.partition_by).type]}}}"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def read(wh: Warehouse, spec: TableSpec) -> pa.Table:
    """All stored rows of a table (every version, for tables with `latest_by`)."""
    recover(wh)  # a replace half done, or an older home's files to partition
    if not wh.has_rows_on_disk(spec):
        return spec.schema.empty_table()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    hive = _hive_option(spec)
    with reading(wh):
        table = con.sql(
            f"SELECT * FROM read_parquet($glob, hive_partitioning = {hive}, union_by_name = true)",
            params={"glob": wh.parquet_glob(spec)},
        ).to_arrow_table()
    con.close()
    return conform(spec, table)
