"""The analyst's jobs after a map: draw a reference sample from a prediction run, and assess the run with it.

``sample``: a stratified random sample of points with the map classes as strata (sizes per class, or from a target
standard error of overall accuracy), written as GeoPackage, CSV and JSON for photo-interpretation.
``assess``: the sample's reference labels (an interpreted CSV / GeoPackage, or the scene's own label raster where
it covers the sample) against the map: error-adjusted areas, user's / producer's / overall accuracy with
confidence intervals (Olofsson et al. 2014, :mod:`core.evaluation.estimator`), as CSV and a one-page HTML report.
Both name the prediction by its run id; their files go into their own run folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from core.configs import Frozen
from core.errors import ConfigError, RunNotFoundError
from core.evaluation.assess import AssessJobConfig as AssessFiles
from core.evaluation.assess import DrawSampleJobConfig, run_assess, run_draw_sample
from core.evaluation.map_identity import read_map_identity
from core.evaluation.sample_design import SampleDesign
from db.models import RunRow
from db.scenes import SceneStore
from jobs.kinds import JobKind, register_kind
from jobs.runner import JobContext


class SampleJobConfig(Frozen):
    """Draw a reference sample from the map of run ``prediction_run``.

    Give ``per_class`` (points per map class: one number for every class, or ``{class id: points}``) or
    ``target_se`` (target standard error of overall accuracy; at least ``min_per_class`` per class, the rest
    proportional to mapped area, as Olofsson et al. 2014 recommend).
    """

    kind: Literal["sample"] = "sample"
    prediction_run: int = Field(ge=1)
    per_class: int | dict[int, int] | None = None
    target_se: float | None = Field(None, gt=0, lt=0.5)
    expected_ua: float = Field(0.75, gt=0, lt=1)
    min_per_class: int = Field(50, ge=2)
    seed: int = 0

    @model_validator(mode="after")
    def _one_size(self) -> SampleJobConfig:
        if (self.per_class is None) == (self.target_se is None):
            raise ValueError("give exactly one of per_class (points per class, e.g. 50) or target_se (e.g. 0.01)")
        return self


class AssessJobConfig(Frozen):
    """Assess the map of run ``prediction_run`` with the sample of run ``sample_run``.

    Reference labels: ``labels`` (a CSV or GeoPackage of the interpreted sample: ``id_field`` and ``class_field``),
    or ``reference="scene_labels"`` to read the scene's label raster of ``label_date`` (default: the map's date), or
    ``reference="label_raster"`` to read the label raster ``labels`` (e.g. an independent test mask on the map's
    grid), where it covers the sample points (the report then says that these labels were not collected for the
    sample).
    """

    kind: Literal["assess"] = "assess"
    prediction_run: int = Field(ge=1)
    sample_run: int = Field(ge=1)
    reference: Literal["file", "scene_labels", "label_raster"] = "file"
    labels: str | None = None
    class_field: str = "ref_class"
    id_field: str = "id"
    label_date: str | None = None
    confidence: float = Field(0.95, gt=0.5, lt=1)

    @model_validator(mode="after")
    def _reference_given(self) -> AssessJobConfig:
        if self.reference in ("file", "label_raster") and not self.labels:
            raise ValueError(
                f"reference {self.reference!r} needs labels (the interpreted sample as CSV or "
                "GeoPackage, or a label raster); or use reference 'scene_labels'"
            )
        if self.reference == "scene_labels" and self.labels:
            raise ValueError("labels is given but reference is 'scene_labels'; drop one of them")
        return self


def run_of(ctx: JobContext, run_id: int, what: str) -> RunRow:
    """Run ``run_id``; ConfigError naming ``what`` when it does not exist."""
    try:
        return ctx.tracker.get(run_id)
    except RunNotFoundError as exc:
        raise ConfigError(f"{what} run {run_id} does not exist; see `runs list` for run ids") from exc


def prediction_of(ctx: JobContext, run_id: int) -> tuple[RunRow, str]:
    """The run and the path of its class map; ConfigError when it has none."""
    row = run_of(ctx, run_id, "prediction")
    path = (row.artifacts or {}).get("prediction")
    if row.status != "succeeded" or not path or not Path(path).exists():
        raise ConfigError(
            f"run {run_id} ({row.kind}, {row.status}) has no prediction map; give the id of a "
            "predict, pipeline or baseline run that mapped an area"
        )
    return row, path


def _design(config: SampleJobConfig, prediction: str) -> SampleDesign:
    if config.per_class is None:
        return SampleDesign(
            target_se=config.target_se,
            expected_ua=config.expected_ua,
            min_per_class=config.min_per_class,
            seed=config.seed,
        )
    sizes = config.per_class
    if isinstance(sizes, int):
        sizes = {c: sizes for c in read_map_identity(prediction).class_ids}
    return SampleDesign(per_class=sizes, seed=config.seed)


def run_sample(config: SampleJobConfig, ctx: JobContext) -> dict[str, Any]:
    """Draw the sample; its files are the run's artifacts, its allocation and mapped areas its metrics."""
    _, prediction = prediction_of(ctx, config.prediction_run)
    out = ctx.settings.run_dir(ctx.run_id)
    result = run_draw_sample(DrawSampleJobConfig(prediction, str(out), _design(config, prediction)), ctx.progress)
    return {
        "metrics": {k: result[k] for k in ("n_points", "allocation", "stratum_pixels", "mapped_areas")},
        "artifacts": result["files"],
    }


def _scene_labels(ctx: JobContext, pred_row: RunRow, date: str | None) -> str:
    scene = SceneStore(ctx.db_url).get((pred_row.config or {}).get("scene", ""))
    date = date or (pred_row.metrics or {}).get("prediction_date") or (pred_row.config or {}).get("date")
    labels = scene.acquisition(date).labels if date else next((a.labels for a in scene.acquisitions if a.labels), None)
    if not labels:
        raise ConfigError(
            f"scene {scene.name!r} has no label raster for date {date!r}; give interpreted labels (reference 'file')"
        )
    return labels


def run_assess_job(config: AssessJobConfig, ctx: JobContext) -> dict[str, Any]:
    """Assess the prediction with the sample and its reference labels; the report files are the artifacts."""
    pred_row, prediction = prediction_of(ctx, config.prediction_run)
    sample_row = run_of(ctx, config.sample_run, "sample")
    sample = (sample_row.artifacts or {}).get("json")
    if sample_row.kind != "sample" or not sample:
        raise ConfigError(
            f"run {config.sample_run} is a {sample_row.kind} run, not a sample; give the id of the "
            f"sample run drawn from run {config.prediction_run}"
        )
    if (sample_row.config or {}).get("prediction_run") != config.prediction_run:
        raise ConfigError(
            f"sample run {config.sample_run} was drawn from run "
            f"{(sample_row.config or {}).get('prediction_run')}, not {config.prediction_run}; draw a "
            f"sample from run {config.prediction_run} or assess the run the sample belongs to"
        )
    from scipy.stats import norm

    rasters = {
        "scene_labels": lambda: _scene_labels(ctx, pred_row, config.label_date),
        "label_raster": lambda: config.labels,
    }
    label_raster = rasters[config.reference]() if config.reference in rasters else None
    files = AssessFiles(
        prediction=prediction,
        sample=sample,
        output_dir=str(ctx.settings.run_dir(ctx.run_id)),
        labels=None if label_raster else config.labels,
        class_field=config.class_field,
        id_field=config.id_field,
        label_raster=label_raster,
        date=str((pred_row.metrics or {}).get("prediction_date") or ""),
        title=f"Run {config.prediction_run}: accuracy and area estimate",
        z=float(norm.ppf(0.5 + config.confidence / 2)),
    )
    result = run_assess(files, ctx.progress)
    metrics = {k: result[k] for k in ("overall", "classes", "area_unit", "estimates", "mapped_areas", "reference")}
    metrics["oa"] = result["overall"].get("overall_accuracy")
    return {"metrics": metrics, "artifacts": result["files"]}


for _kind in (
    JobKind(
        "sample",
        SampleJobConfig,
        run_sample,  # type: ignore[arg-type]
        "draw a stratified reference sample from a prediction run",
    ),
    JobKind(
        "assess",
        AssessJobConfig,
        run_assess_job,  # type: ignore[arg-type]
        "accuracy and error-adjusted class areas of a prediction run from a reference sample",
    ),
):
    register_kind(_kind)
