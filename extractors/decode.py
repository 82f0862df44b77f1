"""Decoding: N frames per video (seeking, not decoding every frame) and the audio track as mono.

Frames: decord (the design card's decoder) reads only the frames it needs; PyAV, which ships its own
FFmpeg, is the fallback where decord cannot open a file. Audio: PyAV decodes and downmixes to
mono float32, librosa (soxr) resamples to the encoder's rate. A file that cannot be decoded raises
`MediaDecodeError` carrying the decoder's message; a video without an audio track is not an error:
`DecodedItem.audio` is None and `audio_missing` says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

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


def sample_frames(path: str | Path, n: int = 8) -> tuple[npt.NDArray[np.uint8], float]:
    """`n` RGB frames spread over the video, and its duration in seconds."""
    try:
        return _frames_decord(str(path), n)
    except MediaDecodeError:
        raise
    except (*DECODER_ERRORS, ImportError) as decord_error:
        try:
            return _frames_pyav(str(path), n)
        except (*DECODER_ERRORS, MediaDecodeError) as pyav_error:  # both decoders' reasons go in the message
            raise MediaDecodeError(
                f"{path}: cannot decode video (decord: {_first_line(decord_error)}; PyAV: {_first_line(pyav_error)})"
            ) from pyav_error


def _frames_decord(path: str, n: int) -> tuple[npt.NDArray[np.uint8], float]:
    import decord

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
        if duration is None:  # no index to seek with: decode all, keep n
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            if not frames:
                raise MediaDecodeError(f"{path}: the video stream has no frames")
            picked = [frames[i] for i in frame_indices(len(frames), n)]
            return np.stack(picked), len(frames) / float(stream.average_rate or 25)
        picked = []
        for i in range(n):
            target = (i + 0.5) * duration / n
            container.seek(int(target / stream.time_base) + (stream.start_time or 0), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time is None or frame.time >= target - 1e-3 or frame.time + 1e-3 >= duration:
                    picked.append(frame.to_ndarray(format="rgb24"))
                    break
        if not picked:
            raise MediaDecodeError(f"{path}: no frame could be decoded")
        return np.stack(picked), duration


def decode_audio(path: str | Path, sample_rate: int) -> tuple[npt.NDArray[np.float32] | None, str | None]:
    """The first audio track as mono float32 at `sample_rate`, or (None, reason)."""
    import librosa

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return None, "no audio track"
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono")
            chunks = [
                out.to_ndarray().reshape(-1) for frame in container.decode(stream) for out in resampler.resample(frame)
            ]
            native_rate = stream.codec_context.sample_rate or stream.rate
    except av.FFmpegError as exc:
        raise MediaDecodeError(f"{path}: cannot decode audio ({_first_line(exc)})") from exc
    if not chunks or sum(len(c) for c in chunks) == 0:
        return None, "audio track has no samples"
    audio = np.concatenate(chunks).astype(np.float32)
    if native_rate != sample_rate:
        audio = librosa.resample(audio, orig_sr=native_rate, target_sr=sample_rate, res_type="soxr_hq")
    return audio.astype(np.float32), None


def decode_item(
    item_id: str, video_uri: str | None, audio_uri: str | None, *, n_frames: int, sample_rate: int
) -> DecodedItem:
    """Frames and audio of one item; raises MediaDecodeError when its video cannot be decoded."""
    frames, duration = (None, None)
    if video_uri:
        frames, duration = sample_frames(video_uri, n_frames)
    audio, missing = (None, "item has no video or audio file")
    source = audio_uri or video_uri
    if source:
        audio, missing = decode_audio(source, sample_rate)
    return DecodedItem(item_id, frames, audio, sample_rate, duration, audio_missing=missing)


def _duration_s(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
