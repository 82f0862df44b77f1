"""Deployments against a real local Prefect server: `reelsense serve` registers every flow, and
`prefect deployment run 'extract-items/default'` runs it into the warehouse."""

from __future__ import annotations

import json
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


def test_the_scheduled_train_ranker_reads_the_rankers_toml_serve_was_given(tmp_path, prefect_harness, capsys, monkeypatch):
    """Probe: the nightly train-ranker took no rankers TOML and no seed, so it trained the defaults at
    seed 0 and made them the latest over a model a TOML or --seed had set. `serve --config FILE --seed
    N` passes the file's path and the seed; the flow reads the file at each run (an edit reaches the
    next run) and checks it first; serve warns where the nightly run would replace another fit."""
    import tiny_platform

    from flows.cli import main
    from flows.rank import build_features, nightly_settings_warning, train_rankers
    from flows.serve import build_deployments
    from ranker import artifacts
    from warehouse.errors import ConfigError

    wh = tiny_platform.build(tmp_path / "home")
    build_features(str(wh.home))
    toml = (tmp_path / "rankers.toml").resolve()
    toml.write_text("[bpr-mf]\nmax_epochs = 1\n")
    parameters = {d.flow_name: d.parameters for d in build_deployments(str(wh.home), train_config=str(toml), train_seed=1)}
    assert parameters["train-ranker"] == {"home": str(wh.home), "config": str(toml), "seed": 1}
    assert all(p == {"home": str(wh.home)} for name, p in parameters.items() if name != "train-ranker"), parameters
    assert nightly_settings_warning(wh.models_dir) is None  # nothing trained yet
    meta = train_rankers(models=["bpr-mf"], device="cpu", **parameters["train-ranker"])["bpr-mf"]  # as the deployment calls it
    assert meta["config"]["max_epochs"] == 1 and len(meta["history"]) == 1 and meta["seed"] == 1, meta
    assert artifacts.latest(wh.models_dir, "bpr-mf")["settings"] == {"max_epochs": 1}
    warning = nightly_settings_warning(wh.models_dir)
    assert warning is not None and f"the latest bpr-mf {meta['version']} (max_epochs = 1; seed 1) was trained otherwise" in warning, warning
    assert nightly_settings_warning(wh.models_dir, {"bpr-mf": {"max_epochs": 1}}, 1) is None  # the nightly run trains the same
    assert f"bpr-mf {meta['version']} (seed 1) was" in (nightly_settings_warning(wh.models_dir, {"bpr-mf": {"max_epochs": 1}}, None) or "")
    toml.write_text("[bpr-mf]\nmax_epoch = 1\n")  # edited: read again by the next run, and checked before any fit
    with pytest.raises(ConfigError, match="max_epoch"):
        train_rankers(str(wh.home), models=["bpr-mf"], device="cpu", config=str(toml))
    with pytest.raises(ConfigError, match="not both"):
        train_rankers(str(wh.home), models=["bpr-mf"], device="cpu", config=str(toml), settings={"bpr-mf": {"max_epochs": 1}})
    with pytest.raises(ConfigError, match="relative path; give the rankers TOML's absolute path"):  # a flow run's folder is not the user's
        train_rankers(str(wh.home), models=["bpr-mf"], device="cpu", config="rankers.toml")
    assert artifacts.latest(wh.models_dir, "bpr-mf")["version"] == meta["version"]
    # serve checks the file before it registers anything, passes its absolute path on, and warns where
    # the nightly run would replace a latest trained otherwise. (Serving itself blocks: the e2e test below runs it.)
    served: list[dict] = []
    monkeypatch.setattr("flows.serve.serve_all", lambda home, **kwargs: served.append(kwargs))
    capsys.readouterr()
    assert main(["--home", str(wh.home), "serve", "--config", str(toml)]) == 2
    assert "max_epoch" in capsys.readouterr().err and not served
    toml.write_text("[bpr-mf]\nmax_epochs = 1\n")
    monkeypatch.chdir(tmp_path)
    assert main(["--home", str(wh.home), "serve", "--config", "rankers.toml", "--seed", "1"]) == 0
    assert served.pop() == {"name": "default", "paused": False, "train_config": str(toml), "train_seed": 1}
    said = capsys.readouterr()
    assert said.out == f"serve: train-ranker/default trains with {toml}: [bpr-mf] max_epochs = 1\n" and said.err == "", said
    assert main(["--home", str(wh.home), "serve", "--config", "rankers.toml"]) == 0  # the TOML's settings, but seed 0 (review)
    assert f"bpr-mf {meta['version']} (seed 1) was trained otherwise" in capsys.readouterr().err and served.pop()["train_seed"] is None
    assert main(["--home", str(wh.home), "serve"]) == 0
    # its command names the home, as every suggested command does (probe: a bare `reelsense serve ...`)
    with_home = warning.replace("`reelsense serve", f"`reelsense --home {wh.home} serve")
    assert with_home != warning and served.pop()["train_config"] is None and capsys.readouterr().err == f"reelsense: warning: {with_home}\n"
    # Latests of several seeds: serve's one --seed keeps those of one of them, said so (probe: "--seed N keeps them" could not).
    train_rankers(str(wh.home), models=["popularity"], device="cpu")
    several = nightly_settings_warning(wh.models_dir, {"bpr-mf": {"max_epochs": 1}}, 1) or ""
    assert "popularity " in several and "(seed 0) was trained otherwise: the latests have seeds 0, 1 and serve's one --seed" in several, several
    # A setting this code no longer has: said, not a crash, and no TOML is offered to keep it (review).
    meta_json = wh.models_dir / "rankers" / "bpr-mf" / meta["version"] / "meta.json"
    meta_json.write_text(json.dumps({**json.loads(meta_json.read_text()), "settings": {"gone_key": 3}}))
    gone = nightly_settings_warning(wh.models_dir, None, 1) or ""
    assert f"bpr-mf {meta['version']} (gone_key = 3, which this code no longer has: no TOML keeps it)" in gone, gone


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
