"""Dask clusters started the way users start them: ``dask scheduler`` / ``dask worker`` / ``workbench worker`` as
subprocesses, from a folder outside the repository, each in its own process group, all ended by :meth:`close`.

Optional wrappers give a worker its own host name (``unshare --uts``) or hide a folder from it (``unshare --mount``
and a tmpfs over the folder); see STACK.md, "Clusters that users start".
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
THREAD_CAPS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def base_env(engine: bool) -> dict[str, str]:
    """This process's environment without workbench settings or thread caps (a user's shell); PYTHONPATH is the
    repository if ``engine``, else the environment's packages (for ``without_engine``)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_") and k not in ("PYTHONPATH", *THREAD_CAPS)
    }
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONPATH"] = str(REPO) if engine else sysconfig.get_paths()["purelib"]
    return env


def without_engine(cmd: Sequence[str]) -> list[str]:
    """``cmd`` (a stock ``dask ...`` command) run by a Python that has the environment's packages but not the
    workbench: ``-S`` skips the site ``.pth`` files, among them the editable install's finder, and ``base_env(False)``
    puts the packages on PYTHONPATH instead, as on a cluster whose environment lacks the workbench."""
    return [sys.executable, "-S", "-m", f"distributed.cli.dask_{cmd[1]}", *cmd[2:]]


def in_host(hostname: str, cmd: Sequence[str], ip: str | None = None, workdir: Path | None = None) -> list[str]:
    """``cmd`` in its own UTS namespace with host name ``hostname`` (a simulated second host; root only).

    With ``ip``, the host also gets its own /etc/hosts (bind-mounted in its own mount namespace) in which its name
    resolves to ``ip``, as on a real host; without, its name does not resolve.
    """
    if ip is None:
        return ["unshare", "--uts", "sh", "-c", f"hostname {hostname} && exec {shlex.join(cmd)}"]
    hosts = (workdir or Path("/tmp")) / f"hosts-{hostname}"
    hosts.write_text(Path("/etc/hosts").read_text() + f"\n{ip} {hostname}\n")
    return [
        "unshare",
        "--uts",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        f"hostname {hostname} && mount --bind {shlex.quote(str(hosts))} /etc/hosts && exec {shlex.join(cmd)}",
    ]


def without_folder(folder: Path, cmd: Sequence[str]) -> list[str]:
    """``cmd`` in its own mount namespace where ``folder`` is an empty tmpfs (its files invisible; root only)."""
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        f"mount -t tmpfs none {shlex.quote(str(folder))} && exec {shlex.join(cmd)}",
    ]


class UserCluster:
    """A scheduler and workers as separate processes, started from ``workdir`` (outside the repository)."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1", engine_on_scheduler: bool = True) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.address = f"tcp://{host}:{free_port(host)}"
        port = self.address.rsplit(":", 1)[1]
        self._start(
            "scheduler",
            [str(BIN / "dask"), "scheduler", "--host", host, "--port", port, "--dashboard-address", f"{host}:0"],
            base_env(engine_on_scheduler),
        )

    def _start(self, name: str, cmd: Sequence[str], env: dict[str, str]) -> None:
        log = open(self.workdir / f"{name}-{len(self.procs)}.log", "ab")
        self.procs.append(
            subprocess.Popen(
                list(cmd),
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        )

    def dask_worker(
        self, name: str, nworkers: int = 1, engine: bool = True, host: str = "127.0.0.1", wrap: Any = None
    ) -> None:
        """The stock ``dask worker`` of the environment (``--name`` is given only for a single process)."""
        cmd = [
            str(BIN / "dask"),
            "worker",
            self.address,
            "--nworkers",
            str(nworkers),
            "--nthreads",
            "1",
            "--host",
            host,
            "--no-dashboard",
            "--local-directory",
            str(self.workdir / f"dask-{name}"),
        ]
        cmd += ["--name", name] if nworkers == 1 else []
        cmd = cmd if engine else without_engine(cmd)
        self._start(name, wrap(cmd) if wrap else cmd, base_env(engine))

    def workbench_worker(self, name: str, nworkers: int = 1, host: str = "127.0.0.1", wrap: Any = None) -> None:
        """``workbench worker`` (``python -m jobs worker``) with PYTHONPATH set only for that command itself."""
        cmd = [
            sys.executable,
            "-m",
            "jobs",
            "worker",
            self.address,
            "--nworkers",
            str(nworkers),
            "--host",
            host,
            "--",
            "--local-directory",
            str(self.workdir / f"dask-{name}"),
        ]
        self._start(name, wrap(cmd) if wrap else cmd, base_env(True))

    def client(self, n_workers: int, timeout: float = 240) -> Any:
        """A client once ``n_workers`` workers are connected."""
        from distributed import Client

        deadline = time.monotonic() + timeout
        while True:
            try:
                client = Client(self.address, timeout=10)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        self.wait_for(client, n_workers, deadline)
        return client

    def wait_for(self, client: Any, n_workers: int, deadline: float) -> None:
        """Wait until ``n_workers`` workers are connected; fail at once, with its log, if a process ended."""
        from core.distributed.cluster import live_workers  # the scheduler asked directly, not the client's cache

        while len(live_workers(client)) < n_workers:
            ended = [(i, p) for i, p in enumerate(self.procs) if p.poll() is not None]
            if ended or time.monotonic() > deadline:
                logs = "\n".join(
                    f"--- {path.name}\n{path.read_text()[-3000:]}" for path in sorted(self.workdir.glob("*.log"))
                )
                client.close()
                raise RuntimeError(f"{n_workers} workers not connected (ended: {[p.args for _, p in ended]})\n{logs}")
            time.sleep(0.5)

    def worker_named(self, client: Any, name: str) -> str:
        """The address of the worker started with ``--name name``."""
        info = client.scheduler_info(n_workers=-1)["workers"]
        return next(a for a, w in info.items() if w.get("name") == name)

    def close(self) -> None:
        """End every process group started here (SIGTERM, then SIGKILL after 20 s)."""
        for p in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in self.procs:
            try:
                p.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        for p in self.procs:  # children of a wrapper (unshare -> sh -> dask) share its process group
            try:
                os.killpg(p.pid, 0)
            except ProcessLookupError:
                continue
            os.killpg(p.pid, signal.SIGKILL)

    def __enter__(self) -> UserCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
