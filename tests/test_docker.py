"""docker/: no Docker engine runs here, so the images and the compose file are linted, not built:
hadolint for the Dockerfiles, the Compose Specification's JSON schema for compose.yaml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"
BIN = Path(sys.executable).parent


def test_dockerfiles_pass_hadolint():
    run = subprocess.run([BIN / "hadolint", DOCKER / "Dockerfile.cpu", DOCKER / "Dockerfile.gpu"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_compose_file_is_valid_and_has_the_production_shape():
    run = subprocess.run([BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", DOCKER / "compose.yaml"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"prefect-server", "worker", "gpu-worker"} <= set(services) and {"warehouse", "prefect"} <= set(compose["volumes"])
    assert services["worker"]["depends_on"]["prefect-server"]["condition"] == "service_healthy"
    assert "warehouse:/data" in services["worker"]["volumes"]
    assert services["gpu-worker"]["build"]["dockerfile"] == "docker/Dockerfile.gpu"


def test_both_images_install_the_pinned_project_and_run_offline():
    for name in ("Dockerfile.cpu", "Dockerfile.gpu"):
        text = (DOCKER / name).read_text()
        assert "pip install -c constraints.txt ." in text and "musicnn==0.1.0" in text
        assert "HF_HUB_OFFLINE=1" in text and 'ENTRYPOINT ["reelsense"]' in text
