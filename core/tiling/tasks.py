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
from core.geo.windows import PixelWindow
from core.tiling.store import ChunkWriter

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


def cut_samples(
    store_path: str,
    scene_dict: dict[str, Any],
    acq_indices: list[int],
    mode: str,
    sizes: dict[str, int],
    y_size: int,
    items: list[PlannedSample],
    aoi: BaseGeometry | None,
) -> TaskResult:
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


def _cut(
    store_path: str,
    scene_dict: dict[str, Any],
    acq_indices: list[int],
    mode: str,
    sizes: dict[str, int],
    y_size: int,
    items: list[PlannedSample],
    aoi: BaseGeometry | None,
) -> TaskResult:
    cutter = _Cutter(store_path, Scene.from_dict(scene_dict), acq_indices, sizes, y_size, aoi)
    try:
        if mode == "patches" and items:
            cutter.cut_chunk(items)
        else:
            cutter.cut_tiles(items, with_labels=mode == "tiles")
    finally:
        cutter.close()
    return cutter.result


class _Cutter:
    """One task's open readers, Zarr arrays and buffers; reads samples and writes them to the store."""

    def __init__(
        self,
        store_path: str,
        scene: Scene,
        acq_indices: list[int],
        sizes: dict[str, int],
        y_size: int,
        aoi: BaseGeometry | None,
    ) -> None:
        self.store_path, self.scene, self.acq_indices = store_path, scene, acq_indices
        self.sizes, self.y_size, self.aoi = sizes, y_size, aoi
        self.readers: dict[tuple[int, str], ModalityReader] = {}
        self.label_readers: dict[int, LabelReader | None] = {}
        self.arrays: dict[tuple[str, str], ChunkWriter] = {}
        self.result = TaskResult([], [], {}, {})

    def array(self, split: str, name: str) -> ChunkWriter:
        import zarr

        if (split, name) not in self.arrays:
            self.arrays[split, name] = ChunkWriter(zarr.open_array(f"{self.store_path}/{split}/{name}", mode="r+"))
        return self.arrays[split, name]

    def zeros(self, m: str, n: int | None = None) -> np.ndarray:
        mod = self.scene.modality(m)
        shape = (self.sizes[m], self.sizes[m], mod.band_count)
        return np.zeros(shape if n is None else (n, *shape), dtype=mod.dtype)

    def read(
        self, it: PlannedSample, out: dict[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
        """The sample's pixels (into ``out``, zero-padded where clipped) and validity, or None (skipped: a
        modality is all nodata). Band statistics of a read sample are added to the result."""
        acq = self.scene.acquisitions[self.acq_indices[it.date_index]]
        data: dict[str, np.ndarray] = {}
        valids: dict[str, np.ndarray] = {}
        for m, w in it.windows.items():
            key = (it.date_index, m)
            if key not in self.readers:
                self.readers[key] = ModalityReader(acq.files[m], self.scene.modality(m)).__enter__()
            data[m], valids[m] = self.readers[key].read_channels_last(w, self.sizes[m], out=out[m])
        if any(not v.any() for v in valids.values()):
            self.result.skipped.append((it.split, it.index))
            return None
        for m, x in data.items():
            _accumulate(self.result.sums.setdefault(it.split, {}), m, x, valids[m])
        self.result.written.append((it.split, it.index))
        return data, valids

    def labels(self, it: PlannedSample, valids: dict[str, np.ndarray]) -> np.ndarray | None:
        """The tile's labels padded to ``y_size`` (None for an unlabelled acquisition: y stays 0, the fill)."""
        if it.date_index not in self.label_readers:
            acq = self.scene.acquisitions[self.acq_indices[it.date_index]]
            self.label_readers[it.date_index] = LabelReader(acq.labels).__enter__() if acq.labels else None
        reader = self.label_readers[it.date_index]
        if reader is None:
            return None
        return _tile_labels(
            reader,
            it.window,
            self.aoi,
            valids.get(self.scene.primary.name),
            self.y_size,
            self.result.class_pixels.setdefault(it.split, {}),
        )

    def cut_chunk(self, items: list[PlannedSample]) -> None:
        """Patches: the task's chunk, one block per modality (sample k is row k), written once at the end."""
        start = _check_chunk_range(items)
        blocks = {m: self.zeros(m, len(items)) for m in self.sizes}
        for k, it in enumerate(items):
            if self.read(it, {m: b[k] for m, b in blocks.items()}) is None:
                for b in blocks.values():  # an empty slot reads as zeros, as if never written
                    b[k] = 0
        for m, block in blocks.items():
            self.array(items[0].split, f"x_{m}").write_range(start, block)

    def cut_tiles(self, items: list[PlannedSample], with_labels: bool) -> None:
        """Tiles: two buffer sets, alternating: one is written by a helper thread while the next is read."""
        buffers = [{m: self.zeros(m) for m in self.sizes} for _ in range(2)]
        writer = ThreadPoolExecutor(max_workers=1)  # overlaps the Zarr write of one sample with the next read
        pending: Future[None] | None = None
        slot = 0
        try:
            for it in items:
                sample = self.read(it, buffers[slot])
                if sample is None:
                    continue
                data, valids = sample
                y = self.labels(it, valids) if with_labels else None
                if pending is not None:
                    pending.result()  # at most one sample waits for its write: memory stays ~2 samples
                pending = writer.submit(self.write, it.split, it.index, data, y)
                slot = 1 - slot
            if pending is not None:
                pending.result()
        finally:
            writer.shutdown(wait=True)

    def write(self, split: str, index: int, samples: dict[str, np.ndarray], y: np.ndarray | None) -> None:
        for m, x in samples.items():
            self.array(split, f"x_{m}").write(index, x)
        if y is not None:
            self.array(split, "y").write(index, y)

    def close(self) -> None:
        for r in self.readers.values():
            r.__exit__(None, None, None)
        for lr in self.label_readers.values():
            if lr is not None:
                lr.__exit__()


def _tile_labels(
    reader: LabelReader,
    w: PixelWindow,
    aoi: BaseGeometry | None,
    valid: np.ndarray | None,
    y_size: int,
    class_pixels: dict[int, int],
) -> np.ndarray:
    """Labels of tile ``w`` padded to ``y_size``; 0 outside the AOI and at nodata pixels; counts added up."""
    y = reader.read(w)
    if aoi is not None:
        y[geometry_mask([aoi], out_shape=w.shape, transform=Affine.translation(w.col_off, w.row_off))] = 0
    if valid is not None:
        y[~valid] = 0
    ypad = np.zeros((y_size, y_size), np.uint8)
    ypad[: w.height, : w.width] = y
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
        raise ValueError(
            f"a patch task needs consecutive slots of one split; got {len(items)} samples from "
            f"{items[0].split}[{start}] to {items[-1].split}[{items[-1].index}] with gaps or splits mixed"
        )
    return start
