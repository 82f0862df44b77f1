"""Parquet storage of the warehouse tables: atomic, idempotent, partitioned appends.

Layout under `<home>/tables/<table>/`: immutable `part-*.parquet` files (inside `column=value/`
folders for partitioned tables). A write
1. conforms the batch to the table's Arrow schema (`SchemaError` when a column is missing),
2. drops rows whose key is already stored, or repeated within the batch (idempotency),
3. writes each partition to a hidden temp file, fsyncs it and renames it into place.
Readers glob `*.parquet`, so they never see a half-written file, and a crash mid-write leaves at
most a `.tmp` file that the next writer removes. An exclusive `flock` per table serialises the
dedupe-then-write step, so concurrent writers of overlapping rows store each row exactly once.
"""

from __future__ import annotations

import fcntl
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from warehouse.errors import SchemaError
from warehouse.schemas import SCHEMA_VERSION, TableSpec

_PARTITION_VALUE = re.compile(r"^[A-Za-z0-9_.-]+$")


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
        return next(self.part_files(spec), None) is not None

    def part_files(self, spec: TableSpec) -> Iterator[Path]:
        root = self.table_dir(spec)
        if not root.exists():
            return iter(())
        return root.glob("*/*.parquet" if spec.partition_by else "*.parquet")


@dataclass(frozen=True)
class WriteResult:
    written: int
    duplicates: int


def conform(spec: TableSpec, batch: pa.Table) -> pa.Table:
    """Select and cast `batch` to the table's schema, in schema order."""
    missing = [name for name in spec.schema.names if name not in batch.column_names]
    if missing:
        raise SchemaError(
            f"{spec.name}: batch lacks columns {missing}; found {batch.column_names}, "
            f"expected {spec.schema.names}"
        )
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
            raise SchemaError(
                f"{spec.name}.{field.name} has type {column.type}, expected {field.type}: {exc}"
            ) from exc
        if not field.nullable and column.null_count:
            raise SchemaError(f"{spec.name}.{field.name} has {column.null_count} nulls; it is required")
    fields = [
        pa.field(f.name, col.type, nullable=f.nullable) for f, col in zip(spec.schema, columns)
    ]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def append(wh: Warehouse, spec: TableSpec, batch: pa.Table) -> WriteResult:
    """Store the rows of `batch` whose key is not stored yet; return what was written and skipped."""
    batch = conform(spec, batch)
    table_dir = wh.table_dir(spec)
    table_dir.mkdir(parents=True, exist_ok=True)
    with _table_lock(table_dir):
        _remove_stale_temp_files(table_dir)
        fresh = _new_rows(wh, spec, batch)
        if fresh.num_rows:
            _write_partitions(spec, table_dir, fresh)
    return WriteResult(written=fresh.num_rows, duplicates=batch.num_rows - fresh.num_rows)


def _new_rows(wh: Warehouse, spec: TableSpec, batch: pa.Table) -> pa.Table:
    """Rows of `batch` that are first in the batch for their key and whose key is not stored."""
    if batch.num_rows == 0:
        return batch
    con = duckdb.connect()
    keys = batch.select(list(spec.key)).append_column("_row", pa.array(range(batch.num_rows), pa.int64()))
    con.register("batch_keys", keys)
    key_cols = ", ".join(_quote(k) for k in spec.key)
    sql = f"SELECT _row FROM batch_keys QUALIFY row_number() OVER (PARTITION BY {key_cols} ORDER BY _row) = 1"
    if wh.has_rows_on_disk(spec):
        match = " AND ".join(f"s.{_quote(k)} IS NOT DISTINCT FROM b.{_quote(k)}" for k in spec.key)
        stored = f"read_parquet(?, hive_partitioning = {str(spec.partition_by is not None).lower()})"
        sql = (
            f"SELECT b._row FROM ({sql}) f JOIN batch_keys b USING (_row) "
            f"WHERE NOT EXISTS (SELECT 1 FROM {stored} s WHERE {match})"
        )
        rows = con.execute(sql + " ORDER BY b._row", [wh.parquet_glob(spec)]).fetchnumpy()["_row"]
    else:
        rows = con.execute(sql + " ORDER BY _row").fetchnumpy()["_row"]
    con.close()
    return batch.take(pa.array(rows, pa.int64()))


def _write_partitions(spec: TableSpec, table_dir: Path, rows: pa.Table) -> None:
    if spec.partition_by is None:
        _write_atomic(table_dir, rows, spec)
        return
    column = rows.column(spec.partition_by)
    for value in pc.unique(column).to_pylist():
        if not _PARTITION_VALUE.match(str(value)):
            raise SchemaError(
                f"{spec.name}.{spec.partition_by} value {value!r} cannot name a partition folder; "
                "use letters, digits, '_', '-' or '.'"
            )
        part = rows.filter(pc.equal(column, value)).drop_columns([spec.partition_by])
        folder = table_dir / f"{spec.partition_by}={value}"
        folder.mkdir(exist_ok=True)
        _write_atomic(folder, part, spec)


def _write_atomic(folder: Path, rows: pa.Table, spec: TableSpec) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    name = f"part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
    tmp = folder / f".{name}.tmp"
    metadata = {b"reelsense.table": spec.name.encode(), b"reelsense.schema_version": str(SCHEMA_VERSION).encode()}
    pq.write_table(rows.replace_schema_metadata(metadata), tmp, compression="zstd")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    final = folder / name
    os.replace(tmp, final)
    _fsync_dir(folder)
    return final


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_temp_files(table_dir: Path) -> None:
    # Only called under the table lock, so no other writer owns these files.
    for tmp in table_dir.rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)


@contextmanager
def _table_lock(table_dir: Path) -> Iterator[None]:
    with open(table_dir / ".lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def read(wh: Warehouse, spec: TableSpec) -> pa.Table:
    """All stored rows of a table (every version, for tables with `latest_by`)."""
    if not wh.has_rows_on_disk(spec):
        return spec.schema.empty_table()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    hive = str(spec.partition_by is not None).lower()
    table = con.sql(
        f"SELECT * FROM read_parquet($glob, hive_partitioning = {hive}, union_by_name = true)",
        params={"glob": wh.parquet_glob(spec)},
    ).to_arrow_table()
    con.close()
    return conform(spec, table)
