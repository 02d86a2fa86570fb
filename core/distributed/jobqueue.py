"""Dask clusters on HPC batch systems (SLURM, PBS) through dask-jobqueue.

A user's HPC allocation is described by one frozen :class:`HPCClusterConfig` (which queue/partition and account,
walltime, cores and memory per job, worker processes per job, extra scheduler directives, the job script's
prologue that activates the environment, how many jobs). :func:`job_script` shows the script that would be
submitted, without starting anything; :func:`make_cluster` starts the Dask scheduler in this process and submits
the worker jobs.

Workers must be able to import this project (the scheduler ships tasks by reference to ``core``, ``jobs`` ...):
activate an environment where it is installed, or put the checkout on ``PYTHONPATH``, in ``job_script_prologue``::

    HPCClusterConfig(system="slurm", queue="cpu", account="proj42", walltime="02:00:00", cores=8, memory="32GiB",
                     processes=2, n_jobs=4,
                     job_script_prologue=("source /home/me/workbench/.venv/bin/activate",
                                          "export PYTHONPATH=/home/me/workbench"))

Each worker process gets ``cores // processes`` threads, and the math libraries (OpenMP, BLAS, TensorFlow) are
capped to the same number of threads through the job's environment, so the workers of one job do not
oversubscribe its cores.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
from dataclasses import asdict, dataclass, fields
from typing import Any

from dask.utils import parse_bytes
from dask_jobqueue import PBSCluster, SLURMCluster
from dask_jobqueue.core import JobQueueCluster

from core.errors import ConfigError

log = logging.getLogger(__name__)

#: Batch systems by name: the dask-jobqueue cluster class that submits its jobs. Add a system by adding a class.
CLUSTER_CLASSES: dict[str, type[JobQueueCluster]] = {
    "slurm": SLURMCluster,
    "pbs": PBSCluster,
}

#: Directive prefix of each system's job script (stripped from user-given directives, the class adds it).
_DIRECTIVE_PREFIX = {"slurm": "#SBATCH", "pbs": "#PBS"}

# [D-]HH:MM:SS, HH:MM or MM:SS (SLURM also takes minutes alone; PBS wants HH:MM:SS, which both take).
_WALLTIME = re.compile(r"^(\d+-)?\d{1,3}:\d{2}(:\d{2})?$")

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


@dataclass(frozen=True)
class HPCClusterConfig:
    """Where and how to run Dask workers as batch jobs.

    Attributes:
        system: batch system, a key of :data:`CLUSTER_CLASSES` (``"slurm"`` or ``"pbs"``).
        queue: SLURM partition or PBS queue (None: the system's default).
        account: account/project charged for the jobs (``-A``), None for none.
        walltime: run-time limit of each job, ``HH:MM:SS`` (SLURM also ``D-HH:MM:SS``).
        cores: cores per job (all its worker processes together).
        memory: memory per job, e.g. ``"16GiB"`` (split evenly between its worker processes).
        processes: Dask worker processes per job; each gets ``cores // processes`` threads.
        n_jobs: jobs submitted by :func:`make_cluster` (0: none until the caller scales).
        job_directives: extra scheduler directives, one per entry, with or without their prefix
            (``"--gres=gpu:1"`` or ``"#SBATCH --gres=gpu:1"``).
        job_script_prologue: shell lines run before the worker starts (activate the environment, set
            ``PYTHONPATH``, load modules).
        python: the interpreter on the compute nodes (default: this process's ``sys.executable``).
        interface: network interface workers and scheduler listen on (``"ib0"``, ``"lo"`` on one machine).
        host: address the scheduler binds (default: the interface's, else all).
        dashboard_address: scheduler dashboard ``host:port`` (default: a free port on ``host``); None: none.
        worker_extra_args: extra ``dask worker`` arguments (``"--lifetime", "55m"``).
        cap_threads: export ``OMP_NUM_THREADS`` and friends = threads per worker process in the job script.
        local_directory: worker scratch folder on the node (``"$TMPDIR"``); None: the worker's default.
        log_directory: folder for the jobs' stdout/stderr; None: the batch system's default.
        death_timeout: seconds a worker waits for an unreachable scheduler before it exits.
        job_name: name of the jobs in the queue.
    """

    system: str = "slurm"
    queue: str | None = None
    account: str | None = None
    walltime: str = "01:00:00"
    cores: int = 1
    memory: str = "4GiB"
    processes: int = 1
    n_jobs: int = 1
    job_directives: tuple[str, ...] = ()
    job_script_prologue: tuple[str, ...] = ()
    python: str | None = None
    interface: str | None = None
    host: str | None = None
    dashboard_address: str | None = ""
    worker_extra_args: tuple[str, ...] = ()
    cap_threads: bool = True
    local_directory: str | None = None
    log_directory: str | None = None
    death_timeout: float = 60.0
    job_name: str = "workbench-worker"

    def __post_init__(self) -> None:
        for name in ("job_directives", "job_script_prologue", "worker_extra_args"):  # lists from JSON/YAML
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                raise ConfigError(
                    f"HPC cluster {name} must be a list of strings, got {value!r}; "
                    f'write one entry per line/argument, e.g. ["--gres=gpu:1"]'
                )
            object.__setattr__(self, name, tuple(value))
        problems = self.problems()
        if problems:
            raise ConfigError("invalid HPC cluster configuration:\n- " + "\n- ".join(problems))

    def problems(self) -> list[str]:
        """Every reason the configuration cannot work (empty when it is valid)."""
        p: list[str] = []
        if self.system not in CLUSTER_CLASSES:
            p.append(f"system {self.system!r} is not supported; expected one of {sorted(CLUSTER_CLASSES)}")
        if not isinstance(self.cores, int) or self.cores < 1:
            p.append(f"cores must be a whole number >= 1 (cores per job), got {self.cores!r}")
        if not isinstance(self.processes, int) or self.processes < 1:
            p.append(f"processes must be a whole number >= 1 (worker processes per job), got {self.processes!r}")
        elif isinstance(self.cores, int) and self.cores >= 1 and self.cores % self.processes:
            p.append(
                f"cores ({self.cores}) must be a multiple of processes ({self.processes}) so each worker "
                f"process gets the same number of threads; e.g. cores={self.processes * max(1, self.cores // self.processes)}"
            )
        if not isinstance(self.n_jobs, int) or self.n_jobs < 0:
            p.append(f"n_jobs must be a whole number >= 0, got {self.n_jobs!r}")
        try:
            mem = parse_bytes(self.memory)
            if mem < 2**27:
                p.append(f'memory {self.memory!r} per job is less than 128 MiB; give e.g. "4GiB"')
        except (ValueError, TypeError):
            p.append(f'memory {self.memory!r} is not a size; give e.g. "4GiB" or "16000MB" (per job)')
        if not isinstance(self.walltime, str) or not _WALLTIME.match(self.walltime):
            p.append(f'walltime {self.walltime!r} is not HH:MM:SS (or D-HH:MM:SS on SLURM), e.g. "02:00:00"')
        elif self.system == "pbs" and "-" in self.walltime:
            p.append(f'walltime {self.walltime!r}: PBS takes HH:MM:SS (write days as hours, e.g. "48:00:00")')
        for name in ("job_directives", "job_script_prologue", "worker_extra_args"):
            for entry in getattr(self, name):
                if not isinstance(entry, str) or "\n" in entry or not entry.strip():
                    p.append(f"{name} entries must be non-empty one-line strings, got {entry!r}")
        if not isinstance(self.death_timeout, (int, float)) or self.death_timeout <= 0:
            p.append(f"death_timeout must be a positive number of seconds, got {self.death_timeout!r}")
        if not self.job_name or not re.match(r"^[A-Za-z0-9_.-]+$", str(self.job_name)):
            p.append(f"job_name {self.job_name!r} must be letters, digits, '_', '.', '-'")
        return p

    @property
    def threads_per_process(self) -> int:
        """Threads of each Dask worker process."""
        return self.cores // self.processes

    @property
    def n_workers(self) -> int:
        """Worker processes once all :attr:`n_jobs` jobs run."""
        return self.n_jobs * self.processes

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists for the tuples); :meth:`from_dict` reads it back."""
        d = asdict(self)
        for name in ("job_directives", "job_script_prologue", "worker_extra_args"):
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HPCClusterConfig:
        """Build from a dict (JSON/YAML/the database); unknown keys are refused with the known ones listed.

        Raises:
            ConfigError: an unknown key or an invalid value.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown HPC cluster setting(s) {unknown}; known settings: {sorted(known)}")
        return cls(**data)


def _directives(cfg: HPCClusterConfig) -> list[str]:
    prefix = _DIRECTIVE_PREFIX.get(cfg.system, "")
    out = []
    for d in cfg.job_directives:
        d = d.strip()
        if prefix and d.startswith(prefix):
            d = d[len(prefix) :].strip()
        out.append(d)
    return out


def _prologue(cfg: HPCClusterConfig) -> list[str]:
    lines = list(cfg.job_script_prologue)
    if cfg.cap_threads:
        n = cfg.threads_per_process
        lines += [f"export {v}={n}" for v in _THREAD_VARS]
        lines += ["export TF_NUM_INTEROP_THREADS=1", "export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}"]
    return lines


def job_kwargs(cfg: HPCClusterConfig) -> dict[str, Any]:
    """Keyword arguments of the dask-jobqueue job/cluster class for ``cfg`` (what defines the job script)."""
    kw: dict[str, Any] = dict(
        queue=cfg.queue,
        account=cfg.account,
        walltime=cfg.walltime,
        cores=cfg.cores,
        memory=cfg.memory,
        processes=cfg.processes,
        job_extra_directives=_directives(cfg),
        job_script_prologue=_prologue(cfg),
        python=cfg.python or sys.executable,
        interface=cfg.interface,
        worker_extra_args=list(cfg.worker_extra_args),
        local_directory=cfg.local_directory,
        log_directory=cfg.log_directory,
        death_timeout=cfg.death_timeout,
        job_name=cfg.job_name,
    )
    return kw


def job_script(cfg: HPCClusterConfig, scheduler_address: str = "tcp://<scheduler>:8786") -> str:
    """The batch script one worker job would be submitted with (nothing is started or submitted)."""
    job_cls: Any = CLUSTER_CLASSES[cfg.system].job_cls  # type: ignore[misc]  # dask-jobqueue sets it per class
    return job_cls(scheduler_address, name="dummy-name", **job_kwargs(cfg)).job_script()


def make_cluster(cfg: HPCClusterConfig) -> JobQueueCluster:
    """Start the Dask scheduler here and submit ``cfg.n_jobs`` worker jobs to the batch system.

    The caller owns the cluster: connect with ``dask.distributed.Client(cluster)``, wait with
    ``client.wait_for_workers(cfg.n_workers)`` and ``cluster.close()`` at the end (cancels the jobs).

    Jobs are submitted in the background: one the batch system refuses is logged by dask-jobqueue and its worker
    never arrives, so wait for the workers with a timeout.

    Raises:
        ClusterError: the batch system's submit command is not on PATH.
    """
    from core.errors import ClusterError

    cls = CLUSTER_CLASSES[cfg.system]
    job_cls: Any = cls.job_cls  # type: ignore[misc]  # a class attribute of each dask-jobqueue cluster class
    submit = job_cls.submit_command.split()[0]
    if not any(os.access(os.path.join(d, submit), os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep)):
        raise ClusterError(
            f"`{submit}` (the {cfg.system} submit command) is not on PATH: run this on a login node "
            f"of the cluster, or load the {cfg.system} module first"
        )
    scheduler_options: dict[str, Any] = {}
    if cfg.host:
        scheduler_options["host"] = cfg.host
    if cfg.dashboard_address is not None:
        scheduler_options["dashboard_address"] = cfg.dashboard_address or f"{cfg.host or ''}:0"
    else:
        scheduler_options["dashboard"] = False
    cluster = cls(scheduler_options=scheduler_options, **job_kwargs(cfg))
    log.info(
        "%s cluster: scheduler %s, submitting %d job(s) of %d worker(s)",
        cfg.system,
        cluster.scheduler_address,
        cfg.n_jobs,
        cfg.processes,
    )
    if cfg.n_jobs:
        cluster.scale(jobs=cfg.n_jobs)
    return cluster


def worker_identity() -> dict[str, Any]:
    """Where the calling task runs: hostname, pid and (inside a Dask worker) the worker's address."""
    address = None
    try:
        from dask.distributed import get_worker

        address = get_worker().address
    except ValueError:
        pass
    return {
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "worker": address,
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "pbs_job_id": os.environ.get("PBS_JOBID"),
    }
