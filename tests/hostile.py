"""A hostile corpus, generated (no binaries are committed): bad media, bad text, bad rows.

`write_media(dir)` writes the clips and returns, per item id, what extract-items must do with it:
'embed' (frames and text, and audio where the file has some) or 'quarantine' (a `failures` row with
a reason). `write_events(path)` writes an events CSV and returns the expected ingest counts.
"""

from __future__ import annotations

import csv
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

SAMPLE_RATE = 22050


def _clip(
    path: Path,
    *,
    codec: str = "libx264",
    size: tuple[int, int] = (64, 48),
    frames: int = 12,
    audio: bool = True,
    video: bool = True,
    fmt: str | None = None,
    pix_fmt: str = "yuv420p",
) -> Path:
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=12) if video else None
        if stream is not None:
            stream.width, stream.height, stream.pix_fmt = size[0], size[1], pix_fmt
        sound = container.add_stream("libopus" if fmt == "webm" else "aac", rate=48000 if fmt == "webm" else SAMPLE_RATE, layout="mono") if audio else None
        for i in range(frames if stream is not None else 0):
            picture = np.full((size[1], size[0], 3), (20 * i) % 255, np.uint8)
            picture[:, : size[0] // 2, 0] = 200
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        if stream is not None:
            container.mux(stream.encode(None))
        if sound is not None:
            rate = sound.rate
            t = np.arange(int(rate * max(frames, 12) / 12)) / rate
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            step = sound.frame_size or 1024
            for start in range(0, len(wave), step):
                chunk = wave[None, start : start + step]
                if chunk.shape[1] < step:
                    chunk = np.pad(chunk, ((0, 0), (0, step - chunk.shape[1])))
                piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
                piece.sample_rate, piece.pts, piece.time_base = rate, start, Fraction(1, rate)
                container.mux(sound.encode(piece))
            container.mux(sound.encode(None))
    return path


def write_media(folder: Path) -> tuple[Path, dict[str, str]]:
    """The media cases and an items.csv naming them; returns (items.csv, item_id -> expectation)."""
    folder.mkdir(parents=True, exist_ok=True)
    good = _clip(folder / "good.mp4")
    whole = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 3])
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("this is a text file with a video's name\n")
    (folder / "mp4_named.mov").write_bytes(whole)  # a wrong extension on a good file: content decides
    _clip(folder / "audio_only.m4a", video=False, fmt="mp4")
    _clip(folder / "no_audio.mp4", audio=False)
    _clip(folder / "one_frame.mp4", frames=1)
    _clip(folder / "huge.mp4", size=(3840, 2160), frames=2, audio=False)
    _clip(folder / "portrait.mp4", size=(54, 96))
    _clip(folder / "vp9.webm", codec="libvpx-vp9", fmt="webm")
    cases = {
        "good": ("good.mp4", "embed"),
        "truncated": ("truncated.mp4", "quarantine"),
        "empty": ("empty.mp4", "quarantine"),
        "text_as_mp4": ("text.mp4", "quarantine"),
        "wrong_extension": ("mp4_named.mov", "embed"),
        "audio_only": ("audio_only.m4a", "quarantine"),
        "no_audio": ("no_audio.mp4", "embed"),
        "one_frame": ("one_frame.mp4", "embed"),
        "huge": ("huge.mp4", "embed"),
        "portrait": ("portrait.mp4", "embed"),
        "vp9_webm": ("vp9.webm", "embed"),
        "missing_file": ("does_not_exist.mp4", "reject"),
    }
    titles = {
        "good": "a good clip #ok",
        "one_frame": "🎬🔥 emoji title ✨ #日本語",
        "huge": "x" * 100_000,
        "portrait": "quotes ' \" and ; semicolons -- DROP TABLE items; #sql",
    }
    items = folder / "items.csv"
    with open(items, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "title", "video_uri"])
        for item_id, (file, _) in cases.items():
            writer.writerow([item_id, titles.get(item_id, f"clip {item_id}"), file])
        writer.writerow(["id'with\"quotes;", "an id with quotes and a semicolon", "good.mp4"])
    return items, {**{k: v for k, (_, v) in cases.items()}, "id'with\"quotes;": "embed"}


def write_events(path: Path) -> dict[str, int]:
    """Events CSV with every kind of bad row; returns the expected accepted / quarantined / duplicates."""
    good = [
        ["u1", "good", "2026-01-01T00:00:00Z", "impression", ""],
        ["u1", "good", "2026-01-01T00:00:05Z", "watch", "0.8"],
        ["u1", "good", "2026-01-01T00:00:06Z", "like", ""],
        ["u2", "good", "2026-01-01T00:00:10Z", "watch", "1.7"],  # replays: above 1 is allowed
        ["u2", "one_frame", "2025-12-31T00:00:00Z", "comment", ""],  # out of order: earlier than the row above
        ["u'; DROP TABLE events; --", "good", "1767225600", "share", ""],  # Unix seconds; hostile id
        ["🙂user", "huge", "2026-01-02T00:00:00+02:00", "watch", "0"],
    ]
    bad = [
        ["u3", "good", "2026-01-01T00:00:00Z", "watch", "NaN"],
        ["u3", "good", "2026-01-01T00:00:01Z", "watch", "-0.5"],
        ["u3", "good", "2026-01-01T00:00:02Z", "watch", "inf"],
        ["u3", "good", "2026-01-01T00:00:03Z", "teleport", ""],
        ["u3", "good", "not a time", "like", ""],
        ["", "good", "2026-01-01T00:00:04Z", "like", ""],
        ["u3", "", "2026-01-01T00:00:04Z", "like", ""],
        ["u3", "good", "2026-01-01T00:00:05Z", "watch", "lots"],
    ]
    duplicates = [good[1], good[2]]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "item_id", "event_ts", "event", "watch_ratio"])
        writer.writerows(good + bad + duplicates)
    # A row that is not UTF-8 at all: bytes appended raw.
    with open(path, "ab") as handle:
        handle.write(b"u4,good,2026-01-01T00:00:00Z,like,\xff\xfe\n")
    return {"accepted": len(good), "quarantined": len(bad) + 1, "duplicates": len(duplicates), "input": len(good) + len(bad) + len(duplicates) + 1}
