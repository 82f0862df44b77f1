"""Arrow schemas of every warehouse table, declared once.

Stages talk to each other only through these tables. Each `TableSpec` says:
- `schema`: the Arrow schema of the rows (the Parquet files hold exactly these columns, except a
  hive partition column, which lives in the directory name);
- `key`: the columns that identify a row; writing a row whose key is already stored is a no-op,
  which is what makes every write idempotent;
- `partition_by`: a column to partition the files by (hive style, `column=value/part-*.parquet`);
- `latest_by`: for tables whose rows are versions of an entity (items), the entity id; the DuckDB
  view then shows the newest version only (by `version_order`), and a write skips a row only
  when its key equals the entity's current version, so a return to earlier content is a new
  version.

Bump `SCHEMA_VERSION` when a column changes meaning or type; it is stored in every Parquet file's
metadata so a reader can refuse files it does not understand.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 5  # 2: embeddings.fusion_weights; 3: explanations.fusion_weights; 4: scores partitioned by run_id; 5: explanations too

EVENT_TYPES = ("impression", "watch", "like", "comment", "share")
MODALITIES = ("frames", "text", "audio", "fused")
SPLITS = ("train", "valid", "test")
EVENT_PARTITIONS = 16

_TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: pa.Schema
    key: tuple[str, ...]
    partition_by: str | None = None
    latest_by: str | None = None
    version_order: str = ""  # ORDER BY of the versions of an entity, newest first (the view's too)
    # Columns whose Arrow type may vary between files of the same table (embedding dims).
    variable_width: tuple[str, ...] = ()
    # Nullable columns added after schema version 1: files written before lack them, and they
    # read back as nulls.
    added_later: tuple[str, ...] = ()
    # The key decides the partition: (key column, function of it giving the partition value). Rows
    # of different partitions never share a key, so an append checks its own partitions only (and
    # refuses a row whose partition value is not the function's).
    partition_of: tuple[str, Callable[[Any], Any]] | None = None

    @property
    def file_schema(self) -> pa.Schema:
        """The schema of one Parquet file: the row schema minus the partition column."""
        if self.partition_by is None:
            return self.schema
        return self.schema.remove(self.schema.get_field_index(self.partition_by))


ITEMS = TableSpec(
    name="items",
    schema=pa.schema(
        [
            pa.field("item_id", pa.string(), nullable=False),
            pa.field("title", pa.string()),
            pa.field("video_uri", pa.string()),  # the video file: absolute, or relative to the home when inside it
            pa.field("audio_uri", pa.string()),  # separate audio file; null: the video's own track
            pa.field("duration_s", pa.float64()),  # filled in by extract-items
            pa.field("content_hash", pa.string(), nullable=False),  # sha256 of title + media bytes
            pa.field("source", pa.string()),  # the file the row was ingested from
            pa.field("ingested_at", _TS, nullable=False),
        ]
    ),
    # An item whose title or media changes gets a new row; the view shows the newest one.
    key=("item_id", "content_hash"),
    latest_by="item_id",
    version_order="ingested_at DESC, content_hash",  # as warehouse/sql/views/items.sql
)

EVENTS = TableSpec(
    name="events",
    schema=pa.schema(
        [
            pa.field("user_id", pa.string(), nullable=False),
            pa.field("item_id", pa.string(), nullable=False),
            pa.field("event_ts", _TS, nullable=False),
            pa.field("event", pa.string(), nullable=False),  # one of EVENT_TYPES
            pa.field("watch_ratio", pa.float32()),  # watched seconds / duration; >1 means replays
            pa.field("user_bucket", pa.int16(), nullable=False),  # user_partition(user_id)
        ]
    ),
    key=("user_id", "item_id", "event_ts", "event"),
    partition_by="user_bucket",
    partition_of=("user_id", lambda user_id: user_partition(user_id)),
)

EMBEDDINGS = TableSpec(
    name="embeddings",
    schema=pa.schema(
        [
            pa.field("item_id", pa.string(), nullable=False),
            pa.field("modality", pa.string(), nullable=False),  # one of MODALITIES
            pa.field("model", pa.string(), nullable=False),  # encoder name@version
            pa.field("dim", pa.int32(), nullable=False),
            # Each file holds one model's vectors, so its width is fixed per file.
            pa.field("vector", pa.list_(pa.float32()), nullable=False),
            pa.field("tags", pa.list_(pa.string())),  # readable labels (ImageNet, music tags)
            pa.field("content_hash", pa.string(), nullable=False),
            pa.field("created_at", _TS, nullable=False),
            # modality='fused' rows: each modality's weight in the fused vector of this item.
            pa.field("fusion_weights", pa.map_(pa.string(), pa.float32())),
        ]
    ),
    key=("item_id", "modality", "model", "content_hash"),
    partition_by="modality",
    partition_of=("modality", lambda modality: modality),  # modality is in the key
    variable_width=("vector",),
    added_later=("fusion_weights",),
)

FAILURES = TableSpec(
    name="failures",
    schema=pa.schema(
        [
            pa.field("stage", pa.string(), nullable=False),  # ingest-items, extract-items, ...
            pa.field("source", pa.string(), nullable=False),  # file or run the record came from
            pa.field("item_id", pa.string()),
            pa.field("user_id", pa.string()),
            pa.field("error", pa.string(), nullable=False),
            pa.field("record", pa.string()),  # the raw record, JSON, for inspection and replay
            pa.field("failed_at", _TS, nullable=False),
        ]
    ),
    key=("stage", "source", "record", "error"),
)

# One row per positive interaction with its last-N history: the one input of training, evaluation,
# scoring and analysis (ranker/data.py). Rebuilt whole by build-features from `events`; a reader
# refuses rows built from older events (`.built_from.json` beside the files).
SAMPLES = TableSpec(
    name="samples",
    schema=pa.schema(
        [
            pa.field("user_id", pa.string(), nullable=False),
            pa.field("item_id", pa.string(), nullable=False),
            pa.field("event_ts", _TS, nullable=False),
            pa.field("event", pa.string(), nullable=False),  # the strongest event of the interaction
            pa.field("watched", pa.bool_(), nullable=False),
            pa.field("watch_ratio", pa.float32(), nullable=False),  # -1: unknown
            pa.field("liked", pa.bool_(), nullable=False),
            pa.field("commented", pa.bool_(), nullable=False),
            pa.field("history_item_ids", pa.list_(pa.string()), nullable=False),
            pa.field("history_events", pa.list_(pa.string()), nullable=False),
            pa.field("history_watch_ratios", pa.list_(pa.float32()), nullable=False),
            pa.field("split", pa.string(), nullable=False),  # one of SPLITS
            pa.field("user_bucket", pa.int16(), nullable=False),  # the user's events partition (scoring shards)
        ]
    ),
    key=("user_id", "item_id", "event_ts"),
)

SCORES = TableSpec(
    name="scores",
    schema=pa.schema(
        [
            pa.field("run_id", pa.string(), nullable=False),
            pa.field("user_id", pa.string(), nullable=False),
            pa.field("item_id", pa.string(), nullable=False),
            pa.field("score", pa.float32(), nullable=False),
            pa.field("rank", pa.int32(), nullable=False),
            pa.field("model_version", pa.string(), nullable=False),
            pa.field("scored_at", _TS, nullable=False),
        ]
    ),
    key=("run_id", "user_id", "item_id"),
    # One folder per run (run_id=<id>/): a night's append checks its keys against its own run only,
    # and pruning a run removes its folder, whatever the number of runs before it.
    partition_by="run_id",
    partition_of=("run_id", lambda run_id: run_id),
)

EXPLANATIONS = TableSpec(
    name="explanations",
    schema=pa.schema(
        [
            pa.field("run_id", pa.string(), nullable=False),
            pa.field("user_id", pa.string(), nullable=False),
            pa.field("item_id", pa.string(), nullable=False),
            pa.field("model_version", pa.string(), nullable=False),
            pa.field("history_item_ids", pa.list_(pa.string())),
            pa.field("attention", pa.list_(pa.float32())),  # one weight per history item
            pa.field("modality_names", pa.list_(pa.string())),
            pa.field("modality_contributions", pa.list_(pa.float32())),  # leave-one-modality-out: score minus the score without it
            pa.field("fusion_weights", pa.list_(pa.float32())),  # the target item's fusion weight per modality
            pa.field("feature_names", pa.list_(pa.string())),
            pa.field("feature_contributions", pa.list_(pa.float32())),  # LightGBM pred_contrib
            pa.field("summary", pa.string()),  # the explanation in plain words
        ]
    ),
    key=("run_id", "user_id", "item_id"),
    added_later=("fusion_weights",),
    # One folder per run, as scores: a run's explanations are appended and removed (score
    # --replace, prune) without reading or rewriting any other run's.
    partition_by="run_id",
    partition_of=("run_id", lambda run_id: run_id),
)

TABLES: dict[str, TableSpec] = {spec.name: spec for spec in (ITEMS, EVENTS, EMBEDDINGS, FAILURES, SAMPLES, SCORES, EXPLANATIONS)}


def user_partition(user_id: str) -> int:
    """The events partition of a user: stable across runs, machines and Python versions."""
    return zlib.crc32(user_id.encode("utf-8")) % EVENT_PARTITIONS
