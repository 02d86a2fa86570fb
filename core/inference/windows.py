"""Worker side of tiled inference: read a window of a scene, apply a bundle, return uint8 classes and confidence.

Every window task has the same signature, ``task(bundle_dir, scene, date, read, core, batch_size, confidence) ->
(core, classes, confidence)``: ``core`` is the block of label-grid pixels the task answers for; ``read`` the window
read around it (dense models: ``core`` plus context; per-pixel models read what their patches need and get
``read == core``). A task's :class:`WindowPredictor` tells the driver which kind it is. Bundles are loaded once
per worker process (:func:`core.models.bundle.cached_bundle`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.data import cog
from core.data.grid import GridMap
from core.data.reader import read_modality
from core.data.scene import Acquisition, Modality, Scene
from core.errors import JobFailedError
from core.models.bundle import cached_bundle
from core.sampling.windows import PixelWindow

WindowResult = tuple[PixelWindow, np.ndarray, np.ndarray | None]


@dataclass(frozen=True)
class WindowPredictor:
    """How the bundles of a task map a scene.

    Attributes:
        window: the Dask task (see the module docstring for its signature).
        reads_context: True: the model sees a ``tile_size`` read window with ``overlap`` context around each core
            block (dense models); False: it classifies every pixel of a core block on its own (per-pixel models).
    """

    window: Callable[..., WindowResult]
    reads_context: bool


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


def to_classes(probs: np.ndarray, class_ids: tuple[int, ...], valid: np.ndarray,
               confidence: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """``(..., K)`` probabilities -> uint8 class ids (0 where not valid) and uint8 percent confidence (255)."""
    ids = np.asarray(class_ids, dtype=np.uint8)
    classes = np.where(valid, ids[np.argmax(probs, axis=-1)], cog.CLASS_NODATA).astype(np.uint8)
    conf = None
    if confidence:
        pct = np.clip(np.rint(np.max(probs, axis=-1) * 100), 0, 100).astype(np.uint8)
        conf = np.where(valid, pct, cog.CONFIDENCE_NODATA).astype(np.uint8)
    return classes, conf


def _dense_input(scene: Scene, acq: Acquisition, name: str, read: PixelWindow) -> tuple[np.ndarray, np.ndarray]:
    """One modality's raw bands under ``read`` and the (read.shape) validity of the label pixels it covers."""
    mod = scene.modality(name)
    grid = GridMap.between(scene.primary, mod)
    r_m, c_m, h_m, w_m = grid.covering(read)
    x = read_bands(acq, mod, r_m, c_m, h_m, w_m)
    rows = np.clip(grid.centre_rows(np.arange(read.height) + read.row_off) - r_m, 0, h_m - 1)
    cols = np.clip(grid.centre_cols(np.arange(read.width) + read.col_off) - c_m, 0, w_m - 1)
    return x, ~np.isnan(x).any(axis=-1)[np.ix_(rows, cols)]


def predict_dense_window(bundle_dir: str, scene: Scene, date: str | None, read: PixelWindow, core: PixelWindow,
                         batch_size: int = 1, confidence: bool = True) -> WindowResult:
    """Dask task: predict the square read window ``read`` with a dense model and crop it to ``core``.

    ``batch_size`` is not used (one read window is one model call).
    """
    model, meta = cached_bundle(bundle_dir)
    acq = scene.acquisition(date)
    valid = np.ones(read.shape, dtype=bool)
    inputs = []
    for name in meta.modalities:
        x, ok = _dense_input(scene, acq, name, read)
        valid &= ok
        inputs.append(meta.normalise(name, x)[None])
    probs = np.asarray(model.predict_on_batch(inputs if len(inputs) > 1 else inputs[0]))[0]
    if probs.shape[:2] != read.shape:
        raise JobFailedError(f"dense model {bundle_dir} returned {probs.shape[:2]} pixels for a {read.shape} tile; "
                             "a dense model must predict on the label grid at the input tile's size")
    r, c = core.row_off - read.row_off, core.col_off - read.col_off
    sl = (slice(r, r + core.height), slice(c, c + core.width))
    classes, conf = to_classes(probs[sl], meta.class_ids, valid[sl], confidence)
    return core, classes, conf


Views = list[tuple[np.ndarray, np.ndarray, np.ndarray]]
"""Per modality: a sliding-window view ``(H', W', C, p, p)`` of its bands and, per core row / core column, the view
index of the patch of that label pixel."""


def patch_views(scene: Scene, date: str | None, modalities: tuple[str, ...], sizes: dict[str, int],
                core: PixelWindow, prepare: Callable[[str, np.ndarray], np.ndarray] | None = None
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
        views.append((np.lib.stride_tricks.sliding_window_view(bands, (p, p), axis=(0, 1)),
                      cy - int(cy.min()), cx - int(cx.min())))
    return views, valid


def gather_patches(views: Views, flat: np.ndarray, width: int) -> list[np.ndarray]:
    """Channels-last patches ``(len(flat), p, p, C)`` per modality of the core pixels ``flat`` (row-major indices
    into a core ``width`` pixels wide)."""
    rr, cc = np.divmod(np.asarray(flat, dtype=np.int64), width)
    return [v[ri[rr], ci[cc]].transpose(0, 2, 3, 1) for v, ri, ci in views]  # view[r, c] is (C, p, p)


def predict_patch_window(bundle_dir: str, scene: Scene, date: str | None, read: PixelWindow, core: PixelWindow,
                         batch_size: int = 256, confidence: bool = True) -> WindowResult:
    """Dask task: classify every pixel of ``core`` with a patch model, ``batch_size`` patches per model call.

    Patches follow :func:`patch_views`. Unlike training (which drops patches that leave the raster), every pixel is
    classified: off-raster parts of a patch are NaN, i.e. 0 (the band mean) after normalisation. Pixels whose
    centre is nodata in any modality are not predicted (class 0). ``read`` is not used.
    """
    model, meta = cached_bundle(bundle_dir)
    views, valid = patch_views(scene, date, meta.modalities, meta.sample_size, core, meta.normalise)
    k = len(meta.class_ids)
    probs = np.zeros((core.height * core.width, k), dtype=np.float32)
    todo = np.flatnonzero(valid)
    for i in range(0, todo.size, batch_size):
        flat = todo[i:i + batch_size]
        batch = gather_patches(views, flat, core.width)
        probs[flat] = np.asarray(model.predict_on_batch(batch if len(batch) > 1 else batch[0])).reshape(len(flat), k)
    classes, conf = to_classes(probs.reshape(*core.shape, k), meta.class_ids, valid, confidence)
    return core, classes, conf


def model_input_sizes(bundle_dir: str) -> dict[str, int | None]:
    """Dask task: modality -> fixed input side of the model (``None`` where the model accepts any size)."""
    model, meta = cached_bundle(bundle_dir)
    return {name: (t.shape[1] if t.shape[1] is not None else None) for name, t in zip(meta.modalities, model.inputs)}


DENSE = WindowPredictor(predict_dense_window, reads_context=True)
PER_PIXEL = WindowPredictor(predict_patch_window, reads_context=False)

