"""Every reelsense package makes idle OpenMP threads sleep before torch loads (warehouse/threads.py),
unless the environment chose a policy: spinning threads made one sample epoch 76 s instead of 4 s
beside another busy process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("package", ["flows", "ranker", "extractors"])
@pytest.mark.parametrize("given", [None, "ACTIVE"])
def test_importing_a_package_sets_passive_waits_unless_the_environment_chose(package, given):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | ({"OMP_WAIT_POLICY": given} if given else {})
    # What torch's OpenMP runtime reads when it loads: the process environment after the import.
    code = f"import os, {package}; print(os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out[-1] == (given or "PASSIVE")
