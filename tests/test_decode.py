"""Decoding: frames by seeking, audio to mono at the encoder's rate, every bad-media case."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from extractors.decode import decode_audio, decode_item, frame_indices, sample_frames
from warehouse.errors import MediaDecodeError


def write_video(
    path: Path,
    *,
    codec: str = "libx264",
    size: tuple[int, int] = (64, 48),
    frames: int = 24,
    fps: int = 12,
    pts_step: list[int] | None = None,
    tone_hz: float | None = None,
    rate: int = 44100,
    gop: int | None = None,
    container_format: str | None = None,
    offset: int = 0,
) -> Path:
    """A clip whose i-th frame has brightness 10 * i, so the decoded frame tells where it came from.
    `gop`: a keyframe exactly every `gop` frames (scene-cut keyframes off); `offset`: the first
    frame's timestamp, in frames (MPEG-TS and re-muxed files do not start at 0)."""
    width, height = size
    with av.open(str(path), "w", format=container_format) as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if gop is not None:
            params = f"keyint={gop}:min-keyint={gop}:scenecut=0"
            video.options = {"x264-params": params} if codec == "libx264" else {"x265-params": params + ":log-level=error"}
        if pts_step is not None:
            video.time_base = Fraction(1, 1000)
        audio = container.add_stream("aac", rate=rate, layout="mono") if tone_hz else None
        pts = 0
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 10 * i, np.uint8), format="rgb24")
            frame.pts = pts if pts_step is not None else i + offset
            pts += pts_step[i % len(pts_step)] if pts_step is not None else 1
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            t = np.arange(int(rate * frames / fps)) / rate
            wave = (0.5 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
            for start in range(0, len(wave), 1024):
                chunk = av.AudioFrame.from_ndarray(wave[None, start : start + 1024].copy(), format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = rate, start
                container.mux(audio.encode(chunk))
            container.mux(audio.encode(None))
    return path


def test_frame_indices_spread_over_the_clip():
    assert frame_indices(80, 8) == [5, 15, 25, 35, 45, 55, 65, 75]
    assert frame_indices(3, 8) == [0, 1, 2]


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_frames_are_sampled_across_the_video(tmp_path, codec):
    path = write_video(tmp_path / f"{codec}.mp4", codec=codec, frames=24)
    frames, duration = sample_frames(path, 4)
    assert frames.shape == (4, 48, 64, 3)
    assert duration == pytest.approx(2.0, abs=0.1)
    # Frames 3, 9, 15, 21 have brightness 30, 90, 150, 210 (lossy coding: within a few levels).
    assert np.allclose(frames.mean(axis=(1, 2, 3)), [30, 90, 150, 210], atol=6)


def test_portrait_clip_keeps_its_shape(tmp_path):
    frames, _ = sample_frames(write_video(tmp_path / "portrait.mp4", size=(48, 96)), 2)
    assert frames.shape == (2, 96, 48, 3)


def test_variable_frame_rate_and_short_clips(tmp_path):
    vfr = write_video(tmp_path / "vfr.mp4", frames=12, pts_step=[40, 120, 80])
    frames, duration = sample_frames(vfr, 4)
    assert len(frames) == 4 and duration > 0
    short, _ = sample_frames(write_video(tmp_path / "short.mp4", frames=3), 8)
    assert short.shape[0] == 3


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_keyframe_sampling_takes_the_nearest_keyframe_within_a_segment(tmp_path, codec):
    """24 frames at 12 fps, keyframes at frames 0, 8, 16. Four segments of 0.5 s want frames 3, 9,
    15 and 21; keyframes 0, 8 and 16 lie inside the first three segments, none inside the last,
    whose exact frame (21) is decoded (brightness 10 x frame)."""
    path = write_video(tmp_path / f"gop8-{codec}.mp4", codec=codec, gop=8)
    frames, duration = sample_frames(path, 4, sampling="keyframes")
    assert frames.shape == (4, 48, 64, 3) and duration == pytest.approx(2.0, abs=0.1)  # never enlarged
    assert np.allclose(frames.mean(axis=(1, 2, 3)), [0, 80, 160, 210], atol=6)


@pytest.mark.parametrize("suffix, container_format", [(".mp4", None), (".mkv", None), (".ts", "mpegts")])
def test_both_samplings_count_time_from_the_streams_start(tmp_path, suffix, container_format):
    """The first frame stamped at 1 s (12 frames in), as in MPEG-TS and re-muxed files: both
    samplings still pick frames 3, 9, 15 and 21 of the clip (the keyframe at frame 0 for the first
    segment in keyframes mode)."""
    path = write_video(tmp_path / f"offset{suffix}", gop=100, offset=12, container_format=container_format)
    exact, duration = sample_frames(path, 4)
    assert np.allclose(exact.mean(axis=(1, 2, 3)), [30, 90, 150, 210], atol=6) and duration == pytest.approx(2.0, abs=0.1)
    keyframes, _ = sample_frames(path, 4, sampling="keyframes")
    first = 30 if suffix == ".ts" else 0  # seeking in MPEG-TS finds nothing: it is decoded in order, exactly
    assert np.allclose(keyframes.mean(axis=(1, 2, 3)), [first, 90, 150, 210], atol=6)


def test_keyframe_sampling_decodes_exactly_where_no_keyframe_is_near(tmp_path):
    """One keyframe (frame 0): only the first wanted time (frame 3) is within a segment of it; the
    others are the exact frames 9, 15, 21."""
    frames, _ = sample_frames(write_video(tmp_path / "one-gop.mp4", gop=100), 4, sampling="keyframes")
    assert np.allclose(frames.mean(axis=(1, 2, 3)), [0, 90, 150, 210], atol=6)


def test_keyframe_sampling_scales_inside_ffmpeg_keeping_the_aspect(tmp_path):
    landscape, _ = sample_frames(write_video(tmp_path / "wide.mp4", gop=6), 4, sampling="keyframes", short_side=24)
    portrait, _ = sample_frames(write_video(tmp_path / "tall.mp4", size=(48, 96), gop=6), 4, sampling="keyframes", short_side=24)
    assert landscape.shape == (4, 24, 32, 3) and portrait.shape == (4, 48, 24, 3)


def test_keyframe_sampling_of_odd_clips(tmp_path):
    """Variable frame rate, fewer frames than wanted, and a raw H.264 stream without a container
    index (keyframe times unknown: the exact path decodes it)."""
    vfr, _ = sample_frames(write_video(tmp_path / "vfr.mp4", frames=12, pts_step=[40, 120, 80], gop=4), 4, sampling="keyframes")
    assert len(vfr) == 4
    short, _ = sample_frames(write_video(tmp_path / "short.mp4", frames=3), 8, sampling="keyframes")
    assert len(short) == 8 and set(short.mean(axis=(1, 2, 3)).round(-1)) <= {0, 10, 20}  # its 3 frames, repeated
    raw = write_video(tmp_path / "raw.h264", gop=8, container_format="h264")
    exact, _ = sample_frames(raw, 4)
    keyframes, _ = sample_frames(raw, 4, sampling="keyframes")
    np.testing.assert_array_equal(keyframes, exact)
    with pytest.raises(ValueError, match="not one of exact, keyframes"):
        sample_frames(raw, 4, sampling="nearest")


def test_audio_is_mono_at_the_requested_rate(tmp_path):
    path = write_video(tmp_path / "tone.mp4", frames=12, tone_hz=440.0)
    audio, missing = decode_audio(path, 16000)
    assert missing is None and audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == pytest.approx(16000, rel=0.1)  # 1 s of video, 1 s of tone
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.fft.rfftfreq(len(audio), 1 / 16000)[spectrum.argmax()] == pytest.approx(440, abs=3)


def test_video_without_audio_keeps_its_frames(tmp_path):
    item = decode_item("v", str(write_video(tmp_path / "silent.mp4")), None, n_frames=4, sample_rate=16000)
    assert item.frames.shape[0] == 4 and item.audio is None and item.audio_missing == "no audio track"


@pytest.mark.parametrize("content", [b"", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, b"this is text, not a video"])
def test_unreadable_files_raise_with_the_decoders_message(tmp_path, content):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaDecodeError, match="cannot decode video .*decord.*PyAV"):
        sample_frames(path, 4)


def test_a_programming_error_is_not_taken_for_a_bad_video(tmp_path, monkeypatch):
    """Only decoder errors become MediaDecodeError (and a quarantined item); a bug in our own code
    must stop the run, not quarantine every video as undecodable."""
    import extractors.decode as decode

    path = write_video(tmp_path / "ok.mp4", frames=8)

    def broken(*_args):
        raise TypeError("a bug, not a bad file")

    monkeypatch.setattr(decode, "_frames_decord", broken)
    with pytest.raises(TypeError, match="a bug"):
        sample_frames(path, 4)
    monkeypatch.setattr(decode, "_frames_decord", lambda *_: (_ for _ in ()).throw(RuntimeError("decord cannot open it")))
    assert sample_frames(path, 4)[0].shape[0] == 4  # a decoder error falls back to PyAV


def test_truncated_file_raises(tmp_path, capfd):
    whole = write_video(tmp_path / "whole.mp4", frames=48).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(MediaDecodeError, match=str(cut)):
        sample_frames(cut, 4)
    # decord's FFmpeg printed "moov atom not found" into extract's output (probe); the reason is in the error
    assert "moov atom" not in capfd.readouterr().err


@pytest.mark.data
def test_real_clips_decode(shared_data):
    clips = sorted(shared_data.glob("microlens-50k/videos/*.mp4")) + sorted(shared_data.glob("public-clips/*.mp4"))
    assert len(clips) == 6
    for clip in clips:
        frames, duration = sample_frames(clip, 8)
        assert frames.shape[0] == 8 and frames.shape[3] == 3 and duration > 3, clip
    hevc, _ = sample_frames(clips[0], 2)  # MicroLens videos are HEVC 1280x720
    assert hevc.shape[1:] == (720, 1280, 3)
    for clip in clips:  # keyframes mode: 8 frames, the shorter side at most 256 (carphone is 176x144)
        exact, _ = sample_frames(clip, 1)
        frames, _ = sample_frames(clip, 8, sampling="keyframes")
        assert frames.shape[0] == 8 and min(frames.shape[1:3]) == min(256, *exact.shape[1:3]), clip
