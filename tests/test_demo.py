"""`reelsense demo` end to end in a temporary home, run as a user runs it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_twice_with_the_same_counts(tmp_path):
    command = [sys.executable, "-m", "flows.cli", "--home", str(tmp_path / "home"), "demo"]
    outputs = [subprocess.run(command, capture_output=True, text=True, timeout=600) for _ in range(2)]
    for run in outputs:
        assert run.returncode == 0, run.stderr
    first, second = (dict(re.findall(r"^  (\w+) +(\d+)$", run.stdout, flags=re.M)) for run in outputs)
    assert first == second and int(first["items"]) == 120 and int(first["events"]) > 5000
    assert "0 accepted, 0 quarantined, 120 duplicates" in outputs[1].stdout
    assert "| impression |" in outputs[0].stdout
