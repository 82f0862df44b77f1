"""Check that the PyTorch musicnn port matches the original TensorFlow tagger.

    .venv/bin/python benchmarks/musicnn_parity.py --tf-python /path/to/tf-venv/bin/python [clips...]

The TensorFlow side runs musicnn 0.1.0's own `extractor()` (MTT_musicnn) in a separate virtual
environment (`pip install tensorflow-cpu tf_keras librosa soundfile` and `pip install --no-deps
musicnn==0.1.0`; TF_USE_LEGACY_KERAS=1 is set for it), since TensorFlow is not a reelsense
dependency. Both sides get the same 16 kHz mono audio. Reported per clip: the largest absolute
difference of the tag probabilities (taggram) and of the 200-d penultimate features, and whether
the top-5 tags agree. (Penultimate features are compared on the first patch only: musicnn's
`extractor()` fills the features of later patches with the first patch's, a bug in musicnn 0.1.0;
its taggram is correct for every patch.) The TensorFlow side computes its log-mel patches in float32 (musicnn's own
float16 cast overflows to inf on loud audio and the tags become meaningless; how many log-mel
cells overflowed, and how far its tags then are from the float32 ones, is reported too). Two rows
per clip: `same input` feeds the port the TensorFlow side's patches (isolates the network),
`reelsense` uses the port's own preprocessing (what runs in extract-items). Writes
docs/musicnn_parity.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from extractors.decode import decode_audio
from extractors.musicnn import MTT_LABELS, PATCH_FRAMES, SAMPLE_RATE, load_musicnn, log_mel_patches

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIPS = [
    REPO.parent / "shared/data/microlens-50k/videos/1002.mp4",
    REPO.parent / "shared/data/microlens-50k/videos/10034.mp4",
    REPO.parent / "shared/data/microlens-50k/videos/10040.mp4",
    REPO.parent / "shared/data/public-clips/bigbuckbunny.mp4",
]
TF_SIDE = """
import sys, numpy as np, librosa
import musicnn.extractor as mx
from musicnn import configuration as config

original_batch_data = mx.batch_data

def batch_data_float32(audio_file, n_frames, overlap):
    # musicnn's batch_data with the mel spectrogram kept in float32: its float16 cast overflows to
    # inf on loud audio and every tag becomes NaN. Nothing else changes.
    audio, sr = librosa.load(audio_file, sr=config.SR)
    rep = librosa.feature.melspectrogram(y=audio, sr=sr, hop_length=config.FFT_HOP, n_fft=config.FFT_SIZE, n_mels=config.N_MELS).T
    rep = np.log10(10000 * rep.astype(np.float32) + 1)
    batch = np.stack([rep[t : t + n_frames] for t in range(0, rep.shape[0] - n_frames + 1, overlap)])
    return batch, rep

for wav, out in zip(sys.argv[1::2], sys.argv[2::2]):
    mx.batch_data = original_batch_data
    taggram16, _, _ = mx.extractor(wav, model="MTT_musicnn", extract_features=True)
    mx.batch_data = batch_data_float32
    taggram, tags, features = mx.extractor(wav, model="MTT_musicnn", extract_features=True)
    batch, rep = batch_data_float32(wav, 187, 187)
    audio, sr = librosa.load(wav, sr=config.SR)
    mel16 = librosa.feature.melspectrogram(y=audio, sr=sr, hop_length=config.FFT_HOP, n_fft=config.FFT_SIZE, n_mels=config.N_MELS).astype(np.float16)
    overflow = float(np.isinf(10000 * mel16).mean())
    np.savez(out, taggram=taggram, penultimate=features["penultimate"], rep=rep, float16_overflow=overflow,
             float16_tag_error=float(np.abs(taggram16 - taggram).max()))
"""


def port_outputs(model: torch.nn.Module, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
        logits, penultimate = model(torch.from_numpy(patches))
    return torch.sigmoid(logits).numpy(), penultimate.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tf-python", required=True, help="python of a venv with tensorflow, tf_keras and musicnn")
    parser.add_argument("clips", nargs="*", type=Path, default=DEFAULT_CLIPS)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "musicnn_parity.md")
    args = parser.parse_args()
    model = load_musicnn()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pairs = []
        for clip in args.clips:
            audio, missing = decode_audio(clip, SAMPLE_RATE)
            if audio is None:
                raise SystemExit(f"{clip}: {missing}")
            wav = Path(tmp) / f"{clip.stem}.wav"
            sf.write(wav, audio, SAMPLE_RATE, subtype="FLOAT")
            pairs += [str(wav), str(Path(tmp) / f"{clip.stem}.npz")]
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
        subprocess.run([args.tf_python, "-c", TF_SIDE, *pairs], check=True, env=env, capture_output=True)
        for clip, wav, npz in zip(args.clips, pairs[::2], pairs[1::2]):
            tf_out = np.load(npz)
            rep = tf_out["rep"]
            same = np.stack([rep[s : s + PATCH_FRAMES] for s in range(0, len(rep) - PATCH_FRAMES + 1, PATCH_FRAMES)])
            audio, _ = sf.read(wav, dtype="float32")
            for label, patches in (("same input", same), ("reelsense", log_mel_patches(audio))):
                tags, penultimate = port_outputs(model, patches)
                top_tf = [MTT_LABELS[i] for i in np.argsort(-tf_out["taggram"].mean(0))[:5]]
                top_pt = [MTT_LABELS[i] for i in np.argsort(-tags.mean(0))[:5]]
                rows.append(
                    (
                        clip.name,
                        label,
                        len(patches),
                        float(np.abs(tags - tf_out["taggram"]).max()),
                        # musicnn's extractor refills features of patches 2.. with patch 1's
                        # (it unpacks them into other names): only patch 1 is comparable.
                        float(np.abs(penultimate[0] - tf_out["penultimate"][0]).max()),
                        top_tf == top_pt,
                        ", ".join(top_tf),
                        float(tf_out["float16_overflow"]),
                        float(tf_out["float16_tag_error"]),
                    )
                )
    lines = [
        "# musicnn port parity",
        "",
        "`.venv/bin/python benchmarks/musicnn_parity.py --tf-python <tf venv>/bin/python` (TensorFlow 2.21 + tf_keras, musicnn 0.1.0 MTT_musicnn; CPU).",
        "",
        "| clip | port input | patches | max abs diff, tag probabilities | max abs diff, penultimate (patch 1) | same top-5 tags "
        "| original top-5 tags | musicnn's float16 log-mel: cells overflowed, tag error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {c} | {kind} | {n} | {t:.2e} | {p:.2e} | {'yes' if same else 'no'} | {tags} | {ovf:.1%}, {err:.2f} |"
        for c, kind, n, t, p, same, tags, ovf, err in rows
    ]
    lines += [
        "",
        "musicnn's extractor() fills the features of patches 2.. with patch 1's (musicnn 0.1.0 bug), "
        "so penultimate features are compared on patch 1; tag probabilities on every patch.",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
