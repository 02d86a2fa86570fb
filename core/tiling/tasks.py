"""The tiling job's worker side: the Dask tasks that read sample windows and write them to the sample store.

:func:`cut_samples` runs inside a Dask worker: it reads each planned sample's windows with rasterio and writes the
samples straight to the Zarr store (layout: :mod:`core.tiling.store`), returning only small metadata
(:class:`TaskResult`: which slots were written, per-band sums / sums of squares, per-class pixel counts). A tile
task holds two tiles at a time (one being written by a helper thread while the next is read); a patch task cuts
exactly one chunk of its split (a contiguous, chunk-aligned range of slots, so no two tasks write the same chunk)
and holds that chunk (<= ``PATCH_CHUNK_BYTES`` per modality) until it writes it. Add GDAL's block cache (capped at
``GDAL_CACHE_BYTES``): worker memory is bounded by sample or chunk size x tasks in flight, whatever the raster size
(benchmarks/tiling.py: ~220 MiB peak RSS per worker for 10k and 20k px rasters alike).

Tile labels outside the AOI polygon and at nodata pixels of the label-grid modality are set to 0 (unlabelled).
Stored pixels are the raw raster values (nodata included). Planning and orchestration: :mod:`core.tiling.job`.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.features import geometry_mask
from shapely.geometry.base import BaseGeometry

from core.data.reader import LabelReader, ModalityReader
from core.data.scene import Scene
from core.tiling.store import ChunkWriter
from core.sampling.windows import PixelWindow

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
            its ``x_*`` arrays, see :func:`core.tiling.job._chunk_groups`); aoi: AOI in label-grid pixel
            coordinates (tile labels outside are zeroed).

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
