"""The baseline job: fit a classical baseline on a tile store on a Dask worker, score it, map an AOI with it.

The driver side of a ``baseline`` run (:class:`core.configs.BaselineJobConfig`). Fitting and scoring run as one
Dask task on a worker (the store must be readable there, as for training); prediction over the AOI is
:func:`core.inference.predict.run_predict` with the baseline bundle, so the map is the same class-map COG, with the scene's
CRS and transform, as a deep model's. Metrics are :mod:`core.tasks.metrics` on the same split rows a deep model is scored
on (:func:`core.evaluation.job.evaluate_bundle`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.baselines.bundle import fit_baseline_bundle
from core.configs import BaselineJobConfig
from core.data.scene import Scene
from core.errors import ConfigError, JobFailedError

log = logging.getLogger(__name__)


def _check(config: BaselineJobConfig, store_path: str | Path, scene: Scene | None) -> None:
    if not Path(store_path).exists():
        raise ConfigError(f"tile store {str(store_path)!r} does not exist; run the tile job first or fix the path")
    if config.predict and scene is None:
        raise ConfigError("predict=True needs the scene to classify; pass the registered scene")
    if scene is not None and scene.name != config.scene:
        raise ConfigError(f"config is for scene {config.scene!r} but scene {scene.name!r} was given")


def run_baseline_job(
    config: BaselineJobConfig,
    client: Any,
    store_path: str | Path,
    run_dir: str | Path,
    scene: Scene | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Fit, score and (with ``config.predict``) map: the body of a baseline run.

    Args:
        config: the job.
        client: a ``dask.distributed.Client``; the fit runs on one of its workers.
        store_path: the tile store (``config.store`` or the one its ``tile_job`` wrote).
        run_dir: artefact folder: the bundle goes to ``<run_dir>/baseline``, the map to ``config.output`` or
            ``<run_dir>/prediction.tif``.
        scene: the scene to map (needed when ``config.predict``).
        progress: called with ``(phase, done, total)``; phases ``baseline`` and ``inference``.
        cancelled: polled between prediction windows.

    Returns:
        ``{"metrics": {"test" (or "val"): metrics dict, "baseline": training info, "inference": {...}},
        "artifacts": {"model", "store", "prediction"?, "confidence"?}}``.

    Raises:
        ConfigError: bad store / features / scene; JobFailedError: the fit task failed on its worker.
    """
    _check(config, store_path, scene)
    run_dir = Path(run_dir)
    bundle = run_dir / "baseline"
    if progress:
        progress("baseline", 0, 1)
    fut = client.submit(
        fit_baseline_bundle,
        str(store_path),
        str(bundle),
        config.method,  # Dask: fit on a worker
        config.features,
        config.max_train_samples,
        config.seed,
        (config.split,),
        pure=False,
    )
    try:
        fitted = fut.result()
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - anything else is a worker failure, reported with its cause
        what = str(exc) if type(exc) is Exception else f"{type(exc).__name__}: {exc}"
        raise JobFailedError(f"fitting the {config.method} baseline failed on the cluster: {what}") from exc
    if progress:
        progress("baseline", 1, 1)
    meta = fitted["meta"]
    metrics: dict[str, Any] = {"baseline": {"method": config.method, "features": config.features, **meta["train"]}}
    if config.split in fitted["metrics"]:
        metrics[config.split] = fitted["metrics"][config.split]
        metrics["baseline"]["n_" + config.split] = fitted["metrics"][config.split]["scoring"]["n_test"]
    else:
        log.warning("store %s has no %s samples: the baseline was not scored", store_path, config.split)
    artifacts: dict[str, Any] = {"model": fitted["bundle"], "store": str(store_path)}
    if config.predict:
        assert scene is not None
        metrics["inference"] = _map(config, client, bundle, scene, run_dir, artifacts, progress, cancelled)
    return {"metrics": metrics, "artifacts": artifacts}


def _map(
    config: BaselineJobConfig,
    client: Any,
    bundle: Path,
    scene: Scene,
    run_dir: Path,
    artifacts: dict[str, Any],
    progress: Callable[[str, int, int], None] | None,
    cancelled: Callable[[], bool] | None,
) -> dict[str, Any]:
    """Map the AOI with the fitted bundle on the cluster; adds the maps to ``artifacts``, returns its figures."""
    from core.inference.predict import run_predict

    out = Path(config.output) if config.output else run_dir / "prediction.tif"
    pred = run_predict(
        bundle,
        scene,
        config.aoi,
        client,
        out,
        tile_size=config.block_size,
        progress=(lambda d, t: progress("inference", d, t)) if progress else None,
        cancelled=cancelled,
        confidence=config.confidence,
        date=config.date,
        batch_size=config.batch_size,
    )
    artifacts["prediction"] = pred["path"]
    if pred.get("confidence_path"):
        artifacts["confidence"] = pred["confidence_path"]
    return {k: pred[k] for k in ("seconds", "windows", "width", "height", "class_pixels")}


__all__ = ["run_baseline_job"]
