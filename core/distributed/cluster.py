"""Connecting to a Dask cluster: an existing scheduler by address, or a local cluster of worker processes.

On shared networks the cluster can use TLS with certificates: set ``WORKBENCH_TLS_CA`` (the CA that signed the
certificates), ``WORKBENCH_TLS_CERT`` and ``WORKBENCH_TLS_KEY`` (this machine's certificate and key, used as client,
scheduler and worker certificate). :func:`security` turns them into Dask's ``Security`` with encryption required;
:func:`connect` and the embedded cluster (``jobs cluster serve``) use it, and their schedulers listen at ``tls://``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from dask.distributed import Client, LocalCluster
from distributed.security import Security

from core.configs import ClusterConfig
from core.errors import ClusterError, ConfigError

log = logging.getLogger(__name__)

TLS_ENV = ("WORKBENCH_TLS_CA", "WORKBENCH_TLS_CERT", "WORKBENCH_TLS_KEY")
"""Environment variables of the TLS files: CA certificate, this machine's certificate, its private key (PEM)."""


def security() -> Security | None:
    """Dask ``Security`` from ``WORKBENCH_TLS_CA`` / ``_CERT`` / ``_KEY`` (encryption required); None when unset.

    Raises:
        ConfigError: only some of the three are set, or a file is missing.
    """
    values = {name: os.environ.get(name) or None for name in TLS_ENV}
    if not any(values.values()):
        return None
    missing = [n for n, v in values.items() if not v]
    if missing:
        raise ConfigError(
            f"TLS needs all of {', '.join(TLS_ENV)} but {', '.join(missing)} is not set; set it or "
            "unset all three to connect without TLS"
        )
    absent = [f"{n}={v}" for n, v in values.items() if not os.path.isfile(str(v))]
    if absent:
        raise ConfigError(f"TLS file(s) not found: {', '.join(absent)}; fix the path(s)")
    ca, cert, key = (values[n] for n in TLS_ENV)
    return Security(
        tls_ca_file=ca,
        tls_client_cert=cert,
        tls_client_key=key,
        tls_scheduler_cert=cert,
        tls_scheduler_key=key,
        tls_worker_cert=cert,
        tls_worker_key=key,
        require_encryption=True,
    )


GDAL_CACHEMAX_MB = 256
"""GDAL block cache per worker process (MB): holds a few rows of decoded 512 px blocks of a wide raster, so
neighbouring inference windows decode each block once, and bounds the worker's memory whatever the raster size."""

PRE_SPAWN_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20)}
"""Environment a worker process must have when it starts (glibc reads it before Python runs).

Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536`` so workers hand freed memory back to the OS; setting it also
freezes glibc's mmap threshold at 128 KiB, so every TensorFlow activation above that is a fresh ``mmap`` whose
pages fault in on each model call (measured: ~1400 page faults and +15% CPU per 256 px U-Net tile). Serving blocks
below 32 MiB from the heap removes them; the trim threshold still returns the top of the heap."""


CLUSTER_CONFIG = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "500ms"}
"""Dask settings of local clusters (sent by the nannies to their workers). Dask's statistical profiler (a stack
sample of every worker thread each 10 ms) and its 20 ms event-loop tick cost an idle worker 2.5 % of a core and
the driver (client + scheduler) 2.7 %; without the profiler and with a 500 ms tick, 0.5 % and 1.4 % (measured on
this project's 2-core machine), CPU that inference workers sharing the cores with the driver need. The dashboard's
profile page stays empty."""


KEEP_NANNIES = {"distributed.deploy.lost-worker-timeout": 10**9}
"""A LocalCluster closes the nanny of a worker whose name is missing 15 s (this setting) after one of its workers
left, as it would be if the nanny could not restart it. Workers the engine ends (stuck ranks, memory held by earlier
jobs, :mod:`core.distributed.recycling`) come back under the same name within seconds, but a second ending 15 s
after the first found the name missing and retired the nanny for good (measured: a 2-worker cluster lost both
workers after 5 rounds of replacements 4 s apart). Nannies restart their workers, so a local cluster need never
close one. The setting is process-wide: a dask-jobqueue cluster in a process that started a local cluster keeps
the batch job of a lost worker until its walltime (the engine's jobs use one kind of cluster per process)."""


def worker_env(threads_per_worker: int = 1) -> dict[str, str]:
    """Environment of local worker processes: math libraries and TensorFlow use the worker's threads only,
    so N workers on N cores do not oversubscribe the machine; GDAL's block cache is bounded."""
    n = str(threads_per_worker)
    return {
        "OMP_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "TF_NUM_INTRAOP_THREADS": n,
        "TF_NUM_INTEROP_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "GDAL_CACHEMAX": str(GDAL_CACHEMAX_MB),
    }


def local_cluster(n_workers: int, threads_per_worker: int = 1, **kwargs: Any) -> LocalCluster:
    """A LocalCluster of worker processes with :func:`worker_env`, :data:`PRE_SPAWN_ENV` and
    :data:`CLUSTER_CONFIG` (restarted workers get them too: a nanny keeps what it was created with)."""
    import dask

    dask.config.set(KEEP_NANNIES)  # read when a worker leaves, so set for this process, not for the call
    spawn = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in PRE_SPAWN_ENV.items()}
    with dask.config.set({**spawn, **CLUSTER_CONFIG}):
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            env=worker_env(threads_per_worker),
            **kwargs,
        )


@dataclass
class ClusterHandle:
    """A client and, for local clusters, the cluster it owns (closed by :meth:`close`)."""

    client: Client
    cluster: Any = None  # LocalCluster or a dask-jobqueue cluster

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> ClusterHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(config: ClusterConfig | None = None, timeout: float = 20) -> ClusterHandle:
    """Connect to ``config.scheduler_address`` (or ``$WORKBENCH_SCHEDULER``), else start a local cluster.

    With ``WORKBENCH_TLS_*`` set the client (and a local cluster) use TLS (:func:`security`). The local cluster has
    ``n_workers`` worker processes (default: ``$WORKBENCH_WORKERS`` or the CPU count) with
    ``threads_per_worker`` threads each; its dashboard listens on a free port.
    """
    config = config or ClusterConfig()
    if config.hpc is not None:
        return connect_hpc(config.hpc_settings(), config.workers_timeout)
    address = config.scheduler_address or os.environ.get("WORKBENCH_SCHEDULER")
    sec = security()
    if address:
        if address.startswith("tls://") and sec is None:
            raise ConfigError(
                f"the scheduler {address} uses TLS: set {', '.join(TLS_ENV)} to the CA, certificate and key it trusts"
            )
        try:
            client = Client(address, timeout=timeout, security=sec)  # Dask: TLS when sec is set
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {address!r} ({exc}); check the address and that the scheduler "
                "is running, or unset WORKBENCH_SCHEDULER / --scheduler to use a local cluster"
            ) from exc
        log.info("connected to Dask scheduler %s", address)
        return ClusterHandle(client)
    n = config.n_workers or int(os.environ.get("WORKBENCH_WORKERS", os.cpu_count() or 2))
    cluster = local_cluster(
        n, config.threads_per_worker, memory_limit=config.memory_limit, dashboard_address=":0", **tls_options(sec)
    )
    log.info(
        "started local Dask cluster: %d workers x %d threads, dashboard %s",
        n,
        config.threads_per_worker,
        cluster.dashboard_link,
    )
    return ClusterHandle(Client(cluster, security=sec), cluster)


def tls_options(sec: Security | None) -> dict[str, Any]:
    """``LocalCluster`` keywords of a cluster whose scheduler and workers speak TLS (none without ``sec``)."""
    return {"security": sec, "protocol": "tls://"} if sec is not None else {}


def connect_hpc(hpc: Any, timeout: float = 600.0) -> ClusterHandle:
    """Start the scheduler here, submit ``hpc.n_jobs`` worker jobs (``hpc``: a
    :class:`core.hpc_config.HPCClusterConfig`) and wait for all ``hpc.n_workers`` workers.

    The handle owns the cluster: :meth:`ClusterHandle.close` cancels the jobs.

    Raises:
        ClusterError: the workers did not all connect within ``timeout`` s (the jobs are cancelled first).
    """
    from core.distributed.hpc import jobqueue

    t0 = time.monotonic()
    cluster = jobqueue().make_cluster(hpc)  # Dask: dask-jobqueue submits the worker jobs
    client = Client(cluster)
    try:
        client.wait_for_workers(hpc.n_workers, timeout=timeout)
    except TimeoutError as exc:
        have = len(live_workers(client))
        client.close()
        cluster.close()
        logs = hpc.log_directory or "the batch system's default folder"
        raise ClusterError(
            f"{have} of {hpc.n_workers} {hpc.system} worker(s) connected within {timeout:.0f} s; the jobs were "
            f"cancelled. Check the queue (squeue / qstat), the jobs' logs ({logs}) and the job script "
            "(`workbench cluster plan`), or raise cluster.workers_timeout"
        ) from exc
    log.info(
        "%s cluster: %d worker(s) up in %.1f s (scheduler %s)",
        hpc.system,
        hpc.n_workers,
        time.monotonic() - t0,
        cluster.scheduler_address,
    )
    return ClusterHandle(client, cluster)


def live_workers(client: Client) -> dict[str, dict[str, Any]]:
    """The scheduler's live workers (address -> info), asked directly.

    ``client.scheduler_info()`` is a cache that the client refreshes every 2 s asking for no workers; a call that
    races that refresh sees an empty or partial list (measured: 1 call in ~900), which would make live workers
    look gone.
    """
    return dict(client.sync(client.scheduler.identity, n_workers=-1).get("workers", {}))


def describe(client: Client) -> dict[str, Any]:
    """A JSON description of the cluster, stored with every run."""
    workers = live_workers(client)
    return {
        "scheduler": client.scheduler.address if client.scheduler else None,
        "dashboard": client.dashboard_link,
        "n_workers": len(workers),
        "threads": sum(w.get("nthreads", 0) for w in workers.values()),
        "memory_bytes": sum(w.get("memory_limit", 0) or 0 for w in workers.values()),
        "workers": [
            {"address": a, "host": w.get("host"), "nthreads": w.get("nthreads"), "memory_limit": w.get("memory_limit")}
            for a, w in sorted(workers.items())
        ],
    }
