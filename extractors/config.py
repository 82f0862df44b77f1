"""Configuration of extract-items: one frozen dataclass, loaded from TOML; unknown keys raise.

# extract.toml
preset = "offline"          # offline (EfficientNet-Lite0, MiniLM, musicnn) | paper (CLIP, CLAP)
modalities = ["frames", "text", "audio"]
n_frames = 8                # frames sampled per video
frame_sampling = "exact"    # exact | keyframes (nearest keyframes, scaled in FFmpeg; much faster)
decode_short_side = 256     # keyframes mode: shorter side scaled to this in FFmpeg (never enlarged; 0: not scaled)
batch_items = 16            # items per batch (batches span items)
commit_items = 256          # commit to `embeddings` once whole batches hold this many items (a crash loses fewer than commit_items + batch_items)
decode_workers = 0          # parallel decoding threads; 0 = one per CPU core
prefetch_batches = 2        # batches decoded ahead of the encoder
device = "auto"             # auto (CUDA when present) | cpu | cuda | cuda:1
clip_arch = "ViT-B-32"
clip_checkpoint = ""        # or env REELSENSE_CLIP_CHECKPOINT
clap_checkpoint = ""        # or env REELSENSE_CLAP_CHECKPOINT
clap_audio_model = "HTSAT-tiny"
clap_text_model = "roberta"
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from warehouse.errors import InvalidSettings  # ConfigError: importable from here as before
from warehouse.settings import override, read_toml

PRESETS = ("offline", "paper")
FRAME_SAMPLINGS = ("exact", "keyframes")  # extractors.decode: how frames are picked
MIN_SHORT_SIDE = 224  # EfficientNet-Lite0's and CLIP ViT-B-32's input size


@dataclass(frozen=True)
class ExtractConfig:
    preset: str = "offline"
    modalities: tuple[str, ...] = ("frames", "text", "audio")
    n_frames: int = 8
    frame_sampling: str = "exact"
    decode_short_side: int = 256
    batch_items: int = 16
    commit_items: int = 256
    decode_workers: int = 0
    prefetch_batches: int = 2
    device: str = "auto"
    clip_arch: str = "ViT-B-32"
    clip_checkpoint: str = ""
    clap_checkpoint: str = ""
    clap_audio_model: str = "HTSAT-tiny"
    clap_text_model: str = "roberta"

    def __post_init__(self) -> None:
        problems = []  # every one at once (InvalidSettings), so a settings file is fixed in one pass
        if self.preset not in PRESETS:
            problems.append(f"preset {self.preset!r} is not one of {', '.join(PRESETS)}")
        unknown = [m for m in self.modalities if m not in ("frames", "text", "audio")]  # a list: a TOML value may be unhashable
        if unknown or not self.modalities:
            problems.append(f"modalities {list(self.modalities)} must be a non-empty subset of frames, text, audio")
        if self.frame_sampling not in FRAME_SAMPLINGS:
            problems.append(f"frame_sampling {self.frame_sampling!r} is not one of {', '.join(FRAME_SAMPLINGS)}")
        for name in ("n_frames", "batch_items", "commit_items", "prefetch_batches"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.decode_workers < 0:
            problems.append(f"decode_workers must be 0 (one per core) or more, got {self.decode_workers}")
        if self.decode_short_side != 0 and self.decode_short_side < MIN_SHORT_SIDE:
            problems.append(
                f"decode_short_side must be 0 (not scaled) or at least {MIN_SHORT_SIDE} (the encoders' input "
                f"size: smaller frames would be enlarged again), got {self.decode_short_side}"
            )
        if problems:
            raise InvalidSettings(type(self).__name__, problems)

    def replace(self, **changes: Any) -> ExtractConfig:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def workers(self) -> int:
        """Decoding threads: as configured, or one per CPU core this process may use."""
        if self.decode_workers:
            return self.decode_workers
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def load_config(path: str | Path | None) -> ExtractConfig:
    if path is None:
        return ExtractConfig()
    values = read_toml(path)
    if isinstance(values.get("modalities"), list):
        values["modalities"] = tuple(values["modalities"])
    return override(ExtractConfig(), values, str(path))  # unknown keys, wrong types and ranges name the file
