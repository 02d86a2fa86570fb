"""Model bundle -> ONNX model for the QGIS plugin Deepness (its "Segmentor" model type).

What Deepness does with an ONNX model (PUTvision/qgis-plugin-deepness, ``processing/models/model_base.py`` and
the docs page "Adding metadata to ONNX model"):

- exactly one input, **NCHW** float32 ``(batch, channels, tile, tile)``; a segmentation model has one output
  ``(batch, classes, tile, tile)`` of per-class probabilities (it takes the argmax itself);
- it reads the raster's bands, divides by 255 (``normalize_values_to_01``), then standardises
  ``(x - standardization_mean) / standardization_std`` per channel, then transposes NHWC -> NCHW;
- it reads these ``metadata_props`` (every value JSON-encoded): ``model_type`` ("Segmentor"), ``class_names``
  (``{"0": name, ...}``, output channel index -> name, consecutive from 0), ``resolution`` (cm per pixel),
  ``tile_size`` (the key its code reads; the docs table spells it ``tiles_size``, so both are written),
  ``tiles_overlap`` (a whole percent of the tile), ``standardization_mean`` / ``standardization_std`` (lists),
  ``seg_thresh`` (probability threshold; 0 turns it off, so every pixel gets its argmax class as ours does) and
  ``seg_small_segment`` (its median-filter size; 0 turns the filter off).

How Deepness tiles and stitches (``processing/map_processor/map_processor.py``, ``processing/tile_params.py``,
``processing/extent_utils.py``, ``common/processing_overlap.py``), which the export's tiling is chosen for:

- overlap ``O = int(tile * tiles_overlap / 100 * 2) // 2`` px, stride ``tile - O``; tiles start at the processed
  extent's top-left corner (the raster's, for the whole layer) every stride; the extent is extended right and down
  to ``N * stride + tile`` px, beyond the raster QGIS gives 0 in every band;
- each tile's result is written to the map without ``O // 2`` px on each side, except on the sides that are the
  extent's edges (there the tile is kept up to its edge).

So a pixel of the stitched map comes from a tile that holds ``O // 2`` px of context on every side, except at the
raster's edge. The export makes that context at least the model's receptive-field radius (``--overlap`` to trade
it for speed) and the stride a multiple of the model's pooling multiple (tiles then sit on our pooling grid), and
the graph gives a pixel whose bands are all 0 (off the raster, or nodata) the band mean, as our prediction does
for nodata and off-raster pixels (:func:`deepness_tiling`). Then the stitched map equals ours; see
``tests/core/export/test_onnx_deepness.py``.

Normalisation: ours is ``(raw - mean) / std`` with the training split's band statistics; Deepness gives the
model ``(raw / 255 - m) / s``, which is the same when ``m = mean / 255`` and ``s = std / 255``. So the statistics
are *declared* in the metadata (nothing baked into the graph): the exported graph is the Keras model itself, and
the mapping is exact in real arithmetic (float32 rounding differs by ~1e-7 relative). A band with std 0 gets
``s = 1 / 255`` (our ``normalise`` divides by 1 there).

Which bundles export:

- ``unet`` (dense, one modality): the Keras graph with a transpose on each side, fixed ``tile x tile`` input, and
  ``edge`` px of band mean appended below and right of the tile inside the graph (``edge`` = the receptive-field
  radius rounded up to the pooling multiple): where a tile runs past the raster's right or bottom edge the model
  then sees band mean beyond the edge for a whole radius, as in our prediction, instead of the tile's border.
- patch models on one modality (``patch_cnn``, ``two_stream_rgb``, ``two_stream_hsi``): wrapped into a
  Segmentor that classifies every pixel of the tile from the patch centred on it (``p x p``, zero-padded at the
  tile edge, i.e. the band mean, the same rule as :mod:`core.inference.predict`); ``tiles_overlap`` covers the ``p // 2``
  border.
- not exportable (:class:`~core.export.errors.UnsupportedModelError`): ``resnet50`` (multi-label tile
  classifier: one vector of independent class probabilities per tile; Deepness has Segmentor, Regressor,
  Detector and Superresolution, none of which is a tile-level multi-label classifier), and every model with more
  than one modality (``two_stream``, or a U-Net/patch CNN trained on several modalities): Deepness feeds exactly
  one input tensor from one raster and refuses models with more ("unsupported number of inputs").
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.export.errors import UnsupportedModelError

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"
MAX_PERCENT = 99
"""Deepness' overlap field is a whole percent (a Qt spin box, 0 to 99)."""
MAX_TILE = 4096
DEFAULT_MAX_TILE = 1024
"""The largest tile chosen without ``--tile-size`` (memory of one tile in QGIS)."""
DEFAULT_TILE_OVERLAPS = 6
"""Without a tile size, the search for a tile starts at this many context widths (as :mod:`core.inference.predict`
sizes its tiles)."""
PATCH_TILE = 64
NODATA_RAW = 0.5 / 255
"""A band is taken as 0 (off the raster, nodata) below half a raw unit, after Deepness' division by 255."""


def deepness_overlap_px(tile: int, percent: int) -> int:
    """Deepness' overlap in pixels for ``tiles_overlap`` = ``percent`` (``ProcessingOverlap.get_overlap_px``, its
    arithmetic exactly); it keeps half of it (rounded down) as context on each side of a tile."""
    return int(tile * percent / 100 * 2) // 2


@dataclass(frozen=True)
class DeepnessTiling:
    """The tile size and overlap declared for Deepness and what they mean for its map.

    Attributes:
        tile: tile side in pixels (``tile_size``).
        percent: ``tiles_overlap``.
        radius: the model's receptive-field radius in pixels (patch models: half the patch).
        align: the model's pooling multiple (tile offsets on it keep our pooling grid).
        edge: pixels of band mean the graph appends below and right of each tile (dense models).
    """

    tile: int
    percent: int
    radius: int
    align: int
    edge: int = 0

    @property
    def overlap(self) -> int:
        """Deepness' overlap in pixels (both sides together)."""
        return deepness_overlap_px(self.tile, self.percent)

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    @property
    def context(self) -> int:
        """Pixels of context Deepness keeps on each side of a tile's written part."""
        return self.overlap // 2

    @property
    def exact(self) -> bool:
        """True when the kept context covers the receptive field: Deepness' map then equals ours."""
        return self.context >= self.radius

    @property
    def context_share(self) -> float:
        """Share of the model's computation spent on pixels that are not written (context and ``edge``)."""
        return 1.0 - (self.stride / (self.tile + self.edge)) ** 2


def _percent_for(tile: int, context: int, align: int) -> int | None:
    """The smallest ``tiles_overlap`` that keeps ``context`` px per side with a stride on the ``align`` grid."""
    for percent in range(MAX_PERCENT + 1):
        overlap = deepness_overlap_px(tile, percent)
        if overlap // 2 >= context and (tile - overlap) % align == 0 and tile - overlap >= align:
            return percent
    return None


def deepness_tiling(
    radius: int,
    align: int,
    train_tile: int,
    tile_size: int | None = None,
    overlap: int | None = None,
    edge: int = 0,
    longest: int = DEFAULT_MAX_TILE,
) -> DeepnessTiling:
    """The tile size and ``tiles_overlap`` to declare so Deepness' stitched map is ours.

    Deepness keeps ``overlap // 2`` px of context per tile side and steps by ``tile - overlap`` (see the module
    docstring), with the overlap a whole percent of the tile. The tiling keeps ``overlap`` (default: the
    receptive-field ``radius``, so no seams) px per side and a stride on the pooling grid (``align``). Without
    ``tile_size``: of the tiles from ``start`` = :data:`DEFAULT_TILE_OVERLAPS` contexts (at least ``train_tile``)
    to ``2 * start`` and at most ``longest``, the one with the least computation per written pixel,
    ``((tile + edge) / stride)^2`` (``edge``: pixels the graph appends below and right of each tile).

    Raises:
        UnsupportedModelError: a tile not on the pooling grid, or one that cannot keep that context.
    """
    context = radius if overlap is None else int(overlap)
    if tile_size is not None:
        if tile_size % align:
            raise UnsupportedModelError(
                f"tile size {tile_size} px is not a multiple of {align} (the pooling multiple of the model); "
                f"use a multiple of {align}"
            )
        percent = _percent_for(tile_size, context, align)
        if percent is None:
            fits = next((t for t in range(tile_size, MAX_TILE + 1, align) if _percent_for(t, context, align)), None)
            raise UnsupportedModelError(
                f"a tile of {tile_size} px cannot keep {context} px of context per side in Deepness (overlap a whole "
                f"percent of at most {MAX_PERCENT}, stride a multiple of {align} px); use a tile of at least "
                f"{fits} px, or a smaller overlap (below the receptive-field radius {radius} px tiles show seams)"
            )
        return DeepnessTiling(tile_size, percent, radius, align, edge)
    start = max(train_tile, math.ceil(DEFAULT_TILE_OVERLAPS * context / align) * align, align)
    best: DeepnessTiling | None = None
    for tile in range(start, max(start, min(2 * start, longest)) + 1, align):
        percent = _percent_for(tile, context, align)
        if percent is None:
            continue
        here = DeepnessTiling(tile, percent, radius, align, edge)
        if best is None or here.context_share < best.context_share:
            best = here
    if best is None:
        last = max(start, min(2 * start, longest))
        raise UnsupportedModelError(
            f"no tile of {start} to {last} px keeps {context} px of context per side in Deepness; give a tile "
            "size (--tile-size) or a smaller overlap"
        )
    return best


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote.

    Attributes:
        path: the ``.onnx`` file.
        metadata: the ``metadata_props`` written (key -> decoded JSON value).
        tile_size: input side in pixels (NCHW ``(N, C, tile_size, tile_size)``).
        bands: input channels C.
        classes: output channels K (``class_ids[k]`` is the class id of channel ``k``).
        tiling: the tile size and overlap declared for Deepness and what they keep.
    """

    path: Path
    metadata: dict[str, Any]
    tile_size: int
    bands: int
    classes: int
    tiling: DeepnessTiling


def deepness_standardization(meta: Any, modality: str) -> tuple[list[float], list[float]]:
    """Our band statistics as Deepness' ``standardization_mean`` / ``standardization_std`` (after its /255)."""
    stats = meta.band_stats[modality]
    mean = [float(m) / 255.0 for m in stats["mean"]]
    std = [(float(s) if float(s) > 0 else 1.0) / 255.0 for s in stats["std"]]
    return mean, std


def _reads_context(meta: Any) -> bool:
    """True for models that map a whole tile (dense), False for per-pixel patch models (the task's predictor)."""
    from core.tasks import get_task

    predictor = get_task(meta.task).predictor
    if predictor is None:
        raise UnsupportedModelError(
            f"model {meta.model!r} ({meta.task}) makes no per-pixel map: it gives one vector of class "
            "probabilities per tile; Deepness has no such model type (it has Segmentor, Regressor, Detector, "
            "Superresolution), so it cannot be exported for Deepness. Export a unet or patch model instead"
        )
    return bool(predictor.reads_context)


def _check_exportable(meta: Any) -> None:
    _reads_context(meta)
    if len(meta.modalities) != 1:
        raise UnsupportedModelError(
            f"model {meta.model!r} takes {len(meta.modalities)} modalities {list(meta.modalities)}; Deepness feeds "
            "exactly one input tensor from one raster layer, so multi-modal models cannot be exported. Train a "
            "single-modality model (e.g. two_stream_rgb or unet on one modality) to export it"
        )


def _nodata_to_mean(x: Any, mean: list[float], std: list[float]) -> Any:
    """NCHW standardised input: pixels whose bands are all raw 0 (off the raster, nodata) -> 0 (the band mean)."""
    import tensorflow as tf

    m = tf.reshape(tf.constant(mean, tf.float32), [1, -1, 1, 1])
    s = tf.reshape(tf.constant(std, tf.float32), [1, -1, 1, 1])
    zero = tf.reduce_all(tf.abs(x * s + m) < NODATA_RAW, axis=1, keepdims=True)
    return tf.where(zero, tf.zeros_like(x), x)


def _dense_function(
    model: Any, bands: int, tile: int, stats: tuple[list[float], list[float]], edge: int
) -> tuple[Any, list[Any]]:
    """The Keras model on NCHW tiles, with ``edge`` px of band mean below and right of each tile (cropped after)."""
    import tensorflow as tf

    spec = [tf.TensorSpec([None, bands, tile, tile], tf.float32, name=INPUT_NAME)]

    @tf.function(input_signature=spec)
    def fn(x: Any) -> Any:
        nhwc = tf.transpose(_nodata_to_mean(x, *stats), [0, 2, 3, 1])
        y = model(tf.pad(nhwc, [[0, 0], [0, edge], [0, edge], [0, 0]]), training=False)
        return tf.transpose(y[:, :tile, :tile, :], [0, 3, 1, 2])

    return fn, spec


def _patch_function(
    model: Any, bands: int, tile: int, p: int, k: int, stats: tuple[list[float], list[float]]
) -> tuple[Any, list[Any]]:
    """Every pixel of a ``tile`` x ``tile`` NCHW tile classified from its zero-padded ``p`` x ``p`` patch."""
    import tensorflow as tf

    spec = [tf.TensorSpec([None, bands, tile, tile], tf.float32, name=INPUT_NAME)]
    h = p // 2
    # Patch gather: for output pixel (r, c) and patch offset (i, j), the padded-tile pixel (r + i, c + j).
    r, c, i, j = np.meshgrid(np.arange(tile), np.arange(tile), np.arange(p), np.arange(p), indexing="ij")
    flat_index = ((r + i) * (tile + 2 * h) + (c + j)).reshape(-1).astype(np.int32)

    @tf.function(input_signature=spec)
    def fn(x: Any) -> Any:
        index = tf.constant(flat_index)  # built inside: a captured tensor would become a second graph input
        n = tf.shape(x)[0]
        nhwc = tf.pad(tf.transpose(_nodata_to_mean(x, *stats), [0, 2, 3, 1]), [[0, 0], [h, h], [h, h], [0, 0]])
        flat = tf.reshape(nhwc, [n, (tile + 2 * h) ** 2, bands])
        patches = tf.reshape(tf.gather(flat, index, axis=1), [n * tile * tile, p, p, bands])
        probs = model(patches, training=False)
        return tf.transpose(tf.reshape(probs, [n, tile, tile, k]), [0, 3, 1, 2])

    return fn, spec


def _rename_output(proto: Any, new: str) -> None:
    old = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if o == old else o for o in node.input]
    proto.graph.output[0].name = new


def deepness_metadata(meta: Any, tiling: DeepnessTiling, resolution_m: float | None) -> dict[str, Any]:
    """The ``metadata_props`` Deepness reads (plus ``class_ids`` and ``workbench_*`` keys for provenance).

    Args:
        meta: the bundle's :class:`core.models.bundle.ModelMeta`.
        tiling: tile size and overlap (:func:`deepness_tiling`).
        resolution_m: pixel size in metres the model was trained at (written in cm), None to leave it out.
    """
    mean, std = deepness_standardization(meta, meta.modalities[0])
    md: dict[str, Any] = {
        "model_type": "Segmentor",
        "class_names": {str(k): name for k, name in enumerate(meta.class_names)},
        "tile_size": tiling.tile,
        "tiles_size": tiling.tile,
        "tiles_overlap": tiling.percent,
        "standardization_mean": mean,
        "standardization_std": std,
        "seg_thresh": 0.0,
        "seg_small_segment": 0,
        "class_ids": [int(c) for c in meta.class_ids],
        "workbench_model": meta.model,
        "workbench_scene": meta.scene,
        "workbench_train_run_id": meta.train_run_id,
        "workbench_context_px": tiling.context,
        "workbench_receptive_field_px": tiling.radius,
        "workbench_seams": "exact" if tiling.exact else "crop",
    }
    if resolution_m is not None:
        md["resolution"] = float(resolution_m) * 100.0
    return md


def _edge(radius: int, align: int) -> int:
    """Pixels of band mean the dense graph appends below and right of a tile: the radius on the pooling grid."""
    return math.ceil(radius / align) * align


def _tiling(meta: Any, tile_size: int | None, overlap_px: int | None) -> DeepnessTiling:
    from core.inference.predict import model_context

    mod = meta.modalities[0]
    if _reads_context(meta):
        context = model_context(meta)
        edge = _edge(context.radius, context.align)
        tiling = deepness_tiling(context.radius, context.align, int(meta.sample_size[mod]), tile_size, overlap_px, edge)
    else:
        tiling = deepness_tiling(int(meta.sample_size[mod]) // 2, 1, PATCH_TILE, tile_size, overlap_px, 0, PATCH_TILE)
    if not tiling.exact:
        log.warning(
            "overlap %d px per side is below the receptive-field radius %d px: Deepness' map will show seams "
            "at tile borders (give no overlap for none)",
            tiling.context,
            tiling.radius,
        )
    return tiling


def export_onnx(
    bundle_dir: str | Path,
    out_path: str | Path,
    tile_size: int | None = None,
    overlap_px: int | None = None,
    resolution_m: float | None = None,
    progress: Progress | None = None,
) -> OnnxExport:
    """Convert a model bundle to an ONNX Segmentor for QGIS Deepness (see the module docstring).

    Args:
        bundle_dir: a bundle folder (``model.keras`` + ``meta.json``, :mod:`core.models.bundle`).
        out_path: the ``.onnx`` file to write.
        tile_size: input side in pixels; default (:func:`deepness_tiling`): about 6 receptive-field radii (dense)
            or 64 (patch models). The graph has a fixed ``tile x tile`` input (Deepness reads the tile size from
            the input shape) and a free batch size.
        overlap_px: context pixels Deepness keeps per tile side; default: the receptive-field radius (dense) or
            ``p // 2`` (patch), so Deepness' map equals ours. Less is faster and leaves seams (a warning).
            Written as ``tiles_overlap``, a whole percent of the tile, chosen so Deepness keeps at least this.
        resolution_m: training pixel size in metres (the scene's ``primary.resolution``); None leaves
            ``resolution`` out and Deepness asks the user.
        progress: optional ``callable(phase, done, total)``; phases ``"load"``, ``"convert"``, ``"write"``.

    Returns:
        An :class:`OnnxExport`.

    Raises:
        UnsupportedModelError: multi-label or multi-modal models, or a tile size the model cannot take or that
            cannot keep the overlap.
        FileNotFoundError: ``bundle_dir`` is not a bundle.
    """
    import onnx
    import tf2onnx

    from core.models.bundle import load_bundle, load_meta

    meta = load_meta(bundle_dir)
    _check_exportable(meta)
    tiling = _tiling(meta, tile_size, overlap_px)
    tile = tiling.tile
    model, meta = load_bundle(bundle_dir)
    if progress:
        progress("load", 1, 1)
    bands = int(model.inputs[0].shape[-1])
    k = len(meta.class_ids)
    stats = deepness_standardization(meta, meta.modalities[0])
    if _reads_context(meta):
        fn, spec = _dense_function(model, bands, tile, stats, tiling.edge)
    else:
        fn, spec = _patch_function(model, bands, tile, int(meta.sample_size[meta.modalities[0]]), k, stats)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=OPSET)
    _rename_output(proto, OUTPUT_NAME)
    if progress:
        progress("convert", 1, 1)
    md = deepness_metadata(meta, tiling, resolution_m)
    for key, value in md.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    proto.producer_name = "land-cover-workbench"
    onnx.checker.check_model(proto)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, out)
    if progress:
        progress("write", 1, 1)
    log.info("exported %s (%s, %d bands, %d classes) to %s", bundle_dir, meta.model, bands, k, out)
    log.info(
        "Deepness tiling: tile %d px, tiles_overlap %d %% = %d px of context per side (receptive field %d px: %s); "
        "%.0f %% of the computation is on pixels not written (--tile-size, --overlap to change it)",
        tile,
        tiling.percent,
        tiling.context,
        tiling.radius,
        "no seams, the workbench's map" if tiling.exact else "seams possible at tile borders",
        100 * tiling.context_share,
    )
    return OnnxExport(out, md, tile, bands, k, tiling)
