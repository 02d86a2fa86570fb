"""Cluster pre-flight of a job config: what the job needs from the cluster, checked before its run row starts.

:func:`job_needs` reads a config (any kind) into :class:`core.distributed.preflight.JobNeeds`: its ranks, whether
it runs Horovod, the registered fingerprints of its scene's files and the workbench folder the workers must share.
:func:`check_job` runs :func:`core.distributed.preflight.check_cluster` with them and raises
:class:`core.errors.ClusterError` listing every problem. The CLI calls it before :func:`jobs.runner.execute`; the
GUI before :func:`jobs.launch.launch_detached`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from pydantic import BaseModel

from core.distributed.preflight import JobNeeds, PreflightReport, check_cluster
from core.settings import get_settings
from db.scenes import SceneStore

log = logging.getLogger(__name__)


def job_needs(config: BaseModel | None, db_url: str | None = None) -> JobNeeds:
    """What ``config`` needs from the cluster (None: only the engine, the versions and the shared folder)."""
    if config is None:
        return JobNeeds(shared_folder=str(get_settings().home))
    scheme = getattr(config, "scheme", None)
    return scene_needs(getattr(config, "scene", None), int(getattr(config, "num_workers", 1) or 1),
                       scheme is not None and scheme != "single", db_url)


def scene_needs(scene_name: str | None, ranks: int = 1, horovod: bool = False,
                db_url: str | None = None) -> JobNeeds:
    """What a job on ``scene_name`` (None: no scene) with ``ranks`` ranks needs; for the Cluster page."""
    settings = get_settings()
    files: tuple[dict[str, Any], ...] = ()
    if scene_name:
        files = tuple(asdict(fp) for fp in SceneStore(db_url or settings.db_url).get(scene_name).fingerprints)
    return JobNeeds(ranks=ranks, horovod=horovod, files=files, scene=scene_name, shared_folder=str(settings.home))


def check_job(client: Any, config: BaseModel | None, db_url: str | None = None) -> PreflightReport:
    """Pre-flight of ``config`` on the cluster of ``client``; raises ClusterError naming every problem.

    Returns:
        The report (per-worker details, warnings) when the cluster can run the job.
    """
    report = check_cluster(client, job_needs(config, db_url))
    for warning in report.warnings:
        log.warning("%s", warning)
    report.raise_for_problems()
    return report
