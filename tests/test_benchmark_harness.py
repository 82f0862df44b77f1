"""benchmarks/microlens.py, the one command behind the README's MicroLens-50K tables, run on the
tiny platform: which steps it trains for each seed, how it pairs them with sasrec, and how it
resumes. Its numbers here mean nothing (two epochs on 36 users); its bookkeeping is what is tested.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tiny_platform

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "microlens.py"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.e2e  # a minute of training: in make test-e2e (CI runs it), to keep make test inside 12 minutes
def test_each_seed_trains_the_claims_models_pairs_them_and_a_rerun_resumes(tmp_path):
    home = tiny_platform.build(tmp_path / "home").home
    out = tmp_path / "bench.json"
    # lightgbm listed before the lstm-attn it re-ranks: the bases are fitted first.
    args = ["--home", str(home), "--out", str(out), "--models", "popularity,sasrec,lightgbm,lstm-attn", "--seeds", "0,1"]
    args += ["--steps", "main,cold,seeds", "--max-epochs", "2", "--cold-max-epochs", "1", "--patience", "1"]
    first = run(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    results = json.loads(out.read_text())
    steps = results["steps"]
    # Seed 0: every model; seed 1: the models a claim rests on, lightgbm over that seed's lstm-attn.
    assert {k for k in steps if k.startswith("main/")} == {
        "main/popularity/seed0",
        "main/sasrec/seed0",
        "main/lstm-attn/seed0",
        "main/lightgbm/seed0",
        "main/sasrec/seed1",
        "main/lstm-attn/seed1",
        "main/lightgbm/seed1",
    }
    assert {k for k in steps if k.startswith("cold/")} == {"cold/popularity/seed0", "cold/sasrec/seed0", "cold/lstm-attn/seed0"}
    assert steps["main/lstm-attn/seed1"]["config"]["max_epochs"] == 2
    # The seeds step trains the claims' models (sasrec here) before lstm-attn and lightgbm.
    printed = [line.split(":")[0] for line in first.stdout.splitlines() if line.startswith("main/") and line.endswith("s)")]
    assert printed[-3:] == ["main/sasrec/seed1", "main/lstm-attn/seed1", "main/lightgbm/seed1"], printed
    assert all(step["git_commit"] == steps["main/sasrec/seed0"]["git_commit"] for step in steps.values())  # taken once, at the start
    assert not list(out.with_suffix(".models").glob("*unfinished*"))  # a fit's epoch state goes once its step is stored
    assert steps["main/sasrec/seed0"]["epoch_seconds"] == pytest.approx(sum(h["seconds"] for h in steps["main/sasrec/seed0"]["history"]), abs=0.11)
    assert steps["main/lightgbm/seed1"]["base_step"] == "main/lstm-attn/seed1"  # that seed's fit, not the first seed's
    # Each seed's models are paired with sasrec of that seed, over the same test users: the paired
    # difference is the difference of the two steps' means.
    for seed in ("0", "1"):
        pairs = results["paired_vs_sasrec_by_seed"][seed]
        assert set(pairs) == {"popularity", "lstm-attn", "lightgbm"} - ({"popularity"} if seed == "1" else set())
        for name, pair in pairs.items():
            mine, theirs = (np.asarray(steps[f"main/{m}/seed{seed}"]["ndcg10_per_user"]["masked"]) for m in (name, "sasrec"))
            assert pair["masked"]["diff"] == pytest.approx(mine.mean() - theirs.mean())
    users = len(steps["main/sasrec/seed0"]["ndcg10_per_user"]["unmasked"])
    assert users > 0 and all(len(steps[k]["ndcg10_per_user"]["masked"]) == users for k in steps if k.startswith("main/"))
    # The slices of each family cover every test user once: their users add up, and their paired
    # differences, weighted by users, give the overall one (which user is in which slice:
    # test_slices_are_named_for_what_they_hold).
    for seed in ("0", "1"):
        assert set(results["paired_slices_by_seed"][seed]) == set(results["paired_vs_sasrec_by_seed"][seed])
        for name, by_slice in results["paired_slices_by_seed"][seed].items():
            # The tiny platform's users all fill the 20-step window; its targets fall in two slices.
            assert len([s for s in by_slice if s.startswith("target's")]) > 1
            for family in ("known engagements", "target's training count"):
                parts = [v for s, v in by_slice.items() if s.startswith(family)]
                assert sum(v["users"] for v in parts) == users, (name, family)
                for p in ("unmasked", "masked"):
                    weighted = sum(v[p]["diff"] * v["users"] for v in parts) / users
                    assert weighted == pytest.approx(results["paired_vs_sasrec_by_seed"][seed][name][p]["diff"])
    assert "## lstm-attn against sasrec by slice of the test users, seed 1" in out.with_suffix(".md").read_text()
    assert "lstm-attn | 2 |" in out.with_suffix(".md").read_text()  # mean +- sd over its two seeds
    title = out.with_suffix(".md").read_text().splitlines()[0]  # the home it ran on and how many users it ranked
    assert title.startswith(f"# MicroLens benchmark on {home.resolve()} (") and f"{users:,} test users" in title, title

    again = run(*args)  # every step is in the JSON: nothing is trained again
    assert again.returncode == 0, again.stderr[-3000:]
    assert "NDCG@10 unmasked" not in again.stdout and "item-cold" not in again.stdout
    # ... and says so (probe: a rerun with nothing to do printed nothing).
    assert f"0 steps run now, {len(steps)} resumed from {out}; the tables: {out.with_suffix('.md')}" in again.stdout, again.stdout
    assert json.loads(out.read_text())["steps"]["main/lstm-attn/seed1"]["fit_seconds"] == steps["main/lstm-attn/seed1"]["fit_seconds"]

    # A fresh checkout has only the committed .summary.json: the run resumes from it, trains
    # nothing, and its per-user values (packed there) come back exactly, pairs and all.
    summary = out.with_suffix(".summary.json")
    assert "ndcg10_per_user" not in summary.read_text() and "ndcg10_packed" in summary.read_text()
    out.unlink()
    fresh = run(*args)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert f"0 steps run now, {len(steps)} resumed from {summary}" in fresh.stdout
    assert f"resuming from {summary}" in fresh.stdout and "NDCG@10 unmasked" not in fresh.stdout and "item-cold" not in fresh.stdout
    rebuilt = json.loads(out.read_text())
    assert rebuilt["steps"] == steps
    assert rebuilt["paired_vs_sasrec_by_seed"] == results["paired_vs_sasrec_by_seed"]
    assert rebuilt["paired_cold_vs_sasrec"] == results["paired_cold_vs_sasrec"]

    # A run stopped between lstm-attn and lightgbm: the resumed run re-ranks the kept lstm-attn
    # checkpoint of that seed, and gets what the uninterrupted run got.
    drop(out, "main/lightgbm/seed1")
    alone = run(*[a if a != "popularity,sasrec,lightgbm,lstm-attn" else "lightgbm" for a in args])
    assert alone.returncode == 0, alone.stderr[-3000:]
    resumed = json.loads(out.read_text())["steps"]["main/lightgbm/seed1"]
    assert resumed["ndcg10_per_user"] == steps["main/lightgbm/seed1"]["ndcg10_per_user"]
    # Without the checkpoint it cannot: it says so and trains nothing.
    drop(out, "main/lightgbm/seed1")
    (out.with_suffix(".models") / "lstm-attn-seed1.pt").unlink()
    alone = run(*[a if a != "popularity,sasrec,lightgbm,lstm-attn" else "lightgbm" for a in args])
    assert alone.returncode == 0 and "main/lightgbm/seed1: skipped: lightgbm re-ranks lstm-attn" in alone.stdout
    results = json.loads(out.read_text())
    assert "main/lightgbm/seed1" not in results["steps"]

    # Steps ranked other test rows (other data, or a JSON of the older harness run with another
    # --max-users): refused before anything runs.
    for edit in ({"test_rows_sha1": "0" * 12}, {"test_users": None, "test_rows_sha1": None}):
        changed = json.loads(out.read_text())
        changed["data"] = {k: v for k, v in {**changed["data"], **edit}.items() if v is not None}
        changed["overrides"].pop("max_users", None)
        out.write_text(json.dumps(changed))
        refused = run(*args, *(["--max-users", "5"] if "test_users" in edit else []))
        assert refused.returncode == 2 and "was run on other data or test users (" in refused.stderr, refused.stderr[-2000:]
        says = "test_rows_sha1 000000000000, now " if "test_users" not in edit else f"test_users {users}, now 5"
        assert says in refused.stderr and "{" not in refused.stderr, refused.stderr  # what changed, not two dicts
    out.write_text(json.dumps(results))

    # A step of other ranker code: refused, naming its commit, unless asked for; then it is not
    # paired with this sasrec, and loses the pair it had.
    results["steps"]["main/lstm-attn/seed1"]["code_version"] = "other"
    out.write_text(json.dumps(results))
    refused = run(*args)
    commit = results["steps"]["main/lstm-attn/seed1"]["git_commit"]
    assert refused.returncode == 2 and f"holds steps of other ranker code, other (commit {commit})" in refused.stderr, refused.stderr[-2000:]
    assert run(*args, "--across-code").returncode == 0
    assert set(json.loads(out.read_text())["paired_vs_sasrec_by_seed"]["1"]) == set()
    assert set(json.loads(out.read_text())["paired_slices_by_seed"]["1"]) == set()

    # lightgbm has no step in --steps cold: listed without lstm-attn, it is not refused there (review).
    other = tmp_path / "other.json"
    cold = run("--home", str(home), "--out", str(other), "--models", "popularity,lightgbm", "--steps", "cold", "--seeds", "0")
    assert cold.returncode == 0 and "1 step run now; the tables: " in cold.stdout, cold.stdout + cold.stderr[-2000:]
    assert "--steps cold trains popularity, sasrec-content, sasrec, lstm-attn only, not lightgbm" in cold.stdout  # probe: it went unsaid
    assert list(json.loads(other.read_text())["steps"]) == ["cold/popularity/seed0"]
    # --max-users samples the cold step's users too (probe: it ranked every user there).
    every = json.loads(other.read_text())["steps"]["cold/popularity/seed0"]["ndcg10_per_user"]
    few = tmp_path / "few.json"
    # With sasrec, each slice is paired; a sample's slice may hold no row (review: the pairing raised).
    sample = ["--home", str(home), "--out", str(few), "--models", "popularity,sasrec", "--steps", "cold", "--seeds", "0", "--max-users", "5"]
    sample += ["--cold-max-epochs", "1", "--patience", "1"]
    sampled_run = run(*sample)
    assert sampled_run.returncode == 0, sampled_run.stderr[-3000:]
    results = json.loads(few.read_text())
    sampled = results["steps"]["cold/popularity/seed0"]["ndcg10_per_user"]
    item_users = [sum(len(per_user[s]["unmasked"]) for s in ("cold_targets", "warm_targets")) for per_user in (sampled, every)]
    assert item_users[0] <= 5 < item_users[1], item_users
    assert all(len(sampled[s]["unmasked"]) <= min(5, len(every[s]["unmasked"])) for s in every)
    assert set(results["paired_cold_vs_sasrec"]["popularity"]) == {s for s, v in sampled.items() if v["unmasked"]}
    assert "history unmasked; the rows of the 5 sampled test users (--max-users 5))" in few.with_suffix(".md").read_text()
    # A JSON whose cold steps ranked other rows (one of before this sampling, which ranked every user) is refused.
    results["steps"]["cold/popularity/seed0"]["ndcg10_per_user"] = every
    results["data"] = {k: v for k, v in results["data"].items() if not k.startswith("cold_rows")}
    few.write_text(json.dumps(results))
    refused = run(*sample)
    assert refused.returncode == 2 and f"cold_rows {sum(len(v['unmasked']) for v in every.values())}, now " in refused.stderr, refused.stderr[-2000:]


def test_slices_are_named_for_what_they_hold(monkeypatch):
    benchmark = _load_benchmark(monkeypatch)
    # Test rows 1, 3, 4 and 5 of six: 1, 4, 5 and 12 engagements before targets 1, 2, 3, 4, which
    # were training targets 0, 3, 19 and 60 times; an impression in a history is not an engagement.
    hist_items, hist_events = np.zeros((6, 20), np.int64), np.zeros((6, 20), np.int64)
    for row, known in zip((1, 3, 4, 5), (1, 4, 5, 12)):
        hist_items[row, 20 - known :], hist_events[row, 20 - known :] = 1, 4  # comments
        hist_items[row, 20 - known - 1], hist_events[row, 20 - known - 1] = 1, 1  # an impression before them
    queries = SimpleNamespace(hist_items=hist_items, hist_events=hist_events)
    data = SimpleNamespace(queries=queries, targets=np.array([9, 1, 9, 2, 3, 4]), train_counts=np.array([0, 0, 3, 19, 60, 0, 0, 0, 0, 500]))
    slices = {name: where.tolist() for name, where in benchmark.warm_slices(data, np.array([1, 3, 4, 5])).items()}
    assert slices == {  # positions into the test rows, not row numbers
        "known engagements 0-4": [0, 1],
        "known engagements 5": [2],
        "known engagements 12 or more": [3],  # 6-7 and 8-11 are empty: left out
        "target's training count 0": [0],
        "target's training count 1-4": [1],
        "target's training count 5-19": [2],
        "target's training count 50 or more": [3],
    }


def drop(out: Path, key: str) -> None:
    """Remove step `key` from the run's JSON and its summary: it is then trained again."""
    for path in (out, out.with_suffix(".summary.json")):
        record = json.loads(path.read_text())
        del record["steps"][key]
        path.write_text(json.dumps(record))


def _load_benchmark(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as running the script puts it first
    spec = importlib.util.spec_from_file_location("microlens_benchmark", ROOT / "benchmarks" / "microlens.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    return benchmark


@pytest.mark.parametrize(
    "change, says",
    [
        (["--delta-ratio", "0.5"], "was run with delta_ratio the default, not 0.5"),
        (["--max-users", "5"], "was run with max_users the default, not 5"),
        (["--models", "sasrec,nosuch"], "unknown ranker 'nosuch'"),
        # Probe: wrote an empty table. The JSON here has no lstm-attn step for it to re-rank.
        (["--models", "lightgbm"], "--models: lightgbm re-ranks the lstm-attn of its seed, and {out} holds no main/lstm-attn/seed0 step: list lstm-attn"),
        (["--models", "lightgbm", "--out", "fresh.json"], "and no earlier run of this --out has its step: list lstm-attn in --models too"),
        # Review: these loaded the data, then said "nothing ran" and exited 0.
        (["--models", "itemknn", "--steps", "cold"], "--steps cold has no step for --models itemknn: cold trains popularity, sasrec-content, sasrec"),
        (["--models", "sasrec", "--steps", "seeds"], "no step for --models sasrec: seeds trains the seeds after the first, and --seeds 0 has one"),
        (
            ["--models", "itemknn", "--steps", "cold,seeds", "--seeds", "0,1"],
            "cold trains popularity, sasrec-content, sasrec, lstm-attn only; seeds trains sasrec, sasrec-content, lstm-attn, lightgbm only",
        ),
        (["--seeds", "x"], "takes comma-separated seeds"),
        (["--max-users", "0"], "--max-users: takes a whole number above 0, got '0'"),
        # Probe, 2026-12-02: these wrote the first steps, then raised the rankers' ConfigError
        # traceback, and the JSON's settings were locked to the bad value.
        (["--max-epochs", "0"], "--max-epochs: takes a whole number above 0, got '0'"),
        (["--patience", "-1"], "--patience: takes a whole number above 0, got '-1'"),
        (["--batch", "1.5"], "--batch: takes a whole number above 0, got '1.5'"),
        (["--id-drop", "2"], "--id-drop: takes a share from 0 up to, not including, 1 such as 0.25, got '2'"),
        (["--id-drop", "1"], "--id-drop: takes a share from 0 up to, not including, 1 such as 0.25, got '1'"),  # review
        (["--delta-ratio", "nan"], "--delta-ratio: takes a number above 0, got 'nan'"),
        (["--models", ","], "--models takes comma-separated model names with none empty, got ','"),
        (["--models", "sasrec,,lstm-attn"], "none empty, got 'sasrec,,lstm-attn'"),  # probe: trained, dropping the empty name
        (["--out", "results.md"], "--out must end in .json"),
        (["--out", "results.summary.json"], "--out must end in .json, not .summary.json"),  # review: read as a full JSON, overwritten unpacked
        (["--home", "not-a-home"], "is not a reelsense home"),
        # Probe: a run with the default --out overwrote a committed table made on other data.
        (["--out", "table.json"], "table.md is there without the table.json or .summary.json of its run: this run would overwrite it"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(tmp_path, monkeypatch, capsys, change, says):
    benchmark = _load_benchmark(monkeypatch)
    out = tmp_path / "bench.json"
    before = {"steps": {"main/popularity/seed0": {}}, "main_seed": 0, "overrides": {"delta_ratio": None, "max_users": None}}
    out.write_text(json.dumps(before))
    home = tmp_path / "home"
    home.mkdir()
    (home / "reelsense.duckdb").touch()
    args = {"--home": str(home), "--out": str(out), "--models": "sasrec", "--seeds": "0"}
    (tmp_path / "table.md").write_text("# a table committed alone\n")
    for flag, value in zip(change[::2], change[1::2]):
        args[flag] = value if flag not in ("--home", "--out") or value.endswith("summary.json") or value == "results.md" else str(tmp_path / value)
    monkeypatch.setattr(sys, "argv", ["microlens.py", *[x for pair in args.items() for x in pair]])
    with pytest.raises(SystemExit) as refused:
        benchmark.main()
    err = capsys.readouterr().err
    says = says.replace("{out}", str(out))
    assert refused.value.code == 2 and says in err and err.count("\n") == 1, err  # one line, no usage
    assert json.loads(out.read_text()) == before
    assert not (tmp_path / "not-a-home").exists()
    assert (tmp_path / "table.md").read_text() == "# a table committed alone\n"


def test_the_benchmark_needs_its_out(tmp_path, monkeypatch, capsys):
    """Probe: the default --out was a committed table's, which a run on the sample overwrote."""
    benchmark = _load_benchmark(monkeypatch)
    monkeypatch.setattr(sys, "argv", ["microlens.py", "--home", str(tmp_path)])
    with pytest.raises(SystemExit) as refused:
        benchmark.main()
    assert refused.value.code == 2 and "the following arguments are required: --out" in capsys.readouterr().err


def test_a_results_file_that_is_not_json_is_named(tmp_path, monkeypatch, capsys):
    """Probe: a truncated JSON or summary gave the parser's message alone, naming no file."""
    benchmark = _load_benchmark(monkeypatch)
    home = tmp_path / "home"
    home.mkdir()
    (home / "reelsense.duckdb").touch()
    out = tmp_path / "bench.json"
    for broken in (out, out.with_suffix(".summary.json")):
        out.unlink(missing_ok=True)
        broken.write_text('{"steps": {"main/sa')
        monkeypatch.setattr(sys, "argv", ["microlens.py", "--home", str(home), "--out", str(out), "--models", "sasrec", "--seeds", "0"])
        with pytest.raises(SystemExit) as refused:
            benchmark.main()
        err = capsys.readouterr().err
        assert refused.value.code == 2 and f"{broken} is not valid JSON (" in err and "move it away, or use another --out" in err, err
        broken.unlink()


def _harness_json(path: Path, sha: str, steps: dict[str, tuple[str, list[float]]]) -> str:
    """A harness JSON holding steps of known per-user NDCG@10 (masked: half the unmasked values)."""
    record = {
        name: {"code_version": code, "ndcg10_per_user": {"unmasked": values, "masked": [v / 2 for v in values]}} for name, (code, values) in steps.items()
    }
    path.write_text(json.dumps({"data": {"test_rows_sha1": sha}, "steps": record}))
    return str(path)


def test_pair_seeds_pairs_each_seed_and_the_seed_means_over_the_same_users(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import pair_seeds

    # Four users. Seed 0: b beats a by 0.1 on every user; seed 1: b is a + 0.3 on user 0 only.
    s0 = _harness_json(tmp_path / "s0.json", "abc", {"a/seed0": ("c0", [0.0, 0.1, 0.2, 0.3]), "b/seed0": ("c0", [0.1, 0.2, 0.3, 0.4])})
    s1 = _harness_json(tmp_path / "s1.json", "abc", {"a/seed1": ("c1", [0.1, 0.1, 0.1, 0.1]), "b/seed1": ("c1", [0.4, 0.1, 0.1, 0.1])})
    result = pair_seeds.compare([f"{s0}#a/seed0", f"{s1}#a/seed1"], [f"{s0}#b/seed0", f"{s1}#b/seed1"])
    first, second = (row["unmasked"]["b_minus_a"] for row in result["per_seed"])
    assert first["diff"] == pytest.approx(0.1) and first["ci95"] == pytest.approx([0.1, 0.1])  # no spread over users
    assert second["diff"] == pytest.approx(0.075) and second["ci95"][0] == pytest.approx(0.0)  # a resample without user 0
    over = result["over_seeds"]["unmasked"]
    assert over["a"]["mean"] == pytest.approx(0.125) and over["a"]["sd"] == pytest.approx(np.std([0.15, 0.1], ddof=1))
    assert over["b_minus_a_per_seed"]["mean"] == pytest.approx(0.0875) and over["b_minus_a_per_seed"]["sd"] == pytest.approx(np.std([0.1, 0.075], ddof=1))
    # Seed means per user: a (0.05, 0.1, 0.15, 0.2), b (0.25, 0.15, 0.2, 0.25): +0.0875 on average.
    assert over["b_minus_a_of_seed_means"]["diff"] == pytest.approx(0.0875)
    assert over["b_minus_a_of_seed_means"]["ratio"] == pytest.approx(0.2125 / 0.125)
    assert result["over_seeds"]["masked"]["b_minus_a_of_seed_means"]["diff"] == pytest.approx(0.0875 / 2)  # protocols kept apart
    # Not a pair: other test users, another code version within a seed, a missing step, unequal counts.
    other = _harness_json(tmp_path / "other.json", "zzz", {"b/seed1": ("c1", [0.4, 0.1, 0.1, 0.1])})
    recode = _harness_json(tmp_path / "recode.json", "abc", {"b/seed0": ("c9", [0.4, 0.1, 0.1, 0.1])})
    cold = tmp_path / "cold.json"  # the cold split's steps keep their per-user values by slice
    cold.write_text(json.dumps({"data": {"test_rows_sha1": "abc"}, "steps": {"cold/a/seed0": {"code_version": "c0", "ndcg10_per_user": {"cold": {}}}}}))
    for a, b, says in (
        ([f"{s0}#a/seed0", f"{s1}#a/seed1"], [f"{s0}#b/seed0", f"{other}#b/seed1"], "different test users"),
        ([f"{s0}#a/seed0"], [f"{s1}#b/seed1"], "the i-th --a and --b must be one seed, each seed once: --a ends seed0, --b seed1"),
        ([f"{s0}#a/seed0"], [f"{recode}#b/seed0"], "ran different code (c0 and c9)"),
        ([f"{s0}#a/seed0", f"{s0}#a/seed0"], [f"{s0}#b/seed0", f"{s0}#b/seed0"], "each seed once"),
        ([f"{cold}#cold/a/seed0"], [f"{cold}#cold/a/seed0"], "not a warm step of all test users"),
        ([f"{s0}#c/seed0"], [f"{s0}#b/seed0"], "has no step 'c/seed0'; it has a/seed0, b/seed0"),
        ([f"{s0}#a/seed0"], [f"{s0}#b/seed0", f"{s1}#b/seed1"], "one --a and one --b per seed"),
    ):
        with pytest.raises(SystemExit, match=re.escape(says)):
            pair_seeds.compare(a, b)
    # --across-code pairs another code version on purpose, and records both.
    (row,) = pair_seeds.compare([f"{s0}#a/seed0"], [f"{recode}#b/seed0"], across_code=True)["per_seed"]
    assert (row["code_version"], row["code_version_b"]) == ("c0", "c9") and row["unmasked"]["b_minus_a"]["diff"] == pytest.approx(0.025)


def test_same_steps_counts_the_users_whose_values_differ_and_the_largest_gaps(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import same_steps

    a = _harness_json(tmp_path / "a.json", "abc", {"x/seed0": ("c0", [0.0, 0.5, 1.0]), "y/seed0": ("c0", [0.1, 0.2, 0.3]), "z/seed0": ("c0", [0.0])})
    b = _harness_json(tmp_path / "b.json", "abc", {"x/seed0": ("c1", [0.0, 0.5, 1.0]), "y/seed0": ("c1", [0.1, 0.25, 0.3])})
    result = same_steps.compare(a, b)
    x, y = result["steps"]["x/seed0"], result["steps"]["y/seed0"]
    assert x["same_per_user"] and x["users_differing"] == 0 and x["code_version"] == ["c0", "c1"]
    # y: one user differs, in both protocols (masked values are half the unmasked ones)
    assert not y["same_per_user"] and y["users_differing"] == 2 and y["largest_user_difference"] == pytest.approx(0.05)
    assert result["only_a"] == ["z/seed0"] and result["only_b"] == []
    text = "\n".join(same_steps.lines(result))
    assert "x/seed0: every user's NDCG@10 the same" in text and "y/seed0: 2 user values differ (at most 0.05)" in text and "steps in a only: z/seed0" in text
    # Metrics and curves: the largest gap, named; a cold step's slices are compared slice by slice.
    one = {"code_version": "c", "metrics": {"unmasked": {"ndcg@10": 0.3}}, "history": [{"valid_ndcg@10": 0.1}, {"valid_ndcg@10": 0.2}]}
    other = {**one, "metrics": {"unmasked": {"ndcg@10": 0.31}}, "history": [{"valid_ndcg@10": 0.1}, {"valid_ndcg@10": 0.23}]}
    cold = {"code_version": "c", "ndcg10_per_user": {"cold_targets": {"unmasked": [0.0, 1.0]}}}
    gaps = same_steps.compare_step({**one, **cold}, {**other, **cold})
    assert gaps["largest_metric_difference"] == pytest.approx(0.01) and gaps["metric"] == "metrics/unmasked/ndcg@10"
    assert gaps["largest_curve_difference"] == pytest.approx(0.03) and gaps["per_user_keys"] == ["cold_targets/unmasked"] and gaps["same_per_user"]
    other_users = _harness_json(tmp_path / "other.json", "zzz", {"x/seed0": ("c0", [0.0, 0.5, 1.0])})
    with pytest.raises(SystemExit, match="different test users"):
        same_steps.compare(a, other_users)
    with pytest.raises(SystemExit, match="no such file"):
        same_steps.compare(a, str(tmp_path / "missing.json"))


def test_the_cold_start_header_names_the_split_seed_and_the_training_seed_apart(monkeypatch):
    """The split's seed is fixed at 0; a run with --seeds 1 trains its cold models with seed 1, and
    the header said "seed 0" for both."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import microlens_report

    metrics = {"unmasked": {"hr@10": 0.1, "ndcg@10": 0.05, "users": 7}}
    step = {
        "item_cold": {"cold_targets": metrics, "warm_targets": metrics},
        "user_cold": {str(k): metrics for k in microlens_report.NEW_USER_STEPS},
    }
    lines = microlens_report.cold_tables({"main_seed": 1, "steps": {"cold/sasrec/seed1": step}})
    header = next(line for line in lines if line.startswith("## cold start"))
    assert "by the split's seed 0; models trained with seed 1;" in header, header
    assert any(line.startswith("| sasrec | 0.1000 / 0.0500 (7) |") for line in lines)
    empty = {"unmasked": {"users": 0}}  # review: a slice without users read 0.0000 / 0.0000 (0)
    step["item_cold"]["cold_targets"] = empty
    lines = microlens_report.cold_tables({"main_seed": 1, "steps": {"cold/sasrec/seed1": step}})
    assert any(line.startswith("| sasrec | - | 0.1000 / 0.0500 (7) | 0.0500 (7) |") for line in lines), lines


def test_a_run_of_other_seeds_only_prints_no_empty_tables_of_the_main_seed(monkeypatch):
    """Probe: `--steps seeds --seeds 0,1` printed "No sasrec in this run" and empty seed-0 tables
    above the seed-1 models it had trained."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import microlens_report

    overall = {"ndcg@10": 0.03, "ndcg@10_ci95": [0.02, 0.04], "hr@10": 0.06, "ndcg@20": 0.04, "hr@20": 0.1}
    step = {"metrics": {p: {"overall": overall, "natural_cold_items": {"users": 0}} for p in ("unmasked", "masked")}, "fit_seconds": 1.0}
    seed1 = {"main_seed": 0, "command": "c", "steps": {"main/sasrec/seed1": step}}
    text = microlens_report.markdown(seed1)
    assert "No sasrec" not in text and "## history unmasked, all test users, seed 0" not in text, text
    assert "No step of seed 0 in this run: the seeds' tables below hold its models." in text
    assert "| sasrec | 1 | 0.0300 (one seed: no spread) |" in text  # the seed-1 step is still shown, in the seeds table
    # With a seed-0 step the main tables are there (the check is on the main seed, not on any seed).
    seed0 = {**seed1, "steps": {"main/sasrec-content/seed0": step}}
    assert "No sasrec in this run" in microlens_report.markdown(seed0) and "| sasrec-content | 0.0300 (0.0200-0.0400) |" in microlens_report.markdown(seed0)
    # Probe: two commands ran the steps of one --out, and the .md named the latest alone.
    both = microlens_report.markdown({**seed0, "commands": ["python a --models sasrec", "python a --models itemknn"]})
    assert "The commands run on this --out, the latest last:\n\n- `python a --models sasrec`\n- `python a --models itemknn`\n" in both
    assert "\n`c`\n" in microlens_report.markdown(seed0)  # one command: as before
    # Probe: a --max-users run's tables said "all test users", and no cold target read "0.0000 (0)".
    text = microlens_report.markdown(seed0)
    assert "## history unmasked, all test users, seed 0" in text and "| 0.0400 | 0.1000 | - | not paired |" in text, text
    sampled = microlens_report.markdown({**seed0, "overrides": {"max_users": 50}, "data": {"test_users": 50}})
    assert "## history unmasked, 50 test users (--max-users 50), seed 0" in sampled and "all test users" not in sampled
    fewer = microlens_report.markdown({**seed0, "overrides": {"max_users": 500}, "data": {"test_users": 193}})  # review: all 193 of them
    assert "## history unmasked, 193 test users (--max-users 500), seed 0" in fewer


def test_a_summary_packs_per_user_values_exactly_and_pair_seeds_reads_it(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import microlens_report
    import pair_seeds

    values = [0.0, 1 / np.log2(3), 0.0, 0.0, 1.0, 1 / np.log2(11)]  # ranks -, 2, -, -, 1, 10
    cold = {"cold_targets": {"unmasked": [0.0, 0.5], "masked": [0.0, 0.0]}}
    results = {"data": {"test_rows_sha1": "abc"}, "steps": {"a/seed0": {"code_version": "c0", "ndcg10_per_user": {"unmasked": values, "masked": values[::-1]}}}}
    results["steps"]["cold/a/seed0"] = {"code_version": "c0", "ndcg10_per_user": cold}
    summary = json.loads(json.dumps(microlens_report.slim(results)))  # through JSON, as written and read back
    assert summary["steps"]["a/seed0"]["ndcg10_packed"]["unmasked"] == {"users": 6, "nonzero": {"1": values[1], "4": 1.0, "5": values[5]}}
    assert "ndcg10_per_user" not in summary["steps"]["a/seed0"] and summary["steps"]["a/seed0"]["code_version"] == "c0"
    assert microlens_report.from_summary(summary) == results  # the same floats, bit for bit
    listed = json.loads(json.dumps(summary))  # the first packed summaries (ee0b71d) listed [position, value] pairs
    for protocol in ("unmasked", "masked"):
        listed["steps"]["a/seed0"]["ndcg10_packed"][protocol]["nonzero"] = [
            [int(i), v] for i, v in listed["steps"]["a/seed0"]["ndcg10_packed"][protocol]["nonzero"].items()
        ]
    assert microlens_report.from_summary(listed)["steps"]["a/seed0"] == results["steps"]["a/seed0"]
    assert microlens_report.from_summary(results) == results  # a full JSON: as it is
    path = tmp_path / "run.summary.json"
    path.write_text(json.dumps(summary))
    _, step = pair_seeds.read_step(f"{path}#a/seed0", {})
    assert step["ndcg10_per_user"]["masked"] == values[::-1]


def test_a_summary_resumes_only_a_run_it_can(tmp_path, monkeypatch, capsys):
    """Review: a summary written before it kept per-user values was resumed as finished steps
    with nothing to pair, and the pairs committed in it were overwritten; a JSON older than the
    summary overwrote the steps only the summary held."""
    benchmark = _load_benchmark(monkeypatch)
    out, summary = tmp_path / "bench.json", tmp_path / "bench.summary.json"
    step = {"code_version": "c0", "ndcg10_per_user": {"unmasked": [0.0, 1.0], "masked": [0.5, 0.0]}}
    run_record = {"data": {"test_rows_sha1": "abc"}, "overrides": {}, "main_seed": 0}
    summary.write_text(json.dumps({**run_record, "steps": {"main/a/seed0": {"code_version": "c0", "metrics": {}}}}))
    with pytest.raises(ValueError, match=re.escape("was written before it kept per-user values (main/a/seed0 has none)")):
        benchmark.resumed(out, summary)
    full = {**run_record, "steps": {"main/a/seed0": step, "main/b/seed0": step}}
    summary.write_text(json.dumps(benchmark.slim(full)))
    assert benchmark.resumed(out, summary) == full  # no JSON: the summary's steps, values unpacked
    assert "resuming from" in capsys.readouterr().out
    out.write_text(json.dumps({**run_record, "steps": {"main/a/seed0": step}}))
    with pytest.raises(ValueError, match=re.escape(f"holds steps that {out} lacks (main/b/seed0), and this run would overwrite it")):
        benchmark.resumed(out, summary)  # probe: the summary's step was said to be trained again, then dropped untrained
    out.write_text(json.dumps(full))
    assert benchmark.resumed(out, summary) == full  # the JSON, holding every step the summary does


def test_the_report_shows_each_fits_validation_curve_and_its_kept_epoch(monkeypatch):
    """The issue: a peer trained to convergence, its curve shown. The epoch marked is the one whose
    weights training kept (a gain must clear 1e-4: review, the curve's highest point is not always
    it), and what stopped the fit is said."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import microlens_report

    def step(scores: list[float], max_epochs: int, patience: int = 2) -> dict:
        return {"history": [{"epoch": e + 1, "valid_ndcg@10": v} for e, v in enumerate(scores)], "config": {"max_epochs": max_epochs, "patience": patience}}

    steps = {"main/sasrec/seed0": step([0.01, 0.03, 0.02], 3), "main/itemknn/seed0": {"history": []}}
    lines = microlens_report.curve_tables({"steps": steps})
    assert "| main/sasrec/seed0 | 3, the cap | 2 | .0100 .0300* .0200 |" in lines and not any("itemknn" in line for line in lines)
    # a later high by less than 1e-4 is no gain: the weights kept are the earlier epoch's, and the patience ran out
    steps = {"main/bpr-mf/seed0": step([0.01, 0.03, 0.02, 0.03005], 40)}
    assert "| main/bpr-mf/seed0 | 4, the patience | 2 | .0100 .0300* .0200 .0301 |" in microlens_report.curve_tables({"steps": steps})
    steps = {"main/bpr-mf/seed0": step([0.01, 0.03, 0.02, 0.01], 4)}
    assert microlens_report.curve_tables({"steps": steps})[5].startswith("| main/bpr-mf/seed0 | 4, the patience and the cap at once | 2 |")
    assert microlens_report.curve_tables({"steps": {"main/popularity/seed0": {}}}) == []
