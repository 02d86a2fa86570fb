"""The embedded default cluster: a local Dask cluster that lives in its own process.

The app and detached jobs connect to it by address, so restarting the app (or closing the browser) never kills
the workers of a running job. Its address is kept in ``<home>/cluster.json``. ``python -m jobs cluster serve``
runs it in the foreground; :func:`ensure_local_cluster` starts it in the background when none is running.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from core.distributed.cluster import local_cluster, security, tls_options
from core.errors import ClusterError
from core.settings import REPO_ROOT, Settings, get_settings

log = logging.getLogger(__name__)


def _state_file(settings: Settings) -> Path:
    return settings.home / "cluster.json"


def _reachable(address: str, timeout: float = 3.0) -> bool:
    from distributed import Client

    try:
        with Client(address, timeout=timeout, security=security()) as c:
            c.scheduler_info()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False


def running_cluster(settings: Settings | None = None) -> dict[str, Any] | None:
    """The state of the local cluster if its process is alive and its scheduler answers, else None."""
    settings = settings or get_settings()
    path = _state_file(settings)
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    return state if _reachable(state["scheduler"]) else None


def _start(settings: Settings, n_workers: int | None, threads_per_worker: int, host: str) -> tuple[Any, dict[str, Any]]:
    """The app's cluster and its published state: SLURM / PBS worker jobs when ``settings.hpc_config`` names an
    HPC settings file, else a LocalCluster of worker processes on ``host``."""
    if settings.hpc_config is not None:
        from core.configs import load_json_file
        from core.distributed.hpc import hpc_config, jobqueue

        hpc = hpc_config(load_json_file(settings.hpc_config, "HPC cluster settings"))
        cluster = jobqueue().make_cluster(hpc)  # Dask: the worker jobs arrive as the batch system starts them
        return cluster, {
            "scheduler": cluster.scheduler_address,
            "dashboard": cluster.dashboard_link,
            "pid": os.getpid(),
            "n_workers": hpc.n_workers,
            "threads_per_worker": hpc.threads_per_process,
            "hpc": hpc.system,
            "hpc_config": str(settings.hpc_config),
        }

    n = n_workers or settings.local_workers
    cluster = local_cluster(
        n,
        threads_per_worker,
        preload=True,  # workers import TensorFlow as they start
        host=host,
        dashboard_address=f"{host}:0",
        memory_limit="auto",
        **tls_options(security()),
    )  # Dask: TLS only when WORKBENCH_TLS_* are set
    return cluster, {
        "scheduler": cluster.scheduler_address,
        "dashboard": cluster.dashboard_link,
        "pid": os.getpid(),
        "n_workers": n,
        "threads_per_worker": threads_per_worker,
    }


def serve(n_workers: int | None = None, threads_per_worker: int = 1, host: str | None = None) -> None:
    """Run the app's cluster until SIGTERM/SIGINT, publishing its address in cluster.json.

    A LocalCluster's scheduler, workers and dashboard listen on ``host`` only (default ``settings.cluster_host``,
    127.0.0.1), so nothing of the embedded cluster is reachable from the network unless asked for. With
    ``$WORKBENCH_HPC_CONFIG`` the workers are batch jobs instead; stopping the cluster cancels them. With
    ``WORKBENCH_TLS_*`` set (see :func:`core.distributed.cluster.security`) they speak TLS only, at ``tls://``.
    """
    settings = get_settings()
    cluster, state = _start(settings, n_workers, threads_per_worker, host or settings.cluster_host)
    path = _state_file(settings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)
    log.info(
        "cluster up: %s (dashboard %s)%s",
        state["scheduler"],
        state["dashboard"],
        f", {state['n_workers']} {state['hpc']} worker(s) submitted" if state.get("hpc") else "",
    )
    stop = {"now": False}

    def _stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stop["now"]:
            time.sleep(0.5)
    finally:
        path.unlink(missing_ok=True)
        cluster.close()


def ensure_local_cluster(
    settings: Settings | None = None, timeout: float = 90.0, n_workers: int | None = None
) -> dict[str, Any]:
    """Return the running local cluster's state, starting one of ``n_workers`` (default: the settings') in the
    background if none is running. A running cluster is returned as it is, whatever its size."""
    settings = settings or get_settings()
    state = running_cluster(settings)
    if state:
        if n_workers and state.get("n_workers") != n_workers:
            log.warning(
                "the local cluster already runs with %s workers (not %d); stop it first to resize it",
                state.get("n_workers"),
                n_workers,
            )
        return state
    log_path = settings.home / "cluster.log"
    cmd = [sys.executable, "-m", "jobs", "cluster", "serve"] + (["--workers", str(n_workers)] if n_workers else [])
    with open(log_path, "ab") as out:
        subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "WORKBENCH_HOME": str(settings.home)},
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = running_cluster(settings)
        if state:
            return state
        time.sleep(1.0)
    raise ClusterError(f"the local Dask cluster did not start within {timeout:.0f} s; see {log_path}")


def stop_local_cluster(settings: Settings | None = None) -> bool:
    state = running_cluster(settings)
    if not state:
        return False
    os.kill(int(state["pid"]), signal.SIGTERM)
    return True
