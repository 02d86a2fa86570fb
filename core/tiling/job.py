"""The tiling job: cut an AOI of a scene into tiles or patches in a Zarr sample store, on a Dask cluster.

The driver plans from geometry only (windows, patch centres from a label scan that itself runs in Dask tasks),
pre-creates the store's arrays (layout: :mod:`core.tiling.store`), and submits tasks (:mod:`core.tiling.tasks`) that
read their windows with rasterio *inside the workers* and write their samples straight to the store. Tasks return
only small metadata (which slots were written, per-band sums / sums of squares, per-class pixel counts), so the
driver never holds pixel data. A patch task cuts exactly one chunk of its split, so no two tasks write the same
chunk; at most ``2 x worker threads`` tasks are in flight, so worker memory is bounded by sample or chunk size x
tasks in flight, whatever the raster size (per-task memory: :mod:`core.tiling.tasks`).

Split rules: date split: every sample of an acquisition goes to that date's split. Spatial split: tiles are laid
out inside block cores (:mod:`core.sampling.splits`), so a tile never crosses a block boundary or the buffer (such tiles are
never made: *dropped*, not clipped); patch centres must lie in a core. Tile labels outside the AOI polygon and at
nodata pixels of the label-grid modality are set to 0 (unlabelled), so training never sees them. Stored pixels are
the raw raster values (nodata included).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from distributed import Client, as_completed
from shapely.geometry.base import BaseGeometry

from core.configs import TileJobConfig
from core.data.catalog import verify_files
from core.data.geometry import resolve_aoi
from core.data.reader import convert_window
from core.data.scene import Acquisition, Modality, Scene
from core.errors import ConfigError, JobCancelledError, JobFailedError
from core.geo.windows import PixelWindow, block_grid, sliding_windows, windows_in_geometry
from core.sampling.patches import (
    centre_bounds,
    modality_patch_size,
    patch_window,
    sample_centres,
    scan_labels,
    scan_strips,
)
from core.sampling.split_defaults import resolve_split
from core.sampling.splits import SPLITS, date_record, date_split, spatial_split
from core.tiling.store import StoreInfo, TileStore, patches_per_chunk
from core.tiling.tasks import PlannedSample, TaskResult, cut_samples

log = logging.getLogger(__name__)

MAX_SAMPLES_PER_TASK = 64


def _select(config: TileJobConfig, scene: Scene) -> tuple[list[Modality], list[int]]:
    names = config.modalities or tuple(m.name for m in scene.modalities)
    mods = []
    for n in names:
        try:
            mods.append(scene.modality(n))
        except KeyError as exc:
            raise ConfigError(str(exc.args[0]) + "; fix the job's modalities") from exc
    dates = config.dates or scene.dates
    idx = []
    for d in dates:
        found = [i for i, a in enumerate(scene.acquisitions) if a.date == d]
        if not found:
            raise ConfigError(f"scene {scene.name!r} has no acquisition dated {d!r}; dates: {list(scene.dates)}")
        idx.append(found[0])
    return mods, idx


def grid_ratio(label: Modality, mods: list[Modality]) -> int:
    """The least common multiple of the integer ratios of coarser modality grids to the label grid (1 if none)."""
    ratio = 1
    for m in mods:
        r = m.resolution / label.resolution
        if r > 1 and abs(r - round(r)) < 1e-6:
            ratio = math.lcm(ratio, int(round(r)))
    return ratio


def selected_acquisitions(config: TileJobConfig, scene: Scene) -> list[Acquisition]:
    """The acquisitions a job reads, in its date-index order (``config.dates`` or every date)."""
    return [scene.acquisitions[i] for i in _select(config, scene)[1]]


def _tile_sample_size(tile: int, label: Modality, m: Modality) -> int:
    size = tile * label.resolution / m.resolution
    if abs(size - round(size)) > 1e-6:
        raise ConfigError(
            f"tile_size {tile} px on {label.name!r} is {size:g} px on {m.name!r}; use a tile size that "
            f"is a multiple of {m.resolution / label.resolution:g}"
        )
    return int(round(size))


@dataclass(frozen=True)
class TilePlan:
    """Everything the driver decides before any pixel is read.

    Attributes:
        samples: every sample slot, ordered by split, date, row, col.
        sizes: sample side in pixels per modality (tile or patch size at that modality's resolution).
        split_record: the JSON split record stored with the samples.
        warnings: messages for the user (e.g. the AOI was clipped).
        aoi: AOI in (col, row) pixels of the label grid; None = whole scene.
    """

    samples: list[PlannedSample]
    sizes: dict[str, int]
    split_record: dict[str, Any]
    warnings: tuple[str, ...]
    aoi: BaseGeometry | None


def _run_scans(client: Client | None, scans: list[tuple[Any, ...]]) -> list[Any]:
    """Label scans (:func:`scan_labels` arguments) as Dask tasks on ``client``, or here when it is None."""
    if client is None:
        return [scan_labels(*args) for args in scans]
    futures = [client.submit(scan_labels, *args, pure=False) for args in scans]  # Dask: one task per strip
    return client.gather(futures)  # Dask: small, sparse results


def _split(
    config: TileJobConfig, label: Modality, mods: list[Modality], aoi: Any, dates: tuple[str | None, ...], size: int
) -> tuple[Any, dict[str | None, str] | None, dict[str, Any]]:
    """The job's split: ``(spatial split or None, split per date or None, the split record)``."""
    if config.split.method != "spatial":
        by_date = date_split(dates, config.split)
        return None, by_date, date_record(by_date, config.split)
    split_cfg = resolve_split(config.split, size, config.mode, aoi.bbox.shape, grid_ratio(label, mods))
    assert split_cfg.block_size is not None
    buffer = split_cfg.buffer if split_cfg.buffer is not None else size
    align = grid_ratio(label, mods)
    origin = (aoi.bbox.row_off // align * align, aoi.bbox.col_off // align * align)  # blocks divide the AOI
    grid = block_grid(label.height, label.width, split_cfg.block_size, origin)
    used = windows_in_geometry([b for b in grid if b.intersection(aoi.bbox)], aoi.geometry)
    split_obj = spatial_split(label.height, label.width, split_cfg, buffer, used, origin)
    return split_obj, None, split_obj.record(config.split.seed, config.split.fractions)


def plan_samples(config: TileJobConfig, scene: Scene, client: Client | None = None) -> TilePlan:
    """Plan every sample of the job (driver side; patches mode scans labels in Dask tasks on ``client``, or in
    this process when ``client`` is None).

    Raises:
        AOIError, ConfigError, GridMismatchError: the AOI, configuration or grids do not allow the job.
    """
    mods, acq_idx = _select(config, scene)
    label = scene.primary
    aoi = resolve_aoi(config.aoi, scene)
    dates = tuple(scene.acquisitions[i].date for i in acq_idx)
    size = config.tiling.tile_size if config.mode == "tiles" else config.sampling.patch_size
    split_obj, by_date, record = _split(config, label, mods, aoi, dates, size)

    planned: list[tuple[str, int, PixelWindow, int]] = []  # split, date index, label window, class
    if config.mode == "tiles":
        sizes = {m.name: _tile_sample_size(size, label, m) for m in mods}
        full = PixelWindow(0, 0, label.height, label.width)
        if split_obj is not None:
            tiles = split_obj.tiles(aoi.bbox, size, config.tiling.stride)
            kept = set(windows_in_geometry([w for w, _ in tiles], aoi.geometry))
            tiles = [(w, s) for w, s in tiles if w in kept]
        else:
            tiles = [
                (w, "")
                for w in windows_in_geometry(
                    sliding_windows(aoi.bbox, size, config.tiling.stride, bounds=full), aoi.geometry
                )
            ]
        for di, d in enumerate(dates):
            planned += [(s or by_date[d], di, w, 0) for w, s in tiles]  # type: ignore[index]
    else:
        sizes = {m.name: modality_patch_size(size, label, m) for m in mods}
        allowed = centre_bounds(size, label, [label, *mods])  # the label patch (loc) must fit too
        if allowed is None:
            raise ConfigError(
                f"patch_size {size} does not fit inside the {label.height}x{label.width} px scene; use a smaller patch"
            )
        per_class, seed = config.sampling.per_class, config.sampling.seed
        for di, ai in enumerate(acq_idx):
            acq = scene.acquisitions[ai]
            if not acq.labels:
                log.warning("acquisition %s has no labels: no patches from it", acq.date)
                continue
            scans = [
                (acq.labels, strip, aoi.geometry, allowed, split_obj, per_class, seed * 1_000_003 + di * 10_007 + k)
                for k, strip in enumerate(scan_strips(aoi.bbox))
            ]
            centres = sample_centres(_run_scans(client, scans), per_class, seed + di)
            half = size // 2
            for cls, arr in centres.items():
                for r, c, code in arr.tolist():
                    s = SPLITS[code] if split_obj is not None else by_date[dates[di]]  # type: ignore[index]
                    planned.append((s, di, PixelWindow(r - half, c - half, size, size), cls))

    samples: list[PlannedSample] = []
    next_index = dict.fromkeys(SPLITS, 0)
    half = size // 2
    for s, di, w, cls in sorted(planned, key=lambda p: (SPLITS.index(p[0]), p[1], p[2].row_off, p[2].col_off)):
        if config.mode == "tiles":
            windows = {m.name: convert_window(w, label, m) for m in mods}
        else:
            pw = {m.name: patch_window(w.row_off + half, w.col_off + half, size, label, m) for m in mods}
            windows = {k: v for k, v in pw.items() if v is not None}  # all fit: centres obey centre_bounds
        samples.append(PlannedSample(s, next_index[s], di, w, windows, cls))
        next_index[s] += 1
    return TilePlan(samples, sizes, record, aoi.warnings, aoi.geometry)


def _chunk_groups(samples: list[PlannedSample], per_chunk: dict[str, int]) -> list[list[PlannedSample]]:
    """One group per ``x_*`` chunk: samples ``k * L`` .. ``(k + 1) * L - 1`` of a split (``L = per_chunk[split]``).

    Each patch task thus writes whole chunks that no other task touches. ``samples`` are the plan's, in slot order
    within each split.
    """
    by_split: dict[str, list[PlannedSample]] = {}
    for x in samples:
        by_split.setdefault(x.split, []).append(x)
    return [ss[k : k + per_chunk[s]] for s, ss in by_split.items() for k in range(0, len(ss), per_chunk[s])]


def _groups(samples: list[PlannedSample], n_threads: int) -> list[list[PlannedSample]]:
    """Equal-size groups (+-1) of neighbouring samples, >= 4 per thread so the scheduler can balance them."""
    if not samples:
        return []
    per = max(1, min(MAX_SAMPLES_PER_TASK, math.ceil(len(samples) / (4 * max(1, n_threads)))))
    n = math.ceil(len(samples) / per)
    return [list(g) for g in np.array_split(np.array(samples, dtype=object), n)]


def run_tile_job(
    config: TileJobConfig,
    scene: Scene,
    client: Client,
    store_path: Path,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> StoreInfo:
    """Cut ``config``'s AOI of ``scene`` into a sample store at ``store_path`` using the Dask ``client``.

    Args:
        config: the job (mode, AOI, tiling / sampling, split).
        scene: the scene (its files are verified against their registration fingerprints first).
        client: Dask client; tasks run in its workers.
        store_path: the Zarr store to create (replaced if it exists).
        progress: called with (samples done, samples total) as tasks complete.
        cancelled: polled between tasks; when it returns True the job stops and raises JobCancelledError.

    Returns:
        The store's :class:`StoreInfo` (also written to the store's root attrs).

    Raises:
        AOIError / AOIOutsideSceneError / ConfigError: bad AOI or configuration, or nothing to sample.
        JobFailedError: a worker task failed (the message names the error).
        JobCancelledError: ``cancelled()`` returned True.
    """
    verify_files(scene)
    mods, acq_idx = _select(config, scene)
    plan = plan_samples(config, scene, client)
    samples, sizes, aoi = plan.samples, plan.sizes, plan.aoi
    log.info("tiling %s: %d samples planned (%s)", scene.name, len(samples), config.mode)
    if not samples:
        raise ConfigError(
            f"the job has no samples: mode {config.mode!r}, tile/patch size "
            f"{config.tiling.tile_size if config.mode == 'tiles' else config.sampling.patch_size} px, "
            f"split {config.split.method!r}; use a larger AOI, smaller tiles or larger split blocks"
        )
    store, y_size, groups = _create_store(config, scene, client, store_path, plan, mods)
    scene_dict = scene.to_dict()

    def submit(group: list[PlannedSample]) -> Any:
        return client.submit(
            cut_samples, str(store_path), scene_dict, acq_idx, config.mode, sizes, y_size, group, aoi, pure=False
        )  # Dask: reads + writes happen in the worker

    what = f"tiling of scene {scene.name!r}"
    results = _run_tasks(client, groups, submit, what, progress, cancelled)
    return _finish(config, scene, store, plan, results, mods, acq_idx)


def _create_store(
    config: TileJobConfig, scene: Scene, client: Client, store_path: Path, plan: TilePlan, mods: list[Modality]
) -> tuple[TileStore, int, list[list[PlannedSample]]]:
    """Create the store's split arrays; returns the store, the tile label side and the task groups."""
    samples, sizes = plan.samples, plan.sizes
    n_per_split = {s: sum(1 for x in samples if x.split == s) for s in SPLITS}
    store = TileStore.create(store_path)
    y_size = sizes.get(scene.primary.name, config.tiling.tile_size)
    y_shape = (y_size, y_size) if config.mode == "tiles" else ()
    x_shapes = {m.name: (sizes[m.name], sizes[m.name], m.band_count, m.dtype) for m in mods}
    per_chunk = 1 if config.mode == "tiles" else patches_per_chunk(x_shapes)
    for s, n in n_per_split.items():
        if n:
            store.create_split(s, n, x_shapes, y_shape, samples_per_chunk=per_chunk)
    if config.mode == "tiles":
        groups = _groups(samples, sum(client.nthreads().values()))
    else:  # Dask: one task per chunk, so concurrent tasks never write the same chunk file
        groups = _chunk_groups(samples, {s: min(n, per_chunk) for s, n in n_per_split.items() if n})
    return store, y_size, groups


def _run_tasks(
    client: Client,
    groups: list[list[PlannedSample]],
    submit: Callable[[list[PlannedSample]], Any],
    what: str,
    progress: Callable[[int, int], None] | None,
    cancelled: Callable[[], bool] | None,
) -> list[TaskResult]:
    """Run one task per group, at most ``2 x threads`` in flight; progress in samples; stop on cancel or error."""
    total, done = sum(len(g) for g in groups), 0
    results: list[TaskResult] = []
    max_in_flight = 2 * max(1, sum(client.nthreads().values()))  # Dask: bounds queued work, keeps cancel prompt
    pending = iter(groups)
    first = [submit(g) for _, g in zip(range(max_in_flight), pending)]
    sizes_of = {f.key: len(g) for f, g in zip(first, groups)}
    ac = as_completed(first)
    for fut in ac:
        if cancelled is not None and cancelled():
            for f in list(ac.futures):
                f.cancel()
            raise JobCancelledError(f"{what} cancelled after {done} of {total} samples")
        try:
            results.append(fut.result())
        except Exception as exc:
            for f in list(ac.futures):
                f.cancel()
            # Dask hands back exceptions it cannot rebuild as plain Exception('ErrorName("message")').
            err = str(exc) if type(exc) is Exception else f"{type(exc).__name__}: {exc}"
            raise JobFailedError(f"a tiling task failed: {err}; fix the cause and run the job again") from exc
        done += sizes_of.pop(fut.key)
        if progress is not None:
            progress(done, total)
        nxt = next(pending, None)
        if nxt is not None:
            f = submit(nxt)
            sizes_of[f.key] = len(nxt)
            ac.add(f)
    return results


def _finish(
    config: TileJobConfig,
    scene: Scene,
    store: TileStore,
    plan: TilePlan,
    results: list[TaskResult],
    mods: list[Modality],
    acq_idx: list[int],
) -> StoreInfo:
    """Write the small per-sample arrays and the StoreInfo (driver side, no pixels)."""
    samples = plan.samples
    written = {(s, i) for r in results for s, i in r.written}
    skipped = sum(len(r.skipped) for r in results)
    counts: dict[str, int] = {}
    class_counts: dict[str, dict[str, int]] = {}
    for s in SPLITS:
        ss = [x for x in samples if x.split == s]
        if not ss:
            continue
        valid = np.array([(s, x.index) in written for x in ss])
        store.array(s, "valid")[:] = valid
        store.array(s, "loc")[:] = np.array([x.window.as_tuple() for x in ss], dtype=np.int64)
        store.array(s, "date")[:] = np.array([x.date_index for x in ss], dtype=np.int16)
        counts[s] = int(valid.sum())
        if config.mode == "patches":
            y = np.array([x.label for x in ss], dtype=np.uint8)
            store.array(s, "y")[:] = y
            cls, n = np.unique(y[valid], return_counts=True)
            class_counts[s] = {str(int(c)): int(k) for c, k in zip(cls, n)}
        else:
            cc: dict[str, int] = {}
            for r in results:
                for c, k in r.class_pixels.get(s, {}).items():
                    cc[str(c)] = cc.get(str(c), 0) + k
            class_counts[s] = dict(sorted(cc.items(), key=lambda kv: int(kv[0])))
    band_stats: dict[str, dict[str, list[float]]] = {}
    for m in mods:
        parts = [r.sums["train"][m.name] for r in results if m.name in r.sums.get("train", {})]
        n = sum(p[2] for p in parts)
        if n == 0:
            log.warning("no valid train pixels for %s: band statistics left empty", m.name)
            continue
        s1 = np.sum([p[0] for p in parts], axis=0)
        s2 = np.sum([p[1] for p in parts], axis=0)
        mean = s1 / n
        std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
        band_stats[m.name] = {"mean": mean.tolist(), "std": std.tolist()}
    info = StoreInfo(
        scene=scene.to_dict(),
        config=config.model_dump(mode="json"),
        mode=config.mode,
        modalities=tuple(m.name for m in mods),
        sample_size=dict(plan.sizes),
        classes=tuple({"id": c.id, "name": c.name, "color": c.color} for c in scene.classes),
        dates=tuple(scene.acquisitions[i].date for i in acq_idx),
        counts=counts,
        class_counts=class_counts,
        band_stats=band_stats,
        split=plan.split_record,
        skipped_nodata=skipped,
        warnings=plan.warnings,
    )
    store.set_info(info)
    log.info("tiling of %s done: %s samples per split, %d all-nodata skipped", scene.name, counts, skipped)
    return info
