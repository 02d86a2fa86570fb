"""Evaluation: score a model bundle on a store split, a baseline, or a prediction map against a label raster.

All three give the :mod:`core.tasks.metrics` dict (overall accuracy, kappa, per-class precision / recall / F1 / IoU,
confusion matrix) and :func:`run_evaluate` stores it with the run (``RunTracker.set_metrics``).

- ``evaluate_bundle``: the bundle's task scores it (:attr:`core.tasks.TaskSpec.score`): dense models on every
  labelled pixel (label != 0) of the split's tiles, patch models on the centre label of each patch; multi-label
  scene classifiers give :mod:`core.tasks.multilabel`'s figures instead (micro / macro precision, recall, F1,
  per-class figures, subset accuracy, hamming loss) for the tiles' multi-hot targets. Inputs are normalised with
  the bundle's own band statistics.
- ``evaluate_prediction``: a class-map GeoTIFF (e.g. :func:`core.inference.predict.run_predict` output) against a label
  raster on the same pixel grid (the map may cover only part of it), restricted to an AOI mask and to labelled
  pixels; read block by block, so maps of any size fit in memory. Map pixels at nodata (0) inside the labelled mask
  are counted in ``n_unpredicted``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.features import geometry_mask
from rasterio.windows import Window

from core.baselines.estimators import evaluate_baseline
from core.configs import AOIConfig, EvaluateJobConfig
from core.data.cog import read_classes
from core.errors import ConfigError, GridMismatchError
from core.models.bundle import ModelMeta, load_bundle
from core.tasks import get_task
from core.tasks.metrics import confusion_matrix, metrics_from_confusion
from core.tasks.multilabel import label_fraction_of
from core.tiling.store import TileStore

log = logging.getLogger(__name__)

BATCH = 16
"""Store samples per model call."""


def _predictions(
    model: Any, meta: ModelMeta, store: TileStore, split: str, idx: np.ndarray, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(labels, model output) of ``split``'s samples ``idx``, ``batch_size`` at a time, inputs normalised with the
    bundle's band statistics as in training and inference."""
    for i in range(0, idx.size, batch_size):
        xs, y = store.read(split, idx[i : i + batch_size])
        inputs = [meta.normalise(m, xs[m]) for m in meta.modalities]
        yield y, np.asarray(model.predict_on_batch(inputs if len(inputs) > 1 else inputs[0]))


def evaluate_bundle(
    bundle_dir: str | Path,
    store_path: str | Path,
    split: str = "test",
    batch_size: int = BATCH,
    label_fraction: float | None = None,
) -> dict[str, Any]:
    """Score a model bundle on ``split`` of a sample store, ``batch_size`` samples per model call.

    Args:
        label_fraction: multi-label models only: the share of a tile's labelled pixels a class must cover to be a
            target, which should be the training run's ``TrainJobConfig.label_fraction``. None: the value in the
            bundle's meta (``extra["label_fraction"]``), else the TrainJobConfig default (with a warning).

    Returns:
        Dense / patch models: the :mod:`core.tasks.metrics` dict. Multi-label models: micro / macro precision, recall
        and F1, per-class figures (with names), subset accuracy, hamming loss and ``samples`` (tiles scored) of
        :func:`core.tasks.multilabel.split_metrics`, plus ``task``, ``label_fraction``, ``threshold``. Both with
        ``"evaluation": {"model", "store", "split", "samples", "seconds"}``.

    Raises:
        ConfigError: the store lacks a modality the model needs, its task does not match the store's mode, or
            the split has no samples.
    """
    t0 = time.perf_counter()
    model, meta = load_bundle(bundle_dir)
    store = TileStore(store_path)
    info = store.info
    missing = [m for m in meta.modalities if m not in info.modalities]
    if missing:
        raise ConfigError(
            f"model {bundle_dir} needs modalities {list(meta.modalities)} but store {store_path} has "
            f"{list(info.modalities)}; evaluate on a store tiled with {missing}"
        )
    task = get_task(meta.task)
    want_mode = task.store_mode
    if want_mode != info.mode:
        raise ConfigError(
            f"model {bundle_dir} is a {meta.task!r} model but store {store_path} holds {info.mode!r}; "
            f"evaluate it on a store tiled in {want_mode!r} mode"
        )
    idx = store.valid_indices(split)
    if idx.size == 0:
        raise ConfigError(
            f"split {split!r} of store {store_path} has no samples; choose another split or re-tile "
            "with a fraction > 0 for it"
        )
    out = task.score(_predictions(model, meta, store, split, idx, batch_size), meta, label_fraction)
    out["evaluation"] = {
        "model": str(bundle_dir),
        "store": str(store_path),
        "split": split,
        "samples": int(idx.size),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    log.info("evaluated %s on %s/%s: %s", bundle_dir, store_path, split, task.headline(out))
    return out


def _offset(pred: Any, labels: Any) -> tuple[int, int]:
    """(row, col) of the prediction's top-left pixel on the label grid; raises when the grids differ."""
    if pred.crs and labels.crs and pred.crs != labels.crs:
        from core.data.rasters import CRS_TOLERANCE_PX, crs_shift_px

        shift = crs_shift_px(pred.crs.to_wkt(), labels.crs.to_wkt(), tuple(pred.transform)[:6], pred.width, pred.height)
        if shift > CRS_TOLERANCE_PX:
            raise GridMismatchError(
                f"prediction CRS {pred.crs} and label CRS {labels.crs} place pixels {shift:.2f} "
                "px apart; predict on the label raster's scene or reproject the labels first"
            )
    pa, la = pred.transform, labels.transform
    if abs(pa.a - la.a) > 1e-6 * abs(la.a) or abs(pa.e - la.e) > 1e-6 * abs(la.e) or pa.b or pa.d:
        raise GridMismatchError(
            f"prediction pixel size ({pa.a:g}, {pa.e:g}) differs from the labels' ({la.a:g}, "
            f"{la.e:g}); both must be on the same grid (resample the labels to the map first)"
        )
    col, row = ~la @ (pa.c, pa.f)
    if abs(col - round(col)) > 1e-3 or abs(row - round(row)) > 1e-3:
        raise GridMismatchError(
            f"prediction origin falls at label pixel ({row:.3f}, {col:.3f}) (row, col), not on "
            "a pixel corner; the two rasters are not on the same grid"
        )
    return round(row), round(col)


def evaluate_prediction(
    prediction: str | Path,
    labels: str | Path,
    mask: AOIConfig | None = None,
    class_ids: list[int] | None = None,
    class_names: list[str] | None = None,
) -> dict[str, Any]:
    """Score a class map against a label raster, inside ``mask`` (None / no geometry: everywhere labelled).

    Args:
        prediction: uint8 class-map GeoTIFF (nodata 0); its class list is read from its ``CLASSES`` tag unless
            ``class_ids`` is given.
        labels: label raster (class ids, 0 / nodata = unlabelled) on the same grid; it may be larger than the map.
        mask: AOI polygon; coordinates in ``mask.crs`` (``"pixel"``: (col, row) of the label raster).

    Returns:
        The metrics dict plus ``"evaluation": {"prediction", "labels", "masked"}``.
    """
    from core.data.geometry import PIXEL, parse_geometry, reproject

    if class_ids is None:
        classes = read_classes(prediction)
        if not classes:
            raise ConfigError(f"prediction {prediction} has no CLASSES tag; pass class_ids (and class_names)")
        class_ids, class_names = [c["id"] for c in classes], [c["name"] for c in classes]
    cm = np.zeros((len(class_ids), len(class_ids)), dtype=np.int64)
    unpredicted = 0
    with rasterio.open(prediction) as P, rasterio.open(labels) as L:
        r_off, c_off = _offset(P, L)
        geom, pixel_mask = None, False
        if mask is not None and mask.geometry is not None:
            geom = parse_geometry(mask.geometry)
            pixel_mask = mask.crs.lower() == PIXEL
            if not pixel_mask:
                if L.crs is None:
                    raise ConfigError(
                        f"labels {labels} are not georeferenced, so a mask in {mask.crs!r} cannot be "
                        "placed on them; give the mask with crs='pixel' (col, row of the labels)"
                    )
                geom = reproject(geom, mask.crs, L.crs.to_wkt())
        for _, w in P.block_windows(1):
            pred = P.read(1, window=w)
            lw = Window(w.col_off + c_off, w.row_off + r_off, w.width, w.height)
            lab = L.read(1, window=lw, boundless=True, fill_value=0)
            if L.nodata is not None and not math.isnan(L.nodata):
                lab = np.where(lab == L.nodata, 0, lab)
            lab = np.where(np.isnan(lab), 0, lab) if np.issubdtype(lab.dtype, np.floating) else lab
            if geom is not None:
                t = rasterio.Affine.translation(lw.col_off, lw.row_off) if pixel_mask else L.window_transform(lw)
                inside = geometry_mask([geom], out_shape=pred.shape, transform=t, invert=True)
                lab = np.where(inside, lab, 0)
            c, u = confusion_matrix(lab.astype(np.int64), pred, class_ids)
            cm += c
            unpredicted += u
    out = metrics_from_confusion(cm, class_ids, class_names, unpredicted)
    out["evaluation"] = {"prediction": str(prediction), "labels": str(labels), "masked": geom is not None}
    return out


def _score_model(config: EvaluateJobConfig, label_fraction: float | None) -> dict[str, Any]:
    assert config.model is not None and config.store is not None  # EvaluateJobConfig requires them for "model"
    return evaluate_bundle(config.model, config.store, config.split, label_fraction=label_fraction)


def _score_prediction(config: EvaluateJobConfig, label_fraction: float | None) -> dict[str, Any]:
    return evaluate_prediction(config.prediction, config.labels, config.mask)  # type: ignore[arg-type]


def _score_baseline(config: EvaluateJobConfig, label_fraction: float | None) -> dict[str, Any]:
    assert config.store is not None  # EvaluateJobConfig requires it for baselines
    return evaluate_baseline(
        config.store,
        config.method,
        config.split,
        config.features,
        config.max_train_samples,
        config.seed,
    )


SCORERS = {"model": _score_model, "prediction": _score_prediction}
"""What an ``evaluate`` job scores, by ``method``; any other method is a baseline estimator."""


def run_evaluate(config: EvaluateJobConfig, label_fraction: float | None = None) -> dict[str, Any]:
    """Run an evaluation job: a bundle on a store's split, a map against labels, or a baseline (see
    :class:`core.configs.EvaluateJobConfig`); the caller records the metrics.

    Args:
        label_fraction: multi-label bundles: the training run's ``label_fraction`` (see :func:`evaluate_bundle`).

    Returns:
        The metrics dict.
    """
    return SCORERS.get(config.method, _score_baseline)(config, label_fraction)


__all__ = ["evaluate_bundle", "evaluate_prediction", "label_fraction_of", "run_evaluate"]
