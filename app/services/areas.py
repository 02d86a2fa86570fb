"""Mapped class areas of a prediction run, as the Map review page shows and exports them."""

from __future__ import annotations

import csv
import io
from typing import Any

from core.evaluation.areas import AREA_COLUMNS, MappedAreas, mapped_areas


def run_areas(metrics: dict[str, Any] | None, prediction: str) -> MappedAreas:
    """The areas a run stored (``metrics["mapped_areas"]``), or measured from its map for runs that predate them."""
    stored = (metrics or {}).get("mapped_areas")
    return MappedAreas.from_dict(stored) if stored else mapped_areas(prediction)


def area_rows(areas: MappedAreas) -> list[dict[str, Any]]:
    """One row per class: name, pixels, hectares, km² and percent (areas None for maps that are not georeferenced)."""
    return [
        {
            "class": c.name,
            "pixels": c.pixels,
            "ha": None if c.hectares is None else round(c.hectares, 2),
            "km²": None if c.km2 is None else round(c.km2, 4),
            "%": round(c.percent, 2),
        }
        for c in areas.classes
    ]


def areas_csv(areas: MappedAreas) -> str:
    """The table as CSV text (the columns of :func:`core.evaluation.areas.write_areas_csv`)."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(AREA_COLUMNS)
    for c in areas.classes:
        w.writerow(
            [
                c.class_id,
                c.name,
                c.pixels,
                *("" if v is None else f"{v:.6f}" for v in (c.area_m2, c.hectares, c.km2)),
                f"{c.percent:.4f}",
            ]
        )
    return out.getvalue()
