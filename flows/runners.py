"""Where a flow's tasks run: on this process's threads (the default), on a local Dask cluster of
worker processes, or on a running Dask scheduler. One factory for every flow that shards work
(extract-items by item shards, score-batch by user partitions)."""

from __future__ import annotations

import os
import socket
from typing import Any

from warehouse.errors import ConfigError


def check_dask(workers: int, address: str | None) -> None:
    """Refuse --dask-workers with --dask-address (a local cluster or a running one, not both), and an
    address that is malformed or where nothing accepts a TCP connection within 5 s, before any work
    starts (probe: a 30 s wait and a page of tracebacks). Whether it is a Dask scheduler that listens
    there is left to Dask."""
    from_env = bool(address) and os.environ.get("REELSENSE_DASK_ADDRESS") == address
    env_hint = " (REELSENSE_DASK_ADDRESS sets --dask-address; unset it to run here)" if from_env else ""
    if workers and address:
        raise ConfigError(
            f"--dask-workers {workers} starts a local cluster and --dask-address {address} uses a running one: pass one of them"
            + (" (REELSENSE_DASK_ADDRESS sets --dask-address; unset it for a local cluster)" if from_env else "")
        )
    if not address:
        return
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(address.strip(), strict=False)
        get_backend(scheme)  # an unknown scheme (tpc://, http://) fails here, not after the flow started
        host, port = parse_host_port(location) if scheme in ("tcp", "tls", "ws", "wss") else (None, None)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"--dask-address {address!r} is not a scheduler address ({error}); expected e.g. tcp://HOST:8786{env_hint}") from None
    if host is not None:
        try:
            socket.create_connection((host, port), timeout=5).close()
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise ConfigError(
                f"--dask-address {address}: nothing accepts connections there ({reason}); start a scheduler (`dask scheduler`) "
                f"or leave --dask-address out to run on this machine{env_hint}"
            ) from None


def dask_runner(workers: int = 0, address: str | None = None) -> tuple[Any, int] | None:
    """(task runner, torch threads per task) for Dask, or None to run on threads here. A local
    cluster has `workers` single-threaded processes, each task using its share of the cores; on a
    running scheduler (`address`) the workers' own settings decide (0: leave torch's default)."""
    check_dask(workers, address)
    if not workers and not address:
        return None
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address.strip()), 0
    cluster = {"n_workers": workers, "processes": True, "threads_per_worker": 1}
    return DaskTaskRunner(cluster_kwargs=cluster), max(1, (os.cpu_count() or 1) // workers)
