"""Worker side of tiled inference: read a window of a scene, apply a bundle, return uint8 classes and confidence.

Every window task has the same signature, ``task(bundle_dir, scene, date, read, core, batch_size, confidence) ->
(core, classes, confidence)``: ``core`` is the block of label-grid pixels the task answers for; ``read`` the window
read around it (dense models: ``core`` plus context; per-pixel models read what their patches need and get
``read == core``). A task's :class:`core.tasks.predictors.WindowPredictor` tells the driver which kind it is, and may offer a *chunk*
task that answers for several neighbouring windows at once. Bundles are loaded once per worker process
(:func:`core.models.bundle.cached_bundle`, keyed by path and content) and called through one compiled function
(:func:`core.inference.runner.cached_runner`).

Where a worker's time went (profiled on this project's 2-core machine: U-Net width 8, 256 px tiles, 32 px overlap,
10-band uint16 GeoTIFF with 512 px deflate blocks; CPU ms per window, TensorFlow on 1 thread; ``python -m
benchmarks.inference --only profile``): the model call ~16.4; reading ~17-44 when every window opened the file
anew (a window decodes 1-4 whole 512 px blocks, ~13.6 ms each, and a closed dataset drops its decoded blocks),
~1.2 with the file kept open (:func:`core.data.reader.cached_reader`); normalisation ~0.8, argmax ~0.5, nodata mask
~0.1. So reads go through readers kept open for the life of the worker, and dense windows are predicted in chunks
(:func:`predict_dense_chunk`): one read and one normalisation of the chunk's box (the windows overlap, so the box
holds fewer pixels than its windows) and one batched model call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from core.data import cog
from core.data.grid import GridMap
from core.data.reader import cached_reader
from core.data.scene import Acquisition, Modality, Scene
from core.errors import ConfigError, JobFailedError
from core.geo.windows import PixelWindow
from core.inference.runner import cached_runner
from core.tasks.predictors import DENSE, DENSE_PATCH, PER_PIXEL, implement_predictor
from core.tasks.predictors import WindowPredictor as WindowPredictor  # re-exported: the driver plans with it

WindowResult = tuple[PixelWindow, np.ndarray, np.ndarray | None]


def read_bands(acq: Acquisition, mod: Modality, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
    """A window of a modality's stacked bands as float32 ``(height, width, bands)``; NaN for nodata and off-raster.

    The window is in the modality's own pixel grid and may extend past the raster on any side; the part inside is
    read through :func:`core.data.reader.cached_reader` (nodata rule: any band at its nodata value or NaN).
    """
    out = np.full((height, width, mod.band_count), np.nan, dtype=np.float32)
    r0, c0 = max(0, row_off), max(0, col_off)
    r1, c1 = min(mod.height, row_off + height), min(mod.width, col_off + width)
    if r1 <= r0 or c1 <= c0:
        return out
    data, valid = cached_reader(acq.files[mod.name], mod).read(PixelWindow(r0, c0, r1 - r0, c1 - c0))
    part = out[r0 - row_off : r1 - row_off, c0 - col_off : c1 - col_off]
    part[...] = np.moveaxis(data, 0, -1)
    part[~valid] = np.nan
    return out


def to_classes(
    probs: np.ndarray, class_ids: tuple[int, ...], valid: np.ndarray, confidence: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(..., K)`` probabilities -> uint8 class ids (0 where not valid) and uint8 percent confidence (255)."""
    ids = np.asarray(class_ids, dtype=np.uint8)
    classes = np.where(valid, ids[np.argmax(probs, axis=-1)], cog.CLASS_NODATA).astype(np.uint8)
    conf = None
    if confidence:
        pct = np.clip(np.rint(np.max(probs, axis=-1) * 100), 0, 100).astype(np.uint8)
        conf = np.where(valid, pct, cog.CONFIDENCE_NODATA).astype(np.uint8)
    return classes, conf


def normalised_bands(
    acq: Acquisition, mod: Modality, meta: Any, row_off: int, col_off: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """A window of a modality normalised with the bundle's statistics, read in as few passes as possible.

    The same values as ``meta.normalise(mod.name, read_bands(...))`` (``(x - mean) / std`` in float32, 0 where
    nodata, non-finite or off-raster), without the NaN round trip: the cast, the subtraction and the division are
    one numpy pass each over the window (measured: ~7 passes before, ~10 % of a U-Net worker's CPU).

    Returns:
        ``(x, valid)``: float32 ``(height, width, bands)`` and bool ``(height, width)`` (False off the raster).
    """
    stats = meta.band_stats[mod.name]
    mean = np.asarray(stats["mean"], dtype=np.float32)
    std = np.asarray(stats["std"], dtype=np.float32)
    std = np.where(std > 0, std, np.float32(1.0))
    x = np.zeros((height, width, mod.band_count), dtype=np.float32)
    valid = np.zeros((height, width), dtype=bool)
    r0, c0 = max(0, row_off), max(0, col_off)
    r1, c1 = min(mod.height, row_off + height), min(mod.width, col_off + width)
    if r1 <= r0 or c1 <= c0:
        return x, valid
    data, ok = cached_reader(acq.files[mod.name], mod).read(PixelWindow(r0, c0, r1 - r0, c1 - c0))
    part = x[r0 - row_off : r1 - row_off, c0 - col_off : c1 - col_off]
    np.subtract(np.moveaxis(data, 0, -1), mean, out=part, dtype=np.float32)
    part /= std
    if np.issubdtype(data.dtype, np.floating):
        ok &= np.isfinite(part).all(axis=-1)
    if not ok.all():
        part[~ok] = 0.0
    valid[r0 - row_off : r1 - row_off, c0 - col_off : c1 - col_off] = ok
    return x, valid


def predict_dense_window(
    bundle_dir: str,
    scene: Scene,
    date: str | None,
    read: PixelWindow,
    core: PixelWindow,
    batch_size: int = 1,
    confidence: bool = True,
) -> WindowResult:
    """Dask task: predict the square read window ``read`` with a dense model and crop it to ``core``.

    ``batch_size`` is not used (one read window is one model call).
    """
    return predict_dense_chunk(bundle_dir, scene, date, [(read, core)], confidence)[0]


def predict_dense_chunk(
    bundle_dir: str,
    scene: Scene,
    date: str | None,
    pairs: Sequence[tuple[PixelWindow, PixelWindow]],
    confidence: bool = True,
) -> list[WindowResult]:
    """Dask task: predict a chunk of neighbouring dense windows; one read, one normalisation, one model call.

    Args:
        pairs: ``(read window, core)`` per window, all read windows of the model's tile size.

    Returns:
        One :data:`WindowResult` per pair, in order (classes 0 where a model input is nodata).

    Raises:
        JobFailedError: the model does not return one prediction per label pixel of its tile.
    """
    runner = cached_runner(bundle_dir)
    meta, acq = runner.meta, scene.acquisition(date)
    box = PixelWindow(
        min(r.row_off for r, _ in pairs),
        min(r.col_off for r, _ in pairs),
        max(r.row_end for r, _ in pairs) - min(r.row_off for r, _ in pairs),
        max(r.col_end for r, _ in pairs) - min(r.col_off for r, _ in pairs),
    )
    valid = np.ones(box.shape, dtype=bool)
    batches = []
    for name in meta.modalities:
        mod = scene.modality(name)
        grid = GridMap.between(scene.primary, mod)
        r_b, c_b, h_b, w_b = grid.covering(box)
        x, ok = normalised_bands(acq, mod, meta, r_b, c_b, h_b, w_b)
        rows = np.clip(grid.centre_rows(np.arange(box.height) + box.row_off) - r_b, 0, h_b - 1)
        cols = np.clip(grid.centre_cols(np.arange(box.width) + box.col_off) - c_b, 0, w_b - 1)
        valid &= ok[np.ix_(rows, cols)]
        tiles = [
            x[r - r_b : r - r_b + h, c - c_b : c - c_b + w] for r, c, h, w in (grid.covering(rd) for rd, _ in pairs)
        ]
        batches.append(np.stack(tiles))
    probs = runner.probabilities(batches)
    tile = pairs[0][0].shape
    if probs.shape[1:3] != tile:
        raise JobFailedError(
            f"dense model {bundle_dir} returned {probs.shape[1:3]} pixels for a {tile} tile; "
            "a dense model must predict on the label grid at the input tile's size"
        )
    out = []
    for i, (read, core) in enumerate(pairs):
        r, c = core.row_off - read.row_off, core.col_off - read.col_off
        rv, cv = core.row_off - box.row_off, core.col_off - box.col_off
        out.append(
            (
                core,
                *to_classes(
                    probs[i, r : r + core.height, c : c + core.width],
                    meta.class_ids,
                    valid[rv : rv + core.height, cv : cv + core.width],
                    confidence,
                ),
            )
        )
    return out


Views = list[tuple[np.ndarray, np.ndarray, np.ndarray]]
"""Per modality: a sliding-window view ``(H', W', C, p, p)`` of its bands and, per core row / core column, the view
index of the patch of that label pixel."""


def patch_views(
    scene: Scene,
    date: str | None,
    modalities: tuple[str, ...],
    sizes: dict[str, int],
    core: PixelWindow,
    prepare: Callable[[str, np.ndarray], np.ndarray] | None = None,
) -> tuple[Views, np.ndarray]:
    """Read what the patches of every pixel of ``core`` need: one read per modality, half a patch larger each side.

    The patch rule of :mod:`core.sampling.patches`: for modality ``m`` with patch side ``p = sizes[m]`` (odd, in
    ``m``'s pixels) the patch of label pixel ``(r, c)`` is the ``m`` pixel holding the label pixel's centre
    (:class:`core.data.grid.GridMap`) +- ``p // 2``. Off-raster parts are NaN.

    Args:
        prepare: applied to each modality's raw bands before the view is taken (e.g. normalisation).

    Returns:
        ``(views, valid)``: see :data:`Views`; ``valid`` bool ``core.shape``, False where any modality's centre
        pixel is nodata or off the raster.
    """
    acq = scene.acquisition(date)
    valid = np.ones(core.shape, dtype=bool)
    views: Views = []
    for name in modalities:
        mod, p = scene.modality(name), int(sizes[name])
        grid = GridMap.between(scene.primary, mod)
        cy = grid.centre_rows(np.arange(core.height) + core.row_off)
        cx = grid.centre_cols(np.arange(core.width) + core.col_off)
        r0, c0 = int(cy.min()) - p // 2, int(cx.min()) - p // 2
        x = read_bands(acq, mod, r0, c0, int(cy.max()) - r0 + p // 2 + 1, int(cx.max()) - c0 + p // 2 + 1)
        valid &= ~np.isnan(x).any(axis=-1)[np.ix_(cy - r0, cx - c0)]
        bands = prepare(name, x) if prepare is not None else x
        # The patch of label pixel (r, c) starts at raster (cy[r] - p // 2, cx[c] - p // 2) = view (cy - cy.min()).
        views.append(
            (
                np.lib.stride_tricks.sliding_window_view(  # type: ignore[call-overload]  # numpy 2.0 stubs:
                    bands, (p, p), axis=(0, 1)
                ),  # axis takes a tuple (documented), the stub says int
                cy - int(cy.min()),
                cx - int(cx.min()),
            )
        )
    return views, valid


def gather_patches(views: Views, flat: np.ndarray, width: int) -> list[np.ndarray]:
    """Channels-last patches ``(len(flat), p, p, C)`` per modality of the core pixels ``flat`` (row-major indices
    into a core ``width`` pixels wide)."""
    rr, cc = np.divmod(np.asarray(flat, dtype=np.int64), width)
    return [v[ri[rr], ci[cc]].transpose(0, 2, 3, 1) for v, ri, ci in views]  # view[r, c] is (C, p, p)


def predict_patch_window(
    bundle_dir: str,
    scene: Scene,
    date: str | None,
    read: PixelWindow,
    core: PixelWindow,
    batch_size: int = 256,
    confidence: bool = True,
) -> WindowResult:
    """Dask task: classify every pixel of ``core`` with a patch model, ``batch_size`` patches per model call.

    Patches follow :func:`patch_views`. Unlike training (which drops patches that leave the raster), every pixel is
    classified: off-raster parts of a patch are NaN, i.e. 0 (the band mean) after normalisation. Pixels whose
    centre is nodata in any modality are not predicted (class 0). ``read`` is not used.
    """
    runner = cached_runner(bundle_dir)
    model, meta = runner.model, runner.meta
    views, valid = patch_views(scene, date, meta.modalities, meta.sample_size, core, meta.normalise)
    k = len(meta.class_ids)
    probs = np.zeros((core.height * core.width, k), dtype=np.float32)
    todo = np.flatnonzero(valid)
    for i in range(0, todo.size, batch_size):
        flat = todo[i : i + batch_size]
        batch = gather_patches(views, flat, core.width)
        probs[flat] = np.asarray(model.predict_on_batch(batch if len(batch) > 1 else batch[0])).reshape(len(flat), k)
    classes, conf = to_classes(probs.reshape(*core.shape, k), meta.class_ids, valid, confidence)
    return core, classes, conf


def predict_patch_dense_window(
    bundle_dir: str,
    scene: Scene,
    date: str | None,
    read: PixelWindow,
    core: PixelWindow,
    batch_size: int = 1,
    confidence: bool = True,
) -> WindowResult:
    """Dask task: classify every pixel of ``core`` with a densely evaluable patch model in one model call.

    The model's dense twin (:meth:`core.inference.runner.ModelRunner.dense_twin`, e.g. of a ``patch_fcn``) runs over
    the core plus half a patch on each side and gives every pixel the class its own patch gets in
    :func:`predict_patch_window` (same patch rule, off-raster parts NaN i.e. 0 after normalisation, class 0 where
    the centre is nodata). One modality on the label grid. ``read`` and ``batch_size`` are not used.

    Raises:
        ConfigError: the bundle reads several modalities or one off the label grid.
    """
    runner = cached_runner(bundle_dir)
    meta = runner.meta
    name = meta.modalities[0]
    if len(meta.modalities) != 1 or scene.modality(name) != scene.primary:
        raise ConfigError(
            f"dense patch evaluation reads one modality on the label grid; bundle {bundle_dir} reads "
            f"{list(meta.modalities)} and the label grid is {scene.primary.name!r}"
        )
    half = int(meta.sample_size[name]) // 2
    x, ok = normalised_bands(
        scene.acquisition(date),
        scene.primary,
        meta,
        core.row_off - half,
        core.col_off - half,
        core.height + 2 * half,
        core.width + 2 * half,
    )
    valid = ok[half : half + core.height, half : half + core.width]
    probs = runner.dense_twin().probabilities([x[None]])[0]
    return (core, *to_classes(probs, meta.class_ids, valid, confidence))


def model_input_sizes(bundle_dir: str) -> dict[str, int | None]:
    """Dask task: modality -> fixed input side of the model (``None`` where the model accepts any size)."""
    runner = cached_runner(bundle_dir)
    return {
        name: (t.shape[1] if t.shape[1] is not None else None)
        for name, t in zip(runner.meta.modalities, runner.model.inputs)
    }


# The tasks and models declare their predictors (core.tasks.predictors); these are their Dask tasks.
implement_predictor(DENSE, predict_dense_window, predict_dense_chunk)
implement_predictor(PER_PIXEL, predict_patch_window)
implement_predictor(DENSE_PATCH, predict_patch_dense_window)
