"""The report's figures, as PNG files (matplotlib, Agg backend: no display needed).

- `embedding_map`: a 2-D t-SNE map of the items' content vectors, coloured by topic or top tag;
- `user_figure`: one user on one figure: their trajectory across the map over time, the attention
  heat map of their top-scored items over their history, and their interest drift with the
  detected (and, on the sample, planted) shifts;
- `modality_bars`: each user's modality contributions (leave-one-modality-out, mean over their
  scored items).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402


def _save(fig, path: Path, *, dpi: int) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)  # figures are not garbage-collected by pyplot: one page per user would pile up
    return path


MAP_ITEMS = 3000  # items on the item map: t-SNE of all 19,220 MicroLens items alone took minutes


def map_rows(candidates: npt.NDArray[np.int64], keep: Iterable[int], limit: int = MAP_ITEMS, seed: int = 0) -> npt.NDArray[np.int64]:
    """The rows of the item map, sorted: every candidate when there are at most `limit`, else a
    seeded sample of `limit` of them plus the candidates in `keep` (the items of the users whose
    paths are drawn), so the map's cost stays flat as the catalogue grows."""
    candidates = np.asarray(candidates, np.int64)
    if len(candidates) <= limit:
        return np.sort(candidates)
    sampled = np.random.default_rng(seed).choice(candidates, size=limit, replace=False)
    kept = np.intersect1d(np.fromiter(keep, np.int64), candidates)
    return np.union1d(sampled, kept)


@dataclass(frozen=True)
class ItemMap:
    """The report's item map: 2-D coordinates of the items drawn, their group (topic or top tag)
    and the row of each item id."""

    coords: npt.NDArray[np.float32]
    groups: list[str]
    row_of: dict[str, int]

    def path(self, item_ids: Iterable[str]) -> npt.NDArray[np.float32]:
        """(n, 2) the map positions of a user's items in their order; items off the map left out."""
        return np.asarray([self.coords[self.row_of[i]] for i in item_ids if i in self.row_of], np.float32).reshape(-1, 2)


def item_map(item_ids: list[str], content: npt.NDArray[np.float32], drawn: Iterable[str], groups_of: Callable[[str], str]) -> ItemMap:
    """t-SNE of the items with a content vector (`content` rows follow `item_ids`): all of them, or a
    seeded MAP_ITEMS plus the `drawn` items (whose users' paths are plotted). Empty below 4 items."""
    row_of = {item_id: row for row, item_id in enumerate(item_ids)}
    rows = map_rows(np.flatnonzero(np.linalg.norm(content, axis=1) > 0), {row_of[i] for i in drawn if i in row_of})
    if len(rows) <= 3:
        return ItemMap(np.zeros((0, 2), np.float32), [], {})
    return ItemMap(tsne_coordinates(content[rows]), [groups_of(item_ids[i]) for i in rows], {item_ids[i]: k for k, i in enumerate(rows)})


def tsne_coordinates(vectors: npt.NDArray[np.float32], seed: int = 0) -> npt.NDArray[np.float32]:
    """(n, 2) t-SNE coordinates (cosine distances; perplexity scaled down for small sets)."""
    from sklearn.manifold import TSNE

    perplexity = float(max(2, min(30, (len(vectors) - 1) // 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, metric="cosine", init="pca", random_state=seed)
    return tsne.fit_transform(vectors).astype(np.float32)


MAP_GROUPS = 19  # groups coloured on the item map; the rest are drawn grey as "other"
OTHER = "other"


def _colours(groups: list[str]) -> dict[str, tuple]:
    palette = plt.get_cmap("tab10" if len(set(groups)) <= 10 else "tab20")
    return {g: palette(i % palette.N) for i, g in enumerate(sorted(set(groups)))}


def map_groups(groups: list[str], limit: int = MAP_GROUPS) -> list[str]:
    """Each item's group on the map: its own among the `limit` most common groups, else "other"
    (MicroLens items' top tags run into thousands: one colour and one scatter call each took 25 s
    per figure)."""
    counts = Counter(groups)
    if len(counts) <= limit + 1:
        return list(groups)
    top = {g for g, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]}
    return [g if g in top else OTHER for g in groups]


def embedding_map(
    coords: npt.NDArray[np.float32], groups: list[str], path: Path, *, title: str, trajectory: npt.NDArray[np.float32] | None = None, who: str = ""
) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 6))
    _draw_map(ax, coords, groups, trajectory, who)
    ax.set_title(title)
    return _save(fig, path, dpi=90)


def _draw_map(ax, coords, groups, trajectory, who: str) -> None:
    groups = map_groups(groups)
    colours = _colours([g for g in groups if g != OTHER])
    if OTHER in groups:  # drawn first, underneath the coloured groups
        colours = {OTHER: (0.75, 0.75, 0.75, 1.0), **colours}
    for group, colour in colours.items():
        mask = np.asarray(groups) == group
        ax.scatter(coords[mask, 0], coords[mask, 1], s=14, color=colour, alpha=0.6, label=group)
    if trajectory is not None and len(trajectory):
        ax.plot(trajectory[:, 0], trajectory[:, 1], color="black", lw=0.6, alpha=0.5)
        ax.scatter(
            trajectory[:, 0],
            trajectory[:, 1],
            c=np.arange(len(trajectory)),
            cmap="viridis",
            s=22,
            edgecolors="black",
            linewidths=0.3,
            label=f"{who} (dark: early, yellow: late)",
        )
    if len(colours) <= 20:
        ax.legend(fontsize=7, loc="best", markerscale=1.2)
    ax.set_xticks([])
    ax.set_yticks([])


def user_figure(
    path: Path,
    *,
    user: str,
    coords,
    groups,
    trajectory,
    attention: npt.NDArray[np.float32],
    history_labels: list[str],
    item_labels: list[str],
    drift: npt.NDArray[np.float64],
    detected: list[int],
    planted: list[int],
) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8), gridspec_kw={"width_ratios": [1.1, 1.5, 1.1]})
    _draw_map(axes[0], coords, groups, trajectory, user)
    axes[0].set_title(f"{user}: interactions across the item map")
    _draw_attention(fig, axes[1], attention, history_labels, item_labels)
    ax = axes[2]
    ax.plot(np.arange(len(drift)), drift, color="tab:blue", label="drift between windows")
    for i, index in enumerate(detected):
        ax.axvline(index, color="tab:red", lw=2, label="detected shift" if i == 0 else None)
    for i, index in enumerate(planted):
        ax.axvline(index, color="tab:green", ls="--", label="planted shift" if i == 0 else None)
    ax.set_xlabel("positive interactions, in time order")
    ax.set_title("interest drift")
    ax.legend(fontsize=7)
    return _save(fig, path, dpi=80)


def attention_heatmap(path: Path, attention: npt.NDArray[np.float32], history_labels: list[str], item_labels: list[str], *, user: str) -> Path:
    fig, ax = plt.subplots(figsize=(9, 4.5))
    _draw_attention(fig, ax, attention, history_labels, item_labels)
    ax.set_title(f"{user}: attention over the history (rows: top-scored items; right: newest)")
    return _save(fig, path, dpi=90)


def _draw_attention(fig, ax, attention, history_labels, item_labels) -> None:
    """attention (items, T) over the same history for several scored items."""
    if attention.size:
        image = ax.imshow(attention, aspect="auto", cmap="magma", vmin=0)
        ax.set_yticks(range(len(item_labels)), item_labels, fontsize=7)
        ax.set_xticks(range(len(history_labels)), history_labels, fontsize=6, rotation=70, ha="right")
        fig.colorbar(image, ax=ax, fraction=0.03)
    ax.set_title("attention over the history (rows: top-scored items; right: newest)")


def modality_bars(users: list[str], names: list[str], contributions: npt.NDArray[np.float32], path: Path) -> Path:
    """contributions (U, M): grouped bars per user."""
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(users) + 2), 4.2))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        ax.bar(np.arange(len(users)) + i * width, contributions[:, i], width, label=name)
    ax.set_xticks(np.arange(len(users)) + 0.4 - width / 2, users, rotation=60, fontsize=7)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_ylabel("score lost when left out")
    ax.set_title("modality contributions per user (mean over their scored items)")
    ax.legend(fontsize=8)
    return _save(fig, path, dpi=90)
