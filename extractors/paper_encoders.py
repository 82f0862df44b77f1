"""The paper preset: CLIP (open_clip) for frames and titles, CLAP (laion-clap) for audio.

No weights are downloaded at run time. Each encoder loads a local checkpoint whose path comes from
config (`clip_checkpoint`, `clap_checkpoint`) or the environment (`REELSENSE_CLIP_CHECKPOINT`,
`REELSENSE_CLAP_CHECKPOINT`); a missing file is a `ModelNotFound` naming the file and where to get
it. `HF_HUB_OFFLINE=1` and `TRANSFORMERS_OFFLINE=1` are set before laion-clap is imported (lazily),
so nothing waits on network retries.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from extractors.encoders import (
    Embedded,
    _autocast,
    _loaded,
    check_audio,
    forward_in_chunks,
    frames_to_tensor,
    hashtags,
    micro_batch,
    quiet_weight_loading,
    sampled_version,
    split_by_item,
)
from warehouse.errors import ModelNotFound

CLIP_HOWTO = (
    "download an open_clip checkpoint for {arch} (e.g. open_clip_pytorch_model.bin from "
    "https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K) and pass its path as "
    "clip_checkpoint in the config or REELSENSE_CLIP_CHECKPOINT"
)
CLAP_HOWTO = (
    "download a laion-clap checkpoint (e.g. 630k-audioset-best.pt from "
    "https://huggingface.co/lukewys/laion_clap) and pass its path as clap_checkpoint in the config "
    "or REELSENSE_CLAP_CHECKPOINT"
)


def offline_hub() -> None:
    """Make Hugging Face libraries fail fast instead of retrying a network that is not there."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def require_file(path: str | os.PathLike[str] | None, what: str, howto: str) -> Path:
    if not path:
        raise ModelNotFound(f"no {what} checkpoint configured; {howto}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelNotFound(f"{what} checkpoint {path} does not exist; {howto}")
    return path


class ClipModel:
    """One open_clip model shared by the frames and text encoders built from it."""

    def __init__(self, arch: str = "ViT-B-32", checkpoint: str | None = None) -> None:
        self.arch = arch
        self.checkpoint = checkpoint or os.environ.get("REELSENSE_CLIP_CHECKPOINT")
        self.model: Any = None
        self.device = "cpu"

    @property
    def version(self) -> str:
        return Path(self.checkpoint).stem if self.checkpoint else "unset"

    def require_checkpoint(self) -> Path:
        """The checkpoint's path, or ModelNotFound saying how to get one (checked before a run starts)."""
        return require_file(self.checkpoint, f"CLIP {self.arch}", CLIP_HOWTO.format(arch=self.arch))

    def load(self, device: str = "cpu") -> None:
        if self.model is not None:
            return
        offline_hub()
        import open_clip

        path = self.require_checkpoint()
        model, _, preprocess = open_clip.create_model_and_transforms(self.arch, pretrained=str(path), device=device)
        normalize = next(t for t in preprocess.transforms if type(t).__name__ == "Normalize")
        self.mean, self.std = torch.tensor(normalize.mean), torch.tensor(normalize.std)
        self.size = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size
        self.tokenizer = open_clip.get_tokenizer(self.arch)
        self.model, self.device = model.eval(), device


# Zero-shot labels for CLIP frame tags ("a video about <label>"): what short videos are about.
ZERO_SHOT_LABELS = (
    "cooking",
    "food",
    "sports",
    "football",
    "fitness",
    "dance",
    "music",
    "pets",
    "cats",
    "dogs",
    "travel",
    "nature",
    "beach",
    "mountains",
    "city",
    "cars",
    "gaming",
    "beauty",
    "makeup",
    "fashion",
    "comedy",
    "children",
    "animals",
    "art",
    "technology",
    "science",
    "news",
    "education",
    "family",
    "weddings",
)


class ClipFrames:
    modality, name = "frames", "clip"

    def __init__(self, clip: ClipModel, labels: Sequence[str] = ZERO_SHOT_LABELS, top_k: int = 3, *, sampling: str = "exact", short_side: int = 256) -> None:
        self.clip, self.labels, self.top_k = clip, tuple(labels), top_k
        self.sampling, self.short_side = sampling, short_side
        self._label_vectors: torch.Tensor | None = None

    def require_checkpoint(self) -> Path:
        return self.clip.require_checkpoint()

    def _zero_shot(self, model) -> torch.Tensor:
        """(labels, D) unit text vectors of the prompts, computed once per load."""
        if self._label_vectors is None:
            tokens = self.clip.tokenizer([f"a video about {label}" for label in self.labels]).to(self.clip.device)
            with _autocast(self.clip.device):
                text = model.encode_text(tokens).float()
            self._label_vectors = torch.nn.functional.normalize(text, dim=-1)
        return self._label_vectors

    @property
    def version(self) -> str:
        return sampled_version(f"{self.clip.arch}-{self.clip.version}", self.sampling, self.short_side)

    @property
    def dim(self) -> int:
        return int(_loaded(self.clip.model, self).text_projection.shape[1])

    def load(self, device: str = "cpu") -> None:
        self.clip.load(device)

    @torch.inference_mode()
    def embed(self, batch: Sequence[npt.NDArray[np.uint8]]) -> Embedded:
        clip = self.clip
        model = _loaded(clip.model, self)
        x = torch.cat([frames_to_tensor(f, clip.size, clip.device) for f in batch])  # (sum N, 3, S, S) on the device
        x = (x - clip.mean[:, None, None].to(clip.device)) / clip.std[:, None, None].to(clip.device)
        with _autocast(clip.device):
            features = forward_in_chunks(model.encode_image, x, micro_batch(clip.device, cpu=8, gpu=256)).float()  # (sum N, D)
        per_item = [f.mean(0) for f in split_by_item(features, [len(f) for f in batch])]
        vectors = torch.nn.functional.normalize(torch.stack(per_item), dim=-1)
        top = (vectors @ self._zero_shot(model).T).topk(min(self.top_k, len(self.labels)), dim=-1).indices  # (N, k)
        tags = [[self.labels[i] for i in row] for row in top.cpu().tolist()]
        return Embedded(vectors.cpu().numpy().astype(np.float32), tags)


class ClipText:
    modality, name = "text", "clip"

    def __init__(self, clip: ClipModel) -> None:
        self.clip = clip

    @property
    def version(self) -> str:
        return f"{self.clip.arch}-{self.clip.version}"

    require_checkpoint = ClipFrames.require_checkpoint
    dim = ClipFrames.dim
    load = ClipFrames.load

    @torch.inference_mode()
    def embed(self, batch: Sequence[str]) -> Embedded:
        clip = self.clip
        model = _loaded(clip.model, self)
        tokens = clip.tokenizer(list(batch)).to(clip.device)  # truncated to the context length
        with _autocast(clip.device):
            vectors = torch.nn.functional.normalize(model.encode_text(tokens).float(), dim=-1)
        return Embedded(vectors.cpu().numpy().astype(np.float32), [hashtags(t) for t in batch])


class ClapAudio:
    """laion-clap audio branch (HTSAT-tiny by default), 48 kHz mono input, 512-d output."""

    modality, name, dim = "audio", "clap", 512
    sample_rate = 48000
    max_samples = 480000  # 10 s, the model's input length

    def __init__(self, checkpoint: str | None = None, *, audio_model: str = "HTSAT-tiny", text_model: str = "roberta") -> None:
        self.checkpoint = checkpoint or os.environ.get("REELSENSE_CLAP_CHECKPOINT")
        self.audio_model, self.text_model = audio_model, text_model
        self.model: Any = None

    @property
    def version(self) -> str:
        return f"{self.audio_model}-{Path(self.checkpoint).stem if self.checkpoint else 'unset'}"

    def require_checkpoint(self) -> Path:
        return require_file(self.checkpoint, "CLAP", CLAP_HOWTO)

    def load(self, device: str = "cpu") -> None:
        path = self.require_checkpoint()
        offline_hub()
        import laion_clap  # noqa: F401  (puts laion-clap's clap_module on the import path)
        from clap_module import create_model
        from clap_module.factory import load_state_dict

        try:
            with quiet_weight_loading():  # its roberta text branch loads through transformers
                model, self.config = create_model(self.audio_model, self.text_model, precision="fp32", device=device, enable_fusion=False)
        except OSError as exc:  # the roberta text branch reads roberta-base from the HF cache
            raise ModelNotFound(
                f"CLAP text branch '{self.text_model}' needs its Hugging Face files offline ({exc}); "
                "fill the cache on a connected machine (huggingface-cli download roberta-base) and copy ~/.cache/huggingface here"
            ) from exc
        state = load_state_dict(str(path), skip_params=False)  # strips DataParallel's 'module.'
        # Checkpoints saved with older transformers carry a position_ids buffer newer ones lack.
        if "text_branch.embeddings.position_ids" not in model.state_dict():
            state.pop("text_branch.embeddings.position_ids", None)
        missing = [k for k in model.load_state_dict(state, strict=False).missing_keys if k.startswith("audio_")]
        if missing:
            raise ModelNotFound(f"CLAP checkpoint {path} lacks audio weights {missing[:3]}...; is it a {self.audio_model} checkpoint?")
        self.model, self.device = model.eval(), device

    @torch.inference_mode()
    def embed(self, batch: Sequence[npt.NDArray[np.float32]]) -> Embedded:
        from laion_clap.training.data import get_audio_features

        model = _loaded(self.model, self)
        inputs = []
        for audio in batch:
            check_audio(audio)
            # The middle 10 s, quantised to int16 as laion-clap does: deterministic (its own
            # cropping of longer audio is random).
            start = max(0, (len(audio) - self.max_samples) // 2)
            clip = np.clip(audio[start : start + self.max_samples], -1, 1)
            wave = torch.from_numpy((clip * 32767).astype(np.int16).astype(np.float32) / 32767)
            inputs.append(
                get_audio_features({}, wave, self.max_samples, data_truncating="rand_trunc", data_filling="repeatpad", audio_cfg=self.config["audio_cfg"])
            )
        vectors = model.get_audio_embedding(inputs).float()  # (B, 512), L2-normalised by CLAP
        return Embedded(vectors.cpu().numpy().astype(np.float32), [[] for _ in batch])
