"""Checks run before a pipeline launch: is the AOI on the scene, are there enough labels, does the cluster fit?

:func:`build_config` turns the launch form's values into a :class:`jobs.pipeline.PipelineJobConfig` (raising
:class:`core.errors.ConfigError` that lists every bad field); :func:`aoi_stats` measures an AOI on a scene (area
in km², label-grid pixels, labelled pixels per class); :func:`preflight` combines both with the cluster's size into
a list of :class:`Check` messages. Errors block the launch, warnings do not.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import rasterio
from affine import Affine
from pydantic import ValidationError
from pyproj import CRS, Geod
from rasterio.features import geometry_mask
from shapely import affinity

from core.configs import AOIConfig
from core.errors import AOIError, ConfigError
from core.geometry import parse_geometry, resolve_aoi
from core.scene import Scene
from jobs.pipeline import PipelineJobConfig

log = logging.getLogger(__name__)

MIN_LABELLED_PIXELS = 100
"""Fewer labelled pixels than this in the AOI cannot give a train, validation and test split."""
MIN_PER_CLASS = 10
FRAMEWORK_BYTES = 700 * 2**20
"""Resident memory of a worker with TensorFlow and Horovod loaded, before any data (measured order of magnitude)."""
ACTIVATION_CHANNELS = {"dense": 192, "patch": 96}
"""Sum of feature-map channels over a model's layers, per input pixel, for the activation-memory estimate."""

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
    checks: list[Check] = field(default_factory=list)
    stats: AOIStats | None = None
    memory_per_worker_bytes: int | None = None

    @property
    def ok(self) -> bool:
        return not any(c.level == "error" for c in self.checks)

    @property
    def errors(self) -> list[str]:
        return [c.message for c in self.checks if c.level == "error"]


def build_config(values: dict[str, Any]) -> PipelineJobConfig:
    """A validated pipeline config from the launch form's values.

    ``values`` holds ``scene, model, scheme, num_workers, epochs, batch_size, learning_rate, size`` (tile size for
    dense models, patch size for patch models), optional ``aoi`` (GeoJSON in EPSG:4326, None = whole scene),
    ``split_method`` ("spatial"/"date"), ``fractions`` (train, val, test), ``test_date``, ``per_class``.

    Raises:
        ConfigError: listing every invalid field with what is expected.
    """
    from jobs.pipeline import available_models

    task = available_models().get(values.get("model", ""), "dense")
    size = int(values.get("size") or 0)
    data: dict[str, Any] = {
        "scene": values.get("scene"),
        "aoi": {"geometry": values.get("aoi"), "crs": values.get("aoi_crs", "EPSG:4326")},
        "model": values.get("model"),
        "scheme": values.get("scheme"),
        "num_workers": values.get("num_workers"),
        "epochs": values.get("epochs"),
        "batch_size": values.get("batch_size"),
        "learning_rate": values.get("learning_rate"),
        "split": {"method": values.get("split_method", "spatial"),
                  "fractions": tuple(values.get("fractions", (0.6, 0.2, 0.2))),
                  "test_date": values.get("test_date") or None},
    }
    if task == "dense":
        data["tiling"] = {"tile_size": size}
    else:
        data["sampling"] = {"patch_size": size, "per_class": values.get("per_class") or None}
    if values.get("scheduler_address"):
        data["cluster"] = {"scheduler_address": values["scheduler_address"]}
    try:
        return PipelineJobConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "config"
            lines.append(f"{loc}: {e['msg'].removeprefix('Value error, ')} (got {e.get('input')!r:.80})")
        raise ConfigError("the launch settings are not valid:\n" + "\n".join(f"- {x}" for x in lines)) from exc


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
        AOIError / AOIOutsideSceneError: from :func:`core.geometry.resolve_aoi`, message unchanged.
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
    return AOIStats(area_km2=area, pixels=pixels, bbox_shape=win.shape, labelled=sum(per_class.values()),
                    per_class=per_class, warnings=resolved.warnings, whole_scene=resolved.whole_scene)


def estimate_memory_per_worker(config: PipelineJobConfig, scene: Scene, stats: AOIStats | None) -> int:
    """A rough upper estimate of one worker's peak memory in bytes for ``config`` on ``scene``.

    Framework baseline + the worker's shard of the training samples (float32) + activations and gradients of one
    batch (2x forward activations, ``ACTIVATION_CHANNELS`` per pixel) + inference buffers of one tile.
    """
    bands = sum(m.band_count for m in scene.modalities)
    dates = max(1, len(scene.acquisitions))
    if config.task == "dense":
        side = config.tiling.tile_size
        rows, cols = stats.bbox_shape if stats else (scene.primary.height, scene.primary.width)
        n_samples = math.ceil(rows / config.tiling.step) * math.ceil(cols / config.tiling.step) * dates
    else:
        side = config.sampling.patch_size
        labelled = stats.labelled if stats else scene.primary.height * scene.primary.width
        n_classes = max(1, len(stats.per_class) if stats else len(scene.classes))
        per_class = config.sampling.per_class
        n_samples = min(labelled, per_class * n_classes) if per_class else labelled
    sample_bytes = side * side * (bands + 1) * 4
    shard = n_samples * sample_bytes / max(1, config.num_workers)
    activations = 2 * config.batch_size * side * side * ACTIVATION_CHANNELS[config.task] * 4
    return int(FRAMEWORK_BYTES + shard + activations + 4 * sample_bytes * config.batch_size)


def preflight(config: PipelineJobConfig, scene: Scene, cluster_workers: int | None = None,
              worker_memory_bytes: int | None = None) -> PreflightReport:
    """Every check before launching ``config`` on ``scene``.

    Args:
        cluster_workers: workers of the cluster the job will use (None: the cluster could not be reached).
        worker_memory_bytes: the smallest worker memory limit (None or 0: unknown / unlimited).
    """
    checks: list[Check] = []
    stats: AOIStats | None = None
    if not scene.has_labels:
        checks.append(Check("error", f"scene {scene.name!r} has no label rasters, so nothing can be trained on it; "
                                     "register it again with labels"))
    if not scene.georeferenced and config.aoi.geometry is not None and config.aoi.crs.lower() != "pixel":
        checks.append(Check("error", f"scene {scene.name!r} is not georeferenced: it cannot be placed on the map, "
                                     "so a drawn AOI does not apply; launch it on the whole scene"))
    else:
        try:
            stats = aoi_stats(scene, config.aoi)
        except AOIError as exc:
            checks.append(Check("error", str(exc)))
    if stats is not None:
        checks.extend(Check("warning", w) for w in stats.warnings)
        if scene.has_labels and stats.labelled < MIN_LABELLED_PIXELS:
            checks.append(Check("error", f"the AOI holds only {stats.labelled} labelled pixels (all dates); at least "
                                         f"{MIN_LABELLED_PIXELS} are needed for a train/validation/test split. "
                                         "Draw a larger AOI over labelled ground, or use the whole scene"))
        rare = {cid: n for cid, n in stats.per_class.items() if n < MIN_PER_CLASS}
        if rare:
            names = {c.id: c.name for c in scene.classes}
            listing = ", ".join(f"{names.get(c, c)} ({n})" for c, n in sorted(rare.items()))
            checks.append(Check("warning", f"classes with fewer than {MIN_PER_CLASS} labelled pixels in the AOI: "
                                           f"{listing}; their scores will be unreliable"))
        if config.task == "dense" and min(stats.bbox_shape) < config.tiling.tile_size:
            checks.append(Check("warning", f"the AOI ({stats.bbox_shape[0]}x{stats.bbox_shape[1]} px) is smaller "
                                           f"than one tile ({config.tiling.tile_size} px): tiles are padded"))
    if cluster_workers is None:
        checks.append(Check("warning", "the Dask cluster could not be reached, so its size is not checked; the job "
                                       "fails at start if it has too few workers"))
    elif config.num_workers > cluster_workers:
        checks.append(Check("error", f"the job asks for {config.num_workers} workers but the cluster has "
                                     f"{cluster_workers}; lower the number of workers to {cluster_workers} or "
                                     "add workers to the cluster"))
    mem = estimate_memory_per_worker(config, scene, stats)
    text = f"estimated peak memory per worker: {mem / 2**30:.2f} GiB (rough)"
    if worker_memory_bytes and mem > worker_memory_bytes:
        checks.append(Check("error", f"{text}, above the worker memory limit of {worker_memory_bytes / 2**30:.2f} "
                                     "GiB; lower the batch size or tile/patch size, or use more workers"))
    elif worker_memory_bytes and mem > 0.8 * worker_memory_bytes:
        checks.append(Check("warning", f"{text}, close to the worker memory limit of "
                                       f"{worker_memory_bytes / 2**30:.2f} GiB"))
    else:
        checks.append(Check("info", text))
    return PreflightReport(checks=checks, stats=stats, memory_per_worker_bytes=mem)
