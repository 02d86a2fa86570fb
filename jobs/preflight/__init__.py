"""Pre-flight: what would fail, checked before a job starts, and the job stated in full.

:func:`check` is the one entry point: the launch form (through :mod:`app.services.launch_form`), the CLI (``run``,
``--dry-run`` and every verb that launches a job) and the runner (:func:`jobs.runner.execute`) call it and show the
same :class:`PreflightReport`. What it checks depends on what the config's job kind declares it needs
(:class:`jobs.kinds.Needs`: the tile job it runs first, the training it runs, its workers, its memory model, what it
derives); the checks themselves are the list :data:`jobs.preflight.checks.CHECKS`.

Modules: :mod:`~jobs.preflight.checks` (the checks), :mod:`~jobs.preflight.subject` (what they look at), :mod:`~jobs.preflight.context` (context share of a prediction), :mod:`~jobs.preflight.aoi_stats` (raster statistics of an
AOI), :mod:`~jobs.preflight.memory` (the memory model), :mod:`~jobs.preflight.report` (the report).
"""

from __future__ import annotations

from typing import Any

from core.data.scene import Scene
from jobs.kinds import needs_of
from jobs.preflight.aoi_stats import AOIStats, aoi_stats
from jobs.preflight.checks import CHECKS, PreflightCheck, register_check
from jobs.preflight.memory import estimate_memory_per_worker
from jobs.preflight.report import Check, PreflightReport
from jobs.preflight.subject import ClusterFacts, Probe, Subject

__all__ = [
    "AOIStats",
    "Check",
    "ClusterFacts",
    "PreflightCheck",
    "PreflightReport",
    "Probe",
    "aoi_stats",
    "check",
    "estimate_memory_per_worker",
    "register_check",
]


def check(
    config: Any,
    *,
    scene: Scene | None = None,
    cluster: ClusterFacts | None = None,
    probe: Probe | None = None,
    db_url: str | None = None,
) -> PreflightReport:
    """Every pre-flight check of ``config`` (any job kind), in :data:`~jobs.preflight.checks.CHECKS` order.

    Args:
        config: a validated job config.
        scene: its scene, when the caller has it loaded; else read from the catalogue when the kind reads one.
        cluster: the cluster the job would use (None for a job with a ``cluster`` section: it could not be reached).
        probe: probes every worker for the job's needs (the runner's and the form's); None: the workers are not
            probed (a dry run).
        db_url: the database of the scene catalogue (default: the settings').

    Returns:
        The findings, the config as it will run (derived tile size and split stated) and its census. Nothing is
        raised for what it finds: :meth:`PreflightReport.raise_if_refused` refuses the job.
    """
    needs = needs_of(config)
    if scene is None and needs.reads_scene(config):
        from db.scenes import SceneStore

        scene = SceneStore(db_url).get(config.scene)
    runs_on_cluster = "cluster" in type(config).model_fields
    subject = Subject(
        config, needs, scene, (cluster or ClusterFacts()) if runs_on_cluster else None, probe=probe, db_url=db_url
    )
    for step in list(CHECKS):
        if step.only_if_clean and not subject.clean:
            continue
        subject.checks.extend(Check(c.level, c.message, c.source or step.name) for c in step.run(subject))
    return PreflightReport(
        checks=subject.checks,
        config=subject.config,
        stats=subject.stats,
        memory_per_worker_bytes=subject.memory,
        census=subject.census,
        cluster=subject.cluster_report,
        scene=scene,
    )
