"""The bundled sample: a small, seeded short-video platform with planted interests.

`reelsense sample --out DIR --seed N` (and `reelsense demo`) writes to DIR:
- `videos/*.mp4`: real H.264 + AAC clips of a few seconds, encoded with PyAV. Each topic has its
  own look (colour and moving pattern), its own title words and its own kind of music;
- `items.csv` (`item_id,title,video_uri`) and `events.csv`
  (`user_id,item_id,event_ts,event,watch_ratio`): impressions, watches with watch ratios, likes and
  comments of users whose interests are planted by topic and shift at known times;
- `truth.json`: each item's topic, each user's interest segments and shift times, so later stages
  can check that they recover them.
Everything is a pure function of the seed: the same seed gives byte-identical files.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 22050
FPS = 12


@dataclass(frozen=True)
class Topic:
    name: str
    rgb: tuple[int, int, int]  # dominant colour of the picture
    pattern: str  # how the picture moves: stripes | circles | checker | gradient | squares | waves
    words: tuple[str, ...]  # title vocabulary
    hashtags: tuple[str, ...]
    music: str  # piano | drums | guitar | pad | chiptune | vocal
    tempo_bpm: int


TOPICS: tuple[Topic, ...] = (
    Topic("cooking", (230, 120, 40), "circles", ("recipe", "noodles", "spicy", "kitchen", "homemade", "dumplings"), ("food", "cooking", "recipe"), "piano", 72),
    Topic("sports", (40, 160, 60), "stripes", ("goal", "match", "training", "football", "sprint", "fitness"), ("sports", "football", "workout"), "drums", 128),
    Topic("pets", (170, 130, 90), "waves", ("kitten", "puppy", "cute", "cat", "dog", "paws"), ("pets", "cat", "dog"), "guitar", 96),
    Topic("travel", (60, 140, 230), "gradient", ("beach", "sunset", "mountain", "trip", "hiking", "island"), ("travel", "nature", "vlog"), "pad", 60),
    Topic("gaming", (150, 40, 200), "squares", ("boss", "level", "speedrun", "esports", "combo", "respawn"), ("gaming", "gamer", "esports"), "chiptune", 150),
    Topic("beauty", (235, 110, 170), "checker", ("makeup", "lipstick", "outfit", "skincare", "style", "glow"), ("beauty", "fashion", "makeup"), "vocal", 90),
)
_FILLER = ("today", "so", "my", "new", "best", "you", "must", "see", "this", "real", "quick", "easy")


@dataclass(frozen=True)
class SampleConfig:
    seed: int = 7
    items_per_topic: int = 20
    users: int = 200
    cold_users: int = 20  # users with only a handful of impressions
    shift_fraction: float = 0.8  # share of warm users whose interests shift once


SAMPLE_MARK = ".reelsense-sample"  # in a folder the sample generator writes to


def generate_sample(out: str | Path, config: SampleConfig = SampleConfig()) -> dict[str, Any]:
    """Write the sample platform to `out` and return its ground truth."""
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / SAMPLE_MARK).touch()  # first: a sample stopped half way is still known as one (`sample --out` reruns it)
    # truth.json is written last and read as "this sample is complete" (the demo reuses a sample whose
    # truth.json has its seed): an earlier sample's goes first, so a regeneration stopped half way
    # is never taken for the earlier sample over a mix of old and new files (probe).
    (out / "truth.json").unlink(missing_ok=True)
    rng = np.random.default_rng(config.seed)
    items = _make_items(rng, config)
    for item in items:
        clip_rng = np.random.default_rng([config.seed, int(item["item_id"][1:])])
        write_clip(out / item["video_uri"], TOPICS[item["topic_index"]], clip_rng, item["duration_s"], item["size"])
    users, events = _simulate_users(rng, config, items)
    _write_csv(out / "items.csv", ["item_id", "title", "video_uri"], items)
    _write_csv(out / "events.csv", ["user_id", "item_id", "event_ts", "event", "watch_ratio"], events)
    truth = {
        "seed": config.seed,
        "config": asdict(config),
        "topics": {t.name: {"pattern": t.pattern, "music": t.music, "words": list(t.words)} for t in TOPICS},
        "items": {it["item_id"]: TOPICS[it["topic_index"]].name for it in items},
        "users": users,
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    return truth


def _make_items(rng: np.random.Generator, config: SampleConfig) -> list[dict[str, Any]]:
    items = []
    for index in range(len(TOPICS) * config.items_per_topic):
        topic_index = index % len(TOPICS)
        topic = TOPICS[topic_index]
        item_id = f"v{index + 1:04d}"
        words = rng.choice(topic.words, size=2, replace=False)
        filler = rng.choice(_FILLER, size=2, replace=False)
        tags = rng.choice(topic.hashtags, size=2, replace=False)
        title = f"{filler[0]} {words[0]} {filler[1]} {words[1]} #{tags[0]} #{tags[1]}"
        portrait = bool(rng.random() < 0.5)
        items.append(
            {
                "item_id": item_id,
                "title": title,
                "video_uri": f"videos/{item_id}.mp4",
                "topic_index": topic_index,
                "duration_s": float(np.round(rng.uniform(1.5, 4.0), 2)),
                "size": (96, 160) if portrait else (160, 96),  # (width, height)
            }
        )
    return items


def _simulate_users(rng: np.random.Generator, config: SampleConfig, items: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    by_topic = [[it["item_id"] for it in items if it["topic_index"] == t] for t in range(len(TOPICS))]
    start = datetime(2026, 1, 5, tzinfo=timezone.utc)
    users: dict[str, Any] = {}
    events: list[dict[str, Any]] = []
    for index in range(config.users):
        user_id = f"u{index + 1:03d}"
        cold = index >= config.users - config.cold_users
        steps = int(rng.integers(3, 6) if cold else rng.integers(40, 71))
        interests = sorted(rng.choice(len(TOPICS), size=2, replace=False).tolist())
        shift_step = None
        if not cold and rng.random() < config.shift_fraction:
            shift_step = int(steps * rng.uniform(0.4, 0.65))
        later = _shifted(rng, interests)
        clock = start + timedelta(hours=float(rng.uniform(0, 72)))
        segments = [{"from_step": 0, "from_ts": _iso(clock), "topics": [TOPICS[t].name for t in interests]}]
        for step in range(steps):
            if step == shift_step:
                interests = later
                segments.append({"from_step": step, "from_ts": _iso(clock), "topics": [TOPICS[t].name for t in interests]})
            events.extend(_one_impression(rng, user_id, clock, interests, by_topic))
            clock += timedelta(seconds=int(rng.integers(60, 3600)))
        users[user_id] = {"cold": cold, "steps": steps, "segments": segments}
    return users, events


def _shifted(rng: np.random.Generator, interests: list[int]) -> list[int]:
    """New interests after a shift: one or both topics replaced by ones the user did not have."""
    others = [t for t in range(len(TOPICS)) if t not in interests]
    replace = int(rng.integers(1, 3))
    kept = interests[: 2 - replace]
    return sorted(kept + rng.choice(others, size=replace, replace=False).tolist())


def _one_impression(rng: np.random.Generator, user_id: str, clock: datetime, interests: list[int], by_topic: list[list[str]]) -> list[dict[str, Any]]:
    # The platform shows an item of a current interest 60% of the time, anything otherwise.
    topic = int(rng.choice(interests)) if rng.random() < 0.6 else int(rng.integers(len(TOPICS)))
    item_id = str(rng.choice(by_topic[topic]))
    liked_topic = topic in interests
    row = {"user_id": user_id, "item_id": item_id}
    out = [{**row, "event_ts": _iso(clock), "event": "impression", "watch_ratio": ""}]
    if rng.random() < (0.95 if liked_topic else 0.45):
        ratio = rng.beta(6, 2) if liked_topic else rng.beta(1.5, 5)
        if liked_topic and rng.random() < 0.15:
            ratio += 1.0  # watched again
        out.append({**row, "event_ts": _iso(clock + timedelta(seconds=1)), "event": "watch", "watch_ratio": f"{max(ratio, 0.02):.3f}"})
        if rng.random() < (0.55 if liked_topic else 0.04):
            out.append({**row, "event_ts": _iso(clock + timedelta(seconds=2)), "event": "like", "watch_ratio": ""})
        if rng.random() < (0.2 if liked_topic else 0.01):
            out.append({**row, "event_ts": _iso(clock + timedelta(seconds=3)), "event": "comment", "watch_ratio": ""})
    return out


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_clip(path: Path, topic: Topic, rng: np.random.Generator, duration_s: float, size: tuple[int, int]) -> None:
    """Encode one clip: the topic's moving picture (H.264) and its music (AAC, mono)."""
    width, height = size
    n_frames = max(1, round(duration_s * FPS))
    tint = np.clip(np.array(topic.rgb) + rng.normal(0, 12, 3), 0, 255)
    audio = render_music(topic, rng, duration_s)
    with av.open(str(path), mode="w", options={"fflags": "+bitexact"}) as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        # With slower presets (veryfast, medium) and an audio stream beside it, x264's output was
        # seen to vary from run to run; ultrafast on one thread gives byte-identical clips.
        video.options = {"preset": "ultrafast", "crf": "26", "x264-params": "threads=1"}
        sound = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        for index in range(n_frames):
            picture = render_frame(topic.pattern, tint, index / FPS, width, height, rng)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        for start in range(0, len(audio), 1024):
            chunk = audio[start : start + 1024][np.newaxis, :]  # (channels=1, samples)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = SAMPLE_RATE, start
            container.mux(sound.encode(frame))
        container.mux(sound.encode(None))


def render_frame(pattern: str, tint: npt.NDArray[np.float64], t: float, width: int, height: int, rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """One RGB frame (H, W, 3): the topic's colour modulated by its moving pattern."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    if pattern == "stripes":
        mask = (np.sin((x + 40 * t) / 6.0) > 0).astype(np.float32)
    elif pattern == "circles":
        cx, cy = width / 2 + 25 * np.cos(2 * t), height / 2 + 25 * np.sin(2 * t)
        mask = (np.hypot(x - cx, y - cy) % 24 < 12).astype(np.float32)
    elif pattern == "checker":
        mask = (((x + 10 * t) // 16 + y // 16) % 2).astype(np.float32)
    elif pattern == "gradient":
        mask = (y / height + 0.1 * np.sin(x / 10 + t)).clip(0, 1)
    elif pattern == "squares":
        mask = ((x // 20 + y // 20 + int(t * 4)) % 3 == 0).astype(np.float32)
    else:  # waves
        mask = 0.5 + 0.5 * np.sin(x / 8 + 3 * t) * np.cos(y / 11 - 2 * t)
    light = mask[..., None] * tint + (1 - mask[..., None]) * (0.35 * tint)
    noise = rng.normal(0, 6, light.shape)
    return np.clip(light + noise, 0, 255).astype(np.uint8)


def render_music(topic: Topic, rng: np.random.Generator, duration_s: float) -> npt.NDArray[np.float32]:
    """Mono audio in [-1, 1] at SAMPLE_RATE in the topic's style."""
    n = int(duration_s * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    beat = 60.0 / topic.tempo_bpm
    base = 220.0 * 2 ** (rng.integers(-3, 4) / 12)
    scale = base * 2 ** (np.array([0, 2, 4, 7, 9, 12]) / 12)  # pentatonic
    out = np.zeros(n)
    onsets = np.arange(0, duration_s, beat if topic.music != "chiptune" else beat / 2)
    for onset in onsets:
        local = t - onset
        on = local >= 0
        freq = float(rng.choice(scale))
        out[on] += _note(topic.music, freq, local[on], beat, rng)
    if topic.music == "pad":
        out += sum(0.25 * np.sin(2 * np.pi * f * t) for f in scale[[0, 2, 3]]) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
    peak = np.abs(out).max() or 1.0
    return (0.6 * out / peak).astype(np.float32)


def _note(kind: str, freq: float, local: npt.NDArray[np.float64], beat: float, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    phase = 2 * np.pi * freq * local
    if kind == "piano":
        return np.exp(-3 * local) * (np.sin(phase) + 0.4 * np.sin(2 * phase) + 0.2 * np.sin(3 * phase))
    if kind == "drums":
        kick = np.exp(-25 * local) * np.sin(2 * np.pi * (50 + 100 * np.exp(-30 * local)) * local)
        hat = np.exp(-60 * np.maximum(local - beat / 2, 0)) * (local >= beat / 2) * rng.normal(0, 0.3, local.shape)
        return 1.5 * kick + hat
    if kind == "guitar":
        return np.exp(-6 * local) * sum(np.sin(k * phase) / k for k in range(1, 7))
    if kind == "chiptune":
        return 0.5 * np.sign(np.sin(phase)) * (local < beat / 2)
    if kind == "vocal":
        vibrato = np.sin(phase + 0.8 * np.sin(2 * np.pi * 5.5 * local))
        return np.minimum(local * 8, 1) * np.exp(-1.5 * local) * (vibrato + 0.5 * np.sin(3 * phase))
    return np.zeros_like(local)  # pad: sustained chord added by render_music
