"""Distributed tiled inference: apply a model bundle to an AOI of a scene and write a class-map COG.

How the AOI is cut (all sizes in label-grid pixels):

- The AOI's bounding box is split into disjoint *core* blocks; each core block is one Dask task and the output
  pixels of a task are exactly its core, so tasks never write the same pixel.
- Dense models read a ``tile_size`` square *read window* around the core: ``overlap`` pixels of context on each
  side, shifted inwards at the scene edge so it stays inside the raster (padding only where the raster itself is
  smaller than a tile). The prediction is cropped to the core. With ``overlap`` >= the model's receptive-field
  radius every output pixel sees the same input as in one whole-scene prediction: no seams.
- Patch models classify every pixel of the core: one patch per pixel, gathered with a sliding-window view from one
  read that is larger than the core by half a patch on each side (NaN, i.e. 0 after normalisation, beyond the
  scene edge), predicted ``batch_size`` patches at a time.

Workers read their windows with rasterio windowed reads (paths must be visible to every worker) and load the model
bundle once per worker process (:func:`cached_bundle`, keyed by path and file mtime). They return the core's class
ids and confidence as small uint8 arrays; the driver writes each window into a tiled GeoTIFF as it arrives, with
at most ``2 x workers + 2`` tasks in flight. Why: GDAL must not write one file from several processes, per-task
files would need a shared writable disk and a merge step, and a lock would serialise workers on I/O; results are
1-2 bytes per pixel (a 512 x 512 core is 0.5 MiB), so the driver holds only a few windows at a time and workers
need no write access to the output folder. The tiled GeoTIFF then becomes a COG (:mod:`core.data.cog`).

Output: uint8 class ids, nodata 0 (outside the AOI polygon, or where any band of a model input is nodata),
the label grid's CRS and transform restricted to the AOI bounding box, colour table, class names as tags, mode
overviews; optionally ``<name>_confidence.tif``: max class probability in percent (uint8 0-100, nodata 255).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.features import geometry_mask
from rasterio.windows import Window

from core.data import cog
from core.configs import AOIConfig, PredictJobConfig
from core.errors import ConfigError, JobCancelledError, JobFailedError
from core.data.geometry import resolve_aoi
from core.models.bundle import ModelMeta, load_bundle, load_meta
from core.data.reader import read_modality
from core.data.scene import Acquisition, Modality, Scene
from core.sampling.windows import PixelWindow, windows_in_geometry

log = logging.getLogger(__name__)

PATCH_BLOCK = 64
"""Default core block side (label-grid pixels) of one patch-model task."""

_CACHE: dict[str, tuple[int, Any, ModelMeta]] = {}
_CACHE_LOCK = threading.Lock()


# ---- worker side ---------------------------------------------------------------------------------------------------
def cached_bundle(bundle_dir: str) -> tuple[Any, ModelMeta]:
    """(model, meta) of a bundle, loaded once per process and reloaded when ``model.keras`` changes."""
    path = Path(bundle_dir).resolve()
    mtime = (path / "model.keras").stat().st_mtime_ns
    with _CACHE_LOCK:
        hit = _CACHE.get(str(path))
        if hit is None or hit[0] != mtime:
            model, meta = load_bundle(path)
            _CACHE[str(path)] = (mtime, model, meta)
            log.info("loaded model bundle %s", path)
        return _CACHE[str(path)][1], _CACHE[str(path)][2]


def grid_map(label: Modality, other: Modality) -> tuple[float, float, float, float]:
    """``(scale_y, off_y, scale_x, off_x)``: label-grid pixel coordinate -> ``other``'s pixel coordinate.

    North-up grids only (no rotation terms).
    """
    a = ~Affine(*other.transform) @ Affine(*label.transform)
    return a.e, a.f, a.a, a.c


def read_bands(acq: Acquisition, mod: Modality, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
    """A window of a modality's stacked bands as float32 ``(height, width, bands)``; NaN for nodata and off-raster.

    The window is in the modality's own pixel grid and may extend past the raster on any side; the part inside is
    read with :func:`core.data.reader.read_modality` (nodata rule: any band at its nodata value or NaN).
    """
    out = np.full((height, width, mod.band_count), np.nan, dtype=np.float32)
    r0, c0 = max(0, row_off), max(0, col_off)
    r1, c1 = min(mod.height, row_off + height), min(mod.width, col_off + width)
    if r1 <= r0 or c1 <= c0:
        return out
    data, valid = read_modality(acq.files[mod.name], mod, PixelWindow(r0, c0, r1 - r0, c1 - c0))
    part = np.moveaxis(data, 0, -1).astype(np.float32)
    part[~valid] = np.nan
    out[r0 - row_off:r1 - row_off, c0 - col_off:c1 - col_off] = part
    return out


def _to_classes(probs: np.ndarray, meta: ModelMeta, valid: np.ndarray,
                confidence: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """``(..., K)`` probabilities -> uint8 class ids (0 where not valid) and uint8 percent confidence (255)."""
    ids = np.asarray(meta.class_ids, dtype=np.uint8)
    classes = np.where(valid, ids[np.argmax(probs, axis=-1)], cog.CLASS_NODATA).astype(np.uint8)
    conf = None
    if confidence:
        pct = np.clip(np.rint(np.max(probs, axis=-1) * 100), 0, 100).astype(np.uint8)
        conf = np.where(valid, pct, cog.CONFIDENCE_NODATA).astype(np.uint8)
    return classes, conf


def predict_dense_window(bundle_dir: str, scene: Scene, date: str | None, read: PixelWindow, core: PixelWindow,
                         confidence: bool = True) -> tuple[PixelWindow, np.ndarray, np.ndarray | None]:
    """Dask task: predict the square read window ``read`` with a dense model and crop it to ``core``.

    Returns:
        ``(core, classes, confidence)``: uint8 ``core.shape`` arrays (see :func:`_to_classes`).
    """
    model, meta = cached_bundle(bundle_dir)
    acq, label = scene.acquisition(date), scene.primary
    valid = np.ones(read.shape, dtype=bool)
    inputs = []
    for name in meta.modalities:
        mod = scene.modality(name)
        sy, oy, sx, ox = grid_map(label, mod)
        r_m, c_m = round(read.row_off * sy + oy), round(read.col_off * sx + ox)
        h_m, w_m = round(read.height * sy), round(read.width * sx)
        x = read_bands(acq, mod, r_m, c_m, h_m, w_m)
        rows = np.clip(np.floor((np.arange(read.height) + read.row_off + 0.5) * sy + oy).astype(int) - r_m, 0, h_m - 1)
        cols = np.clip(np.floor((np.arange(read.width) + read.col_off + 0.5) * sx + ox).astype(int) - c_m, 0, w_m - 1)
        valid &= ~np.isnan(x).any(axis=-1)[np.ix_(rows, cols)]
        inputs.append(meta.normalise(name, x)[None])
    probs = np.asarray(model.predict_on_batch(inputs if len(inputs) > 1 else inputs[0]))[0]
    if probs.shape[:2] != read.shape:
        raise JobFailedError(f"dense model {bundle_dir} returned {probs.shape[:2]} pixels for a {read.shape} tile; "
                             "a dense model must predict on the label grid at the input tile's size")
    r, c = core.row_off - read.row_off, core.col_off - read.col_off
    sl = (slice(r, r + core.height), slice(c, c + core.width))
    classes, conf = _to_classes(probs[sl], meta, valid[sl], confidence)
    return core, classes, conf


def predict_patch_window(bundle_dir: str, scene: Scene, date: str | None, core: PixelWindow,
                         batch_size: int = 256,
                         confidence: bool = True) -> tuple[PixelWindow, np.ndarray, np.ndarray | None]:
    """Dask task: classify every pixel of ``core`` with a patch model (one patch centred on each pixel).

    Same patch rule as the tiling job (:mod:`core.sampling.patches`): for modality ``m`` with patch side ``p``
    (``meta.sample_size[m]``, odd, in ``m``'s pixels) the patch of label pixel ``(r, c)`` is the ``m`` pixel holding
    the label pixel's centre +- ``p // 2``. Unlike training (which drops patches that leave the raster), every
    pixel is classified: off-raster parts of a patch are NaN, i.e. 0 (the band mean) after normalisation.
    Pixels whose centre is nodata in any modality are not predicted (class 0).
    """
    model, meta = cached_bundle(bundle_dir)
    acq, label = scene.acquisition(date), scene.primary
    valid = np.ones(core.shape, dtype=bool)
    views, starts = [], []
    for name in meta.modalities:
        mod, p = scene.modality(name), int(meta.sample_size[name])
        sy, oy, sx, ox = grid_map(label, mod)
        cy = (np.arange(core.height) + core.row_off + 0.5) * sy + oy
        cx = (np.arange(core.width) + core.col_off + 0.5) * sx + ox
        sr, sc = np.floor(cy).astype(int) - p // 2, np.floor(cx).astype(int) - p // 2
        r0, c0 = int(sr.min()), int(sc.min())
        x = read_bands(acq, mod, r0, c0, int(sr.max()) - r0 + p, int(sc.max()) - c0 + p)
        centre_nan = np.isnan(x).any(axis=-1)
        valid &= ~centre_nan[np.ix_(np.floor(cy).astype(int) - r0, np.floor(cx).astype(int) - c0)]
        views.append(np.lib.stride_tricks.sliding_window_view(meta.normalise(name, x), (p, p), axis=(0, 1)))
        starts.append((sr - r0, sc - c0))
    k = len(meta.class_ids)
    probs = np.zeros((*core.shape, k), dtype=np.float32)
    todo = np.flatnonzero(valid)
    for i in range(0, todo.size, batch_size):
        flat = todo[i:i + batch_size]
        rr, cc = flat // core.width, flat % core.width
        # view[r, c] is (C, p, p); the model wants channels last.
        batch = [v[s_r[rr], s_c[cc]].transpose(0, 2, 3, 1) for v, (s_r, s_c) in zip(views, starts, strict=True)]
        out = np.asarray(model.predict_on_batch(batch if len(batch) > 1 else batch[0]))
        probs[rr, cc] = out.reshape(len(flat), k)
    classes, conf = _to_classes(probs, meta, valid, confidence)
    return core, classes, conf


def model_input_sizes(bundle_dir: str) -> dict[str, int | None]:
    """Dask task: modality -> fixed input side of the model (``None`` where the model accepts any size)."""
    model, meta = cached_bundle(bundle_dir)
    return {name: (t.shape[1] if t.shape[1] is not None else None) for name, t in zip(meta.modalities, model.inputs)}


# ---- driver side ---------------------------------------------------------------------------------------------------
def _cores(bbox: PixelWindow, size: int) -> list[PixelWindow]:
    return [PixelWindow(r, c, min(size, bbox.row_end - r), min(size, bbox.col_end - c))
            for r in range(bbox.row_off, bbox.row_end, size) for c in range(bbox.col_off, bbox.col_end, size)]


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


def pooling_multiple(meta: Any) -> int:
    """Side (label pixels) that tile offsets of a dense model must be multiples of so its pooling grid lines up
    with the grid of a whole-scene prediction: ``2 ** depth`` for the U-Net, 1 for models without pooling."""
    if getattr(meta, "task", None) != "dense":
        return 1
    params = (getattr(meta, "extra", None) or {}).get("model_params", {})
    depth = params.get("depth")
    if depth is None:
        import inspect

        from core.models import MODELS

        spec = MODELS.get(meta.model)
        default = inspect.signature(spec.builder).parameters.get("depth") if spec else None
        depth = default.default if default is not None and default.default is not inspect.Parameter.empty else 0
    return 2 ** int(depth)


def context_radius(meta: Any) -> int:
    """Pixels of context a dense model's output pixel depends on (its receptive-field radius, rounded up).

    For the U-Net (two 3x3 convolutions per level, 2x2 pooling, ``depth`` levels) it is
    ``2 (2^(d+1) - 1) + 2 (2^d - 1) + 2^d - 1``; an overlap at least this wide makes tiled predictions equal
    to a whole-scene prediction away from the scene edge.
    """
    d = int(math.log2(pooling_multiple(meta)))
    return 2 * (2 ** (d + 1) - 1) + 2 * (2 ** d - 1) + 2 ** d - 1 if d else 2


def _scale_and_align(scene: Scene, meta: ModelMeta) -> tuple[dict[str, float], int]:
    scales, align = {}, pooling_multiple(meta)
    for name in meta.modalities:
        sy = grid_map(scene.primary, scene.modality(name))[0]
        scales[name] = sy
        if sy < 1:
            align = math.lcm(align, round(1 / sy))
    return scales, align


def _check(meta: ModelMeta, scene: Scene, date: str | None, bundle_dir: str) -> None:
    acq = scene.acquisition(date)
    missing = [m for m in meta.modalities if m not in acq.files]
    if missing:
        raise ConfigError(f"model {bundle_dir} needs modalities {list(meta.modalities)} but acquisition {acq.date!r} "
                          f"of scene {scene.name!r} has {sorted(acq.files)}; pick a scene/date with {missing}")
    for name in meta.modalities:
        n_bands, want = scene.modality(name).band_count, len(meta.band_stats[name]["mean"])
        if n_bands != want:
            raise ConfigError(f"modality {name!r} of scene {scene.name!r} has {n_bands} bands but model {bundle_dir} "
                              f"was trained on {want}; apply the model to imagery of the same sensor and band order")


def run_predict(bundle_dir: str | Path, scene: Scene, aoi: AOIConfig, client: Any, out_path: str | Path,
                tile_size: int | None = None, overlap: int = 16, progress: Callable[[int, int], None] | None = None,
                cancelled: Callable[[], bool] | None = None, confidence: bool = True, date: str | None = None,
                batch_size: int = 256, min_overview_size: int = 128) -> dict[str, Any]:
    """Classify ``aoi`` of ``scene`` with a model bundle on the Dask cluster of ``client`` and write a COG.

    Args:
        bundle_dir: model bundle folder (:mod:`core.models.bundle`), or a baseline bundle (:mod:`core.baselines.bundle`:
            classified per pixel like a patch model, ``batch_size`` pixels per estimator call).
        scene: the scene; ``date`` picks the acquisition (None = first).
        aoi: area to classify; the output covers its bounding box on the label grid.
        client: a ``dask.distributed.Client``.
        out_path: the class-map COG to write; the confidence COG goes beside it as ``<stem>_confidence.tif``.
        tile_size: dense: model input side in label pixels (forced to the model's own size when its input is
            fixed; default the training sample size); patch: core block side (default 64).
        overlap: dense only: context pixels cropped from each side of a tile (>= receptive-field radius).
        progress: called with ``(windows_done, windows_total)`` after each window is written.
        cancelled: polled between windows; when it returns True pending tasks are cancelled and
            :class:`JobCancelledError` is raised (the partial files are removed).
        confidence: also write the confidence COG.

    Returns:
        ``{"path", "confidence_path", "width", "height", "transform", "crs", "windows", "tile_size", "overlap",
        "class_pixels": {class id: pixels}, "nodata", "seconds", "warnings"}``.
    """
    t0 = time.perf_counter()
    bundle_dir, out = str(Path(bundle_dir).resolve()), Path(out_path)
    from core.baselines.bundle import is_baseline_bundle, load_baseline_meta, predict_baseline_window

    meta: Any = load_baseline_meta(bundle_dir) if is_baseline_bundle(bundle_dir) else load_meta(bundle_dir)
    _check(meta, scene, date, bundle_dir)
    resolved = resolve_aoi(aoi, scene)
    bbox, label = resolved.bbox, scene.primary
    scales, align = _scale_and_align(scene, meta)
    if meta.task == "dense":
        fixed = client.submit(model_input_sizes, bundle_dir, pure=False).result()  # Dask: also warms a worker's cache
        first = meta.modalities[0]
        tile = (round(fixed[first] / scales[first]) if fixed.get(first)
                else tile_size or round(meta.sample_size[first] / scales[first]))
        if tile_size and tile != tile_size:
            log.warning("model %s takes %d-pixel tiles; tile_size %d ignored", bundle_dir, tile, tile_size)
        core_size = tile - 2 * overlap - (align - 1)
        if core_size < 1:
            raise ConfigError(f"overlap {overlap} leaves no pixels of a {tile}-pixel tile; use overlap < {tile // 2}")
    elif meta.task in ("patch", "baseline"):
        tile, core_size, overlap = tile_size or PATCH_BLOCK, tile_size or PATCH_BLOCK, 0
    else:
        raise ConfigError(f"model task {meta.task!r} of {bundle_dir} is unknown; expected 'dense', 'patch' or "
                          "'baseline'")
    cores = windows_in_geometry(_cores(bbox, core_size), resolved.geometry)
    transform = Affine(*label.transform) @ Affine.translation(bbox.col_off, bbox.row_off)
    crs = scene.crs_wkt if scene.georeferenced else None
    conf_out = out.with_name(out.stem + "_confidence.tif") if confidence else None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp, conf_tmp = out.with_suffix(".tmp.tif"), out.with_suffix(".conf.tmp.tif")
    geom = resolved.geometry
    counts = np.zeros(256, dtype=np.int64)
    from core.distributed.cluster import live_workers

    n_workers = max(1, len(live_workers(client)))
    max_in_flight = 2 * n_workers + 2

    def submit(core: PixelWindow) -> Any:
        if meta.task == "dense":
            read = read_window_for(core, tile, overlap, label.height, label.width, align)
            return client.submit(predict_dense_window, bundle_dir, scene, date, read, core, confidence, pure=False)
        if meta.task == "baseline":
            return client.submit(predict_baseline_window, bundle_dir, scene, date, core, batch_size, confidence,
                                 pure=False)
        return client.submit(predict_patch_window, bundle_dir, scene, date, core, batch_size, confidence, pure=False)

    from dask.distributed import as_completed  # Dask

    dst = cog.open_tiled(tmp, **cog.tiled_profile(bbox.width, bbox.height, transform, crs))
    cdst = (cog.open_tiled(conf_tmp, **cog.tiled_profile(bbox.width, bbox.height, transform, crs,
                                                         nodata=cog.CONFIDENCE_NODATA)) if conf_out else None)
    pending = list(reversed(cores))
    running = as_completed()
    done = 0
    try:
        cog.write_class_metadata(dst, meta.class_ids, meta.class_names, meta.class_colors)
        while pending and running.count() < max_in_flight:
            running.add(submit(pending.pop()))
        for fut in running:
            if cancelled is not None and cancelled():
                raise JobCancelledError(f"prediction into {out} cancelled after {done} of {len(cores)} windows")
            if fut.status == "error":
                raise JobFailedError(f"prediction task {fut.key} failed on the cluster: {fut.exception()!r}; "
                                     "see the worker log for the traceback") from fut.exception()
            core, classes, conf = fut.result()
            if pending:
                running.add(submit(pending.pop()))
            if geom is not None:
                inside = geometry_mask([geom], out_shape=core.shape, invert=True,
                                       transform=Affine.translation(core.col_off, core.row_off))
                classes[~inside] = cog.CLASS_NODATA
                if conf is not None:
                    conf[~inside] = cog.CONFIDENCE_NODATA
            w = Window(core.col_off - bbox.col_off, core.row_off - bbox.row_off, core.width, core.height)
            dst.write(classes, 1, window=w)
            if cdst is not None and conf is not None:
                cdst.write(conf, 1, window=w)
            counts += np.bincount(classes.ravel(), minlength=256)
            done += 1
            if progress is not None:
                progress(done, len(cores))
    except BaseException:
        client.cancel(list(running.futures))  # Dask: stop what has not run yet
        dst.close()
        if cdst is not None:
            cdst.close()
        for p in (tmp, conf_tmp):
            p.unlink(missing_ok=True)
        raise
    dst.close()
    if cdst is not None:
        cdst.close()
    cog.finalize_cog(tmp, out, Resampling.mode, min_overview_size)
    if conf_out is not None:
        cog.finalize_cog(conf_tmp, conf_out, Resampling.average, min_overview_size)
    seconds = time.perf_counter() - t0
    log.info("predicted %d windows (%d x %d px) into %s in %.1f s", len(cores), bbox.width, bbox.height, out, seconds)
    return {
        "path": str(out),
        "confidence_path": str(conf_out) if conf_out else None,
        "width": bbox.width,
        "height": bbox.height,
        "bbox": bbox.as_tuple(),
        "transform": list(transform)[:6],
        "crs": crs,
        "windows": len(cores),
        "tile_size": tile,
        "overlap": overlap,
        "class_pixels": {str(c): int(counts[c]) for c in meta.class_ids},
        "nodata": cog.CLASS_NODATA,
        "seconds": round(seconds, 3),
        "warnings": list(resolved.warnings),
    }


def run_predict_job(config: PredictJobConfig, scene: Scene, client: Any, out_path: str | Path,
                    progress: Callable[[int, int], None] | None = None,
                    cancelled: Callable[[], bool] | None = None) -> dict[str, Any]:
    """:func:`run_predict` with the settings of a :class:`PredictJobConfig` (``config.output`` is resolved by the
    caller into ``out_path``; ``config.scene`` must name ``scene``)."""
    if config.scene != scene.name:
        raise ConfigError(f"config is for scene {config.scene!r} but scene {scene.name!r} was given; load the scene "
                          "the config names")
    return run_predict(config.model, scene, config.aoi, client, out_path, tile_size=config.tile_size,
                       overlap=config.overlap, progress=progress, cancelled=cancelled, confidence=config.confidence,
                       date=config.date, batch_size=config.batch_size)
