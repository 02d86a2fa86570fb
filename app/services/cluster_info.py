"""Which Dask cluster the workbench uses and what it holds, for the GUI (which never talks to Dask itself).

The address is ``$WORKBENCH_SCHEDULER`` when set, else the embedded local cluster's (``<home>/cluster.json``),
started on demand by :func:`resolve_scheduler` with ``start=True``. :class:`ClusterProbe` keeps one client to that
scheduler and answers :meth:`ClusterProbe.describe` with a plain :class:`ClusterInfo`.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from core.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerInfo:
    address: str
    name: str
    host: str | None
    nthreads: int
    memory_limit: int  # bytes; 0 = no limit
    memory_used: int | None  # bytes, as last reported
    cpu_percent: float | None
    executing: int | None


@dataclass(frozen=True)
class ClusterInfo:
    """A snapshot of a cluster. ``error`` is set (and ``workers`` empty) when it could not be reached."""

    address: str | None
    dashboard: str | None
    local: bool
    workers: list[WorkerInfo] = field(default_factory=list)
    error: str | None = None

    @property
    def n_workers(self) -> int:
        return len(self.workers)

    @property
    def threads(self) -> int:
        return sum(w.nthreads for w in self.workers)

    @property
    def memory_bytes(self) -> int:
        return sum(w.memory_limit for w in self.workers)

    @property
    def min_worker_memory(self) -> int | None:
        limits = [w.memory_limit for w in self.workers if w.memory_limit]
        return min(limits) if limits else None

    @property
    def reachable(self) -> bool:
        return self.error is None


def resolve_scheduler(settings: Settings | None = None, start: bool = False) -> tuple[str | None, bool]:
    """``(address, is_local)``: ``$WORKBENCH_SCHEDULER``, else the running local cluster (started if ``start``)."""
    settings = settings or get_settings()
    env = os.environ.get("WORKBENCH_SCHEDULER")
    if env:
        return env, False
    from jobs.local_cluster import ensure_local_cluster, running_cluster

    state = ensure_local_cluster(settings) if start else running_cluster(settings)
    return (state["scheduler"], True) if state else (None, True)


class ClusterProbe:
    """One lazily connected client to a scheduler, safe to share between Streamlit sessions."""

    def __init__(self, address: str, local: bool = False, timeout: float = 5.0) -> None:
        self.address, self.local, self.timeout = address, local, timeout
        self._client: Any = None
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        from distributed import Client

        from core.distributed.cluster import security

        if self._client is None or self._client.status not in ("running", "connecting"):
            self._client = Client(self.address, timeout=self.timeout, set_as_default=False, security=security())
        return self._client

    def describe(self) -> ClusterInfo:
        """Workers, threads and memory of the cluster now; a ClusterInfo with ``error`` if it cannot be reached."""
        with self._lock:
            try:
                client = self._get_client()
                info = client.scheduler_info(n_workers=-1)
                dashboard = client.dashboard_link
            except Exception as exc:  # noqa: BLE001 - any failure means "unreachable", reported to the user
                log.warning("cluster %s unreachable: %s", self.address, exc)
                self._client = None
                return ClusterInfo(
                    self.address, None, self.local, error=f"cannot reach the Dask scheduler at {self.address}: {exc}"
                )
        workers = []
        for addr, w in sorted(info.get("workers", {}).items()):
            metrics = w.get("metrics", {}) or {}
            workers.append(
                WorkerInfo(
                    address=addr,
                    name=str(w.get("name", addr)),
                    host=w.get("host"),
                    nthreads=int(w.get("nthreads", 0)),
                    memory_limit=int(w.get("memory_limit") or 0),
                    memory_used=metrics.get("memory"),
                    cpu_percent=metrics.get("cpu"),
                    executing=metrics.get("task_counts", {}).get("executing")
                    if isinstance(metrics.get("task_counts"), dict)
                    else None,
                )
            )
        return ClusterInfo(self.address, dashboard, self.local, workers)

    def preflight(self, needs: Any, timeout: float = 300.0) -> Any:
        """:func:`core.distributed.preflight.check_cluster` for ``needs`` on its own client (so a check of tens of
        seconds does not hold up :meth:`describe` in other sessions); a report with one problem if unreachable."""
        from distributed import Client

        from core.distributed.cluster import security
        from core.distributed.preflight import PreflightReport, Problem, check_cluster

        try:
            client = Client(self.address, timeout=self.timeout, set_as_default=False, security=security())
        except (OSError, TimeoutError) as exc:
            return PreflightReport(
                self.address,
                None,
                {},
                problems=[Problem("probe", (), f"cannot reach the Dask scheduler at {self.address}: {exc}")],
            )
        try:
            return check_cluster(client, needs, timeout=timeout)
        finally:
            client.close()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
