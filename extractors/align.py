"""Cross-modal alignment: contrastive projection heads and attention fusion (flow align-items).

One light head per modality (standardise, Linear-GELU-Linear to d=256, L2-normalise) maps frames,
text and audio vectors into one space. Training minimises symmetric InfoNCE over every modality
pair of the same item (in-batch negatives, learnable temperature); a modality an item lacks is
masked out of the pairs it would be in, never zero-filled. An attention fusion (a score per
projected modality, softmax over the modalities an item has) makes the fused item vector; it is
trained with the same loss between two fused views of each item built from random subsets of its
modalities, so its weights say how much each modality counts for that item. Held-out items give
early stopping and the retrieval evaluation, against random projections of the same size.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from warehouse.settings import check_ranges

Vectors = dict[str, npt.NDArray[np.float32]]  # modality -> (N, dim); rows of missing items are NaN


@dataclass(frozen=True)
class AlignConfig:
    dim: int = 256
    hidden: int = 512
    epochs: int = 300
    patience: int = 25
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        held_out = () if 0 < self.val_fraction < 1 else (f"val_fraction must be between 0 and 1 (exclusive), got {self.val_fraction}",)
        check_ranges(self, positive=("dim", "hidden", "epochs", "patience", "batch_size", "lr"), rules=held_out)


class AlignmentModel(nn.Module):
    def __init__(self, input_dims: dict[str, int], config: AlignConfig = AlignConfig()) -> None:
        super().__init__()
        self.modalities = sorted(input_dims)
        self.input_dims = dict(input_dims)
        self.config = config
        for m in self.modalities:  # per-modality standardisation, fitted on the training items
            self.register_buffer(f"mean_{m}", torch.zeros(input_dims[m]))
            self.register_buffer(f"std_{m}", torch.ones(input_dims[m]))
        self.heads = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(input_dims[m], config.hidden), nn.GELU(), nn.Linear(config.hidden, config.dim)) for m in self.modalities}
        )
        self.fusion_score = nn.ModuleDict({m: nn.Linear(config.dim, 1) for m in self.modalities})
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def fit_standardisation(self, x: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> None:
        for m in self.modalities:
            rows = x[m][present[m]]
            if len(rows) == 0:  # no training item holds it (all in the held-out split): left as is (it was an IndexError)
                continue
            getattr(self, f"mean_{m}").copy_(rows.mean(0))
            getattr(self, f"std_{m}").copy_(rows.std(0).clamp_min(1e-6) if len(rows) > 1 else torch.ones_like(rows[0]))

    def project(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Raw vectors (B, dim_m) -> aligned unit vectors (B, d). NaN rows (missing) stay NaN-free
        garbage only where masked; callers index by the presence mask."""
        out = {}
        for m in self.modalities:
            z = (torch.nan_to_num(x[m]) - getattr(self, f"mean_{m}")) / getattr(self, f"std_{m}")
            out[m] = nn.functional.normalize(self.heads[m](z), dim=-1)
        return out

    def fuse(self, z: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention over the modalities each item has: fused (B, d) and weights (B, M)."""
        scores = torch.stack([self.fusion_score[m](z[m]).squeeze(-1) for m in self.modalities], dim=1)  # (B, M)
        mask = torch.stack([present[m] for m in self.modalities], dim=1)  # (B, M)
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
        weights = torch.nan_to_num(weights)  # an item with no modality at all gets zero weights
        fused = sum(weights[:, i : i + 1] * z[m] for i, m in enumerate(self.modalities))
        return nn.functional.normalize(fused, dim=-1), weights

    def version(self) -> str:
        buffer = io.BytesIO()
        torch.save({k: v.cpu() for k, v in sorted(self.state_dict().items())}, buffer)
        return hashlib.sha256(buffer.getvalue()).hexdigest()[:12]


def info_nce(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with in-batch negatives: row i of `a` matches row i of `b`."""
    logits = logit_scale.exp().clamp(max=100) * a @ b.T  # (B, B)
    target = torch.arange(len(a), device=a.device)
    return (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target)) / 2


def alignment_loss(
    model: AlignmentModel, x: dict[str, torch.Tensor], present: dict[str, torch.Tensor], generator: torch.Generator | None = None
) -> torch.Tensor:
    z = model.project(x)
    losses = []
    for a, b in itertools.combinations(model.modalities, 2):
        both = present[a] & present[b]  # only items that have both modalities take part
        if both.sum() >= 2:
            losses.append(info_nce(z[a][both], z[b][both], model.logit_scale))
    if generator is not None and len(model.modalities) > 1:
        views = [_random_subset(present, generator) for _ in range(2)]
        (f1, _), (f2, _) = model.fuse(z, views[0]), model.fuse(z, views[1])
        has = torch.stack([views[0][m] for m in model.modalities], 1).any(1) & torch.stack([views[1][m] for m in model.modalities], 1).any(1)
        if has.sum() >= 2:
            losses.append(info_nce(f1[has], f2[has], model.logit_scale))
    return torch.stack(losses).mean() if losses else torch.zeros((), requires_grad=True)


def _random_subset(present: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Keep each present modality with probability 1/2; a row left with none keeps one at random."""
    names = list(present)
    has = torch.stack([present[m] for m in names], dim=1)  # (B, M)
    noise = torch.rand(has.shape, generator=generator)
    keep = has & (noise < 0.5)
    one = nn.functional.one_hot(noise.masked_fill(~has, -1).argmax(1), len(names)).bool() & has
    keep = torch.where(keep.any(1, keepdim=True), keep, one)
    return {m: keep[:, i] for i, m in enumerate(names)}


def to_tensors(vectors: Vectors) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    x = {m: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for m, v in vectors.items()}
    present = {m: ~torch.isnan(v).any(1) for m, v in x.items()}
    return x, present


HOLD_OUT_FROM = 10  # items: with fewer, none is held out (all train, and the validation loss is the training items')


def split_items(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(2, int(round(n * val_fraction))) if n >= HOLD_OUT_FROM else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


@dataclass
class TrainResult:
    model: AlignmentModel
    train_idx: np.ndarray
    val_idx: np.ndarray
    history: list[dict[str, float]]
    best_epoch: int


def train_alignment(vectors: Vectors, config: AlignConfig = AlignConfig()) -> TrainResult:
    """Fit heads and fusion on the training items; keep the epoch with the lowest validation loss."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    x, present = to_tensors(vectors)
    n = len(next(iter(x.values())))
    train_idx, val_idx = split_items(n, config.val_fraction, config.seed)
    model = AlignmentModel({m: v.shape[1] for m, v in x.items()}, config)
    model.fit_standardisation(_rows(x, train_idx), _rows(present, train_idx))
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best, best_state, best_epoch, history = math.inf, None, 0, []
    for epoch in range(config.epochs):
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=generator).numpy()]
        train_losses = []
        for start in range(0, len(order), config.batch_size):
            rows = order[start : start + config.batch_size]
            loss = alignment_loss(model, _rows(x, rows), _rows(present, rows), generator)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            train_losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            eval_idx = val_idx if len(val_idx) else train_idx
            val = alignment_loss(model, _rows(x, eval_idx), _rows(present, eval_idx)).item()
        history.append({"epoch": epoch, "train_loss": float(np.mean(train_losses)), "val_loss": val})
        if val < best - 1e-4:
            best, best_epoch = val, epoch
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= config.patience:
            break
    model.load_state_dict(best_state)
    return TrainResult(model.eval(), train_idx, val_idx, history, best_epoch)


def _rows(tensors: dict[str, torch.Tensor], idx: np.ndarray) -> dict[str, torch.Tensor]:
    index = torch.from_numpy(np.asarray(idx, dtype=np.int64))
    return {m: t[index] for m, t in tensors.items()}


@torch.no_grad()
def apply_alignment(model: AlignmentModel, vectors: Vectors) -> tuple[Vectors, npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Aligned vectors per modality (NaN rows where missing), fused vectors and fusion weights (N, M)."""
    x, present = to_tensors({m: vectors[m] for m in model.modalities})
    z = model.project(x)
    fused, weights = model.fuse(z, present)
    aligned = {m: np.where(present[m].numpy()[:, None], z[m].numpy(), np.nan).astype(np.float32) for m in model.modalities}
    return aligned, fused.numpy().astype(np.float32), weights.numpy().astype(np.float32)


def rows_to_store(matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
    """The rows of an `apply_alignment` output that hold a vector: not NaN (the item lacks that
    modality) and not all zeros (a fused row of an item with no modality)."""
    return np.flatnonzero(~np.isnan(matrix).any(1) & (np.abs(matrix).sum(1) > 0))


def retrieval(queries: npt.NDArray[np.float32], targets: npt.NDArray[np.float32]) -> dict[str, float]:
    """Query i should retrieve target i among all targets (cosine): recall@1, recall@10, median rank."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    t = targets / np.linalg.norm(targets, axis=1, keepdims=True)
    sims = q @ t.T  # (N, N)
    ranks = 1 + (sims > np.diag(sims)[:, None]).sum(1)
    return {"recall@1": float((ranks <= 1).mean()), "recall@10": float((ranks <= 10).mean()), "median_rank": float(np.median(ranks)), "candidates": int(len(t))}


def random_projection(vectors: Vectors, dim: int, seed: int) -> Vectors:
    """The unaligned baseline: each modality through its own fixed Gaussian projection to `dim`."""
    rng = np.random.default_rng(seed)
    return {m: (np.nan_to_num(v) @ rng.normal(size=(v.shape[1], dim))).astype(np.float32) for m, v in sorted(vectors.items())}


def model_bytes(model: AlignmentModel) -> bytes:
    """The checkpoint `load_model` reads (flows/align.py writes it atomically)."""
    buffer = io.BytesIO()
    torch.save({"input_dims": model.input_dims, "config": asdict(model.config), "state_dict": model.state_dict()}, buffer)
    return buffer.getvalue()


def save_model(model: AlignmentModel, path) -> None:
    Path(path).write_bytes(model_bytes(model))


def load_model(path) -> AlignmentModel:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = AlignmentModel(saved["input_dims"], AlignConfig(**saved["config"]))
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def vectors_from_rows(rows: list[dict], modalities: list[str]) -> tuple[list[str], list[str], Vectors]:
    """Rows (item_id, content_hash, modality, vector) -> item ids, their hashes, and one (N, dim)
    matrix per modality with NaN rows where an item lacks that modality."""
    items = sorted({(r["item_id"], r["content_hash"]) for r in rows})
    index = {item_id: i for i, (item_id, _) in enumerate(items)}
    vectors: Vectors = {}
    for r in rows:
        v = np.asarray(r["vector"], np.float32)
        matrix = vectors.setdefault(r["modality"], np.full((len(items), len(v)), np.nan, np.float32))
        matrix[index[r["item_id"]]] = v
    return [i for i, _ in items], [h for _, h in items], {m: vectors[m] for m in modalities if m in vectors}


def topic_neighbours(queries: npt.NDArray[np.float32], targets: npt.NDArray[np.float32], topics: list[str]) -> float:
    """Share of items whose nearest *other* item (query modality -> target modality) has its topic."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    t = targets / np.linalg.norm(targets, axis=1, keepdims=True)
    sims = q @ t.T
    np.fill_diagonal(sims, -np.inf)
    nearest = sims.argmax(1)
    return float(np.mean([topics[i] == topics[j] for i, j in enumerate(nearest)]))


def evaluate_alignment(model: AlignmentModel, vectors: Vectors, topics: list[str] | None, seed: int) -> dict:
    """Retrieval for every ordered modality pair on the given (held-out) items, aligned vs random."""
    aligned, _, _ = apply_alignment(model, vectors)
    baseline = random_projection(vectors, model.config.dim, seed)
    report: dict = {"retrieval": {}}
    if topics is not None:
        report["topic_neighbours"] = {}
    for a, b in itertools.permutations(model.modalities, 2):
        both = ~np.isnan(vectors[a]).any(1) & ~np.isnan(vectors[b]).any(1)
        if both.sum() < 2:
            continue
        pair = f"{a}->{b}"
        report["retrieval"][pair] = {
            "aligned": retrieval(aligned[a][both], aligned[b][both]),
            "random": retrieval(baseline[a][both], baseline[b][both]),
        }
        if topics is not None:
            kept = [t for t, ok in zip(topics, both) if ok]
            report["topic_neighbours"][pair] = {
                "aligned": topic_neighbours(aligned[a][both], aligned[b][both], kept),
                "random": topic_neighbours(baseline[a][both], baseline[b][both], kept),
            }
    return report
