"""`reelsense demo` end to end in a temporary home, run as a user runs it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.e2e
def test_demo_runs_twice_with_the_same_counts(tmp_path):
    command = [sys.executable, "-m", "flows.cli", "--home", str(tmp_path / "home"), "demo"]
    outputs = [subprocess.run(command, capture_output=True, text=True, timeout=1500) for _ in range(2)]
    for run in outputs:
        assert run.returncode == 0, run.stderr
    first, second = (dict(re.findall(r"^  (\w+) +(\d+)$", run.stdout, flags=re.M)) for run in outputs)
    assert first == second and int(first["items"]) == 120 and int(first["events"]) > 20000
    assert "0 accepted, 0 quarantined, 120 duplicates" in outputs[1].stdout
    assert "| impression |" in outputs[0].stdout
    # extract-items embedded every clip's frames, title and music; the rerun embedded nothing.
    assert "120 embedded, 0 skipped, 0 quarantined" in outputs[0].stdout
    assert "0 embedded, 120 skipped" in outputs[1].stdout
    # align-items: fused vectors for every item, and held-out retrieval well above random.
    assert int(first["embeddings"]) == 120 * 3 + 120 * 4
    report = json.loads((tmp_path / "home" / "reports" / "alignment.json").read_text())
    assert len(report["retrieval"]) == 6
    for pair, result in report["retrieval"].items():
        assert result["aligned"]["recall@10"] >= result["random"]["recall@10"] + 0.05, pair
    # Rankers: the multimodal lstm-attn recovers the planted interests better than popularity under
    # both protocols; every model is paired against sasrec.
    results = json.loads((tmp_path / "home" / "reports" / "results.json").read_text())
    assert results["evaluation"] == "full: every test user"
    for protocol in ("unmasked", "masked"):
        ndcg = {name: r[protocol]["overall"]["ndcg@10"] for name, r in results["models"].items()}
        assert ndcg["lstm-attn"] > ndcg["popularity"], (protocol, ndcg)
    assert {"auc_like", "auc_comment"} <= set(results["models"]["lstm-attn"]["ctr_sampled"])
    # The score-batch path: on the sample every item the user has not engaged with is a candidate,
    # so the candidates hold exactly the targets that are not repeats.
    served = results["models"]["lstm-attn"]["scoring_path"]
    assert served["candidates"] == 120 and 0 < served["repeat_targets"] < 1 and served["ndcg@10"] > 0
    assert served["candidate_recall"] == pytest.approx(1 - served["repeat_targets"])
    assert set(results["models"]["sasrec-content"]["vs_sasrec"]) == {"unmasked", "masked"}
    assert "reused" in outputs[1].stdout  # the rerun trains nothing
    # score-batch: every user's top 20 under one run id (the rerun added none); analyze: one
    # explanation per scored pair, the report with its plots, planted shifts found.
    assert int(first["scores"]) == int(first["explanations"]) == 200 * 20
    assert "0 rows written, 4000 already there" in outputs[1].stdout
    home = tmp_path / "home"
    # the run's report is in its own folder, the path the demo prints; reports/index.html lists the runs
    report = Path(re.search(r"^  analyze \S+: .*; (\S+/index\.html)$", outputs[0].stdout, flags=re.M)[1])
    assert report.parent.parent == home / "reports" and (home / "reports" / "index.html").exists()
    assert report.exists() and len(list((report.parent / "plots").glob("*.png"))) >= 3
    shifts = json.loads((report.parent / "shifts.json").read_text())
    assert shifts["f1"] >= 0.6, shifts
    pair = re.search(r"^reelsense (?:--home \S+ )?explain --user (\S+) --item (\S+)$", outputs[0].stdout, flags=re.M)
    explain = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--home", str(home), "explain", "--user", pair[1], "--item", pair[2]], capture_output=True, text=True, timeout=600
    )
    assert explain.returncode == 0, explain.stderr
    assert "attention over the history" in explain.stdout and "modality contributions" in explain.stdout
    assert re.search(r"^  (audio|frames|text) +[+-]\d\.\d{3}", explain.stdout, flags=re.M)
