"""What pre-flight found: one :class:`PreflightReport` of findings, the config as it will run and its census.

The launch form, the CLI (``run``, ``--dry-run`` and every verb that launches a job) and the runner show the same
report: :meth:`PreflightReport.lines` is its text, :meth:`PreflightReport.raise_if_refused` its refusal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from core.errors import ClusterError, ConfigError

if TYPE_CHECKING:
    from core.data.scene import Scene
    from core.distributed.preflight import ClusterReport
    from core.tiling.census import SampleCensus
    from jobs.preflight.aoi_stats import AOIStats

Level = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Check:
    """One pre-flight finding. ``level`` "error" blocks the launch; ``source`` names the check that found it."""

    level: Level
    message: str
    source: str = ""


@dataclass(frozen=True)
class PreflightReport:
    """The findings, and the config as it will run (derived tile size and split stated) with its census.

    Attributes:
        checks: every finding, in the order the checks ran.
        config: the config as it will run (the given one when the kind derives nothing).
        stats: the AOI measured on the scene (None: the job reads no AOI, or it could not be measured).
        memory_per_worker_bytes: the estimated peak memory of one worker (None: not estimated for this kind).
        census: samples and labelled pixels per split and class (None: not counted).
        cluster: the probe of every worker (None: not probed, e.g. a dry run or an earlier error).
        scene: the scene the job trains on (None: it reads no scene's labels).
    """

    checks: list[Check] = field(default_factory=list)
    config: Any = None
    stats: AOIStats | None = None
    memory_per_worker_bytes: int | None = None
    census: SampleCensus | None = None
    cluster: ClusterReport | None = None
    scene: Scene | None = None

    @property
    def ok(self) -> bool:
        return not any(c.level == "error" for c in self.checks)

    @property
    def errors(self) -> list[str]:
        return [c.message for c in self.checks if c.level == "error"]

    def lines(self, errors: bool = True) -> list[str]:
        """The findings as ``level: message`` lines (the CLI's and the runner's log)."""
        return [f"{c.level}: {c.message}" for c in self.checks if errors or c.level != "error"]

    def raise_if_refused(self) -> None:
        """Raise when an error blocks the job: :class:`ClusterError` (the cluster's message) when only the cluster
        probe refused it, else :class:`ConfigError` listing every error. Nothing when the job may start."""
        if self.ok:
            return
        if self.cluster is not None and not self.cluster.ok and len(self.errors) == len(self.cluster.problems):
            raise ClusterError(self.cluster.message())
        raise ConfigError("pre-flight refused the job:\n" + "\n".join(f"- {e}" for e in self.errors))
