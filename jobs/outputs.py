"""What every run that maps an area stores beside its class map: mapped areas, QGIS styles, a STAC Item.

:func:`record_prediction` is called by the predict, pipeline and baseline executors once the map (and its
confidence map) are written: it measures the mapped area per class (:mod:`core.evaluation.areas`), writes the
``.qml`` styles and, for georeferenced scenes, the STAC Item beside the COGs and the run's static catalogue
(:mod:`core.export`). It returns the metrics and artifacts the run records.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from pathlib import Path
from typing import Any

from core.data.scene import Scene
from core.evaluation.areas import mapped_areas, write_areas_csv
from core.export.qml import style_outputs
from core.export.stac_out import RunInfo, write_run_catalog, write_stac_item
from jobs.runner import JobContext


def record_prediction(
    ctx: JobContext,
    kind: str,
    scene: Scene,
    prediction: str | Path,
    confidence: str | Path | None,
    date: str | None,
    model: str,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Areas, styles and STAC of one prediction; returns ``(metrics, artifacts)`` for the run."""
    ctx.progress("outputs", 0, 1)
    pred = Path(prediction)
    areas = mapped_areas(pred)
    areas_csv = write_areas_csv(areas, pred.with_name(pred.stem + "_areas.csv"))
    acquired = scene.acquisition(date).date
    when = _acquisition_datetime(acquired) or dt.datetime.now(dt.UTC)
    classes = [asdict(c) for c in scene.classes] or None
    artifacts = {"prediction": str(pred), "areas_csv": str(areas_csv)}
    styles = style_outputs(pred, classes, confidence)
    if scene.georeferenced:  # a STAC Item places the map on the Earth: a pixel-grid scene has no place
        run = RunInfo(run_id=ctx.run_id, model=model, scene=scene.name, kind=kind)
        item = write_stac_item(pred, classes, when, run=run, confidence_path=confidence)
        catalog = write_run_catalog([item], pred.parent / "stac", catalog_id=f"run-{ctx.run_id}")
        artifacts.update(stac_item=str(item), stac_catalog=str(catalog))
    ctx.progress("outputs", 1, 1)
    metrics = {"mapped_areas": areas.to_dict(), "prediction_date": acquired}
    artifacts.update({f"style_{p.stem}": str(p) for p in styles})
    if confidence:
        artifacts["confidence"] = str(confidence)
    return metrics, artifacts


def _acquisition_datetime(date: str | None) -> dt.datetime | None:
    """A scene date (``YYYYMMDD`` or ISO) as a UTC datetime; None when the scene has no date."""
    if not date:
        return None
    for fmt in ("%Y%m%d", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"):
        try:
            return dt.datetime.strptime(date, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
    return None
