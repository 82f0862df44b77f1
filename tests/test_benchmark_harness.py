"""benchmarks/microlens.py, the one command behind the README's MicroLens-50K tables, run on the
tiny platform: which steps it trains for each seed, how it pairs them with sasrec, and how it
resumes. Its numbers here mean nothing (two epochs on 36 users); its bookkeeping is what is tested.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import tiny_platform

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "microlens.py"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_each_seed_trains_the_claims_models_pairs_them_and_a_rerun_resumes(tmp_path):
    home = tiny_platform.build(tmp_path / "home").home
    out = tmp_path / "bench.json"
    args = ["--home", str(home), "--out", str(out), "--models", "popularity,sasrec,lstm-attn,lightgbm", "--seeds", "0,1"]
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
    # Each seed's models are paired with sasrec of that seed, over the same test users.
    for seed in ("0", "1"):
        assert set(results["paired_vs_sasrec_by_seed"][seed]) == {"popularity", "lstm-attn", "lightgbm"} - ({"popularity"} if seed == "1" else set())
    users = len(steps["main/sasrec/seed0"]["ndcg10_per_user"]["unmasked"])
    assert users > 0 and all(len(steps[k]["ndcg10_per_user"]["masked"]) == users for k in steps if k.startswith("main/"))
    assert "lstm-attn | 2 |" in out.with_suffix(".md").read_text()  # mean +- sd over its two seeds

    again = run(*args)  # every step is in the JSON: nothing is trained again
    assert again.returncode == 0, again.stderr[-3000:]
    assert "NDCG@10 unmasked" not in again.stdout and "item-cold" not in again.stdout
    assert json.loads(out.read_text())["steps"]["main/lstm-attn/seed1"]["fit_seconds"] == steps["main/lstm-attn/seed1"]["fit_seconds"]

    # lightgbm re-ranks an lstm-attn fitted in the same invocation: alone, it says so and trains nothing.
    del results["steps"]["main/lightgbm/seed1"]
    out.write_text(json.dumps(results))
    alone = run(*[a if a != "popularity,sasrec,lstm-attn,lightgbm" else "lightgbm" for a in args])
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert "main/lightgbm/seed1: skipped: lightgbm re-ranks the lstm-attn fitted in this invocation" in alone.stdout
    assert "main/lightgbm/seed1" not in json.loads(out.read_text())["steps"]

    other = run(*args, "--delta-ratio", "0.5")  # settings differ from the JSON's: refused, nothing run
    assert other.returncode == 2 and "delta_ratio" in other.stderr
