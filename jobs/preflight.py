"""Checks run before a pipeline launch: is the AOI on the scene, are there enough labels, does the cluster fit?

:func:`build_config` turns the launch form's values into a :class:`jobs.pipeline.PipelineJobConfig`, or a
:class:`core.configs.BaselineJobConfig` for the classic baselines (raising :class:`core.errors.ConfigError` that
lists every bad field); :func:`aoi_stats` measures an AOI on a scene (area in km², label-grid pixels, labelled
pixels per class); :func:`preflight` combines both with the cluster's size into a list of :class:`Check` messages.
Errors block the launch, warnings do not. The model registry (:func:`core.models.get_model`: size parameters,
recipe), :data:`TRAIN_OPTIONS` and :func:`recipe_defaults` say which advanced controls the form shows and their
defaults, so the form and the CLI describe the same jobs.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from affine import Affine
from pydantic import ValidationError
from pyproj import CRS, Geod
from rasterio.features import geometry_mask
from shapely import affinity

from core.configs import AOIConfig, BaselineJobConfig
from core.data.geometry import parse_geometry, resolve_aoi
from core.data.scene import Scene
from core.errors import AOIError, ConfigError
from core.models import Param, get_model, list_models
from core.tasks import get_task, list_tasks
from core.tiling.census import SampleCensus
from core.training.config import TrainJobConfig
from core.training.schemes import get_scheme, list_schemes
from jobs.census_report import describe_census
from jobs.pipeline import PipelineJobConfig, model_modalities
from jobs.settle import describe_plan, rare_classes, settle, tile_job_of

log = logging.getLogger(__name__)

MIN_LABELLED_PIXELS = 100
"""Fewer labelled pixels than this in the AOI cannot give a train, validation and test split."""
MIN_PER_CLASS = 10
FRAMEWORK_BYTES = 700 * 2**20
"""Resident memory of a worker with TensorFlow and Horovod loaded, before any data (measured order of magnitude)."""
BASELINE_BYTES = 300 * 2**20
"""Resident memory of a worker fitting a scikit-learn baseline, before any data (order of magnitude)."""

BASELINES: dict[str, str] = {"rf": "random forest", "knn": "k-nearest neighbours", "svm": "RBF support vector machine"}
"""Classic per-pixel baselines the launch form offers next to the deep models (a ``baseline`` job on patches)."""


TRAIN_OPTIONS = (
    "optimizer",
    "momentum",
    "warmup_epochs",
    "lr_decay_epochs",
    "lr_decay_at",
    "lr_decay_factor",
    "patience",
    "augment",
    "ema_decay",
    "mixup_alpha",
    "label_fraction",
    "worker_speeds",
    "calibration_steps",
    "max_restarts",
    "restart_wait_s",
)
"""The :class:`core.training.config.TrainJobConfig` fields the form passes in ``PipelineJobConfig.train_options``."""

Level = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Check:
    """One pre-flight finding. ``level`` "error" blocks the launch."""

    level: Level
    message: str


@dataclass(frozen=True)
class AOIStats:
    """An AOI measured on a scene's label grid.

    Attributes:
        area_km2: ground area of the AOI clipped to the scene, km² (None for scenes that are not georeferenced).
        pixels: label-grid pixels whose centre lies in the AOI.
        bbox_shape: (rows, cols) of the AOI's bounding window on the label grid.
        labelled: labelled pixels in the AOI summed over all dated label rasters.
        per_class: class id -> labelled pixels (all dates).
        warnings: messages from resolving the AOI (e.g. it was clipped to the scene).
    """

    area_km2: float | None
    pixels: int
    bbox_shape: tuple[int, int]
    labelled: int
    per_class: dict[int, int]
    warnings: tuple[str, ...] = ()
    whole_scene: bool = False


@dataclass(frozen=True)
class PreflightReport:
    """The findings, and the config as it will run (derived tile size and split stated) with its census."""

    checks: list[Check] = field(default_factory=list)
    stats: AOIStats | None = None
    memory_per_worker_bytes: int | None = None
    config: PipelineJobConfig | BaselineJobConfig | None = None
    census: SampleCensus | None = None

    @property
    def ok(self) -> bool:
        return not any(c.level == "error" for c in self.checks)

    @property
    def errors(self) -> list[str]:
        return [c.message for c in self.checks if c.level == "error"]


def launch_models() -> dict[str, str]:
    """What the launch form offers: each registered model -> its task, and each classic baseline -> ``"baseline"``."""
    return {**{m: get_model(m).task for m in list_models()}, **{m: "baseline" for m in BASELINES}}


def model_params(model: str) -> tuple[Param, ...]:
    """The size parameters the form offers for ``model`` (its registered :attr:`ModelSpec.params`); none for
    baselines."""
    return () if model in BASELINES else get_model(model).params


def param_defaults(model: str) -> dict[str, Any]:
    """The builder defaults of ``model``'s size parameters; empty for baselines."""
    return {p.name: p.default for p in model_params(model)}


def recipes() -> dict[str, dict[str, Any]]:
    """Named training recipes the form can preset (:data:`TRAIN_OPTIONS` values): those of the registered models."""
    return {spec.recipe.name: dict(spec.recipe.fields) for spec in map(get_model, list_models()) if spec.recipe}


def recipe_defaults(recipe: str | None = None) -> dict[str, Any]:
    """Defaults of the :data:`TRAIN_OPTIONS` controls: :class:`TrainJobConfig`'s, overlaid with a named recipe.

    Raises:
        ConfigError: ``recipe`` is not one of :func:`recipes`.
    """
    known = recipes()
    if recipe is not None and recipe not in known:
        raise ConfigError(f"training recipe {recipe!r} is unknown; choose one of {sorted(known)} or none")
    fields = TrainJobConfig.model_fields
    return {**{k: fields[k].default for k in TRAIN_OPTIONS}, **known.get(recipe or "", {})}


def _numbers(value: Any, name: str, cast: type, problems: list[str]) -> tuple[Any, ...] | None:
    """A tuple of numbers from a comma-separated text (or a sequence); None when empty."""
    if value is None or isinstance(value, str) and not value.strip():
        return None
    parts = value.replace(";", ",").split(",") if isinstance(value, str) else list(value)
    try:
        return tuple(cast(str(p).strip()) for p in parts)
    except ValueError:
        problems.append(
            f"{name}: {value!r} is not a comma-separated list of {cast.__name__} numbers (e.g. "
            f"{'1000, 500' if cast is int else '0.3, 0.6, 0.8'})"
        )
        return None


def _model_params(model: str, given: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    specs = {p.name: p for p in model_params(model)}
    out: dict[str, Any] = {}
    for name, value in given.items():
        spec = specs.get(name)
        if spec is None:
            problems.append(
                f"model_params.{name}: model {model!r} has no size parameter {name!r}; it takes "
                f"{sorted(specs) or 'none'}"
            )
            continue
        if isinstance(spec.default, tuple):
            value = _numbers(value, f"model_params.{name}", int, problems)
            if value is None:
                continue
        cast = type(spec.default[0] if isinstance(spec.default, tuple) else spec.default)
        try:
            items = tuple(cast(v) for v in (value if isinstance(value, tuple) else (value,)))
        except (TypeError, ValueError):
            items = ()
        if not items or any(not spec.low <= v <= spec.high for v in items):
            problems.append(
                f"model_params.{name}: {value!r} is not a number in [{spec.low:g}, {spec.high:g}]; "
                f"give the {spec.label.lower()} in that range (default {spec.default!r})"
            )
            continue
        out[name] = items if isinstance(spec.default, tuple) else items[0]
    return out


def _only_for() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Option -> (``"task"`` or ``"scheme"``, the tasks / schemes that read it), from the task and scheme
    registries. ``worker_speeds``: :func:`core.training.schemes.check_combination` says so itself."""
    tasks = {t: get_task(t).train_options for t in list_tasks()}
    by_task = {o: ("task", tuple(t for t, opts in tasks.items() if o in opts)) for opts in tasks.values() for o in opts}
    schemes = {n: get_scheme(n).options for n in list_schemes()}
    by_scheme = {
        o: ("scheme", tuple(n for n, opts in schemes.items() if o in opts))
        for opts in schemes.values()
        for o in opts
        if o != "worker_speeds"
    }
    return {**by_task, **by_scheme}


def _train_options(values: dict[str, Any], task: str, problems: list[str]) -> dict[str, Any]:
    opts = {k: values[k] for k in TRAIN_OPTIONS if values.get(k) is not None}
    if "worker_speeds" in opts:
        opts["worker_speeds"] = _numbers(opts["worker_speeds"], "worker_speeds", float, problems)
    if "lr_decay_at" in opts:
        at = opts["lr_decay_at"] = _numbers(opts["lr_decay_at"], "lr_decay_at", float, problems)
        if at and (any(not 0 < f < 1 for f in at) or list(at) != sorted(at)):
            problems.append(
                f"lr_decay_at: {list(at)} must be increasing fractions of the epochs between 0 and 1 "
                "(the ResNet recipe: 0.3, 0.6, 0.8)"
            )
    if opts.get("lr_decay_epochs") == 0:  # the form's "0 = no step decay"
        opts["lr_decay_epochs"] = None
    where = {"task": task, "scheme": values.get("scheme")}
    for name, (what, owners) in _only_for().items():
        if values.get(name) is not None and where[what] not in owners:
            listed = " or ".join(repr(o) for o in owners)
            problems.append(f"{name}: only used when the {what} is {listed}, not {where[what]!r}; remove it")
    return {k: v for k, v in opts.items() if v is not None}


def _common(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The AOI and split of the form's values, as config dicts."""
    aoi = {"geometry": values.get("aoi"), "crs": values.get("aoi_crs", "EPSG:4326")}
    split = {
        "method": values.get("split_method", "spatial"),
        "fractions": tuple(values.get("fractions", (0.6, 0.2, 0.2))),
        "test_date": values.get("test_date") or None,
    }
    # left out when not given: pre-flight derives them from the sample size and the AOI (jobs.settle)
    for key, name in (("block_size", "block_size"), ("buffer", "buffer"), ("seed", "split_seed")):
        value = values.get(name)
        if value not in (None, "") and not (key == "block_size" and value == 0):
            split[key] = value  # validated (and quoted when wrong) by SplitConfig
    return aoi, split


def _baseline_data(values: dict[str, Any]) -> dict[str, Any]:
    """A baseline job that tiles the AOI into patches first; it maps the AOI (the test date for a date split)."""
    aoi, split = _common(values)
    tile: dict[str, Any] = {
        "scene": values.get("scene"),
        "aoi": aoi,
        "mode": "patches",
        "split": split,
        "sampling": {"patch_size": int(values.get("size") or 0), "per_class": values.get("per_class") or None},
    }
    data: dict[str, Any] = {
        "scene": values.get("scene"),
        "tile_job": tile,
        "method": values.get("model"),
        "aoi": aoi,
        "predict": values.get("predict", True),
        "date": split["test_date"] if split["method"] == "date" else None,
    }
    data.update({k: values[k] for k in ("features", "max_train_samples") if values.get(k) is not None})
    if values.get("scheduler_address"):
        data["cluster"] = tile["cluster"] = {"scheduler_address": values["scheduler_address"]}
    return data


def _pipeline_data(values: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """The :class:`PipelineJobConfig` fields of the form's values for a registered model."""
    model = values["model"]
    task = get_task(get_model(model).task)
    aoi, split = _common(values)
    data: dict[str, Any] = {
        "scene": values.get("scene"),
        "aoi": aoi,
        "model": model,
        "scheme": values.get("scheme"),
        "num_workers": values.get("num_workers"),
        "epochs": values.get("epochs") or None,  # the form's 0 = sized by the step budget
        "batch_size": values.get("batch_size"),
        "learning_rate": values.get("learning_rate"),
        "split": split,
        "model_params": _model_params(model, dict(values.get("model_params") or {}), problems),
        "train_options": _train_options(values, task.name, problems),
    }
    if values.get("mp_split") is not None:
        data["mp_split"] = values["mp_split"]
    if values.get("seams") is not None:
        data["seams"], data["overlap"] = values["seams"], values.get("overlap")
    size = int(values.get("size") or 0)
    if task.tiles:
        if size:  # 0: the largest tile up to 64 px that the AOI's split allows (jobs.settle)
            data["tiling"] = {"tile_size": size}
    else:
        data["sampling"] = {"patch_size": size, "per_class": values.get("per_class") or None}
    if values.get("scheduler_address"):
        data["cluster"] = {"scheduler_address": values["scheduler_address"]}
    return data


def _pipeline_config(values: dict[str, Any], problems: list[str]) -> PipelineJobConfig:
    """The validated pipeline of the form's values; problems the config cannot see go to ``problems``."""
    from jobs.engine_kinds import pipeline_parts

    config = PipelineJobConfig.model_validate(_pipeline_data(values, problems))
    pipeline_parts(config, Path("store.zarr"))  # the train options are validated as the run will
    context = get_model(config.model).context_for(config.model_params)
    tile = config.tiling.tile_size
    if get_task(config.task).tiles and tile % context.align:
        problems.append(
            f"tiling.tile_size: a {tile}-px tile is not divisible by {context.rule}; use a tile size that "
            f"is a multiple of {context.align} or smaller model size parameters"
        )
    return config


def build_config(values: dict[str, Any]) -> PipelineJobConfig | BaselineJobConfig:
    """A validated job config from the launch form's values.

    ``values`` holds ``scene, model, scheme, num_workers, epochs, batch_size, learning_rate, size`` (tile size for
    dense and multi-label models, patch size for patch models and baselines), optional ``aoi`` (GeoJSON in
    EPSG:4326, None = whole scene), ``split_method`` ("spatial"/"date"), ``fractions`` (train, val, test),
    ``test_date``, ``per_class``. Advanced, all optional: ``model_params`` (see :func:`model_params`; tuples may be
    comma-separated text), ``mp_split`` (scheme "model_parallel" only), ``seams`` and ``overlap`` (dense
    prediction, see :class:`core.configs.PredictJobConfig`), the :data:`TRAIN_OPTIONS` (``lr_decay_at``
    and ``worker_speeds`` may be comma-separated text; ``lr_decay_epochs`` 0 = none; ``label_fraction`` for
    multi-label models, ``worker_speeds`` / ``calibration_steps`` for scheme "heterogeneous" only).

    A model of :data:`BASELINES` gives a :class:`BaselineJobConfig` whose ``tile_job`` samples patches of ``size``
    from the same AOI and split (``features``, ``max_train_samples`` and ``predict`` optional; the deep-model
    fields are not used). Otherwise a :class:`PipelineJobConfig`, whose train options are checked by building
    the run's :class:`TrainJobConfig` (:func:`jobs.engine_kinds.pipeline_parts`).

    Raises:
        ConfigError: listing every invalid field with what is expected.
    """
    problems: list[str] = []
    model = values.get("model", "")
    config: PipelineJobConfig | BaselineJobConfig | None = None
    try:
        if model in BASELINES:
            config = BaselineJobConfig.model_validate(_baseline_data(values))
        elif model not in list_models():
            problems.append(f"model: {model!r} is unknown; choose one of {list(launch_models())}")
        else:
            config = _pipeline_config(values, problems)
    except ValidationError as exc:
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "config"
            problems.append(f"{loc}: {e['msg'].removeprefix('Value error, ')} (got {e.get('input')!r:.80})")
    if problems or config is None:
        raise ConfigError("the launch settings are not valid:\n" + "\n".join(f"- {x}" for x in problems))
    return config


def _pixel_area_km2(scene: Scene) -> float | None:
    if not scene.georeferenced or not scene.crs_wkt:
        return None
    crs = CRS.from_wkt(scene.crs_wkt)
    if not crs.is_projected:
        return None
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    t = scene.primary.transform
    return abs(t[0] * t[4] - t[1] * t[3]) * factor * factor / 1e6


def aoi_stats(scene: Scene, aoi: AOIConfig) -> AOIStats:
    """Measure ``aoi`` on ``scene`` (see :class:`AOIStats`). Label rasters are read in the AOI's window only.

    Raises:
        AOIError / AOIOutsideSceneError: from :func:`core.data.geometry.resolve_aoi`, message unchanged.
    """
    resolved = resolve_aoi(aoi, scene)
    win = resolved.bbox
    if resolved.geometry is None:
        mask = np.ones(win.shape, dtype=bool)
    else:
        local = affinity.translate(resolved.geometry, -win.col_off, -win.row_off)
        mask = geometry_mask([local], out_shape=win.shape, transform=Affine.identity(), invert=True)
    pixels = int(mask.sum())
    px_km2 = _pixel_area_km2(scene)
    if px_km2 is not None:
        area = (resolved.geometry.area if resolved.geometry is not None else win.height * win.width) * px_km2
    elif scene.georeferenced and aoi.geometry is not None and aoi.crs.upper() == "EPSG:4326":
        area = abs(Geod(ellps="WGS84").geometry_area_perimeter(parse_geometry(aoi.geometry))[0]) / 1e6
    else:
        area = None
    per_class: dict[int, int] = {}
    for acq in scene.acquisitions:
        if not acq.labels:
            continue
        with rasterio.open(acq.labels) as src:
            labels = src.read(1, window=win.to_rasterio())
        ids, counts = np.unique(labels[mask & (labels > 0)], return_counts=True)
        for cid, n in zip(ids.tolist(), counts.tolist(), strict=True):
            per_class[int(cid)] = per_class.get(int(cid), 0) + int(n)
    return AOIStats(
        area_km2=area,
        pixels=pixels,
        bbox_shape=win.shape,
        labelled=sum(per_class.values()),
        per_class=per_class,
        warnings=resolved.warnings,
        whole_scene=resolved.whole_scene,
    )


def _n_patches(per_class: int | None, scene: Scene, stats: AOIStats | None) -> int:
    """Patches a patch sampling takes from the AOI: every labelled pixel, or ``per_class`` of each class."""
    labelled = stats.labelled if stats else scene.primary.height * scene.primary.width
    n_classes = max(1, len(stats.per_class) if stats else len(scene.classes))
    return min(labelled, per_class * n_classes) if per_class else labelled


def estimate_memory_per_worker(
    config: PipelineJobConfig | BaselineJobConfig, scene: Scene, stats: AOIStats | None
) -> int:
    """A rough upper estimate of one worker's peak memory in bytes for ``config`` on ``scene``.

    Pipelines: framework baseline + the worker's shard of the training samples (float32) + activations and
    gradients of one batch (2x forward activations, the model's (or else its task's) ``activation_channels`` per
    pixel, scaled by the model's width)
    + inference buffers of one tile. Baselines (fitted on one worker): scikit-learn baseline + three float32
    copies of the train rows (at most ``max_train_samples``; one feature per band, or per band and patch pixel with
    ``features="patch"``) + two prediction batches.
    """
    bands = sum(m.band_count for m in scene.modalities)
    if isinstance(config, BaselineJobConfig):
        tile = config.tile_job
        side = tile.sampling.patch_size if tile is not None and config.features == "patch" else 1
        available = _n_patches(tile.sampling.per_class if tile else None, scene, stats)
        rows = min(config.max_train_samples, available * (tile.split.fractions[0] if tile else 1.0))
        features = side * side * bands
        return int(BASELINE_BYTES + 3 * rows * features * 4 + 2 * config.batch_size * features * 4)
    dates = max(1, len(scene.acquisitions))
    spec, task = get_model(config.model), get_task(config.task)
    if task.tiles:
        side = config.tiling.tile_size
        rows, cols = stats.bbox_shape if stats else (scene.primary.height, scene.primary.width)
        n_samples = math.ceil(rows / config.tiling.step) * math.ceil(cols / config.tiling.step) * dates
    else:
        side = config.sampling.patch_size
        n_samples = _n_patches(config.sampling.per_class, scene, stats)
    sample_bytes = side * side * (bands + 1) * 4
    shard = n_samples * sample_bytes / max(1, config.num_workers)
    width = param_defaults(config.model).get("width")
    scale = config.model_params.get("width", width) / width if width else 1.0
    channels = spec.activation_channels or task.activation_channels
    activations = 2 * config.batch_size * side * side * channels * scale * 4
    return int(FRAMEWORK_BYTES + shard + activations + 4 * sample_bytes * config.batch_size)


def preflight(
    config: PipelineJobConfig | BaselineJobConfig,
    scene: Scene,
    cluster_workers: int | None = None,
    worker_memory_bytes: int | None = None,
) -> PreflightReport:
    """Every check before launching ``config`` on ``scene``.

    A baseline is checked on the AOI its tile job samples, and needs one worker (it is fitted on one).

    Args:
        cluster_workers: workers of the cluster the job will use (None: the cluster could not be reached).
        worker_memory_bytes: the smallest worker memory limit (None or 0: unknown / unlimited).
    """
    checks: list[Check] = []
    stats: AOIStats | None = None
    pipeline = config if isinstance(config, PipelineJobConfig) else None
    aoi = config.tile_job.aoi if isinstance(config, BaselineJobConfig) and config.tile_job else config.aoi
    workers = pipeline.num_workers if pipeline else 1
    if not scene.has_labels:
        checks.append(
            Check(
                "error",
                f"scene {scene.name!r} has no label rasters, so nothing can be trained on it; "
                "register it again with labels",
            )
        )
    if not scene.georeferenced and aoi.geometry is not None and aoi.crs.lower() != "pixel":
        checks.append(
            Check(
                "error",
                f"scene {scene.name!r} is not georeferenced: it cannot be placed on the map, "
                "so a drawn AOI does not apply; launch it on the whole scene",
            )
        )
    else:
        try:
            stats = aoi_stats(scene, aoi)
        except AOIError as exc:
            checks.append(Check("error", str(exc)))
    if stats is not None:
        checks.extend(_label_checks(stats, scene, pipeline))
    modalities = [m.name for m in scene.modalities]
    check_scene = get_scheme(pipeline.scheme).check_scene if pipeline else None
    if check_scene is not None:
        try:
            check_scene(scene.name, modalities)
        except ValueError as exc:
            checks.append(Check("error", str(exc)))
    if pipeline:
        try:
            model_modalities(pipeline.model, modalities, scene.label_modality)
        except ConfigError as exc:
            checks.append(Check("error", str(exc)))
    if cluster_workers is None:
        checks.append(
            Check(
                "warning",
                "the Dask cluster could not be reached, so its size is not checked; the job "
                "fails at start if it has too few workers",
            )
        )
    elif workers > cluster_workers:
        checks.append(
            Check(
                "error",
                f"the job asks for {workers} worker{'s' if workers != 1 else ''} but the cluster has "
                f"{cluster_workers}; lower the number of workers to {cluster_workers} or "
                "add workers to the cluster",
            )
        )
    settled, census = config, None
    if stats is not None and scene.has_labels and not any(c.level == "error" for c in checks):
        settled, census, found = _census_checks(config, scene, workers)
        checks.extend(found)
    mem = estimate_memory_per_worker(settled, scene, stats)
    checks.append(_memory_check(mem, worker_memory_bytes, pipeline is not None))
    return PreflightReport(checks=checks, stats=stats, memory_per_worker_bytes=mem, config=settled, census=census)


def _census_checks(
    config: PipelineJobConfig | BaselineJobConfig, scene: Scene, workers: int
) -> tuple[PipelineJobConfig | BaselineJobConfig, SampleCensus | None, list[Check]]:
    """Settle the config (derived sizes, split seed) and check what every split will hold."""
    needed = {"train": workers}
    try:
        settled, census = settle(config, scene, needed)
    except ConfigError as exc:
        return config, None, [Check("error", str(exc))]
    names = {c.id: c.name for c in scene.classes}
    problems = census.problems(tile_job_of(settled, scene).split.fractions, names, needed)
    checks = [Check("info", describe_census(settled, census, scene))]
    if isinstance(settled, PipelineJobConfig):  # the planned steps and time; classes too rare to learn
        checks.append(Check("info", describe_plan(settled, census)))
        rare = rare_classes(census, names)
        checks += [Check("error", rare)] if rare else []
    if problems:
        checks.append(Check("error", "; ".join(problems) + f". {_suggestion(settled, scene)}"))
    return settled, census, checks


def _suggestion(config: PipelineJobConfig | BaselineJobConfig, scene: Scene) -> str:
    """What would give every split samples of every class."""
    dated = len([a for a in scene.acquisitions if a.labels]) > 1
    return (
        "Draw a larger area of interest over labelled ground, use smaller tiles or patches"
        + (", or a date split (this scene has several labelled dates)" if dated else "")
        + ", or set the split's block size and seed (split.block_size, split.seed; under Advanced on the form)"
    )


def _label_checks(stats: AOIStats, scene: Scene, pipeline: PipelineJobConfig | None) -> list[Check]:
    """Findings about the AOI's labels and size."""
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
    if (
        pipeline
        and get_task(pipeline.task).tiles
        and "tiling" in pipeline.model_fields_set
        and min(stats.bbox_shape) < pipeline.tiling.tile_size
    ):
        checks.append(
            Check(
                "warning",
                f"the AOI ({stats.bbox_shape[0]}x{stats.bbox_shape[1]} px) is smaller "
                f"than one tile ({pipeline.tiling.tile_size} px): tiles are padded",
            )
        )
    return checks


def _memory_check(mem: int, worker_memory_bytes: int | None, pipeline: bool) -> Check:
    """The memory estimate against the smallest worker's limit."""
    text = f"estimated peak memory per worker: {mem / 2**30:.2f} GiB (rough)"
    hint = (
        "lower the batch size or tile/patch size, or use more workers"
        if pipeline
        else "lower max_train_samples or use features 'center'"
    )
    if worker_memory_bytes and mem > worker_memory_bytes:
        return Check("error", f"{text}, above the worker memory limit of {worker_memory_bytes / 2**30:.2f} GiB; {hint}")
    if worker_memory_bytes and mem > 0.8 * worker_memory_bytes:
        return Check("warning", f"{text}, close to the worker memory limit of {worker_memory_bytes / 2**30:.2f} GiB")
    return Check("info", text)
