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
import socket
import sys
from typing import Any

from dask_jobqueue import PBSCluster, SLURMCluster
from dask_jobqueue.core import JobQueueCluster

from core.hpc_config import HPCClusterConfig

log = logging.getLogger(__name__)

#: Batch systems by name (:data:`core.hpc_config.BATCH_SYSTEMS`): the dask-jobqueue cluster class that submits
#: their jobs. Add a system by naming it there and adding its class here.
CLUSTER_CLASSES: dict[str, type[JobQueueCluster]] = {
    "slurm": SLURMCluster,
    "pbs": PBSCluster,
}

#: Directive prefix of each system's job script (stripped from user-given directives, the class adds it).
_DIRECTIVE_PREFIX = {"slurm": "#SBATCH", "pbs": "#PBS"}

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


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
