"""Training and evaluation data of the rankers, as NumPy arrays.

`build_sequences` runs warehouse/sql/features/sequences.sql (DuckDB) over `events`: one row per
positive interaction with its last-N history (item ids, event types, watch ratios) strictly before
it, and a leave-one-out split. `load_dataset` maps item ids to indices (0 is padding) and looks up
each item's content vector once (histories hold ids only). Content: the fused aligned vector
where align-items has run, else the text vector of the most complete text model, else none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from warehouse import db
from warehouse.errors import ReelsenseError
from warehouse.schemas import EVENT_PARTITIONS
from warehouse.store import Warehouse

# The history window of every ranker: part of the feature schema (a model trained on one length
# cannot score another), defined here once.
MAX_HISTORY = 20
EVENT_INDEX = {"impression": 1, "watch": 2, "like": 3, "comment": 4, "share": 5}  # 0: padding
BEHAVIOURS = ("engage", "watch", "like", "comment")


def _sql(name: str) -> str:
    return resources.files("warehouse").joinpath(f"sql/features/{name}.sql").read_text()


def build_sequences(wh: Warehouse, max_history: int, buckets: list[int] | None = None) -> pa.Table:
    """Sequences of the users in the given `events` partitions (user_bucket; default: all)."""
    sql = resources.files("warehouse").joinpath("sql/features/sequences.sql").read_text()
    buckets = list(range(EVENT_PARTITIONS)) if buckets is None else [int(b) for b in buckets]
    con = db.scratch(wh)
    try:
        return con.sql(sql, params={"max_history": max_history, "buckets": buckets}).to_arrow_table()
    finally:
        con.close()


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
        return Queries(self.users, np.where(mask, self.hist_items, 0), np.where(mask, self.hist_events, 0),
                       np.where(mask, self.hist_ratios, 0).astype(np.float32), cold=True)


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
    train_counts: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))  # (n_items + 1,)
    # (n_items + 1,) items that have a content vector; content rankers cannot score the others
    scorable: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, bool))
    # items with raw embeddings but no vector of the fused content model (align-items not rerun)
    unaligned: list[str] = field(default_factory=list)
    # (n_items + 1,) items withheld from training entirely (cold-start split): not even negatives
    withheld: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def n_items(self) -> int:
        return len(self.item_ids) - 1


def _pad(lists: pa.ChunkedArray, length: int, index: dict[str, int] | None, dtype) -> np.ndarray:
    out = np.zeros((len(lists), length), dtype=dtype)
    for row, values in enumerate(lists.to_pylist()):
        if values:
            mapped = [index[v] for v in values] if index is not None else values
            out[row, length - len(mapped):] = mapped
    return out


def item_vocabulary(wh: Warehouse) -> list[str]:
    """Every item id, from items and from events (an event may name an item with no metadata), sorted."""
    return db.analysis(wh, "item_vocabulary").column("item_id").to_pylist()


def load_dataset(wh: Warehouse, max_history: int = MAX_HISTORY, buckets: list[int] | None = None) -> Dataset:
    """The rankers' data; `buckets` restricts it to the users of some events partitions (scoring
    shards), with the same item vocabulary and content as the whole warehouse."""
    table = build_sequences(wh, max_history, buckets)
    items = item_vocabulary(wh)
    index = {item: i + 1 for i, item in enumerate(items)}
    queries = Queries(
        users=np.asarray(table.column("user_id").to_pylist(), dtype=object),
        hist_items=_pad(table.column("history_item_ids"), max_history, index, np.int64),
        hist_events=_pad(table.column("history_events"), max_history, EVENT_INDEX, np.int64),
        hist_ratios=_pad(table.column("history_watch_ratios"), max_history, None, np.float32),
    )
    labels = {
        "engage": np.ones(table.num_rows, np.float32),
        "watch": np.asarray(table.column("watched").to_pylist(), np.float32),
        "like": np.asarray(table.column("liked").to_pylist(), np.float32),
        "comment": np.asarray(table.column("commented").to_pylist(), np.float32),
    }
    # A behaviour gets a head where the positives disagree on it (MicroLens: all comments, one head).
    behaviours = ["engage"] + [b for b in BEHAVIOURS[1:] if 0 < labels[b].mean() < 1]
    content, source = content_matrix(wh, index)
    unaligned = [] if not source.startswith("fused:") else unaligned_items(wh, source.split(":", 1)[1])
    data = Dataset(["<pad>", *items], queries, np.asarray([index[i] for i in table.column("item_id").to_pylist()], np.int64),
                   np.asarray(table.column("split").to_pylist(), dtype=object), labels, behaviours, content, source,
                   target_events=np.asarray([EVENT_INDEX[e] for e in table.column("event").to_pylist()], np.int64),
                   target_ratios=np.asarray(table.column("watch_ratio").to_pylist(), np.float32),
                   event_ts=table.column("event_ts").cast(pa.int64()).to_numpy(),
                   scorable=np.linalg.norm(content, axis=1) > 0, unaligned=unaligned,
                   withheld=np.zeros(len(items) + 1, bool))
    train = data.split == "train"
    counts = np.bincount(data.targets[train], minlength=len(items) + 1)
    counts += np.bincount(data.queries.hist_items[train].ravel(), minlength=len(items) + 1)
    counts[0] = 0
    data.train_counts = counts
    return data


def unaligned_items(wh: Warehouse, fused_model: str) -> list[str]:
    """Items with raw embeddings of the models that `fused_model` (aligned@<version>) was trained
    on, but no fused vector: extracted after align-items last ran. Raw embeddings of other models
    (another preset extracted alongside) are not the alignment's inputs and do not count."""
    meta = wh.models_dir / "align" / fused_model.split("@", 1)[-1] / "meta.json"
    raw = list(json.loads(meta.read_text()).get("raw_models", {}).values()) if meta.exists() else []
    raw = raw or None  # no record of the alignment's inputs: any raw model counts
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


def negative_samples(items: list[str], table: pa.Table, seed: int) -> pa.Table:
    """Rows for `samples`: one uniform and one popularity-proportional (training counts) negative
    item per positive row of `table` (build_sequences output), seeded, without history."""
    index = {item: i for i, item in enumerate(items)}
    train = np.asarray(table.column("split").to_pylist()) == "train"
    counts = np.bincount([index[i] for i, t in zip(table.column("item_id").to_pylist(), train) if t], minlength=len(items))
    rng = np.random.default_rng(seed)
    n = table.num_rows
    uniform = rng.integers(0, len(items), n)
    popular = rng.choice(len(items), size=n, p=(counts + 1e-3) / (counts + 1e-3).sum())
    picked = np.concatenate([uniform, popular])
    take = np.concatenate([np.arange(n), np.arange(n)])
    empty_str = pa.array([[]] * (2 * n), pa.list_(pa.string()))
    return pa.table({
        "user_id": table.column("user_id").take(take), "item_id": pa.array([items[i] for i in picked]),
        "label": pa.array(np.zeros(2 * n, np.int8)), "event_ts": table.column("event_ts").take(take),
        "event": pa.nulls(2 * n, pa.string()), "history_item_ids": empty_str, "history_events": empty_str,
        "history_watch_ratios": pa.array([[]] * (2 * n), pa.list_(pa.float32())),
        "split": table.column("split").take(take), "negative_kind": pa.array(["uniform"] * n + ["popularity"] * n),
    })


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
        raise MissingContent(f"{name} needs content vectors, and the warehouse has none; run `reelsense extract` "
                             "(and `reelsense align` for several modalities) first, or train an id-only ranker")
    if len(data.unaligned):
        shown = ", ".join(data.unaligned[:5]) + (" ..." if len(data.unaligned) > 5 else "")
        have = "item has" if len(data.unaligned) == 1 else "items have"
        raise MissingContent(f"{len(data.unaligned)} {have} raw embeddings but no {data.content_source} vector "
                             f"({shown}); run `reelsense align` to project them, then train or score again")
