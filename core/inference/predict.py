"""Distributed tiled inference: apply a model bundle to an AOI of a scene and write a class-map COG.

How the AOI is cut (all sizes in label-grid pixels):

- The AOI's bounding box is split into disjoint *core* blocks; the output pixels of a block are exactly its core,
  so tasks never write the same pixel. A task answers for one block, or (dense models) for a chunk of up to
  ``k x k`` neighbouring blocks read as one box (:mod:`core.inference.plan`).
- The bundle's task says how (:attr:`core.tasks.TaskSpec.predictor`, the window tasks of
  :mod:`core.inference.windows`); the model's registered context (:attr:`core.models.ModelSpec.context`) gives
  the pooling multiple that read windows are aligned to.
- Dense models read a ``tile_size`` square *read window* around the core: ``overlap`` pixels of context on each
  side, shifted inwards at the scene edge so it stays inside the raster (padding only where the raster itself is
  smaller than a tile). The prediction is cropped to the core. ``seams="exact"`` (the default) keeps ``overlap``
  >= the model's receptive-field radius (default: that radius), so every output pixel sees the same input as in
  one whole-scene prediction: no seams. ``seams="crop"`` takes a smaller overlap of the caller's choice: less
  work per output pixel, slightly different classes near tile borders.
- Patch models classify every pixel of the core: one patch per pixel, gathered with a sliding-window view from one
  read that is larger than the core by half a patch on each side (NaN, i.e. 0 after normalisation, beyond the
  scene edge), predicted ``batch_size`` patches at a time.

Workers read their windows with rasterio windowed reads through files kept open (paths must be visible to every
worker) and load the model bundle once per worker process, kept across runs while the worker lives
(:func:`core.models.bundle.cached_load`, keyed by path and content). They return the core's class ids and
confidence as small uint8 arrays; the driver writes each window into a tiled GeoTIFF as it arrives, with at most
``2 x workers + 2`` tasks in flight. Why: GDAL must not write one file from several processes, per-task
files would need a shared writable disk and a merge step, and a lock would serialise workers on I/O; results are
1-2 bytes per pixel (a 512 x 512 core is 0.5 MiB), so the driver holds only a few windows at a time and workers
need no write access to the output folder. The driver's share, measured on this project's 2-core machine: ~4 ms
of Dask client + scheduler CPU per task (hence chunks), ~3 % of a core while idle, and the COG conversion at the
end (~0.6 s per 16 Mpx); the temporary GeoTIFF is uncompressed so writing a window is a copy (deflate cost
0.36 s per 16 Mpx of windows). The tiled GeoTIFF then becomes a COG (:mod:`core.data.cog`). Each finished window is also kept in a ledger
beside the output (:mod:`core.inference.ledger`), so a prediction that died or was cancelled is resumed by
computing only the windows it had not finished.

Output: uint8 class ids, nodata 0 (outside the AOI polygon, or where any band of a model input is nodata),
the label grid's CRS and transform restricted to the AOI bounding box, colour table, class names as tags, mode
overviews; optionally ``<name>_confidence.tif``: max class probability in percent (uint8 0-100, nodata 255).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.enums import Resampling
from rasterio.features import geometry_mask
from rasterio.windows import Window

from core.configs import AOIConfig, PredictJobConfig
from core.data import cog
from core.data.geometry import resolve_aoi
from core.data.grid import GridMap
from core.data.scene import Scene
from core.errors import ConfigError, JobCancelledError, JobFailedError
from core.geo.windows import PixelWindow, windows_in_geometry
from core.inference.ledger import WindowLedger, bundle_stamp
from core.inference.plan import CHUNK_PX, group_pairs, tiles_per_side
from core.inference.windows import WindowPredictor, WindowResult, model_input_sizes
from core.models import NO_CONTEXT, Context, get_model, list_models
from core.models.bundle import bundle_format, load_meta
from core.tasks import get_task

log = logging.getLogger(__name__)

SEAMS = ("exact", "crop")
DEFAULT_TILE_OVERLAPS = 6
"""With exact seams and no tile size given, a dense tile is about this many overlaps wide: its core is then about
2/3 of its side (44 % of its pixels) whatever the receptive field."""


@dataclass(frozen=True)
class Plan:
    """How an AOI is cut: ``tile`` read side, ``core`` block side, ``overlap`` and ``align`` (label pixels)."""

    predictor: WindowPredictor
    tile: int
    core: int
    overlap: int
    align: int


def model_context(meta: Any) -> Context:
    """The prediction context of a bundle's model (:attr:`core.models.ModelSpec.context` with its model_params).

    A bundle of a model that is not registered here (a plug-in not imported in this process) is predicted without
    alignment or context (with a warning); its Keras file alone applies it.
    """
    if meta.model not in list_models():
        log.warning(
            "model %r of the bundle is not registered (known: %s); predicting without pooling alignment",
            meta.model,
            list_models(),
        )
        return NO_CONTEXT
    return get_model(meta.model).context_for((meta.extra or {}).get("model_params", {}))


def open_bundle(bundle_dir: str) -> tuple[Any, WindowPredictor, Context]:
    """(meta, predictor, context) of a deep model bundle or a baseline bundle (classified per pixel).

    The predictor is the model's own (:attr:`core.models.ModelSpec.predictor`, e.g. dense evaluation of a
    ``patch_fcn``) or else its task's.

    Raises:
        ConfigError: the bundle's task makes no per-pixel map (a multi-label scene classifier).
    """
    other = bundle_format(bundle_dir)  # a baseline bundle (core.baselines.bundle registers its format)
    if other is not None:
        return other.load_meta(bundle_dir), other.predictor, NO_CONTEXT
    meta = load_meta(bundle_dir)
    task = get_task(meta.task)
    if task.predictor is None:
        raise ConfigError(
            f"model {bundle_dir} is a {meta.task!r} model, which makes no per-pixel map; evaluate it "
            "on a store instead, or predict with a dense or patch model"
        )
    own = get_model(meta.model).predictor if meta.model in list_models() else None
    return meta, own or task.predictor, model_context(meta)


def _cores(bbox: PixelWindow, size: int) -> list[PixelWindow]:
    return [
        PixelWindow(r, c, min(size, bbox.row_end - r), min(size, bbox.col_end - c))
        for r in range(bbox.row_off, bbox.row_end, size)
        for c in range(bbox.col_off, bbox.col_end, size)
    ]


def read_window_for(core: PixelWindow, tile: int, overlap: int, height: int, width: int, align: int = 1) -> PixelWindow:
    """The ``tile`` x ``tile`` window read for ``core``: ``overlap`` context each side, kept inside the raster.

    The offset is a multiple of ``align`` (the coarsest modality's pixel size in label pixels, times the model's
    pooling factor) so every modality's window starts on a whole pixel and the model's pooling grid lines up with
    that of a whole-scene prediction. Near the far edge the window is moved back inside the raster when an aligned
    position still holds the whole core; otherwise it runs past the edge and the off-raster part is padding
    (read as nodata, normalised to 0).
    """

    def axis(off: int, size: int, n: int) -> int:
        start = max(0, off - overlap)
        start -= start % align
        if start + tile > n:
            inward = max(0, n - tile) // align * align
            if inward + tile >= off + size:
                start = min(start, inward)
        return start

    return PixelWindow(axis(core.row_off, core.height, height), axis(core.col_off, core.width, width), tile, tile)


def _scales_and_align(scene: Scene, meta: Any, context: Context) -> tuple[dict[str, float], int]:
    scales, align = {}, context.align
    for name in meta.modalities:
        sy = GridMap.between(scene.primary, scene.modality(name)).scale_y
        scales[name] = sy
        if sy < 1:
            align = math.lcm(align, round(1 / sy))
    return scales, align


def _check(meta: Any, scene: Scene, date: str | None, bundle_dir: str) -> None:
    acq = scene.acquisition(date)
    missing = [m for m in meta.modalities if m not in acq.files]
    if missing:
        raise ConfigError(
            f"model {bundle_dir} needs modalities {list(meta.modalities)} but acquisition {acq.date!r} "
            f"of scene {scene.name!r} has {sorted(acq.files)}; pick a scene/date with {missing}"
        )
    for name in meta.modalities:
        n_bands, want = scene.modality(name).band_count, len(meta.band_stats[name]["mean"])
        if n_bands != want:
            raise ConfigError(
                f"modality {name!r} of scene {scene.name!r} has {n_bands} bands but model {bundle_dir} "
                f"was trained on {want}; apply the model to imagery of the same sensor and band order"
            )


def dense_overlap(context: Context, overlap: int | None, seams: str, bundle_dir: str) -> int:
    """The overlap of a dense prediction: ``seams="exact"``: ``overlap`` (default: the receptive-field radius),
    refused below that radius; ``seams="crop"``: ``overlap`` as given (required).

    Raises:
        ConfigError: unknown ``seams``, an exact overlap below the radius, or a crop without an overlap.
    """
    if seams not in SEAMS:
        raise ConfigError(
            f"seams {seams!r} is unknown; use 'exact' (overlap >= the receptive-field radius, no "
            "seams) or 'crop' (a smaller overlap of your choice, faster)"
        )
    if seams == "crop":
        if overlap is None:
            raise ConfigError(
                "seams='crop' needs the overlap to crop (e.g. 32 px); or use seams='exact', whose "
                f"default overlap is the model's receptive-field radius ({context.radius} px)"
            )
        return overlap
    if overlap is not None and overlap < context.radius:
        raise ConfigError(
            f"overlap {overlap} is below the receptive-field radius {context.radius} of model "
            f"{bundle_dir}: exact seams need overlap >= {context.radius} (or none given); use "
            "seams='crop' to trade exact seams for speed"
        )
    return context.radius if overlap is None else overlap


def _default_tile(meta: Any, scale: float, overlap: int, align: int, seams: str, bbox: PixelWindow) -> int:
    """Training tile side; with exact seams at least :data:`DEFAULT_TILE_OVERLAPS` overlaps, but no larger than
    one tile holding the whole AOI (multiples of ``align``)."""
    tile = round(meta.sample_size[meta.modalities[0]] / scale)
    if seams == "exact":
        tile = max(tile, math.ceil((DEFAULT_TILE_OVERLAPS * overlap + align - 1) / align) * align)
        whole = math.ceil((max(bbox.height, bbox.width) + 2 * overlap + align - 1) / align) * align
        tile = max(min(tile, whole), align)
    return tile


def plan_windows(
    bundle_dir: str,
    meta: Any,
    predictor: WindowPredictor,
    context: Context,
    scene: Scene,
    client: Any,
    tile_size: int | None,
    overlap: int | None,
    seams: str = "exact",
    bbox: PixelWindow | None = None,
) -> Plan:
    """The read tile, core block, overlap and alignment of a prediction (see :func:`run_predict`'s arguments)."""
    scales, align = _scales_and_align(scene, meta, context)
    if not predictor.reads_context:
        side = tile_size or predictor.block
        return Plan(predictor, side, side, 0, align)
    ov = dense_overlap(context, overlap, seams, bundle_dir)
    fixed = client.submit(model_input_sizes, bundle_dir, pure=False).result()  # Dask: also warms a worker's cache
    first = meta.modalities[0]
    bbox = bbox or PixelWindow(0, 0, scene.primary.height, scene.primary.width)
    tile = (
        round(fixed[first] / scales[first])
        if fixed.get(first)
        else tile_size or _default_tile(meta, scales[first], ov, align, seams, bbox)
    )
    if tile_size and tile != tile_size:
        log.warning("model %s takes %d-pixel tiles; tile_size %d ignored", bundle_dir, tile, tile_size)
    if fixed.get(first) and tile - 2 * ov - (align - 1) < 1:  # a fixed input leaves less room for context
        fits = max(0, (tile - (align - 1)) // 4)  # cores of about half the tile
        log.warning(
            "model %s takes fixed %d-pixel tiles: overlap %d cut to %d, so seams between tiles are possible",
            bundle_dir,
            tile,
            ov,
            fits,
        )
        ov = fits
    core_size = tile - 2 * ov - (align - 1)
    if core_size < 1:
        raise ConfigError(
            f"overlap {ov} leaves no pixels of a {tile}-pixel tile; use overlap < {tile // 2} or a "
            f"tile of at least {2 * ov + align} px"
        )
    return Plan(predictor, tile, core_size, ov, align)


class _Output:
    """The temporary tiled GeoTIFFs of a prediction (classes, optional confidence) and the class counts."""

    def __init__(
        self, out: Path, bbox: PixelWindow, transform: Affine, crs: str | None, meta: Any, confidence: bool
    ) -> None:
        self.out, self.bbox = out, bbox
        self.conf_out = out.with_name(out.stem + "_confidence.tif") if confidence else None
        out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp, self.conf_tmp = out.with_suffix(".tmp.tif"), out.with_suffix(".conf.tmp.tif")
        self.counts = np.zeros(256, dtype=np.int64)
        # uncompressed: writing a window is a copy; finalize_cog compresses once (see cog.tiled_profile)
        self.dst = cog.open_tiled(self.tmp, **cog.tiled_profile(bbox.width, bbox.height, transform, crs, compress=None))
        self.cdst = (
            cog.open_tiled(
                self.conf_tmp,
                **cog.tiled_profile(
                    bbox.width, bbox.height, transform, crs, nodata=cog.CONFIDENCE_NODATA, compress=None
                ),
            )
            if self.conf_out
            else None
        )
        cog.write_class_metadata(self.dst, meta.class_ids, meta.class_names, meta.class_colors)

    def write(self, core: PixelWindow, classes: np.ndarray, conf: np.ndarray | None, geom: Any) -> None:
        if geom is not None:
            inside = geometry_mask(
                [geom], out_shape=core.shape, invert=True, transform=Affine.translation(core.col_off, core.row_off)
            )
            classes[~inside] = cog.CLASS_NODATA
            if conf is not None:
                conf[~inside] = cog.CONFIDENCE_NODATA
        w = Window(core.col_off - self.bbox.col_off, core.row_off - self.bbox.row_off, core.width, core.height)
        self.dst.write(classes, 1, window=w)
        if self.cdst is not None and conf is not None:
            self.cdst.write(conf, 1, window=w)
        self.counts += np.bincount(classes.ravel(), minlength=256)

    def close(self) -> None:
        self.dst.close()
        if self.cdst is not None:
            self.cdst.close()

    def discard(self) -> None:
        self.close()
        for p in (self.tmp, self.conf_tmp):
            p.unlink(missing_ok=True)

    def finish(self, min_overview_size: int) -> None:
        self.close()
        cog.finalize_cog(self.tmp, self.out, Resampling.mode, min_overview_size)
        if self.conf_out is not None:
            cog.finalize_cog(self.conf_tmp, self.conf_out, Resampling.average, min_overview_size)


def _one_window(task: Callable[..., WindowResult], *args: Any) -> list[WindowResult]:
    """Dask task: a window task's result as a one-window list (the shape of a chunk's)."""
    return [task(*args)]


def _tasks(
    plan: Plan, cores: list[PixelWindow], bbox: PixelWindow, label: Any, chunk_px: int
) -> tuple[list[Any], bool]:
    """What each Dask task gets: chunks of ``(read, core)`` pairs (chunked dense predictors) or ``(read, core)``."""
    if not plan.predictor.reads_context:
        return [(core, core) for core in cores], False
    pairs = [(read_window_for(c, plan.tile, plan.overlap, label.height, label.width, plan.align), c) for c in cores]
    if plan.predictor.chunk is None:
        return pairs, False
    k = tiles_per_side(plan.tile, plan.core, chunk_px)
    return group_pairs(pairs, (bbox.row_off, bbox.col_off), plan.core, k), True


def _run_windows(
    client: Any,
    items: list[Any],
    total: int,
    submit: Callable[[Any], Any],
    output: _Output,
    geom: Any,
    progress: Callable[[int, int], None] | None,
    cancelled: Callable[[], bool] | None,
    t0: float,
    ledger: WindowLedger,
) -> float:
    """Submit the tasks with at most ``2 x workers + 2`` in flight; record and write each window as it arrives.

    Returns:
        Seconds from ``t0`` (a ``time.perf_counter()`` reading) to the first window written.
    """
    from dask.distributed import as_completed  # Dask

    from core.distributed.cluster import live_workers

    max_in_flight = 2 * max(1, len(live_workers(client))) + 2
    pending = list(reversed(items))
    running = as_completed()
    done, first = 0, float("nan")
    try:
        while pending and running.count() < max_in_flight:
            running.add(submit(pending.pop()))
        for fut in running:
            if cancelled is not None and cancelled():
                raise JobCancelledError(f"prediction into {output.out} cancelled after {done} of {total} windows")
            if fut.status == "error":
                raise JobFailedError(
                    f"prediction task {fut.key} failed on the cluster: {fut.exception()!r}; "
                    "see the worker log for the traceback"
                ) from fut.exception()
            results = fut.result()
            if pending:
                running.add(submit(pending.pop()))
            for core, classes, conf in results:
                ledger.record(core, classes, conf)
                output.write(core, classes, conf, geom)
            first = time.perf_counter() - t0 if done == 0 else first
            done += len(results)
            if progress is not None:
                progress(done, total)
    except BaseException:
        client.cancel(list(running.futures))  # Dask: stop what has not run yet
        output.discard()  # the ledger keeps the finished windows for a resumed run
        raise
    return first


def _replay(
    ledger: WindowLedger, cores: list[PixelWindow], resume: bool, output: _Output, geom: Any
) -> list[PixelWindow]:
    """Write the windows a resumed prediction had finished from the ledger; returns the windows still to do."""
    todo = []
    try:
        finished = ledger.start(resume)
        for core in cores:
            if (core.row_off, core.col_off) in finished:
                output.write(core, *ledger.load(core), geom)
            else:
                todo.append(core)
    except BaseException:
        output.discard()
        raise
    if resume:
        log.info(
            "resuming the prediction into %s: %d of %d windows were finished",
            output.out,
            len(cores) - len(todo),
            len(cores),
        )
    return todo


def _ledger_settings(
    bundle_dir: str,
    scene: Scene,
    date: str | None,
    bbox: PixelWindow,
    confidence: bool,
    windows: int,
    plan: Plan,
    batch_size: int,
) -> dict[str, Any]:
    """What a resumed prediction must share with the one it finishes (:class:`core.inference.ledger.WindowLedger`)."""
    return {"bundle": bundle_dir, "bundle_files": bundle_stamp(bundle_dir), "scene": scene.name, "date": date,
            "bbox": bbox.as_tuple(), "confidence": confidence, "windows": windows,
            "plan": [plan.tile, plan.core, plan.overlap, plan.align], "batch_size": batch_size}  # fmt: skip


def _submitter(
    client: Any, plan: Plan, bundle_dir: str, scene: Scene, date: str | None, batch_size: int, confidence: bool
) -> Callable[[Any], Any]:
    """``submit(item)``: one Dask task of a chunk of windows (chunked dense predictors) or of one window."""
    predictor = plan.predictor
    chunked = predictor.reads_context and predictor.chunk is not None

    def submit(item: Any) -> Any:
        if chunked:
            return client.submit(predictor.chunk, bundle_dir, scene, date, item, confidence, pure=False)
        return client.submit(
            _one_window, predictor.window, bundle_dir, scene, date, *item, batch_size, confidence, pure=False
        )

    return submit


def run_predict(
    bundle_dir: str | Path,
    scene: Scene,
    aoi: AOIConfig,
    client: Any,
    out_path: str | Path,
    tile_size: int | None = None,
    overlap: int | None = None,
    seams: str = "exact",
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    confidence: bool = True,
    date: str | None = None,
    batch_size: int = 256,
    min_overview_size: int = 128,
    chunk_px: int = CHUNK_PX,
    resume: bool = False,
) -> dict[str, Any]:
    """Classify ``aoi`` of ``scene`` with a model bundle on the Dask cluster of ``client`` and write a COG.

    Args:
        bundle_dir: model bundle folder (:mod:`core.models.bundle`), or a baseline bundle (:mod:`core.baselines.bundle`:
            classified per pixel like a patch model, ``batch_size`` pixels per estimator call).
        scene: the scene; ``date`` picks the acquisition (None = first).
        aoi: area to classify; the output covers its bounding box on the label grid.
        client: a ``dask.distributed.Client``.
        out_path: the class-map COG to write; the confidence COG goes beside it as ``<stem>_confidence.tif``.
        tile_size: dense: model input side in label pixels (forced to the model's own size when its input is
            fixed; default: the training sample size, with exact seams at least ~6 overlaps); per-pixel: core
            block side (default: the predictor's block, 64, or 256 for densely evaluated patch models).
        overlap: dense only: context pixels cropped from each side of a tile (default: the receptive-field radius).
        seams: dense only: ``"exact"`` (overlap >= receptive-field radius, no seams) or ``"crop"`` (the given
            smaller overlap: faster, slightly different classes near tile borders).
        progress: called with ``(windows_done, windows_total)`` after each task's windows are written.
        cancelled: polled between tasks; when it returns True pending tasks are cancelled and
            :class:`JobCancelledError` is raised (the partial files are removed).
        confidence: also write the confidence COG.
        chunk_px: dense: largest side of the box one task reads (neighbouring tiles are chunked up to it).
        resume: finish the prediction that died or was cancelled writing ``out_path``: the windows in its ledger
            (:mod:`core.inference.ledger`) are written from there, only the others are computed.

    Returns ``{"path", "confidence_path", "width", "height", "transform", "crs", "windows", "tasks", "tile_size",
    "overlap", "seams", "class_pixels": {class id: pixels}, "nodata", "seconds", "first_pixel_s" (call to first
    window written), "cog_s", "warnings", "resumed_windows"}``. Raises ConfigError: ``resume`` without a ledger at
    ``out_path``, or with one of other settings.
    """
    t0 = time.perf_counter()
    bundle_dir, out = str(Path(bundle_dir).resolve()), Path(out_path)
    meta, predictor, context = open_bundle(bundle_dir)
    _check(meta, scene, date, bundle_dir)
    resolved, label = resolve_aoi(aoi, scene), scene.primary
    bbox = resolved.bbox
    plan = plan_windows(bundle_dir, meta, predictor, context, scene, client, tile_size, overlap, seams, bbox)
    cores = windows_in_geometry(_cores(bbox, plan.core), resolved.geometry)
    transform = Affine(*label.transform) @ Affine.translation(bbox.col_off, bbox.row_off)
    crs = scene.crs_wkt if scene.georeferenced else None
    submit = _submitter(client, plan, bundle_dir, scene, date, batch_size, confidence)
    ledger = WindowLedger(
        out, _ledger_settings(bundle_dir, scene, date, bbox, confidence, len(cores), plan, batch_size)
    )
    output = _Output(out, bbox, transform, crs, meta, confidence)
    todo = _replay(ledger, cores, resume, output, resolved.geometry)
    resumed = len(cores) - len(todo)
    counted = (lambda d, t: progress(resumed + d, len(cores))) if progress is not None else None
    items, _ = _tasks(plan, todo, bbox, label, chunk_px)
    first = _run_windows(client, items, len(todo), submit, output, resolved.geometry, counted, cancelled, t0, ledger)
    t_cog = time.perf_counter()
    output.finish(min_overview_size)
    ledger.remove()
    seconds = time.perf_counter() - t0
    log.info("predicted %d windows in %d tasks (%d x %d px) into %s in %.1f s (first pixel after %.2f s)",
             len(cores), len(items), bbox.width, bbox.height, out, seconds, first)  # fmt: skip
    return {"path": str(out), "confidence_path": str(output.conf_out) if output.conf_out else None,
            "width": bbox.width, "height": bbox.height, "bbox": bbox.as_tuple(), "transform": list(transform)[:6],
            "crs": crs, "windows": len(cores), "tasks": len(items), "tile_size": plan.tile, "overlap": plan.overlap,
            "seams": seams if predictor.reads_context else None,
            "class_pixels": {str(c): int(output.counts[c]) for c in meta.class_ids}, "nodata": cog.CLASS_NODATA,
            "seconds": round(seconds, 3), "first_pixel_s": round(first, 3),
            "cog_s": round(time.perf_counter() - t_cog, 3), "warnings": list(resolved.warnings),
            "resumed_windows": resumed}  # fmt: skip


def run_predict_job(
    config: PredictJobConfig,
    scene: Scene,
    client: Any,
    out_path: str | Path,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """:func:`run_predict` with the settings of a :class:`PredictJobConfig` (``config.output`` is resolved by the
    caller into ``out_path``, as is the output of the run ``config.resume_from`` names, resumed with ``resume``;
    ``config.scene`` must name ``scene``)."""
    if config.scene != scene.name:
        raise ConfigError(
            f"config is for scene {config.scene!r} but scene {scene.name!r} was given; load the scene the config names"
        )
    return run_predict(
        config.model,
        scene,
        config.aoi,
        client,
        out_path,
        tile_size=config.tile_size,
        overlap=config.overlap,
        seams=config.seams,
        progress=progress,
        cancelled=cancelled,
        confidence=config.confidence,
        date=config.date,
        batch_size=config.batch_size,
        resume=resume,
    )
