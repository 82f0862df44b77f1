"""The bundled sample: deterministic for a seed, real decodable media, planted interests that hold."""

from __future__ import annotations

import csv
import filecmp
import json
from collections import Counter
from pathlib import Path

import av
import pytest

from extractors.sample import SAMPLE_MARK, TOPICS, SampleConfig, generate_sample
from warehouse.errors import ReelsenseError

SMALL = SampleConfig(seed=3, items_per_topic=2, users=6, cold_users=1)


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path):
    generate_sample(tmp_path / "a", SMALL)
    generate_sample(tmp_path / "b", SMALL)
    generate_sample(tmp_path / "c", SampleConfig(**{**SMALL.__dict__, "seed": 4}))
    files = _tree(tmp_path / "a")
    assert files == _tree(tmp_path / "b") and len(files) == 4 + 2 * len(TOPICS) and SAMPLE_MARK in files
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files, shallow=False)
    assert mismatch == [] and errors == []
    assert (tmp_path / "a" / "events.csv").read_bytes() != (tmp_path / "c" / "events.csv").read_bytes()


def test_clips_are_real_h264_with_aac_audio(tmp_path):
    generate_sample(tmp_path, SMALL)
    with open(tmp_path / "items.csv", newline="") as handle:
        items = list(csv.DictReader(handle))
    with av.open(str(tmp_path / items[0]["video_uri"])) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) >= 18 and frames[0].ndim == 3
    # cooking's look is orange: red channel well above blue.
    assert frames[0][..., 0].mean() > frames[0][..., 2].mean() + 40


@pytest.fixture(scope="module")
def default_sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    return root, generate_sample(root)


def test_planted_interests_drive_likes(default_sample):
    root, truth = default_sample
    with open(root / "events.csv", newline="") as handle:
        events = list(csv.DictReader(handle))
    assert {e["event"] for e in events} == {"impression", "watch", "like", "comment"}
    in_interest = Counter()
    for e in events:
        user = truth["users"][e["user_id"]]
        segment = [s for s in user["segments"] if s["from_ts"] <= e["event_ts"]][-1]
        in_interest[(e["event"], truth["items"][e["item_id"]] in segment["topics"])] += 1
    like_share = in_interest[("like", True)] / (in_interest[("like", True)] + in_interest[("like", False)])
    impression_share = in_interest[("impression", True)] / (in_interest[("impression", True)] + in_interest[("impression", False)])
    assert like_share > 0.9 and impression_share < 0.8


def test_truth_records_shifts_and_cold_users(default_sample):
    _, truth = default_sample
    users = truth["users"].values()
    shifted = [u for u in users if len(u["segments"]) == 2]
    assert 0.6 * len(users) < len(shifted) < len(users)
    for user in shifted:
        before, after = user["segments"]
        assert before["topics"] != after["topics"] and 0 < after["from_step"] < user["steps"]
    assert sum(u["cold"] and u["steps"] <= 5 for u in users) == SampleConfig().cold_users
    assert Counter(truth["items"].values()) == {t.name: SampleConfig().items_per_topic for t in TOPICS}
    assert json.loads(json.dumps(truth)) == truth


def test_sample_refuses_to_write_into_the_root_of_a_home(tmp_path, capsys):
    """Probe: `sample --out HOME` put items.csv, events.csv and videos/ beside HOME's tables."""
    from flows.cli import main

    home = tmp_path / "home"
    (home / "tables").mkdir(parents=True)
    assert main(["--home", str(tmp_path / "other"), "sample", "--out", str(home)]) == 2
    err = capsys.readouterr().err
    assert f"--out {home} is a reelsense home; give the sample a folder of its own, e.g. --out {tmp_path / 'sample'}" in err
    assert sorted(p.name for p in home.iterdir()) == ["tables"]
    fresh = tmp_path / "fresh"  # the home the next command would make there
    assert main(["--home", str(fresh), "sample", "--out", str(fresh)]) == 2 and not fresh.exists()
    assert f"--out {fresh} is the home this command uses" in capsys.readouterr().err
    # probe: `--out HOME/tables` was accepted, and the sample's files lay among the home's tables
    assert main(["--home", str(tmp_path / "other"), "sample", "--out", str(home / "tables" / "s")]) == 2
    err = capsys.readouterr().err
    assert f"lies in a reelsense home {home}, among its own files; give the sample a folder outside them, e.g. --out {tmp_path / 'sample'}" in err
    assert not (home / "tables" / "s").exists()
    afile = tmp_path / "events.csv"  # probe: files were NotADirectoryError tracebacks
    afile.write_text("x\n")
    assert main(["--home", str(tmp_path / "other"), "sample", "--out", str(afile)]) == 2
    assert f"--out {afile} is a file" in capsys.readouterr().err
    assert main(["--home", str(afile), "sql", "SELECT 1"]) == 2
    assert f"--home {afile} is a file, not a folder" in capsys.readouterr().err
    assert main(["--home", str(afile / "sub"), "ingest", "events", str(afile)]) == 2  # probe: a traceback a level down
    assert f"--home {afile / 'sub'} lies below {afile}, which is a file, not a folder" in capsys.readouterr().err
    with pytest.MonkeyPatch.context() as env:  # probe: REELSENSE_HOME's file was called --home's
        env.setenv("REELSENSE_HOME", str(afile))
        assert main(["sql", "SELECT 1"]) == 2
        assert f"reelsense: error: REELSENSE_HOME={afile} is a file, not a folder" in capsys.readouterr().err


def test_sample_refuses_a_folder_of_other_files_and_regenerates_its_own(tmp_path, capsys):
    """Probe: `sample --out DIR` overwrote DIR's own items.csv and events.csv and left its other files."""
    from flows.cli import main

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "items.csv").write_text("item_id,title\nmy1,mine\n")
    (mine / "notes.txt").write_text("keep\n")
    assert main(["--home", str(tmp_path / "home"), "sample", "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert f"--out {mine} already holds files (items.csv, notes.txt) and is no earlier sample; " in err
    assert (mine / "items.csv").read_text() == "item_id,title\nmy1,mine\n" and sorted(p.name for p in mine.iterdir()) == ["items.csv", "notes.txt"]
    from flows.cli import _check_sample_overwrite

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".gitkeep").touch()  # review: a dotfile is no file of the user's
    _check_sample_overwrite(tmp_path / "empty")  # a new or empty folder, and an earlier sample, pass
    _check_sample_overwrite(tmp_path / "new")
    (mine / "truth.json").write_text("{}\n")  # probe: any truth.json made a folder an earlier sample
    with pytest.raises(ReelsenseError, match="is no earlier sample"):
        _check_sample_overwrite(mine)
    (mine / "truth.json").write_text(json.dumps({"seed": 7, "topics": {}, "items": {}, "users": {}}))
    _check_sample_overwrite(mine)  # a sample made before the generator marked its folder
    (mine / "truth.json").unlink()  # review: a sample stopped before its truth.json is still one
    (mine / SAMPLE_MARK).touch()
    _check_sample_overwrite(mine)


def test_a_regeneration_stopped_half_way_is_not_taken_for_the_earlier_sample(tmp_path, monkeypatch):
    """Probe: `sample --seed 8` stopped after some clips left the seed-7 truth.json beside a mix of
    clips, and the demo reused that folder as the seed-7 sample."""
    import extractors.sample as sample

    generate_sample(tmp_path, SMALL)
    assert json.loads((tmp_path / "truth.json").read_text())["seed"] == 3

    def stop(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sample, "write_clip", stop)
    with pytest.raises(KeyboardInterrupt):
        generate_sample(tmp_path, SampleConfig(**{**SMALL.__dict__, "seed": 4}))
    assert not (tmp_path / "truth.json").exists() and (tmp_path / SAMPLE_MARK).is_file()
