"""Validated ingest of items and events files into the warehouse.

Reads CSV or Parquet files (`reelsense ingest items FILE`, `reelsense ingest events FILE`) and
writes the `items`, `events` and `failures` tables. A file that is missing or whose columns are
wrong as a whole raises `InputFileError`/`SchemaError` (the CLI prints one line and exits 2). A bad
row never stops the batch: it goes to `failures` with its reason and the record as ingest read it (the columns it reads). Ids are opaque
strings, stored verbatim. Re-ingesting the same file changes no count:
input rows = accepted + quarantined + duplicates.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from warehouse import db, store
from warehouse.errors import InputFileError, SchemaError
from warehouse.schemas import EVENT_TYPES, EVENTS, FAILURES, ITEMS, user_partition

ITEM_COLUMNS = ("item_id", "title", "video_uri")
ITEM_OPTIONAL = ("audio_uri",)
EVENT_COLUMNS = ("user_id", "item_id", "event_ts", "event")
EVENT_OPTIONAL = ("watch_ratio",)


@dataclass(frozen=True)
class IngestReport:
    table: str
    source: str
    input_rows: int
    accepted: int
    quarantined: int
    duplicates: int
    reasons: tuple[tuple[str, int], ...] = ()  # (an example error, how many errors read like it), most first
    ignored_columns: tuple[str, ...] = ()  # columns of the file that ingest does not read
    item_ids: tuple[str, ...] = ()  # events: the distinct items the file's good rows name (checked against `items` by the CLI)
    pairs: bool = False  # a MicroLens pairs file: a row is a (user, item) pair of a good line, or a quarantined line

    def line(self) -> str:
        # probe: extra columns were dropped without a word
        ignored = f"; ignored {'column' if len(self.ignored_columns) == 1 else 'columns'} {', '.join(self.ignored_columns)}" if self.ignored_columns else ""
        read = f"{self.input_rows} {'row' if self.input_rows == 1 else 'rows'}"
        if self.pairs:  # probe: "rows" counted pairs and bad lines together
            good = self.input_rows - self.quarantined
            bad = f" and {self.quarantined} bad {'line' if self.quarantined == 1 else 'lines'}" if self.quarantined else ""
            read = f"{good} {'pair' if good == 1 else 'pairs'}{bad}"
        return (
            f"{self.table}: {read} in {Path(self.source).name}: "
            f"{self.accepted} accepted, {self.quarantined} quarantined, {self.duplicates} {'duplicate' if self.duplicates == 1 else 'duplicates'}{ignored}"
        )

    def reason_lines(self, shown: int = 3) -> list[str]:
        """Why rows were quarantined (probe: only `sql ... FROM failures` said): the `shown` most
        frequent kinds of error, each with an example, and the query that lists every row."""
        if not self.reasons:
            return []
        lines = []
        for error, count in self.reasons[:shown]:
            example = error if len(error) <= 200 else error[:197] + "..."
            lines.append(f"  1 row: {example}" if count == 1 else f"  {count} rows like: {example}")
        if len(self.reasons) > shown:
            more = len(self.reasons) - shown
            lines.append(f"  ... and {more} other {'kind' if more == 1 else 'kinds'} of error")
        sql = f"SELECT error, record FROM failures WHERE source = '{self.source.replace(chr(39), chr(39) * 2)}'"
        # the columns ingest reads (probe, 2026-12-03: "whole" promised the ignored ones too)
        lines.append(f"  every quarantined row, as ingest read it: {db.sql_command(sql)}")
        return lines


def error_kinds(errors: list[str]) -> tuple[tuple[str, int], ...]:
    """Errors grouped by kind, most frequent first: two errors are of one kind when they differ only
    in quoted values and numbers ("line 7: expected 4 fields" and "line 9: ..."); each kind is shown
    by its first error."""
    kinds: dict[str, list[Any]] = {}
    for error in errors:
        kind = re.sub(r"'[^']*'|\"[^\"]*\"|\d+(\.\d+)?", "_", error)
        kinds.setdefault(kind, [error, 0])[1] += 1
    return tuple(sorted(((example, n) for example, n in kinds.values()), key=lambda pair: -pair[1]))


class Quarantine:
    """Collects rejected rows of one ingest as `failures` rows."""

    def __init__(self, stage: str, source: str) -> None:
        self.stage, self.source = stage, source
        self.rows: list[dict[str, Any]] = []
        self.ignored_columns: list[str] = []  # the file's columns that ingest does not read (read_input_file)
        self.at = datetime.now(timezone.utc)

    def add(self, error: str, record: dict[str, Any], *, item_id: Any = None, user_id: Any = None) -> None:
        self.rows.append(
            {
                "stage": self.stage,
                "source": self.source,
                "error": error,
                "item_id": item_id if isinstance(item_id, str) else None,
                "user_id": user_id if isinstance(user_id, str) else None,
                "record": json.dumps(record, ensure_ascii=False, default=_json_default, sort_keys=True),
                "failed_at": self.at,
            }
        )

    def write(self, wh: store.Warehouse) -> None:
        if self.rows:
            store.append(wh, FAILURES, pa.Table.from_pylist(self.rows, schema=FAILURES.schema))


def read_input_file(path: Path, required: tuple[str, ...], quarantine: Quarantine, optional: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Rows of a CSV or Parquet file as dicts; text cells stay bytes so bad UTF-8 is caught per row.
    A CSV line with the wrong number of fields goes to `quarantine` (with its text) and the rest of
    the file is read."""
    if not path.is_file():
        # probe: /dev/null (it exists) was "no such file"
        what = "a folder, not a file" if path.is_dir() else "not a regular file" if path.exists() else "no such file"
        raise InputFileError(f"{path}: {what}; expected a CSV or Parquet file with columns {', '.join(required)}")
    if path.suffix.lower() == ".parquet":
        try:
            table = pq.ParquetFile(path).read()  # not read_table: its dataset reader fails on a repeated name (probe)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputFileError(f"{path}: not a readable Parquet file ({exc})") from exc
    else:
        table = _read_csv_as_bytes(path, quarantine)
    # A byte-order mark kept in the first name (pyarrow's CSV reader drops it, Parquet keeps it) is not part of it.
    table = table.rename_columns([name.lstrip("\ufeff") for name in table.column_names])
    _check_columns(path, table.column_names, required, optional)
    wanted = [c for c in (*required, *optional) if c in table.column_names]
    quarantine.ignored_columns = list(dict.fromkeys(c for c in table.column_names if c not in wanted))
    return table.select(wanted).to_pylist()


def refuse_utf16(path: Path, first_line: bytes, save_as: str) -> None:
    """Refuse a UTF-16 file (Excel's "Unicode text"; probe: its header came out spaced by NUL bytes,
    and MicroLens's pairs reader took such lines as ids) by its first line."""
    if first_line.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in first_line:
        raise InputFileError(f"{path}: the file is UTF-16 (or holds NUL bytes), not UTF-8 text; save it as {save_as} and ingest it again")


def _read_csv_as_bytes(path: Path, quarantine: Quarantine) -> pa.Table:
    """The CSV with every column as bytes. A line with the wrong number of fields goes to the
    quarantine (with its line number and text) and the rest is read; a quote that is never closed
    (it would swallow the lines after it as one field) refuses the file."""
    with open(path, "rb") as handle:
        first = handle.readline()
    refuse_utf16(path, first, "CSV UTF-8")
    header_line = first.decode("utf-8", errors="replace").lstrip("\ufeff")
    header = next(csv.reader([header_line]), [])
    if not _is_utf8(path):
        # pyarrow cannot hand a line that is not UTF-8 to the handler below: such files are read here
        return _read_csv_in_python(path, header, quarantine)
    rejected: list[tuple[int | None, int, str]] = []  # (line, fields found, text)
    unclosed: list[int | None] = []

    def malformed(row: pacsv.InvalidRow) -> str:
        if "\n" in row.text or "\r" in row.text:
            unclosed.append(row.number)
            return "error"
        rejected.append((row.number, row.actual_columns, row.text))
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            # one thread: pyarrow numbers the lines only then (a quarantined line says which it was)
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=malformed),
            convert_options=pacsv.ConvertOptions(column_types={name: pa.binary() for name in header}, strings_can_be_null=False),
        )
    except pa.ArrowInvalid as exc:
        if unclosed:
            where = f"line {unclosed[0]}" if unclosed[0] is not None else "a line"
            raise InputFileError(
                f"{path}: {where} opens a quote that is never closed, so the lines after it read as one field; fix the quoting and ingest the file again"
            ) from exc
        raise InputFileError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0]})") from exc
    for number, found, text in rejected:
        quarantine.add(_field_count_error(number, len(header), found, header), {"line": text})
    return table


def _is_utf8(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as handle:
        try:
            while chunk := handle.read(1 << 20):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def _read_csv_in_python(path: Path, header: list[str], quarantine: Quarantine) -> pa.Table:
    """The slow path of _read_csv_as_bytes, for files that are not valid UTF-8 throughout (each bad
    cell is then quarantined with its row, as on the fast path)."""
    columns: list[list[bytes]] = [[] for _ in header]
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for row in reader:
            if not row:
                continue  # blank lines, as pyarrow skips them
            if len(row) != len(header):
                if any("\n" in value or "\r" in value for value in row):
                    raise InputFileError(
                        f"{path}: the line before line {reader.line_num} opens a quote that is never closed, "
                        "so the lines after it read as one field; fix the quoting and ingest the file again"
                    )
                text = ",".join(row).encode("utf-8", errors="surrogateescape")
                quarantine.add(_field_count_error(reader.line_num, len(header), len(row), header), {"line": text})
                continue
            for column, value in zip(columns, row):
                column.append(value.encode("utf-8", errors="surrogateescape"))
    return pa.Table.from_arrays([pa.array(values, pa.binary()) for values in columns], names=header)  # a repeated name stays two columns


def _field_count_error(line: int | None, expected: int, found: int, header: list[str]) -> str:
    where = f"line {line}: " if line is not None else ""
    hint = "quote a field that holds a comma" if found > expected else "a field is missing"
    return f"{where}expected {expected} fields ({', '.join(header)}), found {found}; {hint}"


def _check_columns(path: Path, found: list[str], required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    if not set(required) <= set(found):
        expected = ", ".join(required) + (f" (optional: {', '.join(optional)})" if optional else "")
        # Probe: a semicolon-separated file read as one column "item_id;title;video_uri", without a word why.
        other = next((sep for sep in (";", "\t", "|") if len(found) == 1 and sep in found[0]), None)
        hint = f"; the header looks separated by {other!r}: reelsense reads comma-separated files, so save it with commas" if other else ""
        raise SchemaError(f"{path}: found columns [{', '.join(found)}]; expected {expected}{hint}")
    # A column named twice is ambiguous (which one holds the values?); one ingest does not read
    # may repeat (probe: a repeated `event` was a pyarrow traceback).
    repeated = sorted({name for name in found if found.count(name) > 1 and name in (*required, *optional)})
    if repeated:
        raise SchemaError(f"{path}: column {', '.join(repeated)} appears more than once in [{', '.join(found)}]; keep one of each and ingest the file again")


def ingest_events(wh: store.Warehouse, path: str | Path) -> IngestReport:
    path = Path(path).absolute()
    quarantine = Quarantine("ingest-events", str(path))
    raw = read_input_file(path, EVENT_COLUMNS, quarantine, EVENT_OPTIONAL)
    malformed = len(quarantine.rows)
    good, records = [], []
    for record in raw:
        row, error = validate_event(record)
        if error:
            quarantine.add(error, record, item_id=row.get("item_id"), user_id=row.get("user_id"))
        else:
            good.append(row)
            records.append(record)
    return _commit(wh, EVENTS, events_table(good), quarantine, len(raw) + malformed, str(path), records=records)


def _conflict_error(row: dict[str, Any], conflict: store.Conflict) -> str:
    """Why an event that repeats another's key with another watch ratio is quarantined (probe: a
    watch at 0.2 and again at 0.95 was counted a duplicate and the 0.95 lost without a word)."""
    where = "is already stored" if conflict.stored else "appears earlier in this file"
    return (
        f"the {row['event']!r} event of user {row['user_id']!r} on item {row['item_id']!r} at {row['event_ts'].isoformat()} {where} "
        f"with watch_ratio {_ratio(conflict.first['watch_ratio'])}, this row has {_ratio(row['watch_ratio'])}; an event is stored once "
        "per user, item, time and type: the first is kept (fix the source, or give a repeated event its own event_ts)"
    )


def _ratio(value: float | None) -> str:
    return "empty" if value is None else f"{value:.7g}"  # a float32 as stored: 0.2, not 0.200000003


def validate_event(record: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """One raw event as a clean row, or the reason it is rejected."""
    row: dict[str, Any] = {}
    for name in (*EVENT_COLUMNS, *EVENT_OPTIONAL):
        value, error = _text(record.get(name), name)
        if error:
            return row, error
        row[name] = value
    for name in ("user_id", "item_id"):
        if not row[name]:
            return row, f"missing {name}"
    if row["event"] is not None:  # spaces at its ends trimmed, as event_ts's and watch_ratio's are (probe)
        row["event"] = row["event"].strip()
    if row["event"] not in EVENT_TYPES:
        return row, f"unknown event type {row['event']!r}; expected one of {', '.join(EVENT_TYPES)}"
    text = row["event_ts"]  # as written (decoded), for the messages
    row["event_ts"], error = parse_timestamp(record.get("event_ts"))
    if error:
        return row, error
    error = plausible_time(row["event_ts"], text)
    if error:
        return row, error
    row["watch_ratio"], error = parse_watch_ratio(record.get("watch_ratio"))
    if error:
        return row, error
    row["user_bucket"] = user_partition(row["user_id"])
    return row, None


def events_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=EVENTS.schema)


def parse_timestamp(value: Any) -> tuple[datetime | None, str | None]:
    """ISO-8601 text or Unix seconds (number or numeric text) as an aware UTC datetime. Messages
    quote the value as the input wrote it ('1767261600000', not 1767261600000.0)."""
    if isinstance(value, datetime):
        try:
            return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc), None
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: before year 1 in UTC
            return None, f"event_ts {value.isoformat()!r} is out of range"
    shown, error = _text(value, "event_ts")
    if isinstance(value, float) and abs(value) >= 2**53:  # past 2**53 a double's digits are not what the input wrote
        shown = repr(value)
    if error:
        return None, error
    if shown is None:  # a null cell (typed Parquet)
        return None, "missing event_ts"
    if isinstance(value, (str, bytes)):
        text = shown.strip()
        if not text:
            return None, "missing event_ts"
        try:
            value = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.upper())  # RFC 3339 allows a lowercase 't' and 'z' (probe)
            except ValueError:
                return None, f"unparseable event_ts {text!r}; expected ISO-8601 or Unix seconds"
            ts, error = parse_timestamp(parsed)
            return ts, (f"event_ts {text!r} is out of range" if error else None)
        shown = text
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        try:
            return datetime.fromtimestamp(value, tz=timezone.utc), None
        except (OverflowError, OSError, ValueError):
            hint = next((f" ({unit}? divide by {scale})" for unit, scale in TIME_UNITS if _fits_seconds(value / scale)), "")
            return None, f"event_ts {shown!r} is out of range for Unix seconds{hint}"
    return None, f"unparseable event_ts {shown!r}; expected ISO-8601 or Unix seconds"


# Units an out-of-range number of "seconds" may really be in: the hint names the first that fits.
TIME_UNITS = (("milliseconds", 1000), ("microseconds", 1_000_000), ("nanoseconds", 1_000_000_000))


def _fits_seconds(value: float) -> bool:
    try:
        datetime.fromtimestamp(value, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return False
    return True


# An event may lie at most this far ahead of the clock of the machine that ingests it (clock skew
# between the platform and this machine); later ones are typing or unit mistakes.
FUTURE_SLACK = timedelta(days=1)
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def plausible_time(ts: datetime, raw: Any) -> str | None:
    """Why a parsed event time cannot be a real event's (before 1970, or in the future), or None."""
    if ts < UNIX_EPOCH:
        return f"event_ts {raw!r} is before 1970-01-01; expected a real event time"
    if ts > datetime.now(timezone.utc) + FUTURE_SLACK:
        return f"event_ts {raw!r} ({ts.date().isoformat()}) is in the future; expected a real event time"
    return None


def parse_watch_ratio(value: Any) -> tuple[float | None, str | None]:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        return None, f"watch_ratio {value!r} is not a number"
    if math.isnan(ratio):
        return None, "watch_ratio is NaN; leave it empty when unknown"
    if ratio < 0 or math.isinf(ratio):
        return None, f"watch_ratio {ratio} is out of range; expected a finite number >= 0"
    return ratio, None


def ingest_items(wh: store.Warehouse, path: str | Path) -> IngestReport:
    path = Path(path).absolute()
    quarantine = Quarantine("ingest-items", str(path))
    raw = read_input_file(path, ITEM_COLUMNS, quarantine, ITEM_OPTIONAL)
    malformed = len(quarantine.rows)
    rows = validate_items(raw, quarantine, base_dir=path.parent, source=str(path))
    return _commit(wh, ITEMS, pa.Table.from_pylist(rows, schema=ITEMS.schema), quarantine, len(raw) + malformed, str(path))


def validate_items(raw: list[dict[str, Any]], quarantine: Quarantine, *, base_dir: Path, source: str) -> list[dict[str, Any]]:
    """Clean item rows. Exact repeats stay in (the store counts them as duplicates); a later row
    that reuses an item_id with different content is quarantined."""
    now = datetime.now(timezone.utc)
    first_hash: dict[str, str] = {}
    kept = []
    for record in raw:
        row, error = validate_item(record, base_dir)
        if error is None and first_hash.setdefault(row["item_id"], row["content_hash"]) != row["content_hash"]:
            error = f"item_id {row['item_id']!r} appears again in this file with different content"
        if error:
            quarantine.add(error, record, item_id=row.get("item_id"))
            continue
        kept.append({**row, "source": source, "ingested_at": now, "duration_s": None})
    return kept


def validate_item(record: dict[str, Any], base_dir: Path) -> tuple[dict[str, Any], str | None]:
    row: dict[str, Any] = {}
    for name in (*ITEM_COLUMNS, *ITEM_OPTIONAL):
        value, error = _text(record.get(name), name)
        if error:
            return row, error
        row[name] = value or None
    if not row["item_id"]:
        return row, "missing item_id"
    for name in ("video_uri", "audio_uri"):
        if row[name]:
            if "://" in row[name] and not row[name].startswith("file://"):
                return row, f"{name} {row[name]!r} is not a local file path (URLs are not fetched); download it and give its path"
            looked_for = _local_media(row[name], base_dir)
            if not looked_for.is_file():
                return row, f"{name} {row[name]!r}: no such local file (looked for {looked_for}); a relative path is read from the items file's folder"
            row[name] = str(looked_for.resolve())
    row["content_hash"] = content_hash(row["title"], row["video_uri"], row["audio_uri"])
    return row, None


def content_hash(title: str | None, *media_paths: str | None) -> str:
    """sha256 over the title and the bytes of each media file: changes exactly when the content does."""
    digest = hashlib.sha256((title or "").encode("utf-8"))
    for media in media_paths:
        digest.update(b"\0")
        if media:
            digest.update(file_sha256(Path(media)).encode())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _local_media(uri: str, base_dir: Path) -> Path:
    """Where a media path points on this machine: absolute, or relative to the items file's folder."""
    path = Path(uri[len("file://") :] if uri.startswith("file://") else uri)
    return path if path.is_absolute() else base_dir / path


def _text(value: Any, name: str) -> tuple[str | None, str | None]:
    """A cell as text: bytes must be UTF-8; numbers (typed Parquet ids) become their decimal form."""
    if value is None:
        return None, None
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            return None, f"{name} is not valid UTF-8 (byte {value[exc.start]:#04x} at offset {exc.start})"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)), None
    return str(value), None


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return str(value)


def _commit(
    wh: store.Warehouse,
    spec: Any,
    good: pa.Table,
    quarantine: Quarantine,
    input_rows: int,
    source: str,
    *,
    pairs: bool = False,
    records: list[dict[str, Any]] | None = None,
) -> IngestReport:
    """Store the good rows and the quarantine; events (with their raw `records`) are compared on
    watch_ratio, and one that repeats a key with another ratio is quarantined, not a duplicate."""
    if spec is ITEMS:
        good = _home_relative(wh, good)
    raw = records or []
    result = store.append(wh, spec, good, compare=("watch_ratio",) if records is not None else ())
    for conflict in result.conflicts:  # only where records were given
        row = good.slice(conflict.row, 1).to_pylist()[0]
        quarantine.add(_conflict_error(row, conflict), raw[conflict.row], item_id=row["item_id"], user_id=row["user_id"])
    quarantine.write(wh)
    return IngestReport(
        table=spec.name,
        source=source,
        input_rows=input_rows,
        accepted=result.written,
        quarantined=len(quarantine.rows),
        duplicates=result.duplicates,
        reasons=error_kinds([row["error"] for row in quarantine.rows]),
        ignored_columns=tuple(quarantine.ignored_columns),
        item_ids=tuple(pc.unique(good["item_id"]).to_pylist()) if spec is EVENTS else (),
        pairs=pairs,
    )


def _home_relative(wh: store.Warehouse, rows: pa.Table) -> pa.Table:
    """Media files inside the home (the demo's sample, or videos a user copied there) are stored
    relative to it, so a copied or moved home still finds them; `media_path` resolves them."""
    home = wh.home.resolve()
    for name in ("video_uri", "audio_uri"):
        values = [None if v is None else (Path(v).relative_to(home).as_posix() if Path(v).is_relative_to(home) else v) for v in rows.column(name).to_pylist()]
        rows = rows.set_column(rows.schema.get_field_index(name), name, pa.array(values, pa.string()))
    return rows


def media_path(wh: store.Warehouse, uri: str | None) -> str | None:
    """The file of an items.video_uri / audio_uri: absolute as ingested, or relative to the home."""
    if not uri or Path(uri).is_absolute():
        return uri
    return str(wh.home.resolve() / uri)
