"""Ingest of the MicroLens dataset (Ni et al. 2023, arXiv 2309.15379).

`reelsense ingest microlens DIR` reads from DIR:
- `*_pairs.tsv`: `user_id<TAB>item ids in chronological order, space separated`. MicroLens logs
  comments, so each (user, position) becomes one `event='comment'` whose `event_ts` is the ordinal
  position: Unix second i for the user's i-th item (there are no real timestamps). Each user has
  one line; a second line for the same user is quarantined, since its order against the first is
  unknown; blank lines are skipped;
- `*_titles.csv`: `item,title`, one item per row;
- `videos/<item>.mp4` (optional): attached as the item's video where the file exists.
Writes `items`, `events` and `failures` like every other ingest; bad lines are quarantined.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from warehouse import store
from warehouse.errors import InputFileError
from warehouse.ingest import IngestReport, Quarantine, _commit, read_input_file, refuse_utf16, validate_items
from warehouse.schemas import EVENTS, ITEMS, user_partition


def find_file(root: Path, pattern: str) -> Path:
    if not root.is_dir():
        what = "a file, not a folder" if root.exists() else "no such directory"  # probe: a file was "no such directory"
        raise InputFileError(f"{root}: {what}; expected the MicroLens folder with *_pairs.tsv and *_titles.csv")
    matches = sorted(root.glob(pattern))
    if len(matches) != 1:
        found = ", ".join(sorted(p.name for p in root.iterdir()))
        raise InputFileError(f"{root}: expected exactly one {pattern}, found [{found}]")
    return matches[0]


def ingest_microlens(wh: store.Warehouse, root: str | Path) -> list[IngestReport]:
    root = Path(root).absolute()
    pairs, titles = find_file(root, "*_pairs.tsv"), find_file(root, "*_titles.csv")
    with open(pairs, "rb") as handle:  # before the titles are written (review: a refusal after them left items behind)
        refuse_utf16(pairs, handle.readline(), "UTF-8 text")
    return [_ingest_titles(wh, titles, root / "videos"), _ingest_pairs(wh, pairs)]


def _ingest_titles(wh: store.Warehouse, path: Path, videos: Path) -> IngestReport:
    quarantine = Quarantine("ingest-microlens", str(path))
    raw = read_input_file(path, ("item", "title"), quarantine)
    malformed = len(quarantine.rows)
    records = []
    for record in raw:
        item = record["item"].decode("utf-8", errors="replace").strip() if record["item"] else ""
        video = videos / f"{item}.mp4"
        records.append({"item_id": record["item"], "title": record["title"], "video_uri": str(video) if item and video.is_file() else None})
    rows = validate_items(records, quarantine, base_dir=path.parent, source=str(path))
    return _commit(wh, ITEMS, pa.Table.from_pylist(rows, schema=ITEMS.schema), quarantine, len(raw) + malformed, str(path))


def _ingest_pairs(wh: store.Warehouse, path: Path) -> IngestReport:
    quarantine = Quarantine("ingest-microlens", str(path))
    users: list[str] = []
    items: list[str] = []
    ordinals: list[int] = []
    input_rows = 0
    first_line: dict[str, int] = {}  # user -> the line that listed them
    with open(path, "rb") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.removeprefix(b"\xef\xbb\xbf").strip():  # a blank line is no user (probe: it was a failure)
                continue
            parsed, error = _parse_pairs_line(line.removeprefix(b"\xef\xbb\xbf") if line_no == 1 else line)  # a BOM is no part of the first user id (probe)
            if parsed is None:
                input_rows += 1
                quarantine.add(f"line {line_no}: {error}", {"line": line.rstrip(b"\r\n")})
                continue
            user, user_items = parsed
            if user in first_line:  # probe: a second line gave the same timestamps twice; which order is meant is unknowable
                quarantine.add(
                    f"line {line_no}: user {user!r} is already listed on line {first_line[user]}; "
                    "MicroLens lists each user once, in chronological order: merge the two lines",
                    {"line": line.rstrip(b"\r\n")},
                )
                input_rows += 1
                continue
            first_line[user] = line_no
            input_rows += len(user_items)
            users.extend([user] * len(user_items))
            items.extend(user_items)
            ordinals.extend(range(len(user_items)))
    events = _events_table(users, items, ordinals)
    return _commit(wh, EVENTS, events, quarantine, input_rows, str(path), pairs=True)


def _parse_pairs_line(line: bytes) -> tuple[tuple[str, list[str]] | None, str | None]:
    try:
        text = line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        return None, "not valid UTF-8"
    user, tab, rest = text.partition("\t")
    if not tab or not user.strip():
        return None, "expected `user_id<TAB>item ids`"
    rest = rest.rstrip()  # a trailing tab (spreadsheet exports) is no field
    if "\t" in rest:  # probe: a second tab made the third field an item id
        return None, "more than one tab; expected `user_id<TAB>item ids` with the item ids separated by spaces"
    user_items = rest.split()
    if not user_items:
        return None, f"user {user!r} has no items"
    return (user.strip(), user_items), None


def _events_table(users: list[str], items: list[str], ordinals: list[int]) -> pa.Table:
    user_array = pa.array(users, pa.string())
    # One crc32 per distinct user, broadcast back to its events.
    unique, inverse = np.unique(np.asarray(users, dtype=object), return_inverse=True)
    buckets = np.array([user_partition(u) for u in unique], dtype=np.int16)[inverse]
    ts = pa.array(np.asarray(ordinals, dtype=np.int64) * 1_000_000, pa.int64()).cast(EVENTS.schema.field("event_ts").type)
    return pa.table(
        {
            "user_id": user_array,
            "item_id": pa.array(items, pa.string()),
            "event_ts": ts,
            "event": pa.array(["comment"] * len(users), pa.string()),
            "watch_ratio": pa.nulls(len(users), pa.float32()),
            "user_bucket": pa.array(buckets, pa.int16()),
        }
    )
