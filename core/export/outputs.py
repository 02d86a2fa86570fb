"""One call for the job layer after a prediction: styles, polygons and a STAC Item beside the COGs.

The predict job (:func:`core.inference.predict.run_predict`) returns ``{"path", "confidence_path", ...}``; pass those
to :func:`export_prediction`, then, once a run's predictions are all written, their Item files to
:func:`core.export.stac_out.write_run_catalog`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.export.qml import style_outputs
from core.export.stac_out import RunInfo, write_stac_item
from core.export.vectorize import VectorizeResult, vectorize

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PredictionExports:
    """Files written beside a prediction: ``.qml`` styles, the STAC Item, and the polygons when asked for."""

    styles: tuple[Path, ...]
    stac_item: Path
    vectors: VectorizeResult | None


def export_prediction(
    cog_path: str | Path,
    datetime: str | dt.date | dt.datetime,
    confidence_path: str | Path | None = None,
    classes: Sequence[Any] | None = None,
    run: RunInfo | None = None,
    vectorize_map: bool = False,
    min_mapping_unit: float = 0,
    mmu_unit: str = "px",
    simplify: float = 0.0,
    progress: Progress | None = None,
) -> PredictionExports:
    """Style the COGs for QGIS, optionally polygonise the map, and describe everything in a STAC Item.

    Args:
        cog_path: the class-map COG; confidence_path: its confidence COG (or None).
        datetime: acquisition date of the imagery predicted (the scene acquisition's ``date``).
        classes: ``[{"id", "name", "color"}]``; None reads them from the COG.
        run: the run (id, model bundle path, scene) for the Item's provenance.
        vectorize_map: also write ``<name>.gpkg`` (map CRS) and ``<name>.geojson`` (EPSG:4326) beside the COG.
        min_mapping_unit, mmu_unit, simplify: as :func:`core.export.vectorize.vectorize`.
        progress: optional ``callable(phase, done, total)`` (the vectoriser's phases, then ``"stac"``).

    Returns:
        :class:`PredictionExports`.
    """
    cog = Path(cog_path)
    styles = tuple(style_outputs(cog, classes, confidence_path))
    vec = None
    if vectorize_map:
        vec = vectorize(
            cog,
            cog.with_suffix(".gpkg"),
            cog.with_suffix(".geojson"),
            confidence=confidence_path,
            min_mapping_unit=min_mapping_unit,
            mmu_unit=mmu_unit,
            simplify=simplify,
            classes=classes,
            progress=progress,
        )
    vectors = [p for p in (vec.gpkg_path, vec.geojson_path) if p] if vec else []
    item = write_stac_item(cog, classes, datetime, run=run, confidence_path=confidence_path, vectors=vectors)
    if progress:
        progress("stac", 1, 1)
    return PredictionExports(styles, item, vec)
