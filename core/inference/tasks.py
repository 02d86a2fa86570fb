"""Worker-side inference tasks that run at the speed of a hand-written loop.

Where a worker's time went before (profiled on this project's 2-core machine, U-Net width 8, 256 px tiles, 32 px
overlap, 10-band uint16 GeoTIFF with 512 px deflate blocks; CPU ms per window, TensorFlow on 1 thread):

- the model call: ~16.5 (``predict_on_batch`` and a compiled ``tf.function`` cost the same CPU);
- reading: ~44 when every window opens the file anew (each window decodes 1-4 whole 512 px blocks: ~13.6 ms
  each, and a closed dataset drops its decoded blocks), ~1.2 with the file kept open (every block decoded about
  once, then served from GDAL's block cache);
- normalisation to float32 ~1.2, argmax ~0.8, nodata mask ~0.1, writing the core ~0.3 (driver side).

So the tasks here keep each file open for the life of the worker process (:func:`cached_reader`, one handle per
thread and file, reopened when the file changes; GDAL's block cache is bounded by ``GDAL_CACHEMAX`` in the worker
environment, see :func:`core.distributed.cluster.worker_env`), and a dense task predicts a *chunk* of neighbouring
windows: one read of the chunk's bounding box per modality, one normalisation of it (windows overlap, so this is
less work than normalising every window), and one model call on the batch of its tiles.

Patch models built by :func:`core.models.patch_fcn.build_patch_fcn` are evaluated densely
(:func:`predict_patch_dense`): one model call over the core plus half a patch on each side gives every pixel the
class its own patch would get.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.data import cog
from core.data.reader import ModalityReader
from core.data.scene import Acquisition, Modality, Scene
from core.errors import ConfigError, JobFailedError
from core.inference.runner import cached_runner
from core.models.bundle import ModelMeta
from core.sampling.windows import PixelWindow

log = logging.getLogger(__name__)

MAX_OPEN_READERS = 16
"""Open modality readers kept per thread (least recently used closed first)."""

_local = threading.local()

Pair = tuple[PixelWindow, PixelWindow]
"""``(read window, core)`` of one dense tile, both on the label grid."""

Result = tuple[PixelWindow, np.ndarray, np.ndarray | None]
"""``(core, classes, confidence)``: uint8 ``core.shape`` arrays (confidence None when not asked for)."""


def _file_key(paths: Sequence[str]) -> tuple[Any, ...]:
    return tuple((os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in paths)


def cached_reader(paths: Sequence[str], modality: Modality) -> ModalityReader:
    """An open :class:`ModalityReader` for ``paths``, kept open across tasks in this thread.

    Reopened when a file's mtime or size changes; at most :data:`MAX_OPEN_READERS` per thread.
    """
    cache: OrderedDict[tuple[Any, ...], tuple[tuple[Any, ...], ModalityReader]] = getattr(_local, "readers", None) \
        or OrderedDict()
    _local.readers = cache
    key, stamp = (tuple(paths), modality), _file_key(paths)
    hit = cache.get(key)
    if hit is not None and hit[0] == stamp:
        cache.move_to_end(key)
        return hit[1]
    if hit is not None:
        hit[1].__exit__(None, None, None)
    reader = ModalityReader(paths, modality).__enter__()
    cache[key] = (stamp, reader)
    while len(cache) > MAX_OPEN_READERS:
        cache.popitem(last=False)[1][1].__exit__(None, None, None)
    return reader


def read_bands(acq: Acquisition, mod: Modality, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
    """A window of a modality's stacked bands as float32 ``(height, width, bands)``; NaN for nodata and off-raster.

    The window is in the modality's own pixel grid and may extend past the raster on any side (same contract as
    :func:`core.inference.predict.read_bands`, read through :func:`cached_reader`).
    """
    out = np.full((height, width, mod.band_count), np.nan, dtype=np.float32)
    r0, c0 = max(0, row_off), max(0, col_off)
    r1, c1 = min(mod.height, row_off + height), min(mod.width, col_off + width)
    if r1 <= r0 or c1 <= c0:
        return out
    data, valid = cached_reader(acq.files[mod.name], mod).read(PixelWindow(r0, c0, r1 - r0, c1 - c0))
    part = out[r0 - row_off:r1 - row_off, c0 - col_off:c1 - col_off]
    part[...] = np.moveaxis(data, 0, -1)
    part[~valid] = np.nan
    return out


def grid_map(label: Modality, other: Modality) -> tuple[float, float, float, float]:
    """``(scale_y, off_y, scale_x, off_x)``: label-grid pixel coordinate -> ``other``'s pixel coordinate."""
    from affine import Affine

    a = ~Affine(*other.transform) @ Affine(*label.transform)
    return a.e, a.f, a.a, a.c


def to_classes(probs: np.ndarray, meta: ModelMeta, valid: np.ndarray,
               confidence: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """``(..., K)`` probabilities -> uint8 class ids (0 where not valid) and uint8 percent confidence (255)."""
    ids = np.asarray(meta.class_ids, dtype=np.uint8)
    classes = np.where(valid, ids[np.argmax(probs, axis=-1)], cog.CLASS_NODATA).astype(np.uint8)
    conf = None
    if confidence:
        pct = np.clip(np.rint(np.max(probs, axis=-1) * 100), 0, 100).astype(np.uint8)
        conf = np.where(valid, pct, cog.CONFIDENCE_NODATA).astype(np.uint8)
    return classes, conf


def bounding_box(windows: Sequence[PixelWindow]) -> PixelWindow:
    """The smallest window holding every window of ``windows``."""
    r0, c0 = min(w.row_off for w in windows), min(w.col_off for w in windows)
    return PixelWindow(r0, c0, max(w.row_end for w in windows) - r0, max(w.col_end for w in windows) - c0)


def _modality_box(label: Modality, mod: Modality, box: PixelWindow) -> tuple[int, int, int, int]:
    """``box`` (label grid) on ``mod``'s grid: ``(row_off, col_off, height, width)`` rounded to whole pixels."""
    sy, oy, sx, ox = grid_map(label, mod)
    return (round(box.row_off * sy + oy), round(box.col_off * sx + ox), round(box.height * sy),
            round(box.width * sx))


def _read_chunk(scene: Scene, date: str | None, meta: ModelMeta,
                box: PixelWindow) -> tuple[list[np.ndarray], np.ndarray]:
    """Normalised inputs (per modality, on its grid) and the label-grid validity of ``box``.

    A label pixel is valid when, in every modality, the pixel holding its centre has no nodata band.
    """
    acq, label = scene.acquisition(date), scene.primary
    valid = np.ones(box.shape, dtype=bool)
    inputs = []
    for name in meta.modalities:
        mod = scene.modality(name)
        sy, oy, sx, ox = grid_map(label, mod)
        r_m, c_m, h_m, w_m = _modality_box(label, mod, box)
        x = read_bands(acq, mod, r_m, c_m, h_m, w_m)
        rows = np.clip(np.floor((np.arange(box.height) + box.row_off + 0.5) * sy + oy).astype(int) - r_m, 0, h_m - 1)
        cols = np.clip(np.floor((np.arange(box.width) + box.col_off + 0.5) * sx + ox).astype(int) - c_m, 0, w_m - 1)
        valid &= ~np.isnan(x).any(axis=-1)[np.ix_(rows, cols)]
        inputs.append(meta.normalise(name, x))
    return inputs, valid


def predict_dense_chunk(bundle_dir: str, scene: Scene, date: str | None, pairs: Sequence[Pair],
                        confidence: bool = False) -> list[Result]:
    """Dask task: predict a chunk of neighbouring dense tiles; one read, one normalisation, one model call.

    Args:
        bundle_dir: dense model bundle.
        scene, date: the imagery.
        pairs: ``(read window, core)`` per tile, all read windows of one size (the model's tile).
        confidence: also return the max class probability in percent.

    Returns:
        One :data:`Result` per pair, in order; classes 0 where any modality's input is nodata.

    Raises:
        JobFailedError: the model does not return one prediction per label pixel of its tile.
    """
    runner = cached_runner(bundle_dir)
    meta, label = runner.meta, scene.primary
    box = bounding_box([read for read, _ in pairs])
    inputs, valid = _read_chunk(scene, date, meta, box)
    batches = []
    for m, name in enumerate(meta.modalities):
        r_b, c_b, _, _ = _modality_box(label, scene.modality(name), box)
        tiles = []
        for read, _ in pairs:
            r, c, h, w = _modality_box(label, scene.modality(name), read)
            tiles.append(inputs[m][r - r_b:r - r_b + h, c - c_b:c - c_b + w])
        batches.append(np.stack(tiles))
    probs = runner.probabilities(batches)
    tile = pairs[0][0].shape
    if probs.shape[1:3] != tile:
        raise JobFailedError(f"dense model {bundle_dir} returned {probs.shape[1:3]} pixels for a {tile} tile; "
                             "a dense model must predict on the label grid at the input tile's size")
    out = []
    for i, (read, core) in enumerate(pairs):
        r, c = core.row_off - read.row_off, core.col_off - read.col_off
        rv, cv = core.row_off - box.row_off, core.col_off - box.col_off
        classes, conf = to_classes(probs[i, r:r + core.height, c:c + core.width], meta,
                                   valid[rv:rv + core.height, cv:cv + core.width], confidence)
        out.append((core, classes, conf))
    return out


def predict_patch_dense(bundle_dir: str, scene: Scene, date: str | None, core: PixelWindow,
                        confidence: bool = False) -> list[Result]:
    """Dask task: classify every pixel of ``core`` with a ``patch_fcn`` evaluated densely (one model call).

    Same patch rule and result as the per-patch path (:func:`core.inference.predict.predict_patch_window`): the
    patch of label pixel ``(r, c)`` is ``(r, c) +- P // 2``, off-raster parts are NaN (0 after normalisation),
    pixels whose centre is nodata are class 0. One modality on the label grid only.

    Raises:
        ConfigError: the bundle is not a single-modality ``patch_fcn`` on the label grid.
    """
    runner = cached_runner(bundle_dir)
    meta = runner.meta
    if len(meta.modalities) != 1 or scene.modality(meta.modalities[0]) != scene.primary:
        raise ConfigError(f"dense patch evaluation needs one modality on the label grid; bundle {bundle_dir} reads "
                          f"{list(meta.modalities)} and the label grid is {scene.primary.name!r}")
    dense = runner.dense_twin()
    half = int(meta.sample_size[meta.modalities[0]]) // 2
    acq, mod = scene.acquisition(date), scene.primary
    x = read_bands(acq, mod, core.row_off - half, core.col_off - half, core.height + 2 * half, core.width + 2 * half)
    valid = ~np.isnan(x[half:half + core.height, half:half + core.width]).any(axis=-1)
    probs = dense.probabilities([meta.normalise(meta.modalities[0], x)[None]])[0]
    classes, conf = to_classes(probs, meta, valid, confidence)
    return [(core, classes, conf)]
