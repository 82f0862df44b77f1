"""Training and evaluation data of the rankers, as NumPy arrays, from the `samples` table.

`build_samples` runs warehouse/sql/features/sequences.sql (DuckDB) over `events`: one row per
positive interaction with its last-N history (item ids, event types, watch ratios) strictly before
it, and a leave-one-out split. It writes them to `samples` (flow build-features), with a record of
the events files and the SQL they came from. `load_dataset` reads `samples` (refusing rows built
from older events: `StaleSamples`), pads the histories with Arrow (no Python loop over rows), maps
item ids to indices (0 is padding) and looks up each item's content vector once (histories hold
ids only). Content: the fused aligned vector where align-items has run, else the text vector of the
most complete text model, else none.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from warehouse import db, store
from warehouse.errors import ReelsenseError
from warehouse.schemas import EVENT_PARTITIONS, EVENTS, SAMPLES
from warehouse.store import Warehouse

# The history window of every ranker: part of the feature schema (a model trained on one length
# cannot score another), defined here once.
MAX_HISTORY = 20
# What `training_counts` counts, named in every model's feature schema: a model trained on another
# definition of popularity is refused rather than fed numbers on another scale.
POPULARITY = "train-split positives, each interaction once"
EVENT_INDEX = {"impression": 1, "watch": 2, "like": 3, "comment": 4, "share": 5}  # 0: padding
BEHAVIOURS = ("engage", "watch", "like", "comment")


def _sql(name: str) -> str:
    return resources.files("warehouse").joinpath(f"sql/features/{name}.sql").read_text()


def build_sequences(wh: Warehouse, max_history: int, buckets: list[int] | None = None) -> pa.Table:
    """Sequences of the users in the given `events` partitions (user_bucket; default: all)."""
    buckets = list(range(EVENT_PARTITIONS)) if buckets is None else [int(b) for b in buckets]
    with store.reading(wh):
        con = db.scratch(wh)
        try:
            return con.sql(_sql("sequences"), params={"max_history": max_history, "buckets": buckets}).to_arrow_table()
        finally:
            con.close()


class StaleSamples(ReelsenseError):
    """`samples` is missing, or was built from other events, SQL or a shorter history window."""


def _samples_source(wh: Warehouse, max_history: int) -> dict[str, Any]:
    return {
        "events": store.files_state(wh, EVENTS),
        "max_history": max_history,
        "sequences_sql": hashlib.sha256(_sql("sequences").encode()).hexdigest()[:16],
    }


def samples_build(wh: Warehouse) -> str | None:
    """The id of the current build of `samples` (None: none recorded)."""
    record = store.built_from(wh, SAMPLES)
    return None if record is None else record.get("build_id")


def stale_samples(wh: Warehouse, max_history: int = MAX_HISTORY) -> str | None:
    """Why `samples` cannot serve histories of `max_history` steps now, or None when it can. An
    empty build (no positive interaction yet) is a build: its record says so."""
    record = store.built_from(wh, SAMPLES)
    if record is None or "build_id" not in record:
        return "`samples` has not been built (or its build was interrupted)"
    now = _samples_source(wh, max_history)
    if record.get("events") != now["events"]:
        return "`events` changed since `samples` was built"
    if record.get("sequences_sql") != now["sequences_sql"]:
        return "the sequence SQL changed since `samples` was built"
    if record.get("max_history", 0) < max_history:
        return f"`samples` holds histories of {record.get('max_history')} steps, {max_history} were asked for"
    return None


def build_samples(wh: Warehouse, max_history: int = MAX_HISTORY) -> pa.Table:
    """Rebuild `samples` from `events` (the flow build-features); returns the rows written."""
    store.recover(wh)  # an interrupted events write is finished first, so the record names what is read
    with store.reading(wh):  # the record and the rows from the same files: no compaction in between
        source = _samples_source(wh, max_history)  # before reading: events written meanwhile make it stale
        source["build_id"] = uuid.uuid4().hex  # names this build: a scoring run checks its shards read the same one
        table = build_sequences(wh, max_history)
    store.overwrite(wh, SAMPLES, table, built_from=source)
    db.refresh_views(wh)
    return table


def ensure_samples(wh: Warehouse, max_history: int = MAX_HISTORY) -> str | None:
    """Rebuild `samples` when it cannot serve `max_history` steps of the current events; returns
    why it was rebuilt, or None when it was current."""
    reason = stale_samples(wh, max_history)
    if reason is not None:
        build_samples(wh, max(max_history, MAX_HISTORY))
    return reason


def read_samples(wh: Warehouse, max_history: int = MAX_HISTORY, buckets: list[int] | None = None, *, build: str | None = None) -> pa.Table:
    """The rows of `samples` (of the users in `buckets`, default all); `StaleSamples` when they do
    not describe the current events, or, with `build`, when they are not that build any more (a
    scoring run's shards read the build the run started with, even if events arrive meanwhile).
    Read under a shared lock: a rebuild (an exclusive writer) waits for the read, and the other way round."""
    store.recover(wh)  # before the shared lock: recovery takes the table lock itself
    with store.reading(wh), store.shared_lock(wh, SAMPLES):  # the readers' lock first, always (store.reading)
        if build is not None:
            if samples_build(wh) != build:
                raise StaleSamples(f"`samples` was rebuilt while this run read it (build {build} is gone); run it again")
        elif (reason := stale_samples(wh, max_history)) is not None:
            raise StaleSamples(f"{reason}: run `reelsense features` (the flow build-features) to rebuild it from {wh.table_dir(EVENTS)}, then run this again")
        buckets = list(range(EVENT_PARTITIONS)) if buckets is None else [int(b) for b in buckets]
        return db.analysis(wh, "samples_of", {"buckets": buckets})


@dataclass
class Queries:
    """Who is asking: a user and a history (right-aligned, left-padded with 0)."""

    users: npt.NDArray[np.object_]
    hist_items: npt.NDArray[np.int64]  # (Q, L)
    hist_events: npt.NDArray[np.int64]  # (Q, L)
    hist_ratios: npt.NDArray[np.float32]  # (Q, L), -1 where unknown
    cold: bool = False  # histories were cut: models must not use what they learned of these users

    def __len__(self) -> int:
        return len(self.users)

    def take(self, rows: npt.NDArray[np.int64]) -> Queries:
        return Queries(self.users[rows], self.hist_items[rows], self.hist_events[rows], self.hist_ratios[rows], self.cold)

    def cut(self, keep: npt.NDArray[np.int64]) -> Queries:
        """Keep only the last `keep[i]` history steps of query i (cold-start users)."""
        length = self.hist_items.shape[1]
        mask = np.arange(length)[None, :] >= (length - keep[:, None])
        return Queries(
            self.users,
            np.where(mask, self.hist_items, 0),
            np.where(mask, self.hist_events, 0),
            np.where(mask, self.hist_ratios, 0).astype(np.float32),
            cold=True,
        )


@dataclass
class Dataset:
    item_ids: list[str]  # index -> id; index 0 is padding
    queries: Queries  # one per target row
    targets: npt.NDArray[np.int64]  # (N,) item index
    split: npt.NDArray[np.object_]  # (N,) train | valid | test
    labels: dict[str, npt.NDArray[np.float32]]  # behaviour -> (N,) 0/1
    behaviours: list[str]  # heads that have both classes in this data
    content: npt.NDArray[np.float32]  # (n_items + 1, D); zeros where an item has none
    content_source: str
    target_events: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))  # (N,) EVENT_INDEX
    target_ratios: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))  # (N,) -1: unknown
    event_ts: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))  # (N,) microseconds
    # (n_items + 1,) popularity: positives of the train split per item (`training_counts`)
    train_counts: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    # (n_items + 1,) items training saw at all: a train target, or in a train row's history
    in_training: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, bool))
    # (n_items + 1,) items that have a content vector; content rankers cannot score the others
    scorable: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, bool))
    # items with raw embeddings but no vector of the fused content model (align-items not rerun)
    unaligned: list[str] = field(default_factory=list)
    # unaligned items that an explanation does not read, set aside from `unaligned` so they do not stop
    # it (flows.analyze.unaligned_in_use): still unaligned, and advice names `align` for them
    unaligned_unread: list[str] = field(default_factory=list)
    # (n_items + 1,) items withheld from training entirely (cold-start split): not even negatives
    withheld: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def n_items(self) -> int:
        return len(self.item_ids) - 1


def _codes(values: pa.Array | pa.ChunkedArray, codes: dict[str, int]) -> npt.NDArray[np.int64]:
    """Each value's code (`codes`: an item's index, an event's EVENT_INDEX), vectorised in Arrow."""
    positions = pc.index_in(values, value_set=pa.array(list(codes), pa.string()))
    if positions.null_count:  # the vocabulary is items and events, so only a concurrent change gets here
        unknown = pc.unique(pc.filter(values, pc.is_null(positions))).to_pylist()[:5]
        raise StaleSamples(f"`samples` names values the warehouse does not know ({unknown}); run this again")
    return np.fromiter(codes.values(), np.int64, len(codes))[positions.to_numpy(zero_copy_only=False).astype(np.int64)]


def _pad(lists: pa.ChunkedArray | pa.Array, length: int, codes: dict[str, int] | None, dtype: npt.DTypeLike) -> np.ndarray:
    """(rows, length) matrix of the lists, right-aligned and left-padded with 0, the last `length`
    values of each kept; with `codes`, each value becomes its code."""
    column = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    sizes = pc.fill_null(pc.list_value_length(column), 0).to_numpy().astype(np.int64)
    flat = pc.list_flatten(column)
    values = _codes(flat, codes) if codes is not None else flat.to_numpy(zero_copy_only=False)
    rows = np.repeat(np.arange(len(sizes)), sizes)
    step = np.arange(len(values)) - np.repeat(np.cumsum(sizes) - sizes, sizes)  # position within its list
    col = length - sizes[rows] + step
    keep = col >= 0
    out = np.zeros((len(sizes), length), dtype=dtype)
    out[rows[keep], col[keep]] = values[keep]
    return out


def item_vocabulary(wh: Warehouse) -> list[str]:
    """Every item id, from items and from events (an event may name an item with no metadata), sorted."""
    return db.analysis(wh, "item_vocabulary").column("item_id").to_pylist()


def load_dataset(
    wh: Warehouse, max_history: int = MAX_HISTORY, buckets: list[int] | None = None, *, build: str | None = None, popularity: ItemPopularity | None = None
) -> Dataset:
    """The rankers' data, from `samples`; `buckets` restricts it to the users of some events
    partitions (scoring shards), with the same item vocabulary, content and popularity as the whole
    warehouse (`popularity`: computed once by the caller, else here); `build` (see `read_samples`)
    pins the build of `samples` read."""
    table = read_samples(wh, max_history, buckets, build=build)
    items = item_vocabulary(wh)
    index = {item: i + 1 for i, item in enumerate(items)}
    queries = Queries(
        users=table.column("user_id").to_numpy(zero_copy_only=False).astype(object),
        hist_items=_pad(table.column("history_item_ids"), max_history, index, np.int64),
        hist_events=_pad(table.column("history_events"), max_history, EVENT_INDEX, np.int64),
        hist_ratios=_pad(table.column("history_watch_ratios"), max_history, None, np.float32),
    )

    def flag(name: str) -> npt.NDArray[np.float32]:
        return table.column(name).to_numpy(zero_copy_only=False).astype(np.float32)

    labels = {"engage": np.ones(table.num_rows, np.float32), "watch": flag("watched"), "like": flag("liked"), "comment": flag("commented")}
    # A behaviour gets a head where the positives disagree on it (MicroLens: all comments, one head).
    behaviours = ["engage"] + [b for b in BEHAVIOURS[1:] if labels[b].size and 0 < labels[b].mean() < 1]
    content, source = content_matrix(wh, index)
    unaligned = [] if not source.startswith("fused:") else unaligned_items(wh, source.split(":", 1)[1])
    data = Dataset(
        ["<pad>", *items],
        queries,
        _codes(table.column("item_id"), index),
        table.column("split").to_numpy(zero_copy_only=False).astype(object),
        labels,
        behaviours,
        content,
        source,
        target_events=_codes(table.column("event"), EVENT_INDEX),
        target_ratios=table.column("watch_ratio").to_numpy().astype(np.float32),
        event_ts=table.column("event_ts").cast(pa.int64()).to_numpy(),
        scorable=np.linalg.norm(content, axis=1) > 0,
        unaligned=unaligned,
        withheld=np.zeros(len(items) + 1, bool),
    )
    if buckets is None:
        data.train_counts, data.in_training = training_counts(data.targets, data.split, data.queries.hist_items, data.n_items)
    else:  # a shard of users: popularity and what training saw are the whole warehouse's
        whole = popularity or warehouse_popularity(wh, max_history, build=build)
        data.train_counts, data.in_training = np.zeros(len(items) + 1, np.int64), np.zeros(len(items) + 1, bool)
        rows = _codes(pa.array(whole.item_ids, pa.string()), index)  # by id: items that arrived since shift indices
        data.train_counts[rows], data.in_training[rows] = whole.counts, whole.seen
    return data


@dataclass
class ItemPopularity:
    """`training_counts` of the whole warehouse by item id (what scoring shards share)."""

    item_ids: list[str]
    counts: npt.NDArray[np.int64]
    seen: npt.NDArray[np.bool_]


def warehouse_popularity(wh: Warehouse, max_history: int = MAX_HISTORY, *, build: str | None = None) -> ItemPopularity:
    """Popularity and what training saw, over every user's rows of `samples` (read once per score run)."""
    whole = read_samples(wh, max_history, build=build)
    items = item_vocabulary(wh)
    index = {item: i + 1 for i, item in enumerate(items)}
    split = whole.column("split").to_numpy(zero_copy_only=False).astype(object)
    history = _pad(whole.column("history_item_ids"), max_history, index, np.int64)
    counts, seen = training_counts(_codes(whole.column("item_id"), index), split, history, len(items))
    return ItemPopularity(items, counts[1:], seen[1:])


def training_counts(
    targets: npt.NDArray[np.int64], split: npt.NDArray[np.object_], hist_items: npt.NDArray[np.int64], n_items: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """The one definition of popularity, and what training saw: per item (index 0 is padding), the
    positives of the train split (each interaction once; used by `popularity`, negative sampling,
    the CTR features and the candidates' tie-break), and whether it is a train target or in the
    history of a train row (what makes an item warm: the natural cold-item slice, the id corrections)."""
    train = split == "train"
    counts = np.bincount(targets[train], minlength=n_items + 1)
    seen = counts > 0
    seen[np.unique(hist_items[train])] = True
    counts[0], seen[0] = 0, False
    return counts, seen


def unaligned_items(wh: Warehouse, fused_model: str) -> list[str]:
    """Items with raw embeddings of the models that `fused_model` (aligned@<version>) was trained
    on, but no fused vector: extracted after align-items last ran. Raw embeddings of other models
    (another preset extracted alongside) are not the alignment's inputs and do not count."""
    meta = wh.models_dir / "align" / fused_model.split("@", 1)[-1] / "meta.json"
    # No record of the alignment's inputs (None): any raw model counts.
    raw = (list(json.loads(meta.read_text()).get("raw_models", {}).values()) or None) if meta.exists() else None
    return [r["item_id"] for r in db.fetch(wh, _sql("unaligned_items"), {"model": fused_model, "raw": raw})]


def content_matrix(wh: Warehouse, index: dict[str, int]) -> tuple[np.ndarray, str]:
    models = db.analysis(wh, "content_models").to_pylist()
    if not models:
        return np.zeros((len(index) + 1, 1), np.float32), "none"
    modality, model = models[0]["modality"], models[0]["model"]
    rows = db.analysis(wh, "content_vectors", {"modality": modality, "model": model})
    vectors = rows.column("vector").combine_chunks()
    dim = len(vectors[0]) if len(vectors) else 1
    flat = vectors.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    matrix = np.zeros((len(index) + 1, dim), np.float32)
    for item, vector in zip(rows.column("item_id").to_pylist(), flat):
        if item in index:
            matrix[index[item]] = vector / (np.linalg.norm(vector) or 1.0)
    return matrix, f"{modality}:{model}"


@dataclass
class ModalityVectors:
    """Per-modality aligned vectors and fusion weights of every item (rows as in Dataset.content)."""

    names: list[str]
    vectors: dict[str, npt.NDArray[np.float32]]  # modality -> (n_items + 1, d), zeros where missing
    weights: npt.NDArray[np.float32]  # (n_items + 1, M) fusion weights; 0 where a modality is missing

    def fused_without(self, modality: str) -> npt.NDArray[np.float32]:
        """The fused vectors rebuilt with one modality taken out (the other weights renormalise
        through the final L2 normalisation, as in align-items' fusion)."""
        fused = sum(self.weights[:, i : i + 1] * self.vectors[m] for i, m in enumerate(self.names) if m != modality)
        norms = np.linalg.norm(fused, axis=1, keepdims=True)
        return np.where(norms > 0, fused / np.maximum(norms, 1e-12), 0).astype(np.float32)


def modality_vectors(wh: Warehouse, data: Dataset) -> ModalityVectors | None:
    """The aligned per-modality vectors and fusion weights behind `data.content`, when it is the
    fused vector of align-items (None otherwise)."""
    if not data.content_source.startswith("fused:"):
        return None
    model = data.content_source.split(":", 1)[1]
    index = {item: i for i, item in enumerate(data.item_ids) if i}
    rows = db.analysis(wh, "model_vectors", {"model": model}).to_pylist()
    fused = [r for r in rows if r["modality"] == "fused" and r["fusion_weights"]]
    names = [k for k, _ in fused[0]["fusion_weights"]] if fused else []
    if not names:
        return None
    dim = data.content.shape[1]
    vectors = {m: np.zeros((len(data.item_ids), dim), np.float32) for m in names}
    weights = np.zeros((len(data.item_ids), len(names)), np.float32)
    for r in rows:
        i = index.get(r["item_id"])
        if i is None:
            continue
        if r["modality"] == "fused":
            weights[i] = [dict(r["fusion_weights"]).get(m, 0.0) for m in names]
        elif r["modality"] in vectors:
            vectors[r["modality"]][i] = r["vector"]
    return ModalityVectors(names, vectors, weights)


class MissingContent(ReelsenseError):
    """A content ranker was asked to run without the content vectors it needs."""


def check_content(data: Dataset, name: str) -> None:
    """A content ranker refuses to run on zeros: no content at all, or items left unaligned."""
    if data.content_source == "none":
        raise MissingContent(
            f"{name} needs content vectors, and the warehouse has none; run `reelsense extract` "
            "(and `reelsense align` for several modalities) first, or train an id-only ranker"
        )
    if len(data.unaligned):
        shown = ", ".join(data.unaligned[:5]) + (" ..." if len(data.unaligned) > 5 else "")
        have = "item has" if len(data.unaligned) == 1 else "items have"
        raise MissingContent(
            f"{len(data.unaligned)} {have} raw embeddings but no {data.content_source} vector "
            f"({shown}); run `reelsense align` to project them, then run this command again"
        )
