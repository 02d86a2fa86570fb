"""The tiling job: cut an AOI of a scene into tiles or patches in a Zarr sample store, on a Dask cluster.

The driver plans from geometry only (windows, patch centres from a label scan that itself runs in Dask tasks),
pre-creates the store's arrays (layout: :mod:`core.tilestore`), and submits tasks that read their windows with
rasterio *inside the workers* and write their samples straight to the store. Tasks return only small metadata
(which slots were written, per-band sums / sums of squares, per-class pixel counts), so the driver never holds
pixel data. A tile task holds two tiles at a time (one being written by a helper thread while the next is read); a
patch task cuts exactly one chunk of its split (a contiguous, chunk-aligned range of slots, so no two tasks write
the same chunk) and holds that chunk (<= ``PATCH_CHUNK_BYTES`` per modality) until it writes it. Add GDAL's block
cache (capped at ``GDAL_CACHE_BYTES``): worker memory is bounded by sample or chunk size x tasks in flight,
whatever the raster size (benchmarks/tiling.py: ~220 MiB peak RSS per worker for 10k and 20k px rasters alike).

Split rules: date split: every sample of an acquisition goes to that date's split. Spatial split: tiles are laid
out inside block cores (:mod:`core.splits`), so a tile never crosses a block boundary or the buffer (such tiles are
never made: *dropped*, not clipped); patch centres must lie in a core. Tile labels outside the AOI polygon and at
nodata pixels of the label-grid modality are set to 0 (unlabelled), so training never sees them. Stored pixels are
the raw raster values (nodata included).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from distributed import Client, as_completed
from rasterio.features import geometry_mask
from shapely.geometry.base import BaseGeometry

from core.configs import TileJobConfig
from core.errors import ConfigError, JobCancelledError, JobFailedError
from core.geometry import resolve_aoi
from core.reader import LabelReader, ModalityReader, convert_window
from core.sampling import centre_bounds, modality_patch_size, patch_window, sample_centres, scan_labels, scan_strips
from core.scene import Modality, Scene
from core.splits import SPLITS, date_record, date_split, spatial_split
from core.tilestore import ChunkWriter, StoreInfo, TileStore, patches_per_chunk
from core.tiling import PixelWindow, block_grid, sliding_windows, windows_in_geometry

log = logging.getLogger(__name__)

MAX_SAMPLES_PER_TASK = 64
GDAL_CACHE_BYTES = 128 * 2**20
"""GDAL block cache while a task reads: enough for neighbouring tiles to share blocks, and bounded (GDAL's default
is 5% of RAM per worker process, which would make worker memory grow with the raster up to that cap)."""


@dataclass(frozen=True)
class PlannedSample:
    """One sample slot: where it is on the label grid, on each modality's grid, its date and split."""

    split: str
    index: int  # slot in the split's arrays
    date_index: int
    window: PixelWindow  # label grid (tile, or the patch window around the centre)
    windows: dict[str, PixelWindow]  # modality -> window on its own grid
    label: int = 0  # patches: class of the centre pixel


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


def _tile_sample_size(tile: int, label: Modality, m: Modality) -> int:
    size = tile * label.resolution / m.resolution
    if abs(size - round(size)) > 1e-6:
        raise ConfigError(f"tile_size {tile} px on {label.name!r} is {size:g} px on {m.name!r}; use a tile size that "
                          f"is a multiple of {m.resolution / label.resolution:g}")
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


def plan_samples(config: TileJobConfig, scene: Scene, client: Client | None = None) -> TilePlan:
    """Plan every sample of the job (driver side; patches mode scans labels in Dask tasks on ``client``).

    Raises:
        AOIError, ConfigError, GridMismatchError: the AOI, configuration or grids do not allow the job.
    """
    mods, acq_idx = _select(config, scene)
    label = scene.primary
    aoi = resolve_aoi(config.aoi, scene)
    dates = tuple(scene.acquisitions[i].date for i in acq_idx)
    spatial = config.split.method == "spatial"
    size = config.tiling.tile_size if config.mode == "tiles" else config.sampling.patch_size
    split_obj = None
    if spatial:
        buffer = config.split.buffer if config.split.buffer is not None else size
        used = windows_in_geometry([b for b in block_grid(label.height, label.width, config.split.block_size)
                                    if b.intersection(aoi.bbox)], aoi.geometry)
        split_obj = spatial_split(label.height, label.width, config.split, buffer, used)
        record = split_obj.record(config.split.seed, config.split.fractions)
        by_date = None
    else:
        by_date = date_split(dates, config.split)
        record = date_record(by_date, config.split)

    planned: list[tuple[str, int, PixelWindow, int]] = []  # split, date index, label window, class
    if config.mode == "tiles":
        sizes = {m.name: _tile_sample_size(size, label, m) for m in mods}
        full = PixelWindow(0, 0, label.height, label.width)
        if split_obj is not None:
            tiles = split_obj.tiles(aoi.bbox, size, config.tiling.stride)
            kept = set(windows_in_geometry([w for w, _ in tiles], aoi.geometry))
            tiles = [(w, s) for w, s in tiles if w in kept]
        else:
            tiles = [(w, "") for w in windows_in_geometry(
                sliding_windows(aoi.bbox, size, config.tiling.stride, bounds=full), aoi.geometry)]
        for di, d in enumerate(dates):
            planned += [(s or by_date[d], di, w, 0) for w, s in tiles]  # type: ignore[index]
    else:
        if client is None:
            raise ValueError("patches mode needs a Dask client for the label scan")
        sizes = {m.name: modality_patch_size(size, label, m) for m in mods}
        allowed = centre_bounds(size, label, [label, *mods])  # the label patch (loc) must fit too
        if allowed is None:
            raise ConfigError(f"patch_size {size} does not fit inside the {label.height}x{label.width} px scene; "
                              "use a smaller patch")
        per_class, seed = config.sampling.per_class, config.sampling.seed
        for di, ai in enumerate(acq_idx):
            acq = scene.acquisitions[ai]
            if not acq.labels:
                log.warning("acquisition %s has no labels: no patches from it", acq.date)
                continue
            futs = [client.submit(scan_labels, acq.labels, strip, aoi.geometry, allowed, split_obj, per_class,  # Dask:
                                  seed * 1_000_003 + di * 10_007 + k, pure=False)
                    for k, strip in enumerate(scan_strips(aoi.bbox))]
            centres = sample_centres(client.gather(futs), per_class, seed + di)  # Dask: small, sparse results
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


@dataclass
class TaskResult:
    """Small metadata a cutting task returns; no pixels."""

    written: list[tuple[str, int]]
    skipped: list[tuple[str, int]]
    sums: dict[str, dict[str, list[np.ndarray]]]  # split -> modality -> [sum, sumsq, n] per band
    class_pixels: dict[str, dict[int, int]]  # split -> class -> labelled pixels (tiles)


def cut_samples(store_path: str, scene_dict: dict[str, Any], acq_indices: list[int], mode: str,
                sizes: dict[str, int], y_size: int, items: list[PlannedSample], aoi: BaseGeometry | None) -> TaskResult:
    """Read and write ``items`` (runs in a Dask worker): rasterio windowed reads -> whole Zarr chunks.

    Args:
        store_path: the store, its split arrays already created.
        scene_dict: ``Scene.to_dict()``; acq_indices: scene acquisition index per job date index.
        mode: ``tiles`` or ``patches``; sizes: sample side per modality; y_size: tile label side.
        items: the samples to cut (tiles: any; patches: consecutive slots of one split covering whole chunks of
            its ``x_*`` arrays, see :func:`_chunk_groups`); aoi: AOI in label-grid pixel coordinates (tile labels
            outside are zeroed).

    A sample whose window is all nodata in any modality is not written (its slot stays ``valid=False``, zeros).
    """
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        return _cut(store_path, scene_dict, acq_indices, mode, sizes, y_size, items, aoi)


def _cut(store_path: str, scene_dict: dict[str, Any], acq_indices: list[int], mode: str,
         sizes: dict[str, int], y_size: int, items: list[PlannedSample], aoi: BaseGeometry | None) -> TaskResult:
    import zarr

    scene = Scene.from_dict(scene_dict)
    label_mod = scene.primary
    readers: dict[tuple[int, str], ModalityReader] = {}
    label_readers: dict[int, LabelReader | None] = {}
    arrays: dict[tuple[str, str], ChunkWriter] = {}
    res = TaskResult([], [], {}, {})

    def array(split: str, name: str) -> ChunkWriter:
        if (split, name) not in arrays:
            arrays[split, name] = ChunkWriter(zarr.open_array(f"{store_path}/{split}/{name}", mode="r+"))
        return arrays[split, name]

    writer = ThreadPoolExecutor(max_workers=1)  # overlaps the Zarr write of one sample with the next read
    pending: Future[None] | None = None

    def write(split: str, index: int, samples: dict[str, np.ndarray], y: np.ndarray | None) -> None:
        for m, x in samples.items():
            array(split, f"x_{m}").write(index, x)
        if y is not None:
            array(split, "y").write(index, y)

    # Tiles: two buffer sets, alternating: one is being written by the writer thread while the next sample is read.
    buffers: list[dict[str, np.ndarray]] = [{}, {}]
    # Patches: the task's chunk, one block per modality; sample k of the task is row k, written once at the end.
    chunked = mode == "patches" and bool(items)
    start = _check_chunk_range(items) if chunked else 0
    blocks = {m: np.zeros((len(items), sizes[m], sizes[m], scene.modality(m).band_count),
                          dtype=scene.modality(m).dtype) for m in sizes} if chunked else {}

    def buffer(slot: int, m: str) -> np.ndarray:
        if chunked:
            return blocks[m][slot]
        if m not in buffers[slot]:
            mod = scene.modality(m)
            buffers[slot][m] = np.zeros((sizes[m], sizes[m], mod.band_count), dtype=mod.dtype)
        return buffers[slot][m]

    slot = 0
    try:
        for k, it in enumerate(items):
            if chunked:
                slot = k
            acq = scene.acquisitions[acq_indices[it.date_index]]
            data: dict[str, np.ndarray] = {}
            valids: dict[str, np.ndarray] = {}
            for m, w in it.windows.items():
                key = (it.date_index, m)
                if key not in readers:
                    readers[key] = ModalityReader(acq.files[m], scene.modality(m)).__enter__()
                data[m], valids[m] = readers[key].read_channels_last(  # clipped windows: zero-padded
                    w, sizes[m], out=buffer(slot, m))
            if any(not v.any() for v in valids.values()):
                res.skipped.append((it.split, it.index))
                if chunked:  # an empty slot reads as zeros, as if never written
                    for m in data:
                        blocks[m][k] = 0
                continue
            for m, x in data.items():
                _accumulate(res.sums.setdefault(it.split, {}), m, x, valids[m])
            ypad = None
            if mode == "tiles":
                if it.date_index not in label_readers:
                    label_readers[it.date_index] = LabelReader(acq.labels).__enter__() if acq.labels else None
                lr = label_readers[it.date_index]
                if lr is not None:  # unlabelled acquisitions keep y = 0 (the fill value)
                    ypad = _tile_labels(lr, it.window, aoi, valids.get(label_mod.name), y_size,
                                        res.class_pixels.setdefault(it.split, {}))
            res.written.append((it.split, it.index))
            if chunked:
                continue
            if pending is not None:
                pending.result()  # at most one sample waits for its write: memory stays ~2 samples
            pending = writer.submit(write, it.split, it.index, data, ypad)
            slot = 1 - slot
        if pending is not None:
            pending.result()
        for m, block in blocks.items():
            array(items[0].split, f"x_{m}").write_range(start, block)
    finally:
        writer.shutdown(wait=True)
        for r in readers.values():
            r.__exit__(None, None, None)
        for lr in label_readers.values():
            if lr is not None:
                lr.__exit__()
    return res


def _tile_labels(reader: LabelReader, w: PixelWindow, aoi: BaseGeometry | None, valid: np.ndarray | None,
                 y_size: int, class_pixels: dict[int, int]) -> np.ndarray:
    """Labels of tile ``w`` padded to ``y_size``; 0 outside the AOI and at nodata pixels; counts added up."""
    y = reader.read(w)
    if aoi is not None:
        y[geometry_mask([aoi], out_shape=w.shape, transform=Affine.translation(w.col_off, w.row_off))] = 0
    if valid is not None:
        y[~valid] = 0
    ypad = np.zeros((y_size, y_size), np.uint8)
    ypad[:w.height, :w.width] = y
    counts = np.bincount(y.ravel(), minlength=1)
    for cls in np.flatnonzero(counts[1:]) + 1:
        class_pixels[int(cls)] = class_pixels.get(int(cls), 0) + int(counts[cls])
    return ypad


def _stats_stride(x: np.ndarray) -> int:
    """Pixel step of the band-statistics sample: 1 (every pixel) up to 128 px, then ~128 x 128 pixels per sample."""
    return max(1, min(x.shape[0], x.shape[1]) // 128)


def _accumulate(acc: dict[str, list[Any]], modality: str, x: np.ndarray, valid: np.ndarray) -> None:
    """Add per-band sum, sum of squares and count of the valid pixels of ``x`` (h, w, bands) to ``acc``.

    Large samples are subsampled on a regular grid (every k-th pixel of every k-th row, k = side // 128): the mean
    and std used for normalisation do not need every pixel, and exact float64 sums of every pixel of a 512 px
    tile cost as much as reading it.
    """
    k = _stats_stride(x)
    h, w = valid.shape
    v = valid[::k, ::k]
    px = x[:h:k, :w:k][v].astype(np.float64)  # (n, bands)
    a = acc.setdefault(modality, [0.0, 0.0, 0])
    a[0] = a[0] + px.sum(axis=0)
    a[1] = a[1] + np.einsum("ij,ij->j", px, px)
    a[2] += int(v.sum())


def _check_chunk_range(items: list[PlannedSample]) -> int:
    """The first slot of ``items``, which must be consecutive slots of one split (a patch task's chunk range)."""
    start, split = items[0].index, items[0].split
    if any(it.split != split or it.index != start + k for k, it in enumerate(items)):
        raise ValueError(f"a patch task needs consecutive slots of one split; got {len(items)} samples from "
                         f"{items[0].split}[{start}] to {items[-1].split}[{items[-1].index}] with gaps or splits mixed")
    return start


def _chunk_groups(samples: list[PlannedSample], per_chunk: dict[str, int]) -> list[list[PlannedSample]]:
    """One group per ``x_*`` chunk: samples ``k * L`` .. ``(k + 1) * L - 1`` of a split (``L = per_chunk[split]``).

    Each patch task thus writes whole chunks that no other task touches. ``samples`` are the plan's, in slot order
    within each split.
    """
    by_split: dict[str, list[PlannedSample]] = {}
    for x in samples:
        by_split.setdefault(x.split, []).append(x)
    return [ss[k:k + per_chunk[s]] for s, ss in by_split.items() for k in range(0, len(ss), per_chunk[s])]


def _groups(samples: list[PlannedSample], n_threads: int) -> list[list[PlannedSample]]:
    """Equal-size groups (+-1) of neighbouring samples, >= 4 per thread so the scheduler can balance them."""
    if not samples:
        return []
    per = max(1, min(MAX_SAMPLES_PER_TASK, math.ceil(len(samples) / (4 * max(1, n_threads)))))
    n = math.ceil(len(samples) / per)
    return [list(g) for g in np.array_split(np.array(samples, dtype=object), n)]


def run_tile_job(config: TileJobConfig, scene: Scene, client: Client, store_path: Path,
                 progress: Callable[[int, int], None] | None = None,
                 cancelled: Callable[[], bool] | None = None) -> StoreInfo:
    """Cut ``config``'s AOI of ``scene`` into a sample store at ``store_path`` using the Dask ``client``.

    Args:
        config: the job (mode, AOI, tiling / sampling, split).
        scene: the scene (its files are verified against their registration fingerprints first when the registry
            is available).
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
    try:
        from core.registry import verify_files

        verify_files(scene)
    except ImportError:
        log.debug("core.registry not available: files not verified against their fingerprints")
    mods, acq_idx = _select(config, scene)
    plan = plan_samples(config, scene, client)
    samples, sizes, aoi = plan.samples, plan.sizes, plan.aoi
    log.info("tiling %s: %d samples planned (%s)", scene.name, len(samples), config.mode)
    if not samples:
        raise ConfigError(f"the job has no samples: mode {config.mode!r}, tile/patch size "
                          f"{config.tiling.tile_size if config.mode == 'tiles' else config.sampling.patch_size} px, "
                          f"split {config.split.method!r}; use a larger AOI, smaller tiles or larger split blocks")
    n_per_split = {s: sum(1 for x in samples if x.split == s) for s in SPLITS}
    store = TileStore.create(store_path)
    label = scene.primary
    y_size = sizes.get(label.name, config.tiling.tile_size)
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
    total, done = len(samples), 0
    results: list[TaskResult] = []
    scene_dict = scene.to_dict()
    max_in_flight = 2 * max(1, sum(client.nthreads().values()))  # Dask: bounds queued work, keeps cancel prompt
    pending = iter(groups)

    def submit(group: list[PlannedSample]) -> Any:
        return client.submit(cut_samples, str(store_path), scene_dict, acq_idx, config.mode, sizes, y_size, group, aoi,
                             pure=False)  # Dask: reads + writes happen in the worker

    first = [submit(g) for _, g in zip(range(max_in_flight), pending)]
    sizes_of = {f.key: len(g) for f, g in zip(first, groups)}
    ac = as_completed(first)
    for fut in ac:
        if cancelled is not None and cancelled():
            for f in list(ac.futures):
                f.cancel()
            raise JobCancelledError(f"tiling of scene {scene.name!r} cancelled after {done} of {total} samples")
        try:
            results.append(fut.result())
        except Exception as exc:
            for f in list(ac.futures):
                f.cancel()
            # Dask hands back exceptions it cannot rebuild as plain Exception('ErrorName("message")').
            what = str(exc) if type(exc) is Exception else f"{type(exc).__name__}: {exc}"
            raise JobFailedError(f"a tiling task failed: {what}; fix the cause and run the job again") from exc
        done += sizes_of.pop(fut.key)
        if progress is not None:
            progress(done, total)
        nxt = next(pending, None)
        if nxt is not None:
            f = submit(nxt)
            sizes_of[f.key] = len(nxt)
            ac.add(f)
    return _finish(config, scene, store, plan, results, mods, acq_idx)


def _finish(config: TileJobConfig, scene: Scene, store: TileStore, plan: TilePlan, results: list[TaskResult],
            mods: list[Modality], acq_idx: list[int]) -> StoreInfo:
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
        scene=scene.to_dict(), config=config.model_dump(mode="json"), mode=config.mode,
        modalities=tuple(m.name for m in mods), sample_size=dict(plan.sizes),
        classes=tuple({"id": c.id, "name": c.name, "color": c.color} for c in scene.classes),
        dates=tuple(scene.acquisitions[i].date for i in acq_idx), counts=counts, class_counts=class_counts,
        band_stats=band_stats, split=plan.split_record, skipped_nodata=skipped, warnings=plan.warnings,
    )
    store.set_info(info)
    log.info("tiling of %s done: %s samples per split, %d all-nodata skipped", scene.name, counts, skipped)
    return info
