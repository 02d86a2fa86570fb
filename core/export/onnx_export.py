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
  ``tiles_overlap`` (percent of the tile), ``standardization_mean`` / ``standardization_std`` (lists).

Normalisation: ours is ``(raw - mean) / std`` with the training split's band statistics; Deepness gives the
model ``(raw / 255 - m) / s``, which is the same when ``m = mean / 255`` and ``s = std / 255``. So the statistics
are *declared* in the metadata (nothing baked into the graph): the exported graph is the Keras model itself, and
the mapping is exact in real arithmetic (float32 rounding differs by ~1e-7 relative). A band with std 0 gets
``s = 1 / 255`` (our ``normalise`` divides by 1 there).

Which bundles export:

- ``unet`` (dense, one modality): the Keras graph with a transpose on each side, fixed ``tile x tile`` input.
- patch models on one modality (``patch_cnn``, ``two_stream_rgb``, ``two_stream_hsi``): wrapped into a
  Segmentor that classifies every pixel of the tile from the patch centred on it (``p x p``, zero-padded at the
  tile edge, i.e. the band mean, the same rule as :mod:`core.inference.predict`); ``tiles_overlap`` covers the ``p // 2``
  border so Deepness's stitched map equals ours away from the raster edge.
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
DEFAULT_OVERLAP_PX = 16
"""Context pixels per tile side for dense models when none is given (the predict job's default)."""


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote.

    Attributes:
        path: the ``.onnx`` file.
        metadata: the ``metadata_props`` written (key -> decoded JSON value).
        tile_size: input side in pixels (NCHW ``(N, C, tile_size, tile_size)``).
        bands: input channels C.
        classes: output channels K (``class_ids[k]`` is the class id of channel ``k``).
    """

    path: Path
    metadata: dict[str, Any]
    tile_size: int
    bands: int
    classes: int


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


def _dense_function(model: Any, bands: int, tile: int) -> tuple[Any, list[Any]]:
    import tensorflow as tf

    spec = [tf.TensorSpec([None, bands, tile, tile], tf.float32, name=INPUT_NAME)]

    @tf.function(input_signature=spec)
    def fn(x: Any) -> Any:
        y = model(tf.transpose(x, [0, 2, 3, 1]), training=False)
        return tf.transpose(y, [0, 3, 1, 2])

    return fn, spec


def _patch_function(model: Any, bands: int, tile: int, p: int, k: int) -> tuple[Any, list[Any]]:
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
        nhwc = tf.pad(tf.transpose(x, [0, 2, 3, 1]), [[0, 0], [h, h], [h, h], [0, 0]])
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


def deepness_metadata(meta: Any, tile: int, overlap_px: int, resolution_m: float | None) -> dict[str, Any]:
    """The ``metadata_props`` Deepness reads (plus ``class_ids`` and ``workbench_*`` keys for provenance).

    Args:
        meta: the bundle's :class:`core.models.bundle.ModelMeta`.
        tile: input side in pixels.
        overlap_px: pixels shared by neighbouring tiles (``tiles_overlap`` = that in percent of ``tile``).
        resolution_m: pixel size in metres the model was trained at (written in cm), None to leave it out.
    """
    mean, std = deepness_standardization(meta, meta.modalities[0])
    md: dict[str, Any] = {
        "model_type": "Segmentor",
        "class_names": {str(k): name for k, name in enumerate(meta.class_names)},
        "tile_size": int(tile),
        "tiles_size": int(tile),
        "tiles_overlap": int(min(90, math.ceil(100.0 * overlap_px / tile))),
        "standardization_mean": mean,
        "standardization_std": std,
        "class_ids": [int(c) for c in meta.class_ids],
        "workbench_model": meta.model,
        "workbench_scene": meta.scene,
        "workbench_train_run_id": meta.train_run_id,
    }
    if resolution_m is not None:
        md["resolution"] = float(resolution_m) * 100.0
    return md


def _tile_and_overlap(meta: Any, tile_size: int | None, overlap_px: int | None) -> tuple[int, int]:
    from core.inference.predict import model_context

    mod = meta.modalities[0]
    if _reads_context(meta):
        tile = int(tile_size or meta.sample_size[mod])
        align = model_context(meta).align
        if tile % align:
            raise UnsupportedModelError(
                f"tile size {tile} px is not a multiple of {align} (the pooling multiple of the model); "
                f"use a multiple of {align}"
            )
        overlap = 2 * (DEFAULT_OVERLAP_PX if overlap_px is None else int(overlap_px))
        if overlap >= tile:
            raise UnsupportedModelError(
                f"overlap of {overlap // 2} px per side leaves nothing of a {tile} px tile; use less than {tile // 2}"
            )
        return tile, overlap
    tile = int(tile_size or 64)
    p = int(meta.sample_size[mod])
    return tile, 2 * (p // 2) if overlap_px is None else 2 * int(overlap_px)


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
        tile_size: input side in pixels; default: the training tile (dense) or 64 (patch models). The graph has a
            fixed ``tile x tile`` input (Deepness reads the tile size from the input shape) and a free batch size.
        overlap_px: dense: context pixels per tile side (default 16, as the predict job); patch: default
            ``p // 2`` per side. Written as ``tiles_overlap`` in percent of the tile.
        resolution_m: training pixel size in metres (the scene's ``primary.resolution``); None leaves
            ``resolution`` out and Deepness asks the user.
        progress: optional ``callable(phase, done, total)``; phases ``"load"``, ``"convert"``, ``"write"``.

    Returns:
        An :class:`OnnxExport`.

    Raises:
        UnsupportedModelError: multi-label or multi-modal models, or a tile size the model cannot take.
        FileNotFoundError: ``bundle_dir`` is not a bundle.
    """
    import onnx
    import tf2onnx

    from core.models.bundle import load_bundle, load_meta

    meta = load_meta(bundle_dir)
    _check_exportable(meta)
    tile, overlap = _tile_and_overlap(meta, tile_size, overlap_px)
    model, meta = load_bundle(bundle_dir)
    if progress:
        progress("load", 1, 1)
    bands = int(model.inputs[0].shape[-1])
    k = len(meta.class_ids)
    if _reads_context(meta):
        fn, spec = _dense_function(model, bands, tile)
    else:
        fn, spec = _patch_function(model, bands, tile, int(meta.sample_size[meta.modalities[0]]), k)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=OPSET)
    _rename_output(proto, OUTPUT_NAME)
    if progress:
        progress("convert", 1, 1)
    md = deepness_metadata(meta, tile, overlap, resolution_m)
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
    log.info("exported %s (%s, %d bands, %d classes, tile %d) to %s", bundle_dir, meta.model, bands, k, tile, out)
    return OnnxExport(out, md, tile, bands, k)
