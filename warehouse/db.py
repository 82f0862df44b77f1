"""The DuckDB database of a warehouse: every table as a view over its Parquet files.

`<home>/reelsense.duckdb` is a real DuckDB file. Each view's SQL lives in `warehouse/sql/views/`;
a table with no files yet gets an empty view of the right types, so every query binds from the
first run. Analysts can open the file with any DuckDB client; reelsense opens it read-only for
queries and read-write only to (re)create views. Queries that take user values are parameterised.

Guarantees:
- Read-only. Every connection that reads the warehouse (`connect`, `scratch`) may read files only
  under `<home>/tables/`, loads no extension, reaches no network, and has its settings locked;
  `query` (what `reelsense sql` runs) also refuses any statement but one SELECT, so COPY, EXPORT,
  SET, CREATE, ATTACH or PRAGMA never run.
- Relocatable. The views hold absolute paths (so any DuckDB client can read them); `connect`
  checks that they point into this home and rebuilds them when the home was copied or moved.
"""

from __future__ import annotations

import fcntl
import re
import shlex
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib import resources
from string import Template
from typing import Any

import duckdb
import pyarrow as pa

from warehouse import store
from warehouse.errors import QueryError, WarehouseNotFound
from warehouse.schemas import EMBEDDINGS, TABLES, TableSpec
from warehouse.store import Warehouse


@contextmanager
def _database_lock(wh: Warehouse, *, exclusive: bool) -> Iterator[None]:
    """DuckDB lets one process open the file read-write, or any number read-only, never both:
    writers of views take this lock exclusively, readers shared, so concurrent runs wait their
    turn instead of failing with "Could not set lock on file"."""
    with open(wh.home / ".reelsense.duckdb.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def refresh_views(wh: Warehouse) -> None:
    """Create or replace the view of every table; call after a write that may add a table's first file."""
    wh.home.mkdir(parents=True, exist_ok=True)
    store.recover(wh)
    with store.reading(wh), _database_lock(wh, exclusive=True):  # binding a view globs its files
        con = duckdb.connect(str(wh.db_path))
        try:
            for spec in TABLES.values():
                con.execute(view_sql(wh, spec))
            for sql in derived_view_sqls() + vector_view_sqls(con):
                con.execute(sql)
        finally:
            con.close()


DERIVED_VIEWS = ("current_embeddings", "item_tags", "engagements", "quarantined_items")  # views over the table views (warehouse/sql/views/<name>.sql), in order


def derived_view_sqls() -> list[str]:
    files = resources.files("warehouse")
    return [f"CREATE OR REPLACE VIEW {name} AS " + files.joinpath(f"sql/views/{name}.sql").read_text() for name in DERIVED_VIEWS]


def sql_command(query: str) -> str:
    """`reelsense sql QUERY --format csv` with QUERY one shell word: in double quotes where the shell
    would take nothing in it for its own, else single-quoted (a suggested command runs as printed)."""
    word = f'"{query}"' if not re.search(r'["$`\\!]', query) else shlex.quote(query)
    return f"reelsense sql {word} --format csv"


def run_users_command(run_id: str) -> str:
    """The `reelsense sql` that lists a score run's users (for advice that cannot name them all)."""
    return sql_command(f"SELECT DISTINCT user_id FROM scores WHERE run_id = '{run_id.replace(chr(39), chr(39) * 2)}' ORDER BY user_id")


# The items extract quarantined, with why: undecodable media (every rerun skips them) and an encoder
# that refused their input (tried again on each run); a bare "no audio" is recorded, not quarantined.
# The view leaves out what an item got past since (probe: a query of `failures` listed items embedded since).
QUARANTINED_ITEMS = sql_command("SELECT item_id, stage, error FROM quarantined_items ORDER BY item_id, stage")


def analysis(wh: Warehouse, name: str, params: dict[str, Any] | None = None) -> pa.Table:
    """Run warehouse/sql/analysis/<name>.sql over the tables (through `scratch`)."""
    sql = resources.files("warehouse").joinpath(f"sql/analysis/{name}.sql").read_text()
    with store.reading(wh):
        con = scratch(wh)
        try:
            return con.sql(sql, params=params).to_arrow_table()
        finally:
            con.close()


def view_sql(wh: Warehouse, spec: TableSpec) -> str:
    if not wh.has_rows_on_disk(spec):
        return f"CREATE OR REPLACE VIEW {spec.name} AS {_empty_select(spec.schema)}"
    template = resources.files("warehouse").joinpath(f"sql/views/{spec.name}.sql").read_text()
    return Template(template).substitute(files=_sql_string(wh.parquet_glob(spec)))


# (embeddings glob, its files' names, sizes and mtimes) -> the (modality, model, dim) rows the
# vector views are made from: the GROUP BY over every vector runs once per change of the table,
# not on every `scratch` of a process (load_dataset alone opens four).
_VECTOR_MODELS: dict[tuple, list[tuple]] = {}


def vector_view_sqls(con: duckdb.DuckDBPyConnection, wh: Warehouse | None = None) -> list[str]:
    """One view per (modality, model) exposing `vector` as FLOAT[dim] for the items' current
    content. The newest version of a model is `vectors_<modality>_<model name>` (e.g.
    vectors_fused_aligned, vectors_frames_efficientnet_lite0_keyframes256 for keyframe-sampled
    frames); older versions keep the version in the name. With `wh`, the models
    are remembered until a file of `embeddings` changes."""
    key = _embeddings_fingerprint(wh) if wh is not None else None
    rows = _VECTOR_MODELS.get(key) if key is not None else None
    if rows is None:
        rows = con.execute(
            "SELECT modality, model, any_value(dim), max(created_at) AS newest FROM embeddings GROUP BY modality, model ORDER BY modality, newest DESC, model"
        ).fetchall()
        if key is not None:
            _VECTOR_MODELS.clear()  # one warehouse's state is worth keeping, not every past one
            _VECTOR_MODELS[key] = rows
    template = resources.files("warehouse").joinpath("sql/vector_view.sql").read_text()
    sqls, taken = [], set()
    for modality, model, dim, _ in rows:
        name = f"vectors_{modality}_{_slug(view_stem(model))}"
        if name in taken:
            name = f"vectors_{modality}_{_slug(model)}"
        taken.add(name)
        sqls.append(Template(template).substitute(name=name, modality=_sql_string(modality), model=_sql_string(model), dim=int(dim)))
    return sqls


def _embeddings_fingerprint(wh: Warehouse) -> tuple | None:
    """What identifies the current files of `embeddings`; None while a writer is changing them."""
    try:
        files = sorted((str(f), stat.st_size, stat.st_mtime_ns) for f in wh.part_files(EMBEDDINGS) for stat in [f.stat()])
    except FileNotFoundError:  # a file compacted or replaced away between listing and stat
        return None
    return tuple(files)


def view_stem(model: str) -> str:
    """The part of a model id a vector view is named by: its name, and how its inputs were
    sampled when that is part of its version ('efficientnet_lite0@imagenet-57934424+keyframes256'
    -> 'efficientnet_lite0_keyframes256'), so the exact and keyframe vectors of one network keep
    views of their own instead of the newest taking the name."""
    name, _, version = model.partition("@")
    _, plus, sampling = version.partition("+")
    return f"{name}_{sampling}" if plus else name


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


@contextmanager
def connect(wh: Warehouse) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the warehouse database, with UTC timestamps and file access only
    under `<home>/tables/` (a context manager: it holds the shared database lock while open)."""
    if not wh.db_path.exists():
        raise WarehouseNotFound(f"no warehouse at {wh.home} (no {wh.db_path.name}); run `reelsense ingest ...` or `reelsense demo` first, or pass --home")
    store.recover(wh)  # a replace a crashed writer left half done is finished before anyone reads
    stale = _views_elsewhere(wh)
    if stale:
        _rebuild_moved_views(wh, stale)
    with store.reading(wh), _database_lock(wh, exclusive=False):
        con = duckdb.connect(str(wh.db_path), read_only=True)
        try:
            _lock_down(wh, con)
            yield con
        finally:
            con.close()


def _lock_down(wh: Warehouse, con: duckdb.DuckDBPyConnection) -> None:
    """The settings of every reading connection: files only under <home>/tables/ (the views' Parquet;
    the trailing slash keeps a sibling such as tables_old/ out), no extensions or network, and then
    no more SET, so a query cannot undo any of it."""
    con.execute("SET GLOBAL TimeZone = 'UTC'")  # GLOBAL: a cursor (query()'s) is a connection of its own (review)
    con.execute(f"SET allowed_directories = [{_sql_string(str(wh.tables_dir) + '/')}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _views_elsewhere(wh: Warehouse) -> list[str]:
    """Tables that have files in this home but whose view reads another path (the home was copied
    or moved since the views were made: they hold absolute paths), tables without files whose view
    still reads files, and derived views this version defines that the database lacks (a home made
    by an earlier version)."""
    with _database_lock(wh, exclusive=False):
        con = duckdb.connect(str(wh.db_path), read_only=True)
        try:
            stored = stored_views(con)
        finally:
            con.close()
    moved = [spec.name for spec in TABLES.values() if wh.has_rows_on_disk(spec) and _sql_string(wh.parquet_glob(spec)) not in (stored.get(spec.name) or "")]
    # A table emptied (its last run pruned) by a process that died before refreshing the views: its
    # view still globs files, and a glob of none fails every query.
    emptied = [spec.name for spec in TABLES.values() if not wh.has_rows_on_disk(spec) and "read_parquet" in (stored.get(spec.name) or "")]
    return moved + emptied + [name for name in DERIVED_VIEWS if name not in stored]


def duckdb_reason(exc: Exception) -> str:
    """DuckDB's error on one line: its first line, and its hint lines ("Did you mean "length"?",
    "Candidate bindings: ..."), which the first line alone dropped (probe); not the query echo."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    hints = [line for line in lines[1:] if line.startswith(("Did you mean", "Candidate bindings"))]
    if "Candidate functions:" in lines:  # a wrong signature: the signatures it has, the first three
        at = lines.index("Candidate functions:")
        shown = lines[at + 1 : at + 4]
        hints.append(f"Candidate functions: {'; '.join(shown)}{'; ...' if len(lines) > at + 4 else ''}")
    return " ".join([lines[0], *hints])


def stored_views(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The database's own views (every table is one), by name, with their SQL."""
    return dict(con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall())


def _rebuild_moved_views(wh: Warehouse, stale: list[str]) -> None:
    try:
        refresh_views(wh)
    except (duckdb.Error, OSError) as exc:
        raise QueryError(
            f"the views of {', '.join(stale)} in {wh.db_path} are missing or read files outside {wh.tables_dir} (the home "
            f"was made by an earlier version, copied or moved), and rebuilding them failed: {str(exc).splitlines()[0]}; make {wh.home} writable and rerun"
        ) from exc


def query(wh: Warehouse, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pa.Table:
    """Run one read-only SELECT (what `reelsense sql` runs); user values go in `params` ($1 or $name
    placeholders), never in `sql`. Any other statement, or more than one, is refused before it runs."""
    with connect(wh) as con:
        _require_one_select(con, sql)
        try:
            with con.cursor() as cursor:  # DuckDB interrupts a cursor from another thread, not a busy connection
                return _interruptible(cursor, lambda: cursor.sql(sql, params=params).to_arrow_table())
        except duckdb.PermissionException as exc:
            raise QueryError(f"query refused: {duckdb_reason(exc)}; queries read files only under {wh.tables_dir} (through the views)") from exc
        except duckdb.CatalogException as exc:
            if "Table with name" not in str(exc):  # a function or type, not a table
                raise QueryError(f"query failed: {duckdb_reason(exc)}") from exc
            # probe: a misspelt table was DuckDB's line alone
            views = ", ".join(sorted(stored_views(con))) or "none yet"
            raise QueryError(f"query failed: {duckdb_reason(exc)}; the warehouse's tables and views: {views}") from exc
        except duckdb.Error as exc:
            raise QueryError(f"query failed: {duckdb_reason(exc)}") from exc


def _interruptible(cursor: duckdb.DuckDBPyConnection, run: Any) -> pa.Table:
    """`run()` (a query on `cursor`) on a worker thread, so that Ctrl-C stops it at once: probe,
    DuckDB noticed a Ctrl-C only when the query ended (minutes later), then raised
    RuntimeError("Query interrupted"). Here the main thread waits; on Ctrl-C (or any exception) it
    interrupts the cursor until the worker ends (DuckDB drops an interrupt that comes before the
    query starts executing: review) and raises what it got."""
    done: dict[str, Any] = {}
    finished = threading.Event()  # not Thread.join: a join cut short by Ctrl-C can report a live thread as ended

    def work() -> None:
        try:
            done["table"] = run()
        except BaseException as exc:  # handed to the main thread
            done["error"] = exc
        finally:
            finished.set()

    worker = threading.Thread(target=work, name="reelsense-sql", daemon=True)
    try:
        worker.start()
        while not finished.wait(0.1):
            pass
    except BaseException:
        while worker.ident is not None and not finished.is_set():  # the cursor is busy until the worker ends; DuckDB's interrupt can raise another Ctrl-C
            cursor.interrupt()
            with suppress(KeyboardInterrupt):
                finished.wait(0.05)
        raise
    if "error" in done:
        raise done["error"]
    return done["table"]


def _kind(statement: Any) -> str:
    """The statement's type as DuckDB names it, but INSTALL apart from LOAD (DuckDB gives both LOAD;
    probe: `INSTALL httpfs` was "a LOAD statement"), and a type this duckdb cannot name (UPDATE
    EXTENSIONS raised a ValueError) by its first word."""
    words = re.sub(r"--[^\n]*|/\*.*?\*/", " ", statement.query, flags=re.S).split()
    try:
        kind = statement.type.name
    except ValueError:
        return words[0].upper() if words else "UNKNOWN"
    return "INSTALL" if kind == "LOAD" and words and words[0].upper() in ("INSTALL", "FORCE") else kind


READ_ONLY_HINT = "the warehouse is read-only here: `reelsense sql` runs one SELECT (WITH, FROM-first, DESCRIBE, SHOW and SUMMARIZE count)"


def _require_one_select(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"query failed: {duckdb_reason(exc)}") from exc
    if not statements:
        raise QueryError('empty query: found no SQL statement; expected one SELECT, e.g. "SELECT count(*) FROM events"')
    kinds = [_kind(s) for s in statements]
    if len(statements) > 1 or kinds[0] != "SELECT":
        found = f"{len(kinds)} statements ({', '.join(kinds)})" if len(kinds) > 1 else f"{'an' if kinds[0][0] in 'AEIOU' else 'a'} {kinds[0]} statement"
        raise QueryError(f"found {found}; {READ_ONLY_HINT}; nothing was run")


def bind_params(sql: str, values: list[str]) -> list[str] | dict[str, str] | None:
    """`--param` values for the query's placeholders: $1, $2, ... take them in order, verbatim;
    $name takes `name=value`."""
    try:
        names = set().union(*(s.named_parameters for s in duckdb.extract_statements(sql)))
    except duckdb.NotImplementedException as exc:  # probe: DuckDB's raw "Mixing named and positional parameters is not supported yet"
        if "named and positional" not in str(exc):
            raise QueryError(f"query failed: {duckdb_reason(exc)}") from exc
        raise QueryError(
            "the query mixes positional ($1, $2, ... or ?) and named ($name) placeholders, which DuckDB does not support; "
            "use positional ones throughout (--param VALUE, in order) or named ones throughout (--param NAME=VALUE)"
        ) from exc
    except duckdb.Error as exc:
        raise QueryError(f"query failed: {duckdb_reason(exc)}") from exc
    if not values:
        if names:
            raise QueryError(
                f"the query has placeholder{'s' if len(names) > 1 else ''} {', '.join('$' + n for n in sorted(names))} and no --param gives "
                f"{'them values' if len(names) > 1 else 'it a value'}; "
                "pass one --param VALUE per $1, $2, ... in order, or --param NAME=VALUE per $name"
            )
        return None
    if all(name.isdigit() for name in names):
        wanted = max((int(n) for n in names), default=0)
        skipped = [f"${i}" for i in range(1, wanted) if str(i) not in names]
        if skipped:  # probe: DuckDB's raw "Parameter argument/count mismatch"
            raise QueryError(
                f"the query uses ${wanted} but not {', '.join(skipped)}: positional placeholders run $1, $2, ... with no gap, one --param VALUE each"
            )
        if len(values) != wanted:  # probe: DuckDB's "Values were not provided for the following prepared statement parameters"
            have = "no placeholder" if not wanted else f"placeholders up to ${wanted}" if wanted > 1 else "placeholder $1"
            raise QueryError(
                f"the query has {have} and {len(values)} --param {'value' if len(values) == 1 else 'values'}; pass one --param VALUE per $1, $2, ... in order"
            )
        return list(values)
    named: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or name not in names:
            raise QueryError(
                f"--param {value!r} matches no placeholder: the query has "
                f"{', '.join('$' + n for n in sorted(names))}; expected NAME=VALUE, e.g. "
                f"--param {sorted(names)[0]}=..."
            )
        if name in named:  # probe: the last of two values was taken, unsaid
            raise QueryError(f"--param {name}=... is given twice ({named[name]!r} and {text!r}); give each $name one value")
        named[name] = text
    missing = sorted(names - set(named))
    if missing:  # probe: DuckDB's raw "Values were not provided for the following parameters"
        raise QueryError(
            f"no --param gives {', '.join('$' + n for n in missing)} a value; pass --param NAME=VALUE for each of {', '.join('$' + n for n in sorted(names))}"
        )
    return named


def scratch(wh: Warehouse) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with every view, reading the Parquet files directly: what stages
    use to read, so a reader never holds (or waits for) the lock on the database file. Callers
    hold `store.reading(wh)` while it is open (making its views globs files)."""
    store.recover(wh)
    con = duckdb.connect()
    _lock_down(wh, con)
    temp = "CREATE OR REPLACE TEMP VIEW"
    for spec in TABLES.values():
        con.execute(view_sql(wh, spec).replace("CREATE OR REPLACE VIEW", temp, 1))
    for sql in derived_view_sqls() + vector_view_sqls(con, wh):  # over the table views just made, in order
        con.execute(sql.replace("CREATE OR REPLACE VIEW", temp, 1))
    return con


def fetch(wh: Warehouse, sql: str, params: list[Any] | dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rows of a query over the tables as dicts, through `scratch`."""
    with store.reading(wh):
        con = scratch(wh)
        try:
            return con.sql(sql, params=params).to_arrow_table().to_pylist()
        finally:
            con.close()


def table_counts(wh: Warehouse) -> dict[str, int]:
    with connect(wh) as con:
        return {name: (con.execute(f"SELECT count(*) FROM {name}").fetchone() or (0,))[0] for name in TABLES}


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _empty_select(schema: pa.Schema) -> str:
    columns = ", ".join(f'CAST(NULL AS {_duckdb_type(f.type)}) AS "{f.name}"' for f in schema)
    return f"SELECT {columns} WHERE false"


def _duckdb_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type):
        return _duckdb_type(arrow_type.value_type) + "[]"
    if pa.types.is_map(arrow_type):
        return f"MAP({_duckdb_type(arrow_type.key_type)}, {_duckdb_type(arrow_type.item_type)})"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ" if arrow_type.tz else "TIMESTAMP"
    names = {
        pa.string(): "VARCHAR",
        pa.int8(): "TINYINT",
        pa.int16(): "SMALLINT",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        pa.bool_(): "BOOLEAN",
    }
    return names[arrow_type]
