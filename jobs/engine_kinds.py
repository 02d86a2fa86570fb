"""Job kinds of the engine: tile, train, predict, evaluate, baseline, and the GUI's pipeline (tile -> train ->
predict -> evaluate), registered in :mod:`jobs.kinds`.

Each executor takes its frozen config and a :class:`jobs.runner.JobContext` and returns the run's metrics and
artifacts; the runner records them and owns the run's status. The engine's ranks report through ``ctx.sink``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from core.configs import BaselineJobConfig, EvaluateJobConfig, PredictJobConfig, TileJobConfig
from core.errors import ConfigError
from core.tasks import get_task
from core.training.config import TrainJobConfig
from db.runs import RunTracker
from db.scenes import SceneStore
from jobs.kinds import JobKind, Needs, register_kind
from jobs.outputs import record_prediction
from jobs.pipeline import PipelineJobConfig, pipeline_parts
from jobs.preflight.memory import baseline_memory, training_memory
from jobs.rf_beside import compare, fit_rf_beside
from jobs.runner import JobContext
from jobs.settle import settle

log = logging.getLogger(__name__)


def summary_metrics(test: dict[str, Any] | None, train: dict[str, Any] | None) -> dict[str, Any]:
    """Flat keys the history table shows, taken from the test metrics and the training metrics."""
    out: dict[str, Any] = {}
    if test:
        # multi-label test metrics have micro / macro F1, subset accuracy and per-class F1 but no OA or confusion
        out.update(
            {
                "oa": test.get("overall_accuracy"),
                "kappa": test.get("kappa"),
                "miou": test.get("mean_iou"),
                "macro_f1": test.get("macro_f1"),
                "micro_f1": test.get("micro_f1"),
                "subset_accuracy": test.get("subset_accuracy"),
                "per_class": test.get("per_class"),
            }
        )
        if test.get("confusion_matrix") is not None:
            out["confusion"] = {"matrix": test["confusion_matrix"], "class_ids": test.get("class_ids")}
    if train:
        val = [h.get("val_accuracy") for h in train.get("history", []) if h.get("val_accuracy") is not None]
        out.update(
            {
                "best_val_accuracy": max(val) if val else (train.get("final") or {}).get("val_accuracy"),
                "train_seconds": train.get("wall_s"),
                "samples_per_s": train.get("samples_per_s"),
                "epochs_run": train.get("epochs_run"),
                "steps": train.get("steps_run"),
            }
        )
    return {k: v for k, v in out.items() if v is not None}


def _tile(config: TileJobConfig, ctx: JobContext, store_path: Path) -> Any:
    """Tile an AOI of a registered scene into the store at ``store_path`` on the cluster; returns its StoreInfo."""
    from core.data.catalog import verify_files
    from core.tiling.job import run_tile_job

    scene = SceneStore(ctx.db_url).get(config.scene)
    verify_files(scene)
    return run_tile_job(
        config,
        scene,
        ctx.client,
        store_path,
        progress=lambda d, t: ctx.progress("tiling", d, t),
        cancelled=ctx.cancelled,
    )


def run_tile(config: TileJobConfig, ctx: JobContext) -> dict[str, Any]:
    """Tile an AOI of a registered scene into a sample store on the cluster."""
    store_path = Path(config.output) if config.output else ctx.settings.stores_dir / f"run-{ctx.run_id:05d}.zarr"
    info = _tile(config, ctx, store_path)
    return {
        "metrics": {"counts": info.counts, "class_counts": info.class_counts, "skipped_nodata": info.skipped_nodata},
        "artifacts": {"store": str(store_path)},
    }


def train_on_store(config: TrainJobConfig, ctx: JobContext, store_path: Path) -> dict[str, Any]:
    """Train on the cluster; the ranks report to the run's rows. Returns ``{"metrics", "artifacts", "ranks"}``."""
    from core.training.job import run_train_job

    return run_train_job(
        config,
        ctx.client,
        store_path,
        run_id=ctx.run_id,
        run_dir=ctx.settings.run_dir(ctx.run_id),
        sink=ctx.sink,
        cancelled=ctx.cancelled,
    )


def run_train(config: TrainJobConfig, ctx: JobContext) -> dict[str, Any]:
    store_path = Path(config.store) if config.store else None
    if store_path is None:
        assert config.tile_job is not None
        store_path = ctx.settings.stores_dir / f"run-{ctx.run_id:05d}.zarr"
        _tile(config.tile_job, ctx, store_path)
    result = train_on_store(config, ctx, store_path)
    metrics = {**result["metrics"], **summary_metrics(None, result["metrics"])}
    return {"metrics": metrics, "artifacts": {**result["artifacts"], "store": str(store_path)}}


def _predict_output(config: PredictJobConfig, ctx: JobContext) -> Path:
    """The COG a predict run writes: its ``output``, else its run folder's; a resumed run finishes the output of
    the run it resumes (where that run's ledger is)."""
    if config.resume_from is None:
        return Path(config.output) if config.output else ctx.settings.run_dir(ctx.run_id) / "prediction.tif"
    old = ctx.tracker.get(config.resume_from)
    if old.kind != "predict":
        raise ConfigError(
            f"resume_from={config.resume_from} is a {old.kind} run; resume a predict run (or resume a "
            "train run's training with train --resume)"
        )
    if old.status == "succeeded":
        raise ConfigError(f"predict run {old.id} succeeded: its output is complete, there is nothing to resume")
    output = (old.config or {}).get("output")
    return Path(output) if output else ctx.settings.run_dir(old.id) / "prediction.tif"


def run_predict(config: PredictJobConfig, ctx: JobContext) -> dict[str, Any]:
    import core.baselines.bundle  # noqa: F401  (registers the baseline bundle format: a baseline bundle maps too)
    from core.data.catalog import verify_files
    from core.inference.predict import run_predict_job

    scene = SceneStore(ctx.db_url).get(config.scene)
    verify_files(scene)
    out = _predict_output(config, ctx)
    result = run_predict_job(
        config,
        scene,
        ctx.client,
        out,
        progress=lambda d, t: ctx.progress("inference", d, t),
        cancelled=ctx.cancelled,
        resume=config.resume_from is not None,
    )
    extra, artifacts = record_prediction(
        ctx, "predict", scene, out, result.get("confidence_path"), config.date, config.model
    )
    return {
        "metrics": {
            "inference_seconds": result.get("seconds"),
            "first_pixel_s": result.get("first_pixel_s"),
            "class_pixels": result.get("class_pixels"),
            "windows": result.get("windows"),
            "resumed_windows": result.get("resumed_windows"),
            **extra,
        },
        "artifacts": artifacts,
    }


def trained_label_fraction(bundle: str | Path, tracker: RunTracker) -> float | None:
    """The ``label_fraction`` a multi-label bundle was trained with: from its meta, else from the config of the
    train or pipeline run that wrote it (``meta.train_run_id`` in this database); None when neither tells."""
    from core.errors import RunNotFoundError
    from core.evaluation.job import label_fraction_of
    from core.models.bundle import load_meta

    meta = load_meta(bundle)
    if "label_fraction" not in get_task(meta.task).train_options or label_fraction_of(meta) is not None:
        return label_fraction_of(meta)
    if meta.train_run_id is None:
        return None
    try:
        cfg = tracker.get(meta.train_run_id).config or {}
    except RunNotFoundError:
        return None
    if cfg.get("model") != meta.model:  # the id names another run (a bundle from another database)
        return None
    value = cfg.get("label_fraction", (cfg.get("train_options") or {}).get("label_fraction"))
    if value is None and cfg.get("kind") in ("train", "pipeline"):  # left at the training default
        value = TrainJobConfig.model_fields["label_fraction"].default
    return None if value is None else float(value)


def run_evaluate(config: EvaluateJobConfig, ctx: JobContext) -> dict[str, Any]:
    from core.evaluation.job import run_evaluate as evaluate

    ctx.progress("evaluation", 0, 1)
    fraction = trained_label_fraction(config.model, ctx.tracker) if config.method == "model" and config.model else None
    metrics = evaluate(config, label_fraction=fraction)
    ctx.progress("evaluation", 1, 1)
    return {"metrics": {**metrics, **summary_metrics(metrics, None)}}


def prediction_tiling(bundle: str, config: PipelineJobConfig) -> tuple[int | None, int | None]:
    """Inference tile and overlap for a pipeline's model (``(None, None)`` for per-pixel models).

    ``seams="exact"``: ``(None, config.overlap)``: :func:`core.inference.predict.run_predict` takes the model's
    receptive-field radius (:attr:`core.models.ModelSpec.context`) as the overlap (unless a larger one is given)
    and a tile about six overlaps wide, or one tile over a small AOI, so the map has no seams. ``seams="crop"``:
    the config's overlap on tiles of at least 256 px and 4 overlaps, a multiple of the model's pooling alignment.
    """
    from core.inference.plan import crop_tile
    from core.inference.predict import model_context
    from core.models.bundle import load_meta
    from core.tasks import get_task

    predictor = get_task(config.task).predictor
    if predictor is None or not predictor.reads_context:
        return None, None
    if config.seams == "exact":
        return None, config.overlap
    overlap = int(config.overlap or 0)
    return crop_tile(config.tiling.tile_size, overlap, model_context(load_meta(bundle)).align), overlap


def run_pipeline(config: PipelineJobConfig, ctx: JobContext) -> dict[str, Any]:
    """Tile the AOI, train, predict the AOI to a COG and evaluate on the test split, as one run.

    Multi-label scene classifiers make no per-pixel map; their test metrics are per tile (micro / macro F1, ...).
    """
    from core.data.catalog import verify_files
    from core.evaluation.job import evaluate_bundle
    from core.inference.predict import run_predict as predict

    run_dir = ctx.settings.run_dir(ctx.run_id)
    store_path = ctx.settings.stores_dir / f"run-{ctx.run_id:05d}.zarr"
    scene = SceneStore(ctx.db_url).get(config.scene)
    tile_cfg, train_cfg = pipeline_parts(config, store_path, [m.name for m in scene.modalities], scene.label_modality)
    info = _tile(tile_cfg, ctx, store_path)
    if not info.counts.get("train"):
        raise ConfigError(
            f"the AOI gave no training samples (counts {info.counts}); draw a larger AOI over "
            "labelled pixels or use a smaller tile / block size"
        )
    ctx.tracker.set_artifacts(ctx.run_id, {"store": str(store_path)})
    ctx.check_cancelled()
    rf = _rf_phase(config, ctx, store_path, info.counts)
    train = train_on_store(train_cfg, ctx, store_path)
    ctx.tracker.set_metrics(ctx.run_id, {"training": train["metrics"]})  # kept if a later phase fails
    ctx.tracker.set_artifacts(ctx.run_id, train["artifacts"])
    ctx.check_cancelled()
    artifacts: dict[str, Any] = {**train["artifacts"], "store": str(store_path)}
    metrics: dict[str, Any] = {
        "training": train["metrics"],
        "tiling": {"counts": info.counts, "skipped_nodata": info.skipped_nodata},
    }
    if config.predict and get_task(config.task).makes_map:  # a multi-label scene classifier makes none
        verify_files(scene)
        out = run_dir / "prediction.tif"
        tile, overlap = prediction_tiling(train["artifacts"]["model"], config)
        # a date split predicts the held-out date, so the map can be checked against that date's labels
        date = config.split.test_date if config.split.method == "date" else None
        pred = predict(
            train["artifacts"]["model"],
            scene,
            config.aoi,
            ctx.client,
            out,
            tile_size=tile,
            overlap=overlap,
            seams=config.seams,
            date=date,
            progress=lambda d, t: ctx.progress("inference", d, t),
            cancelled=ctx.cancelled,
        )
        extra, outputs = record_prediction(
            ctx, "pipeline", scene, out, pred.get("confidence_path"), date, train["artifacts"]["model"]
        )
        artifacts.update(outputs)
        metrics.update(extra, inference_seconds=pred.get("seconds"), first_pixel_s=pred.get("first_pixel_s"))
        ctx.tracker.set_artifacts(ctx.run_id, artifacts)
    test: dict[str, Any] | None = None
    if info.counts.get("test"):
        ctx.progress("evaluation", 0, 1)
        # multi-label targets of the test tiles use the training's label fraction (ignored by other models)
        test = evaluate_bundle(train["artifacts"]["model"], store_path, "test", label_fraction=train_cfg.label_fraction)
        ctx.progress("evaluation", 1, 1)
        metrics["test"] = test
    else:
        log.warning("run %d: the split left no test samples in this AOI; no test metrics", ctx.run_id)
    metrics.update(summary_metrics(test, train["metrics"]))
    if rf is not None:
        metrics.update(rf=rf, rf_oa=rf["oa"], rf_macro_f1=rf["macro_f1"], verdict=compare(test, rf, config.model))
    return {"metrics": metrics, "artifacts": artifacts}


def _rf_phase(
    config: PipelineJobConfig, ctx: JobContext, store_path: Path, counts: dict[str, int]
) -> dict[str, Any] | None:
    """The random forest beside the pipeline (:mod:`jobs.rf_beside`): fitted and scored before training, on the
    same store and test split; None when the pipeline asks for none, its task maps no pixels (multi-label scene
    classifiers) or the split has no test samples."""
    if not (config.baseline and get_task(config.task).makes_map and counts.get("test")):
        return None
    ctx.progress("baseline", 0, 1)
    rf = fit_rf_beside(config, ctx.client, store_path, ctx.settings.run_dir(ctx.run_id))
    ctx.progress("baseline", 1, 1)
    if rf is not None:
        ctx.tracker.set_metrics(ctx.run_id, {"rf": rf})
    return rf


def run_baseline(config: BaselineJobConfig, ctx: JobContext) -> dict[str, Any]:
    """Fit an RF / KNN / SVM baseline on a store (tiling it first when given a tile job), score it on the
    test split and, with ``predict``, map the AOI to a COG on the cluster."""
    from core.baselines.job import run_baseline_job
    from core.data.catalog import verify_files

    store_path = Path(config.store) if config.store else None
    if store_path is None:
        assert config.tile_job is not None
        store_path = ctx.settings.stores_dir / f"run-{ctx.run_id:05d}.zarr"
        _tile(config.tile_job, ctx, store_path)
        ctx.tracker.set_artifacts(ctx.run_id, {"store": str(store_path)})
    scene = None
    if config.predict:
        scene = SceneStore(ctx.db_url).get(config.scene)
        verify_files(scene)
    ctx.check_cancelled()
    result = run_baseline_job(
        config,
        ctx.client,
        store_path,
        ctx.settings.run_dir(ctx.run_id),
        scene,
        progress=ctx.progress,
        cancelled=ctx.cancelled,
    )
    metrics, artifacts = result["metrics"], result["artifacts"]
    metrics.update(summary_metrics(metrics.get(config.split), None))
    if scene is not None and artifacts.get("prediction"):
        extra, outputs = record_prediction(
            ctx,
            "baseline",
            scene,
            artifacts["prediction"],
            artifacts.get("confidence"),
            config.date,
            artifacts["model"],
        )
        metrics.update(extra)
        artifacts.update(outputs)
    return {"metrics": metrics, "artifacts": artifacts}


def _parts(config: PipelineJobConfig, scene: Any) -> tuple[TileJobConfig, TrainJobConfig]:
    """The tile and train configs of a pipeline on ``scene`` (for pre-flight: the store path is not used)."""
    names = [m.name for m in scene.modalities] if scene is not None else []
    return pipeline_parts(config, Path("store.zarr"), names, scene.label_modality if scene is not None else None)


TRAINING_HINT = "lower the batch size or tile/patch size, or use more workers"
PIPELINE_NEEDS = Needs(
    reads_scene=lambda config: True,
    workers_read_scene=lambda config: True,
    tile_job=lambda config, scene: _parts(config, scene)[0],
    training=lambda config, scene: _parts(config, scene)[1],
    memory=lambda config, scene, stats: training_memory(*_parts(config, scene), scene, stats),
    memory_hint=TRAINING_HINT,
    derive=settle,
)
"""A pipeline tiles its AOI (derived tile size and split), trains on it with its ranks, maps and scores it."""
TRAIN_NEEDS = Needs(
    reads_scene=lambda config: config.tile_job is not None,
    workers_read_scene=lambda config: config.tile_job is not None,
    paths=("store",),
    tile_job=lambda config, scene: config.tile_job,
    training=lambda config, scene: config,
    memory=lambda config, scene, stats: (
        training_memory(config.tile_job, config, scene, stats) if config.tile_job is not None else None
    ),
    memory_hint=TRAINING_HINT,
    derive=settle,
)
"""A train job trains with its ranks; with a ``tile_job`` it tiles that first (derived split)."""
BASELINE_NEEDS = Needs(
    reads_scene=lambda config: config.tile_job is not None,
    workers_read_scene=lambda config: config.tile_job is not None,
    paths=("store",),
    tile_job=lambda config, scene: config.tile_job,
    workers=lambda config: 1,  # fitted on one worker
    memory=baseline_memory,
    memory_hint="lower max_train_samples or use features 'center'",
    derive=settle,
)
"""A baseline is fitted on one worker; with a ``tile_job`` it tiles that first (derived split)."""
TILE_NEEDS = Needs(workers_read_scene=lambda config: True)
"""A tile job's workers read its scene's files."""
PREDICT_NEEDS = Needs(workers_read_scene=lambda config: True, paths=("model",))
"""A predict job's workers read its scene's files and the model bundle."""
EVALUATE_NEEDS = Needs(paths=("store", "model", "prediction", "labels"))
"""An evaluate job's workers read the store, the model bundle or the maps it scores."""


KINDS: dict[str, JobKind] = {
    k.name: register_kind(k)
    for k in (
        JobKind("tile", TileJobConfig, run_tile, "tile an AOI into a sample store", TILE_NEEDS),  # type: ignore[arg-type]
        JobKind("train", TrainJobConfig, run_train, "train a model on a tile store", TRAIN_NEEDS),  # type: ignore[arg-type]
        JobKind("predict", PredictJobConfig, run_predict, "predict an AOI to a COG", PREDICT_NEEDS),  # type: ignore[arg-type]
        JobKind("evaluate", EvaluateJobConfig, run_evaluate, "score a model or baseline", EVALUATE_NEEDS),  # type: ignore[arg-type]
        JobKind(
            "baseline",
            BaselineJobConfig,
            run_baseline,  # type: ignore[arg-type]
            "fit and score an RF / KNN / SVM baseline, optionally map an AOI",
            BASELINE_NEEDS,
        ),
        JobKind(
            "pipeline",
            PipelineJobConfig,
            run_pipeline,  # type: ignore[arg-type]
            "tile, train, predict and evaluate in one run",
            PIPELINE_NEEDS,
        ),
    )
}
"""The kinds this module registers, by name."""
