"""What pre-flight's checks look at (:class:`Subject`: the config, its kind's needs, the scene, the cluster) and
record for the later checks (the AOI's statistics, the derived config and its census, the memory estimate, the
cluster probe)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.data.scene import Scene
from core.distributed.preflight import ClusterReport, JobNeeds
from jobs.kinds import Needs
from jobs.preflight.aoi_stats import AOIStats
from jobs.preflight.report import Check

Probe = Callable[[JobNeeds], ClusterReport]
"""Probes every worker of the cluster for a job's needs (:func:`core.distributed.preflight.check_cluster`)."""


@dataclass(frozen=True)
class ClusterFacts:
    """The cluster a job would use: its workers (None: it could not be reached) and its smallest worker memory
    limit in bytes (None or 0: unknown or unlimited)."""

    workers: int | None = None
    memory_bytes: int | None = None

    @classmethod
    def of(cls, client: Any) -> ClusterFacts:
        """The facts of the cluster of a connected Dask ``client``."""
        from core.distributed.cluster import live_workers

        workers = live_workers(client)
        limits = [int(w.get("memory_limit") or 0) for w in workers.values()]
        return cls(len(workers), min((m for m in limits if m), default=None))


@dataclass
class Subject:
    """What the checks look at, and what they measured so far."""

    config: Any
    needs: Needs
    scene: Scene | None
    cluster: ClusterFacts | None  # None: the job runs on no cluster
    probe: Probe | None = None
    db_url: str | None = None
    stats: AOIStats | None = None
    census: Any = None
    memory: int | None = None
    cluster_report: ClusterReport | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def tile(self) -> Any:
        """The tile job the config runs first (None: it reads no AOI of a scene)."""
        return self.needs.tile_job(self.config, self.scene) if self.scene is not None else None

    @property
    def training(self) -> Any:
        """The training the config runs (None: none)."""
        return self.needs.training(self.config, self.scene)

    @property
    def workers(self) -> int:
        return self.needs.workers(self.config)

    @property
    def clean(self) -> bool:
        return not any(c.level == "error" for c in self.checks)
