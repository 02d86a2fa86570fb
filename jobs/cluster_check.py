"""Cluster pre-flight of a job config: what the job needs from the cluster, checked before its run row starts.

:func:`job_needs` reads a config (any kind, by what its kind declares: :class:`jobs.kinds.Needs`) into :class:`core.distributed.preflight.JobNeeds`: its ranks, whether
it runs Horovod, the registered fingerprints of the scene files its workers read, the paths they read (a tile
store, a model bundle) and the workbench folder they must share. The ``cluster`` check of
:func:`jobs.preflight.check` probes every worker with them (:func:`core.distributed.preflight.check_cluster`), in
the runner before it creates or starts the run row and on the launch form before launching.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pydantic import BaseModel

from core.distributed.preflight import JobNeeds
from core.settings import get_settings
from db.scenes import SceneStore


def scene_needs(
    scene_name: str | None,
    ranks: int = 1,
    horovod: bool = False,
    db_url: str | None = None,
    paths: tuple[str, ...] = (),
) -> JobNeeds:
    """What a job on ``scene_name`` (None: its files are not read) with ``ranks`` ranks needs.

    Raises:
        SceneNotFoundError: ``scene_name`` is not registered.
    """
    settings = get_settings()
    files: tuple[dict[str, Any], ...] = ()
    if scene_name:
        files = tuple(asdict(fp) for fp in SceneStore(db_url or settings.db_url).get(scene_name).fingerprints)
    return JobNeeds(
        ranks=ranks, horovod=horovod, files=files, scene=scene_name, paths=paths, shared_folder=str(settings.home)
    )


def job_needs(config: BaseModel | None, db_url: str | None = None) -> JobNeeds:
    """What ``config`` needs from the cluster (None: only the engine, the versions and the shared folder)."""
    if config is None:
        return JobNeeds(shared_folder=str(get_settings().home))
    from core.training.schemes import get_scheme
    from jobs.kinds import needs_of

    needs = needs_of(config)  # what the job kind declares its workers read
    scheme = getattr(config, "scheme", None)
    paths = tuple(p for p in (getattr(config, f, None) for f in needs.paths) if isinstance(p, str) and p)
    return scene_needs(
        getattr(config, "scene", None) if needs.workers_read_scene(config) else None,
        needs.workers(config),
        scheme is not None and get_scheme(scheme).uses_horovod,
        db_url,
        paths,
    )
