"""The settings of a Dask cluster on an HPC batch system (SLURM, PBS): a schema, validated without dask-jobqueue.

:class:`core.configs.ClusterConfig` validates its ``hpc`` section with :class:`HPCClusterConfig` at construction, so
the schema sits low in core/ (docs/ARCHITECTURE.md); :mod:`core.distributed.jobqueue` turns it into a cluster.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from dask.utils import parse_bytes

from core.errors import ConfigError

BATCH_SYSTEMS = ("slurm", "pbs")
"""The batch systems a cluster can be submitted to (:data:`core.distributed.jobqueue.CLUSTER_CLASSES` maps each to
its dask-jobqueue class)."""

# [D-]HH:MM:SS, HH:MM or MM:SS (SLURM also takes minutes alone; PBS wants HH:MM:SS, which both take).
_WALLTIME = re.compile(r"^(\d+-)?\d{1,3}:\d{2}(:\d{2})?$")


@dataclass(frozen=True)
class HPCClusterConfig:
    """Where and how to run Dask workers as batch jobs.

    Attributes:
        system: batch system, one of :data:`BATCH_SYSTEMS` (``"slurm"`` or ``"pbs"``).
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
        if self.system not in BATCH_SYSTEMS:
            p.append(f"system {self.system!r} is not supported; expected one of {sorted(BATCH_SYSTEMS)}")
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
