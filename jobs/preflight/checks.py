"""The pre-flight checks, in the order they run: one :class:`PreflightCheck` each in :data:`CHECKS`.

Each check reads a :class:`Subject` (the config, its kind's :class:`jobs.kinds.Needs`, the scene, the cluster) and
returns its findings; a check may record what it measured on the subject for the later ones (the AOI's
statistics, the derived config and its census, the memory estimate, the cluster probe). A costly check is marked
``only_if_clean``: it runs only when no earlier check found an error.

To add a check, write ``def my_check(s: Subject) -> list[Check]`` and call
``register_check(PreflightCheck("my_check", my_check), before="memory")`` (or leave ``before`` out to run it last)
in the module that owns what it checks; the form, the CLI and the runner then all show its findings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.data.scene import Scene
from core.errors import AOIError, ConfigError
from core.training.schemes import get_scheme
from jobs.census_report import describe_census
from jobs.pipeline import PipelineJobConfig, model_modalities
from jobs.preflight.aoi_stats import AOIStats, aoi_stats
from jobs.preflight.context import context_share
from jobs.preflight.report import Check
from jobs.preflight.subject import Subject
from jobs.settle import asked_splits, describe_plan, rare_classes, tile_job_of

MIN_LABELLED_PIXELS = 100
"""Fewer labelled pixels than this in the AOI cannot give a train, validation and test split."""
MIN_PER_CLASS = 10
"""Classes with fewer labelled pixels than this in the AOI are named in a warning."""


@dataclass(frozen=True)
class PreflightCheck:
    """One check: its name, the function, and whether it runs only when the earlier checks found no error."""

    name: str
    run: Callable[[Subject], list[Check]]
    only_if_clean: bool = False


CHECKS: list[PreflightCheck] = []
"""The checks :func:`jobs.preflight.check` runs, in order."""


def register_check(check: PreflightCheck, before: str | None = None) -> PreflightCheck:
    """Add ``check`` to :data:`CHECKS` (before the check named ``before``, else last); returns it.

    Raises:
        ValueError: a check of that name is registered already, or ``before`` names none.
    """
    names = [c.name for c in CHECKS]
    if check.name in names:
        raise ValueError(f"pre-flight check {check.name!r} is registered twice; give the new check another name")
    if before is not None and before not in names:
        raise ValueError(f"pre-flight check {before!r} is unknown; checks are {names}")
    CHECKS.insert(names.index(before) if before else len(CHECKS), check)
    return check


def labels(s: Subject) -> list[Check]:
    """A job that trains on a scene's samples needs its label rasters."""
    if s.scene is None or s.tile is None or s.scene.has_labels:
        return []
    return [
        Check(
            "error",
            f"scene {s.scene.name!r} has no label rasters, so nothing can be trained on it; "
            "register it again with labels",
        )
    ]


def aoi(s: Subject) -> list[Check]:
    """The AOI lies on the scene and holds enough labelled pixels (measured into ``s.stats``)."""
    tile = s.tile
    if s.scene is None or tile is None:
        return []
    if not s.scene.georeferenced and tile.aoi.geometry is not None and tile.aoi.crs.lower() != "pixel":
        return [
            Check(
                "error",
                f"scene {s.scene.name!r} is not georeferenced: it cannot be placed on the map, "
                "so a drawn AOI does not apply; launch it on the whole scene",
            )
        ]
    try:
        s.stats = aoi_stats(s.scene, tile.aoi)
    except AOIError as exc:
        return [Check("error", str(exc))]
    return _label_counts(s.stats, s.scene)


def _label_counts(stats: AOIStats, scene: Scene) -> list[Check]:
    checks = [Check("warning", w) for w in stats.warnings]
    if scene.has_labels and stats.labelled < MIN_LABELLED_PIXELS:
        checks.append(
            Check(
                "error",
                f"the AOI holds only {stats.labelled} labelled pixels (all dates); at least "
                f"{MIN_LABELLED_PIXELS} are needed for a train/validation/test split. "
                "Draw a larger AOI over labelled ground, or use the whole scene",
            )
        )
    rare = {cid: n for cid, n in stats.per_class.items() if n < MIN_PER_CLASS}
    if rare:
        names = {c.id: c.name for c in scene.classes}
        listing = ", ".join(f"{names.get(c, c)} ({n})" for c, n in sorted(rare.items()))
        checks.append(
            Check(
                "warning",
                f"classes with fewer than {MIN_PER_CLASS} labelled pixels in the AOI: "
                f"{listing}; their scores will be unreliable",
            )
        )
    return checks


def modalities(s: Subject) -> list[Check]:
    """The scheme and the model read modalities the scene has."""
    train = s.training if s.scene is not None else None
    if train is None or s.scene is None:
        return []
    names = [m.name for m in s.scene.modalities]
    checks = []
    check_scene = get_scheme(train.scheme).check_scene
    try:
        if check_scene is not None:
            check_scene(s.scene.name, names)
    except ValueError as exc:
        checks.append(Check("error", str(exc)))
    try:
        model_modalities(train.model, names, s.scene.label_modality)
    except ConfigError as exc:
        checks.append(Check("error", str(exc)))
    return checks


def workers(s: Subject) -> list[Check]:
    """The cluster has the workers the job needs at once."""
    if s.cluster is None:
        return []
    if s.cluster.workers is None:
        return [
            Check(
                "warning",
                "the Dask cluster could not be reached, so its size is not checked; the job "
                "fails at start if it has too few workers",
            )
        ]
    need, have = s.workers, s.cluster.workers
    if need <= have:
        return []
    return [
        Check(
            "error",
            f"the job asks for {need} worker{'s' if need != 1 else ''} but the cluster has {have}; lower the "
            f"number of workers to {have} or add workers to the cluster",
        )
    ]


def derived(s: Subject) -> list[Check]:
    """Derive what the config left open (tile size, split) and check what every split will hold."""
    if s.needs.derive is None or s.scene is None or s.stats is None or not s.scene.has_labels or s.tile is None:
        return []
    needed = {"train": s.workers}
    try:
        s.config, s.census = s.needs.derive(s.config, s.scene, needed)
    except ConfigError as exc:
        return [Check("error", str(exc))]
    names = {c.id: c.name for c in s.scene.classes}
    problems = s.census.problems(asked_splits(tile_job_of(s.config, s.scene).split), names, needed)
    checks = [Check("info", describe_census(s.config, s.census, s.scene))]
    if isinstance(s.config, PipelineJobConfig):  # the planned steps and time; classes too rare to learn
        checks.append(Check("info", describe_plan(s.config, s.census)))
        rare = rare_classes(s.census, names)
        checks += [Check("warning", rare)] if rare else []
    if problems:
        checks.append(Check("error", "; ".join(problems) + f". {_suggestion(s.scene)}"))
    return checks


def _suggestion(scene: Scene) -> str:
    """What would give every split samples of every class."""
    dated = len([a for a in scene.acquisitions if a.labels]) > 1
    return (
        "Draw a larger area of interest over labelled ground, use smaller tiles or patches"
        + (", or a date split (this scene has several labelled dates)" if dated else "")
        + ", or set the split's block size and seed (split.block_size, split.seed; under Advanced on the form)"
    )


def tile_fits(s: Subject) -> list[Check]:
    """A tile larger than the AOI is padded (a stated tile size only: a derived one fits)."""
    tile = s.tile
    if tile is None or s.stats is None or tile.mode != "tiles" or min(s.stats.bbox_shape) >= tile.tiling.tile_size:
        return []
    rows, cols = s.stats.bbox_shape
    return [
        Check(
            "warning",
            f"the AOI ({rows}x{cols} px) is smaller than one tile ({tile.tiling.tile_size} px): tiles are padded",
        )
    ]


def memory(s: Subject) -> list[Check]:
    """The memory estimate (:mod:`jobs.preflight.memory`) against the smallest worker's limit."""
    if s.needs.memory is None or s.scene is None:
        return []
    s.memory = s.needs.memory(s.config, s.scene, s.stats)
    if s.memory is None:
        return []
    text = f"estimated peak memory per worker: {s.memory / 2**30:.2f} GiB (rough)"
    limit = s.cluster.memory_bytes if s.cluster else None
    if limit and s.memory > limit:
        return [
            Check("error", f"{text}, above the worker memory limit of {limit / 2**30:.2f} GiB; {s.needs.memory_hint}")
        ]
    if limit and s.memory > 0.8 * limit:
        return [Check("warning", f"{text}, close to the worker memory limit of {limit / 2**30:.2f} GiB")]
    return [Check("info", text)]


def cluster(s: Subject) -> list[Check]:
    """Every worker can run the job: engine, versions, the scene's files, Horovod (:mod:`jobs.cluster_check`)."""
    if s.probe is None:
        return []
    from jobs.cluster_check import job_needs

    s.cluster_report = s.probe(job_needs(s.config, s.db_url))
    return [Check("error", p.message) for p in s.cluster_report.problems] + [
        Check("warning", w) for w in s.cluster_report.warnings
    ]


for _check in (
    PreflightCheck("labels", labels),
    PreflightCheck("aoi", aoi),
    PreflightCheck("modalities", modalities),
    PreflightCheck("workers", workers),
    PreflightCheck("derived", derived, only_if_clean=True),
    PreflightCheck("tile_fits", tile_fits, only_if_clean=True),
    PreflightCheck("context_share", context_share),
    PreflightCheck("memory", memory),
    PreflightCheck("cluster", cluster, only_if_clean=True),
):
    register_check(_check)
