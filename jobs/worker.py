"""``workbench worker SCHEDULER``: Dask workers set up the way the engine needs them, on any host.

It runs the environment's own ``dask worker`` (so every ``dask worker`` option still applies, passed after ``--``)
with what the embedded local cluster gives its workers:

- one Horovod rank per worker process: ``--nworkers N`` processes of ``--nthreads T`` threads (default 1);
- the per-worker thread caps of :func:`core.distributed.cluster.worker_env` (TensorFlow and the math libraries use
  the worker's threads only, so N workers on N cores do not oversubscribe the host);
- the engine importable in every worker process: when the package is not installed, this checkout is put on
  ``PYTHONPATH`` (the workers then import the same source as this command);
- the listen address ``--host ADDR`` for the worker, its nanny and its dashboard (nothing on other interfaces).

The plain ``dask worker`` keeps working when the package is installed (or PYTHONPATH is set) on the worker host;
the cluster pre-flight reports what it lacks (thread caps) or cannot do (import the engine).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from core.distributed.cluster import worker_env
from core.distributed.probes import ENGINE_DIST
from core.settings import REPO_ROOT

log = logging.getLogger(__name__)


def engine_installed() -> bool:
    """True when the package is installed in this environment (editable or not), not just on the path."""
    try:
        version(ENGINE_DIST)
    except PackageNotFoundError:
        return False
    return True


def worker_environment(nthreads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the worker processes: ``base`` (default ``os.environ``), the thread caps and, when the
    package is not installed, this checkout first on ``PYTHONPATH``."""
    env = {**(os.environ if base is None else base), **worker_env(nthreads)}
    if not engine_installed():
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(REPO_ROOT)]
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *paths])
    return env


def worker_command(
    scheduler: str,
    nworkers: int = 1,
    nthreads: int = 1,
    memory_limit: str = "auto",
    host: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``dask worker`` command line (run with this Python) for the options of ``workbench worker``."""
    cmd = [
        sys.executable,
        "-m",
        "distributed.cli.dask_worker",
        scheduler,
        "--nworkers",
        str(nworkers),
        "--nthreads",
        str(nthreads),
        "--memory-limit",
        memory_limit,
    ]
    if host:
        cmd += ["--host", host, "--dashboard-address", f"{host}:0"]  # Dask: listen on this address only
    return cmd + list(extra)


def exec_worker(
    scheduler: str,
    nworkers: int = 1,
    nthreads: int = 1,
    memory_limit: str = "auto",
    host: str | None = None,
    extra: Sequence[str] = (),
) -> None:
    """Replace this process with ``dask worker`` (signals from a shell, SLURM or systemd reach it directly)."""
    if nworkers < 1 or nthreads < 1:
        raise ValueError(f"--nworkers {nworkers} --nthreads {nthreads}: both must be at least 1")
    cmd = worker_command(scheduler, nworkers, nthreads, memory_limit, host, extra)
    env = worker_environment(nthreads)
    how = "installed package" if engine_installed() else f"PYTHONPATH={env['PYTHONPATH']}"
    print(
        f"workbench worker: {nworkers} process(es) x {nthreads} thread(s), engine from the {how}\n  {shlex.join(cmd)}",
        flush=True,
    )
    os.execve(sys.executable, cmd, env)
