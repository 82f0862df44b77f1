"""One shared suite for every encoder, plus checks that the real pretrained weights make sense.

No CLIP or CLAP checkpoint can be downloaded on the development machines, so their suite runs on
checkpoints saved from randomly initialised models: it proves the loading mechanism, not quality.
"""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from extractors.decode import decode_audio
from extractors.encoders import EfficientNetLite0, MiniLM, MusicnnTagger, hashtags, model_id
from extractors.musicnn import librosa_log_mel, log_mel_patches
from extractors.paper_encoders import ClapAudio, ClipFrames, ClipModel, ClipText
from warehouse.errors import ModelNotFound

RNG = np.random.default_rng(0)
INPUTS = {
    "frames": [RNG.integers(0, 255, (3, 90, 160, 3), dtype=np.uint8), RNG.integers(0, 255, (1, 160, 90, 3), dtype=np.uint8)],
    "text": ["cooking noodles at home #food", "a goal in the last minute #football"],
    "audio": [RNG.normal(0, 0.1, 16000 * 2).astype(np.float32), RNG.normal(0, 0.1, 16000 * 5).astype(np.float32)],
}


def offline_encoders():
    return [EfficientNetLite0(), MiniLM(), MusicnnTagger()]


def paper_encoders(root):
    clip = ClipModel("ViT-B-32", str(root / "clip-random-init.pt"))
    return [ClipFrames(clip), ClipText(clip), ClapAudio(str(root / "clap-random-init.pt"), text_model="transformer")]


@pytest.fixture(scope="module")
def every_encoder(random_checkpoints):
    encoders = offline_encoders() + paper_encoders(random_checkpoints)
    for encoder in encoders:
        encoder.load("cpu")
    return encoders


def test_shared_suite_shape_dtype_and_determinism(every_encoder):
    for encoder in every_encoder:
        batch = INPUTS[encoder.modality]
        if encoder.modality == "audio" and getattr(encoder, "sample_rate", 16000) != 16000:
            batch = [np.resize(a, len(a) * encoder.sample_rate // 16000) for a in batch]
        first, second = encoder.embed(batch), encoder.embed(batch)
        assert first.vectors.shape == (2, encoder.dim), model_id(encoder)
        assert first.vectors.dtype == np.float32 and np.isfinite(first.vectors).all(), model_id(encoder)
        np.testing.assert_array_equal(first.vectors, second.vectors)
        assert len(first.tags) == 2
        # Items in a batch do not leak into each other: one item alone gives the same vector.
        alone = encoder.embed(batch[:1]).vectors[0]
        np.testing.assert_allclose(alone, first.vectors[0], rtol=1e-4, atol=1e-5)


def test_clip_frames_tag_with_zero_shot_prompts(every_encoder):
    clip = next(e for e in every_encoder if isinstance(e, ClipFrames))
    tags = clip.embed(INPUTS["frames"]).tags
    assert [len(t) for t in tags] == [3, 3] and all(set(t) <= set(clip.labels) for t in tags)


def test_image_encoder_sees_a_cat_in_a_real_photo():
    encoder = EfficientNetLite0(top_k=3)
    encoder.load("cpu")
    tags = encoder.embed([skimage.data.chelsea()[None]]).tags[0]  # scikit-image's photo of a cat
    assert any("cat" in t or t == "tabby" for t in tags), tags


def test_minilm_ranks_a_paraphrase_above_an_unrelated_sentence(capfd):
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    try:
        hf_logging.enable_progress_bar()  # bars on, so the check below can fail
        encoder = MiniLM()
        encoder.load("cpu")
        # probe: transformers' "Loading weights" bar printed amid extract's lines; the setting is restored
        assert "Loading weights" not in capfd.readouterr().err and hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # and left off where it was off
        MiniLM().load("cpu")
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        (hf_logging.enable_progress_bar if shown else hf_logging.disable_progress_bar)()
    v = encoder.embed(["A kitten is sleeping on the sofa", "A small cat naps on the couch", "Interest rates rose again today"]).vectors
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


def test_musicnn_hears_drums_in_a_click_train():
    sr, bpm = 16000, 120
    t = np.arange(sr * 6) / sr
    audio = np.zeros_like(t)
    for onset in np.arange(0, 6, 60 / bpm / 2):  # eighth notes: kick on the beat, hat between
        local = t[int(onset * sr) :] - onset
        if int(onset * bpm / 60 * 2) % 2 == 0:
            hit = np.exp(-20 * local) * np.sin(2 * np.pi * (60 + 90 * np.exp(-30 * local)) * local)
        else:
            hit = 0.4 * np.exp(-80 * local) * np.random.default_rng(int(onset * 100)).normal(size=local.shape)
        audio[int(onset * sr) :] += hit
    encoder = MusicnnTagger(top_k=5)
    encoder.load("cpu")
    tags = encoder.embed([(0.5 * audio / np.abs(audio).max()).astype(np.float32)]).tags[0]
    assert {"drums", "beat", "beats"} & set(tags), tags


def test_musicnn_stays_finite_on_loud_audio():
    """musicnn's own float16 cast overflows on loud input (NaN tags); the port computes in float32."""
    encoder = MusicnnTagger()
    encoder.load("cpu")
    loud = np.sign(np.sin(2 * np.pi * 80 * np.arange(16000 * 3) / 16000)).astype(np.float32) * 30
    assert np.isfinite(encoder.embed([loud]).vectors).all()


def test_log_mel_in_torch_matches_librosa():
    """The STFT runs where musicnn runs (the GPU when there is one); its log-mel is librosa's."""
    t = np.arange(int(16000 * 6.5)) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) + RNG.normal(0, 0.05, len(t))).astype(np.float32)
    patches = log_mel_patches(audio)  # 6.5 s: 2 whole patches of 187 frames (3 s each)
    reference = librosa_log_mel(audio)
    assert patches.shape == (2, 187, 96)
    np.testing.assert_allclose(patches.numpy(), reference[: 2 * 187].reshape(2, 187, 96), atol=1e-4)
    short = log_mel_patches(audio[:8000])  # 0.5 s: one patch, repeat-padded
    np.testing.assert_allclose(short[0, :32].numpy(), librosa_log_mel(audio[:8000])[:32], atol=1e-4)
    np.testing.assert_allclose(short[0, 32:64].numpy(), short[0, :32].numpy())


@pytest.mark.data
def test_musicnn_vectors_agree_between_ffmpeg_and_soxr_resampling(shared_data):
    """decode_audio resamples inside FFmpeg; the former path decoded at the native rate and
    resampled with librosa's soxr_hq. musicnn's vectors of the 4 real tracks agree to 0.999."""
    import av
    import librosa

    encoder = MusicnnTagger()
    encoder.load("cpu")
    clips = sorted(shared_data.glob("microlens-50k/videos/*.mp4")) + [shared_data / "public-clips" / "bigbuckbunny.mp4"]
    for clip in clips:
        with av.open(str(clip)) as container:
            stream = container.streams.audio[0]
            mono = av.AudioResampler(format="flt", layout="mono")
            native = np.concatenate([o.to_ndarray().reshape(-1) for f in container.decode(stream) for o in mono.resample(f)])
            rate = stream.codec_context.sample_rate
        soxr = librosa.resample(native, orig_sr=rate, target_sr=16000, res_type="soxr_hq").astype(np.float32)
        ffmpeg, _ = decode_audio(clip, 16000)
        assert abs(len(ffmpeg) - len(soxr)) <= 16, clip
        a, b = encoder.embed([soxr, ffmpeg]).vectors
        assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) >= 0.999, clip


def test_missing_paper_checkpoints_name_the_file_and_how_to_get_it(tmp_path):
    with pytest.raises(ModelNotFound, match=r"clip\.pt does not exist; download an open_clip checkpoint"):
        ClipFrames(ClipModel("ViT-B-32", str(tmp_path / "clip.pt"))).load("cpu")
    with pytest.raises(ModelNotFound, match=r"clap\.pt does not exist; download a laion-clap checkpoint"):
        ClapAudio(str(tmp_path / "clap.pt")).load("cpu")


def test_clap_with_an_uncached_hub_text_branch_fails_fast_instead_of_hanging(random_checkpoints):
    # HF_HUB_OFFLINE is set, so transformers does not retry the network for roberta-base.
    with pytest.raises(ModelNotFound, match="needs its Hugging Face files offline"):
        ClapAudio(str(random_checkpoints / "clap-random-init.pt"), text_model="roberta").load("cpu")


def test_hashtags():
    assert hashtags("so good # homemade summer food #Spicy") == ["homemade summer food", "spicy"]
    assert hashtags("no tags here") == []
    assert hashtags("#Fun #fun #pets #FUN") == ["fun", "pets"]  # probe: duplicates reached embeddings.tags
