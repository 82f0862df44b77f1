"""Interest shift detection on sequences with a known answer, and its scoring against planted shifts."""

from __future__ import annotations

import numpy as np
import pytest

from ranker.shifts import ShiftConfig, detect_shifts, drift_curve, match_shifts, tag_changes


def _topics(rng: np.random.Generator, n: int = 3, dim: int = 16) -> np.ndarray:
    centres = rng.normal(size=(n, dim))
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def _sequence(rng, centres, topics: list[int], noise: float = 0.4) -> np.ndarray:
    v = centres[topics] + noise * rng.normal(size=(len(topics), centres.shape[1]))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_a_planted_shift_is_found_where_it_was_planted():
    rng = np.random.default_rng(1)
    centres = _topics(rng)
    topics = [0 if rng.random() < 0.85 else 2 for _ in range(30)] + [1 if rng.random() < 0.85 else 2 for _ in range(30)]
    found = detect_shifts(_sequence(rng, centres, topics))
    assert len(found) == 1 and abs(found[0].index - 30) <= 2 and found[0].p_value < 0.05


def test_two_shifts_are_found_by_binary_segmentation():
    rng = np.random.default_rng(2)
    centres = _topics(rng)
    found = detect_shifts(_sequence(rng, centres, [0] * 30 + [1] * 30 + [2] * 30, noise=0.25))
    assert [abs(s.index - t) <= 2 for s, t in zip(found, (30, 60))] == [True, True]


def test_a_stable_mix_of_interests_has_no_shift():
    rng = np.random.default_rng(3)
    centres = _topics(rng)
    stable = [int(rng.integers(2)) for _ in range(60)]  # two interests, mixed throughout
    assert detect_shifts(_sequence(rng, centres, stable)) == []


def test_short_sequences_have_no_drift_and_no_shift():
    vectors = np.eye(4, dtype=np.float32)[[0, 1, 2, 3] * 5]
    assert np.isnan(drift_curve(vectors, 12)).all()
    assert detect_shifts(vectors, ShiftConfig(window=12)) == []


def test_drift_is_zero_inside_a_segment_and_one_across_orthogonal_ones():
    vectors = np.repeat(np.eye(2, dtype=np.float32), 10, axis=0)  # 10 x e0 then 10 x e1
    drift = drift_curve(vectors, 5)
    assert abs(drift[10] - 1) < 1e-9 and abs(drift[5]) < 1e-9 and abs(drift[15]) < 1e-9
    assert np.nanargmax(drift) == 10


def test_match_shifts_by_hand():
    planted = {"a": [20], "b": [30], "c": []}
    detected = {"a": [23], "b": [40], "c": [10]}  # a: hit; b: 10 away, a miss; c: a false alarm
    m = match_shifts(planted, detected, tolerance=5)
    assert (m["matched"], m["precision"], m["recall"]) == (1, 1 / 3, 1 / 2)
    assert abs(m["f1"] - 0.4) < 1e-12
    assert match_shifts({"a": [20]}, {"a": [18, 21]}, 5)["matched"] == 1  # one planted shift matches once


def test_tags_that_rose_and_fell():
    # shares before: food 3/3, piano 1/3; after: sports 2/2, piano 1/2
    rose, fell = tag_changes([["food"], ["food", "piano"], ["food"]], [["sports"], ["sports", "piano"]])
    assert rose == ["sports", "piano"] and fell == ["food"]


def test_shift_settings_from_toml_refuse_unknown_keys_and_impossible_values(tmp_path):
    from warehouse.errors import ConfigError
    from warehouse.settings import override, read_toml

    path = tmp_path / "shifts.toml"
    path.write_text("window = 16\nalpha = 0.01\n")
    assert override(ShiftConfig(), read_toml(path), str(path)) == ShiftConfig(window=16, alpha=0.01)
    path.write_text("windows = 16\n")
    with pytest.raises(ConfigError, match=r"unknown keys \['windows'\]"):
        override(ShiftConfig(), read_toml(path), str(path))
    for bad in ("window = 0", "alpha = 1.5", "permutations = -3", "seed = -1"):
        path.write_text(bad + "\n")
        with pytest.raises(ConfigError, match=rf"shifts.toml: {bad.split()[0]} (must|is a significance)"):  # the file and key, not the dataclass
            override(ShiftConfig(), read_toml(path), str(path))
