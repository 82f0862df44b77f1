"""Decoding: N frames per video (seeking, not decoding every frame) and the audio track as mono.

Frames, two samplings (`ExtractConfig.frame_sampling`):
- "exact": the frame at the centre of each of N equal segments, at the video's own resolution.
  decord (the design card's decoder) seeks to each; PyAV, which ships its own FFmpeg, is the
  fallback where decord cannot open a file. Each seek decodes forward from the previous keyframe.
- "keyframes": for each wanted time, the nearest keyframe when one lies within a segment of it
  (decoding that one frame only), otherwise the exact frame; scaled inside FFmpeg to a shorter side
  of `short_side` pixels before it reaches Python. Short videos are cut with long GOPs, so this
  decodes a handful of frames instead of seconds of them.
Audio: PyAV decodes, downmixes to mono float32 and resamples to the encoder's rate inside FFmpeg
(swresample), in one pass. A file that cannot be decoded raises `MediaDecodeError` carrying the
decoder's message; a video without an audio track is not an error: `DecodedItem.audio` is None and
`audio_missing` says why.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from extractors.config import FRAME_SAMPLINGS
from warehouse.errors import MediaDecodeError

try:
    from decord._ffi.base import DECORDError
except ImportError:  # decord missing or broken: PyAV decodes every video
    DECORDError = RuntimeError  # noqa: N816

# What the decoders raise for a file they cannot read: decord's DECORDError (an Exception of its
# own), PyAV's FFmpegError, and the RuntimeError/OSError/ValueError both use. A programming error
# (TypeError, AttributeError, ...) is not among them: it stops the run instead of quarantining
# every item as an undecodable video. ImportError is, for decord only: without it PyAV decodes.
DECODER_ERRORS = (DECORDError, av.FFmpegError, RuntimeError, OSError, ValueError)


@dataclass
class DecodedItem:
    item_id: str
    frames: npt.NDArray[np.uint8] | None  # (N, H, W, 3) RGB; None for an item without video
    audio: npt.NDArray[np.float32] | None  # (samples,) mono at `sample_rate`
    sample_rate: int
    duration_s: float | None
    audio_missing: str | None = None  # why there is no audio


def frame_indices(n_frames: int, n: int) -> list[int]:
    """`n` indices spread over a video of `n_frames` frames (the centre of n equal segments);
    a clip shorter than `n` frames gives each of its frames once."""
    if n_frames <= n:
        return list(range(n_frames))
    return [int((i + 0.5) * n_frames / n) for i in range(n)]


def sample_frames(path: str | Path, n: int = 8, *, sampling: str = "exact", short_side: int = 256) -> tuple[npt.NDArray[np.uint8], float]:
    """`n` RGB frames spread over the video, and its duration in seconds. `sampling`: "exact"
    (native resolution) or "keyframes" (nearest keyframes, shorter side scaled to `short_side`)."""
    if sampling == "keyframes":
        try:
            return _frames_keyframes(str(path), n, short_side)
        except (*DECODER_ERRORS, MediaDecodeError):
            # No keyframe index, or an odd stream: the exact path decodes it (scaled the same way,
            # so every "keyframes" vector is made from frames of one size) or says why not.
            frames, duration = _frames_exact(str(path), n)
            return np.stack([_scaled(f, short_side) for f in frames]), duration
    if sampling != "exact":
        raise ValueError(f"frame sampling {sampling!r} is not one of {', '.join(FRAME_SAMPLINGS)}")
    return _frames_exact(str(path), n)


def _frames_exact(path: str, n: int) -> tuple[npt.NDArray[np.uint8], float]:
    try:
        return _frames_decord(str(path), n)
    except MediaDecodeError:
        raise
    except (*DECODER_ERRORS, ImportError) as decord_error:
        try:
            return _frames_pyav(str(path), n)
        except (*DECODER_ERRORS, MediaDecodeError) as pyav_error:  # both decoders' reasons go in the message
            raise MediaDecodeError(f"{path}: cannot decode video (decord: {first_line(decord_error)}; PyAV: {first_line(pyav_error)})") from pyav_error


@functools.cache
def _decord() -> Any:
    """decord, imported on first use, with its FFmpeg's log lines ("moov atom not found") off: they
    went to the terminal beside extract's summary (probe). The quarantine gets each decoder's error
    ("Invalid data found when processing input"), not those lines."""
    import decord

    decord.logging.set_level(decord.logging.QUIET)
    return decord


def _frames_decord(path: str, n: int) -> tuple[npt.NDArray[np.uint8], float]:
    decord = _decord()
    reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    total = len(reader)
    if total == 0:
        raise MediaDecodeError(f"{path}: the video stream has no frames")
    frames = reader.get_batch(frame_indices(total, n)).asnumpy()  # (N, H, W, 3)
    return frames, total / max(reader.get_avg_fps(), 1e-6)


def _frames_pyav(path: str, n: int) -> tuple[npt.NDArray[np.uint8], float]:
    with av.open(path) as container:
        if not container.streams.video:
            raise MediaDecodeError(f"{path}: no video stream")
        stream = container.streams.video[0]
        duration = _duration_s(container, stream)
        picked = []
        for i in range(n if duration is not None else 0):
            try:
                target = (i + 0.5) * duration / n  # each seeks on its own (no keyframe index here)
                picked.append(_frames_at_times(container, stream, [target], duration, NO_KEYS)[0].to_ndarray(format="rgb24"))
            except MediaDecodeError:
                continue  # a damaged stretch: the other frames still describe the video
        if picked:
            return np.stack(picked), duration
    with av.open(path) as container:  # no index, or seeking found nothing (some MPEG-TS): count, then decode in order
        stream = container.streams.video[0]
        total = sum(1 for packet in container.demux(stream) if packet.size)
    with av.open(path) as container:
        stream = container.streams.video[0]
        wanted = set(frame_indices(total, n))
        frames = [f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(stream)) if i in wanted]
    if not frames:
        raise MediaDecodeError(f"{path}: the video stream has no frames")
    return np.stack(frames), duration or total / float(stream.average_rate or 25)


def _frames_keyframes(path: str, n: int, short_side: int) -> tuple[npt.NDArray[np.uint8], float]:
    """For each of n segments, the keyframe nearest its centre if one lies inside the segment, else
    the exact frame at its centre. Keyframe times come from demuxing alone (no decoding); each chosen
    keyframe is decoded once, right after a seek to it. (Decoding with skip_frame="NONKEY" instead
    lost keyframes of the MicroLens HEVC clips and returned the rest out of order.) Times count
    from the stream's start: MPEG-TS and re-muxed files start at a non-zero timestamp."""
    with av.open(path) as container:
        if not container.streams.video:
            raise MediaDecodeError(f"{path}: no video stream")
        stream = container.streams.video[0]
        duration = _duration_s(container, stream)
        keys = sorted({p.pts for p in container.demux(stream) if p.is_keyframe and p.pts is not None})
        if duration is None or not keys or stream.time_base is None:
            raise MediaDecodeError(f"{path}: no keyframe index")
        seconds = (np.asarray(keys, np.float64) - (stream.start_time or 0)) * float(stream.time_base)
        segment = duration / n
        targets = [(i + 0.5) * segment for i in range(n)]
        nearest = [int(np.abs(seconds - t).argmin()) for t in targets]
        near = [abs(seconds[k] - t) <= segment / 2 for k, t in zip(nearest, targets)]  # inside its own segment
        exact = iter(_frames_at_times(container, stream, [t for t, ok in zip(targets, near) if not ok], duration, seconds))
        by_key: dict[int, npt.NDArray[np.uint8]] = {}
        picked = []
        for k, ok in zip(nearest, near):
            if ok and k not in by_key:
                by_key[k] = _frame_at_pts(container, stream, keys[k], short_side)
            picked.append(by_key[k] if ok else _rgb(next(exact), short_side))
        return np.stack(picked), duration


NO_KEYS = np.zeros(0)  # keyframe times unknown: `_frames_at_times` seeks for every target


def _frames_at_times(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, targets: list[float], duration: float, key_seconds: npt.NDArray[np.float64]
) -> list[av.VideoFrame]:
    """The first frame at or after each of the (increasing) `targets`, in one forward pass where no
    keyframe lies between two targets: a seek is made only when it skips decoding."""
    out: list[av.VideoFrame] = []
    frames, position, last = None, np.inf, None
    for target in targets:
        previous_key = key_seconds[key_seconds <= target + 1e-3].max(initial=0.0)
        if frames is None or position > target or previous_key > position:
            container.seek(int(target / stream.time_base) + (stream.start_time or 0), stream=stream, backward=True)
            frames = container.decode(stream)
        for frame in frames:
            time = _seconds(frame, stream)
            position, last = (time if time is not None else position), frame
            if time is None or time >= target - 1e-3 or time + 1e-3 >= duration:
                out.append(frame)
                break
        else:  # the stream ended before `target` (its last frame is shorter than the container says)
            if last is None:
                raise MediaDecodeError(f"{container.name}: no frame at {target:.2f} s")
            out.append(last)
    return out


def _frame_at_pts(container: av.container.InputContainer, stream: av.video.stream.VideoStream, pts: int, short_side: int) -> npt.NDArray[np.uint8]:
    container.seek(pts, stream=stream, backward=True)
    for frame in container.decode(stream):
        if frame.pts is None or frame.pts >= pts:  # frames before the keyframe (open GOP) are skipped
            return _rgb(frame, short_side)
    raise MediaDecodeError(f"{container.name}: the keyframe at pts {pts} did not decode")


def _seconds(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> float | None:
    """A frame's time from the stream's start (`frame.time` counts from the timestamp origin)."""
    if frame.pts is None or stream.time_base is None:
        return None
    return float((frame.pts - (stream.start_time or 0)) * stream.time_base)


def _scaled(frame: npt.NDArray[np.uint8], short_side: int) -> npt.NDArray[np.uint8]:
    """An RGB array scaled as `_rgb` scales a decoded frame (FFmpeg's area filter)."""
    if not short_side or min(frame.shape[:2]) <= short_side:
        return frame
    return _rgb(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"), short_side)


def _rgb(frame: av.VideoFrame, short_side: int) -> npt.NDArray[np.uint8]:
    """RGB, its shorter side scaled to `short_side` inside FFmpeg (never enlarged)."""
    scale = short_side / min(frame.width, frame.height) if short_side else 1.0
    if scale >= 1.0:
        return frame.to_ndarray(format="rgb24")
    width, height = max(2, round(frame.width * scale)), max(2, round(frame.height * scale))
    return frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()


def decode_audio(path: str | Path, sample_rate: int) -> tuple[npt.NDArray[np.float32] | None, str | None]:
    """The first audio track as mono float32 at `sample_rate`, or (None, reason). FFmpeg downmixes
    and resamples in the decoding pass (musicnn's vectors agree with the former soxr path to a
    cosine of at least 0.999 on the real tracks: tests/test_encoders.py)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return None, "no audio track"
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            chunks = [out.to_ndarray().reshape(-1) for frame in container.decode(stream) for out in resampler.resample(frame)]
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]  # the resampler's tail
    except av.FFmpegError as exc:
        raise MediaDecodeError(f"{path}: cannot decode audio ({first_line(exc)})") from exc
    if not chunks or sum(len(c) for c in chunks) == 0:
        return None, "audio track has no samples"
    return np.concatenate(chunks).astype(np.float32), None


def decode_item(
    item_id: str,
    video_uri: str | None,
    audio_uri: str | None,
    *,
    n_frames: int,
    sample_rate: int,
    sampling: str = "exact",
    short_side: int = 256,
) -> DecodedItem:
    """Frames and audio of one item; raises MediaDecodeError when its video cannot be decoded."""
    frames, duration = (None, None)
    if video_uri:
        frames, duration = sample_frames(video_uri, n_frames, sampling=sampling, short_side=short_side)
    audio, missing = (None, "item has no video or audio file")
    source = audio_uri or video_uri
    if source:
        audio, missing = decode_audio(source, sample_rate)
    return DecodedItem(item_id, frames, audio, sample_rate, duration, audio_missing=missing)


def _duration_s(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:  # microseconds, including the container's start offset
        return (container.duration - max(container.start_time or 0, 0)) / 1_000_000
    return None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
