"""`reelsense serve`: every flow as a named Prefect deployment with a cron schedule, served from one
process (Prefect's `serve`), which runs each triggered or scheduled flow run in a subprocess.

    make serve                                   # local Prefect server on 127.0.0.1:4200, then this
    reelsense --home DIR serve [--name default] [--paused] [--config RANKERS_TOML] [--seed N]
    prefect deployment run 'extract-items/default'

The deployments talk to the Prefect API named by PREFECT_API_URL (`make serve` points it at the
local server; without it Prefect refuses to serve, as an ephemeral API cannot take triggers).
Each deployment runs one flow run at a time (concurrency limit 1), so a slow run and the next
scheduled one never write the same tables at once. Schedules are in UTC; `--paused` registers them
paused (trigger runs by hand). prefect.yaml offers the same deployments for a process work pool.
"""

from __future__ import annotations

from typing import Any

# flow name -> (module:function, cron, what it does). The nightly chain leaves each step time to finish.
DEPLOYMENTS: dict[str, tuple[str, str, str]] = {
    "extract-items": ("flows.extract:extract_items", "0 * * * *", "embed new and changed items, hourly"),
    "align-items": ("flows.align:align_items", "0 1 * * *", "align and fuse the modalities, nightly"),
    "maintain-warehouse": ("flows.maintain:maintain_warehouse", "15 1 * * *", "merge partitions of many small files (compaction), nightly"),
    "build-features": ("flows.rank:build_features", "30 1 * * *", "behaviour sequences and samples, nightly"),
    "train-ranker": ("flows.rank:train_rankers", "0 2 * * *", "train the rankers (reused when the data is unchanged)"),
    "evaluate": ("flows.rank:evaluate_rankers", "0 4 * * *", "evaluate every ranker, write the results"),
    "score-batch": ("flows.score:score_batch", "30 4 * * *", "top-K for every user into `scores`"),
    "analyze": ("flows.analyze:analyze", "0 5 * * *", "explanations, profiles, shifts and the HTML report"),
}


def load_flow(entrypoint: str):
    import importlib

    module, name = entrypoint.split(":")
    return getattr(importlib.import_module(module), name)


def build_deployments(home: str, *, name: str = "default", paused: bool = False, train_config: str | None = None, train_seed: int | None = None) -> list[Any]:
    """One deployment per flow of DEPLOYMENTS; `train_config`: the absolute path of a rankers TOML
    that train-ranker reads at each run; `train_seed`: its training seed (None: 0)."""
    from prefect.deployments.runner import EntrypointType

    out = []
    for flow_name, (entrypoint, cron, what) in DEPLOYMENTS.items():
        flow = load_flow(entrypoint)
        assert flow.name == flow_name, f"{entrypoint} is flow {flow.name!r}, listed as {flow_name!r}"
        out.append(
            flow.to_deployment(
                name=name,
                cron=cron,
                paused=paused,
                parameters={"home": home, **(_train_parameters(train_config, train_seed) if flow_name == "train-ranker" else {})},
                description=what,
                tags=["reelsense"],
                concurrency_limit=1,
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return out


def _train_parameters(config: str | None, seed: int | None) -> dict[str, Any]:
    return {**({"config": config} if config else {}), **({"seed": seed} if seed is not None else {})}


def serve_all(home: str, *, name: str = "default", paused: bool = False, train_config: str | None = None, train_seed: int | None = None) -> None:
    """Register the deployments (`build_deployments`) and run their flow runs until interrupted (blocks)."""
    from prefect import serve

    check_server()
    serve(*build_deployments(home, name=name, paused=paused, train_config=train_config, train_seed=train_seed), pause_on_shutdown=False)


def check_server() -> None:
    """A Prefect server answers at PREFECT_API_URL, else a ReelsenseError that says how to start one.
    The CLI asks it first (probe: the error came after 4.7 s of imports and an unrelated warning)."""
    from prefect.settings import PREFECT_API_URL

    from warehouse.errors import ReelsenseError

    if not PREFECT_API_URL.value():
        raise ReelsenseError(
            "PREFECT_API_URL is not set: start a Prefect server (`make serve` starts one on 127.0.0.1:4200) "
            "and export PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    _check_reachable(str(PREFECT_API_URL.value()))


def _check_reachable(url: str) -> None:
    """The server at PREFECT_API_URL answers its health check; probe: an unreachable or malformed
    URL was a 100-line httpx traceback."""
    import httpx

    from warehouse.errors import ReelsenseError

    try:
        answer = httpx.get(url.rstrip("/") + "/health", timeout=15)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        why = f"{type(exc).__name__}: {exc}"
    else:
        if answer.status_code == 200:
            return
        why = f"its health check answered HTTP {answer.status_code}"
    raise ReelsenseError(
        f"no Prefect server answers at PREFECT_API_URL={url} ({why}): start one (`make serve` starts one on "
        "127.0.0.1:4200) and export PREFECT_API_URL=http://127.0.0.1:4200/api"
    )
