"""Deployments against a real local Prefect server: `reelsense serve` registers every flow, and
`prefect deployment run 'extract-items/default'` runs it into the warehouse."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from extractors.sample import SampleConfig, generate_sample
from flows.serve import DEPLOYMENTS
from warehouse import db
from warehouse.ingest import ingest_items
from warehouse.store import Warehouse

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_prefect_yaml_offers_the_same_deployments_and_schedules():
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    listed = {}
    for deployment in spec["deployments"]:
        module, function = deployment["entrypoint"].split(":")
        listed[module.removesuffix(".py").replace("/", ".") + ":" + function] = deployment["schedules"][0]["cron"]
        assert deployment["name"] == "default" and deployment["work_pool"]["name"] == "reelsense-process"
        assert deployment["concurrency_limit"] == 1
    assert listed == {entry: cron for entry, cron, _ in DEPLOYMENTS.values()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(condition, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}")
        time.sleep(1)
    raise AssertionError(f"{what}: not ready after {timeout}s")


@pytest.mark.parametrize("url, why", [("http://127.0.0.1:1/api", "ConnectError"), ("notaurl", "UnsupportedProtocol")])
def test_serve_with_no_server_at_its_url_is_a_one_line_error(tmp_path, url, why):
    """Probe: an unreachable or malformed PREFECT_API_URL was a 100-line httpx traceback, exit 1."""
    env = {**os.environ, "PREFECT_API_URL": url, "PREFECT_HOME": str(tmp_path / "prefect")}
    run = subprocess.run([BIN / "reelsense", "--home", str(tmp_path / "home"), "serve"], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith(f"reelsense: error: no Prefect server answers at PREFECT_API_URL={url} ({why}") and run.stderr.count("\n") == 1, run.stderr


@pytest.mark.slow
@pytest.mark.e2e
def test_a_deployment_run_lands_in_the_warehouse(tmp_path):
    sample = tmp_path / "sample"
    generate_sample(sample, SampleConfig(seed=5, items_per_topic=1, users=3, cold_users=1))
    wh = Warehouse(tmp_path / "home")
    ingest_items(wh, sample / "items.csv")
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("server", "serve")}
    server = subprocess.Popen(
        [BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"], env=env, stdout=logs["server"], stderr=subprocess.STDOUT
    )
    served = None
    try:
        _wait(lambda: subprocess.run([BIN / "prefect", "server", "status"], env=env, capture_output=True).returncode == 0, 120, "prefect server", server)
        served = subprocess.Popen([BIN / "reelsense", "--home", str(wh.home), "serve", "--paused"], env=env, stdout=logs["serve"], stderr=subprocess.STDOUT)
        _wait(
            lambda: subprocess.run([BIN / "prefect", "deployment", "inspect", "analyze/default"], env=env, capture_output=True).returncode == 0,
            120,
            "reelsense serve",
            served,
        )
        listed = subprocess.run([BIN / "prefect", "deployment", "ls"], env={**env, "COLUMNS": "200"}, capture_output=True, text=True)
        for flow_name in DEPLOYMENTS:
            assert f"{flow_name}/default" in listed.stdout
        run = subprocess.run(
            [BIN / "prefect", "deployment", "run", "extract-items/default", "--watch", "--watch-timeout", "400"],
            env=env,
            capture_output=True,
            text=True,
            timeout=450,
        )
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert "Completed" in run.stdout
    finally:
        for proc in (served, server):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for log in logs.values():
            log.close()
    rows = db.fetch(wh, "SELECT modality, count(*) AS n FROM embeddings GROUP BY modality ORDER BY modality")
    assert {r["modality"]: r["n"] for r in rows} == {"audio": 6, "frames": 6, "text": 6}, (tmp_path / "serve.log").read_text()[-3000:]
