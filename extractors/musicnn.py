"""musicnn (Pons & Serra 2019, ISC licence) in PyTorch: the MTT_musicnn audio tagger.

The architecture is ported from musicnn/models.py (`build_musicnn`, front-end 7774timbraltemporal,
64-filter mid-end, 200-unit back-end). Weights come from the TF1 checkpoint inside the `musicnn`
wheel (installed with --no-deps, it is only a weight carrier here), converted once with
`python -m extractors.musicnn convert` (or automatically on first use) to a PyTorch state dict, so
TensorFlow is never needed. `benchmarks/musicnn_parity.py` compares this port with the original
TensorFlow tagger; its recorded result is in docs/musicnn_parity.md.

Preprocessing follows musicnn's extractor (16 kHz, 512-point FFT, hop 256, 96 mels, log10(1 + 10000 x),
3 s patches of 187 frames) with two deliberate differences: the mel spectrogram stays float32
(musicnn casts it to float16 first, which overflows to inf and gives NaN tags on loud audio), and
audio shorter than one patch is repeat-padded (musicnn's training config says `pad_short:
repeat-pad`; its extractor would return nothing).
"""

from __future__ import annotations

import argparse
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from warehouse.errors import ModelNotFound

SAMPLE_RATE = 16000
N_FFT, HOP, N_MELS, PATCH_FRAMES = 512, 256, 96, 187
BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default
MTT_LABELS = (
    "guitar",
    "classical",
    "slow",
    "techno",
    "strings",
    "drums",
    "electronic",
    "rock",
    "fast",
    "piano",
    "ambient",
    "beat",
    "violin",
    "vocal",
    "synth",
    "female",
    "indian",
    "opera",
    "male",
    "singing",
    "vocals",
    "no vocals",
    "harpsichord",
    "loud",
    "quiet",
    "flute",
    "woman",
    "male vocal",
    "no vocal",
    "pop",
    "soft",
    "sitar",
    "solo",
    "man",
    "classic",
    "choir",
    "voice",
    "new age",
    "dance",
    "male voice",
    "female vocal",
    "beats",
    "harp",
    "cello",
    "no voice",
    "weird",
    "country",
    "metal",
    "female voice",
    "choral",
)


class MusiCNN(nn.Module):
    """MTT_musicnn. Input: log-mel patches (B, 187, 96). Output: logits (B, 50), penultimate (B, 200)."""

    def __init__(self, n_classes: int = 50) -> None:
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPS)
        self.timbral = nn.ModuleList([nn.Conv2d(1, 204, (7, 38)), nn.Conv2d(1, 204, (7, 67))])
        self.timbral_bn = nn.ModuleList([nn.BatchNorm2d(204, eps=BN_EPS) for _ in range(2)])
        self.temporal = nn.ModuleList([nn.Conv2d(1, 51, (k, 1)) for k in (128, 64, 32)])
        self.temporal_bn = nn.ModuleList([nn.BatchNorm2d(51, eps=BN_EPS) for _ in range(3)])
        self.mid = nn.ModuleList([nn.Conv1d(561, 64, 7, padding=3), nn.Conv1d(64, 64, 7, padding=3), nn.Conv1d(64, 64, 7, padding=3)])
        self.mid_bn = nn.ModuleList([nn.BatchNorm1d(64, eps=BN_EPS) for _ in range(3)])
        self.pool_bn = nn.BatchNorm1d(1506, eps=BN_EPS)
        self.dense = nn.Linear(1506, 200)
        self.dense_bn = nn.BatchNorm1d(200, eps=BN_EPS)
        self.out = nn.Linear(200, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.input_bn(x.unsqueeze(1))  # (B, 1, T, F)
        front = []
        for conv, bn in zip(self.timbral, self.timbral_bn):
            y = bn(torch.relu(conv(nn.functional.pad(x, (0, 0, 3, 3)))))  # (B, 204, T, F')
            front.append(y.amax(dim=3))  # max over frequency: (B, 204, T)
        for conv, bn in zip(self.temporal, self.temporal_bn):
            k = conv.kernel_size[0]
            y = bn(torch.relu(conv(nn.functional.pad(x, (0, 0, (k - 1) // 2, k // 2)))))  # TF 'same'
            front.append(y.amax(dim=3))  # (B, 51, T)
        features = torch.cat(front, dim=1)  # (B, 561, T)
        layers = [features]
        h = self.mid_bn[0](torch.relu(self.mid[0](features)))  # (B, 64, T)
        layers.append(h)
        for conv, bn in zip(self.mid[1:], self.mid_bn[1:]):
            h = bn(torch.relu(conv(h))) + h  # residual
            layers.append(h)
        mid = torch.cat(layers, dim=1)  # (B, 753, T)
        # TF concatenates [max, mean] on a trailing axis and flattens: max0, mean0, max1, mean1, ...
        pooled = torch.stack([mid.amax(dim=2), mid.mean(dim=2)], dim=2).flatten(1)  # (B, 1506)
        penultimate = self.dense_bn(torch.relu(self.dense(self.pool_bn(pooled))))  # (B, 200)
        return self.out(penultimate), penultimate


def state_dict_from_tf(tensors: dict[str, npt.NDArray]) -> dict[str, torch.Tensor]:
    """Map the TF variable names of MTT_musicnn onto MusiCNN's parameters."""
    out: dict[str, torch.Tensor] = {}

    def bn(tf_name: str, name: str) -> None:
        for tf_key, key in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"), ("moving_variance", "running_var")):
            out[f"{name}.{key}"] = torch.from_numpy(tensors[f"{tf_name}/{tf_key}"])

    def conv2d(tf_name: str, name: str) -> None:  # TF (kh, kw, in, out) -> torch (out, in, kh, kw)
        out[f"{name}.weight"] = torch.from_numpy(tensors[f"{tf_name}/kernel"]).permute(3, 2, 0, 1).contiguous()
        out[f"{name}.bias"] = torch.from_numpy(tensors[f"{tf_name}/bias"])

    def conv1d(tf_name: str, name: str) -> None:  # TF (7, in, 1, out) -> torch (out, in, 7)
        out[f"{name}.weight"] = torch.from_numpy(tensors[f"{tf_name}/kernel"][:, :, 0, :]).permute(2, 1, 0).contiguous()
        out[f"{name}.bias"] = torch.from_numpy(tensors[f"{tf_name}/bias"])

    bn("batch_normalization", "input_bn")
    for i in range(2):
        conv2d(_tf("conv2d", i), f"timbral.{i}")
        bn(_tf("batch_normalization", i + 1), f"timbral_bn.{i}")
    for i in range(3):
        conv2d(_tf("conv2d", i + 2), f"temporal.{i}")
        bn(_tf("batch_normalization", i + 3), f"temporal_bn.{i}")
        conv1d(_tf("conv2d", i + 5), f"mid.{i}")
        bn(_tf("batch_normalization", i + 6), f"mid_bn.{i}")
    bn("batch_normalization_9", "pool_bn")
    bn("batch_normalization_10", "dense_bn")
    for tf_name, name in (("dense", "dense"), ("dense_1", "out")):
        out[f"{name}.weight"] = torch.from_numpy(tensors[f"{tf_name}/kernel"]).T.contiguous()
        out[f"{name}.bias"] = torch.from_numpy(tensors[f"{tf_name}/bias"])
    return out


def _tf(base: str, index: int) -> str:
    return base if index == 0 else f"{base}_{index}"


def wheel_checkpoint_prefix() -> str:
    """The checkpoint prefix inside the wheel: its files are named `.index` and `.data-...`."""
    try:
        import musicnn  # the wheel is a weight carrier only; importing its package needs no TensorFlow
    except ImportError as exc:
        raise ModelNotFound("the musicnn wheel is not installed; run `make setup` or `.venv/bin/pip install --no-deps musicnn==0.1.0`") from exc
    return str(Path(musicnn.__file__).parent / "MTT_musicnn") + os.sep


def default_weights_path() -> Path:
    cache = Path(os.environ.get("REELSENSE_CACHE", Path.home() / ".cache" / "reelsense"))
    return cache / "musicnn_mtt.pt"


def convert(out: Path) -> Path:
    """Convert the wheel's MTT_musicnn checkpoint to a PyTorch state dict at `out`."""
    from extractors.tf_checkpoint import read_checkpoint

    state = state_dict_from_tf(read_checkpoint(wheel_checkpoint_prefix()))
    MusiCNN().load_state_dict(state)  # fails loudly if any shape does not line up
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # concurrent first uses each write their own
    torch.save(state, tmp)
    os.replace(tmp, out)
    return out


def load_musicnn(weights: Path | None = None) -> MusiCNN:
    """The tagger in eval mode, converting the wheel's weights on first use."""
    weights = weights or default_weights_path()
    if not weights.is_file():
        convert(weights)
    model = MusiCNN()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


def log_mel_patches(audio: npt.NDArray[np.float32], device: str = "cpu") -> torch.Tensor:
    """Mono 16 kHz audio -> log-mel patches (P, 187, 96), float32, on `device`. The STFT runs in
    torch where the encoder runs; it matches librosa's melspectrogram (its defaults: periodic Hann
    window, centred frames zero-padded, power 2, Slaney mel filters) within float32 rounding
    (`librosa_log_mel`, tests/test_encoders.py)."""
    x = torch.from_numpy(np.ascontiguousarray(audio, np.float32)).to(device)
    spec = (
        torch.stft(x, N_FFT, hop_length=HOP, window=torch.hann_window(N_FFT, device=device), center=True, pad_mode="constant", return_complex=True).abs().pow(2)
    )  # (257, T)
    rep = torch.log10(10000 * (mel_filters(device) @ spec).T + 1)  # (T, 96)
    if rep.shape[0] < PATCH_FRAMES:
        rep = rep.repeat(int(np.ceil(PATCH_FRAMES / max(rep.shape[0], 1))), 1)[:PATCH_FRAMES]
    usable = rep.shape[0] // PATCH_FRAMES * PATCH_FRAMES
    return rep[:usable].reshape(-1, PATCH_FRAMES, N_MELS)


@lru_cache(maxsize=4)
def mel_filters(device: str) -> torch.Tensor:
    """librosa's Slaney mel filter bank (96, 257), once per device."""
    import librosa

    return torch.from_numpy(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)).float().to(device)


def librosa_log_mel(audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The reference: librosa's log-mel (T, 96) as musicnn's extractor computes it, in float32."""
    import librosa

    mel = librosa.feature.melspectrogram(y=audio.astype(np.float32), sr=SAMPLE_RATE, hop_length=HOP, n_fft=N_FFT, n_mels=N_MELS).T
    return np.log10(10000 * mel.astype(np.float32) + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description="Convert the musicnn wheel's MTT_musicnn checkpoint to PyTorch.")
    parser.add_argument("command", choices=["convert"])
    parser.add_argument("--out", type=Path, default=default_weights_path())
    args = parser.parse_args()
    print(f"wrote {convert(args.out)}")


if __name__ == "__main__":
    main()
