"""An assess run's report as the Runs page shows it: the per-class table and mapped vs estimated area."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

TABLE_COLUMNS = {
    "class_name": "class",
    "n_sample": "points",
    "mapped_area": "mapped",
    "estimated_area": "estimated",
    "estimated_area_ci": "± 95% CI",
    "users_accuracy": "user's acc.",
    "users_accuracy_ci": "± CI (UA)",
    "producers_accuracy": "producer's acc.",
    "producers_accuracy_ci": "± CI (PA)",
}


def _half_width(row: dict[str, Any], name: str) -> float | None:
    lo, hi = row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high")
    return None if lo is None or hi is None else (hi - lo) / 2


def report_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """One row per class: points, mapped and estimated area (with its CI half-width), UA and PA with theirs."""
    rows = []
    for r in metrics.get("classes", []):
        rows.append(
            {
                **r,
                "estimated_area_ci": _half_width(r, "estimated_area"),
                "users_accuracy_ci": _half_width(r, "users_accuracy"),
                "producers_accuracy_ci": _half_width(r, "producers_accuracy"),
            }
        )
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).rename(columns=TABLE_COLUMNS)


def area_chart(metrics: dict[str, Any]) -> alt.LayerChart:
    """Grouped bars of mapped and estimated area per class, the estimate with its confidence interval."""
    unit = metrics.get("area_unit", "")
    long = []
    for r in metrics.get("classes", []):
        long.append({"class": r["class_name"], "area": r["mapped_area"], "what": "mapped", "lo": None, "hi": None})
        long.append(
            {
                "class": r["class_name"],
                "area": r["estimated_area"],
                "what": "estimated",
                "lo": r.get("estimated_area_ci_low"),
                "hi": r.get("estimated_area_ci_high"),
            }
        )
    data = pd.DataFrame(long)
    base = alt.Chart(data).encode(x=alt.X("class:N", title=None), xOffset="what:N")
    bars = base.mark_bar().encode(
        y=alt.Y("area:Q", title=f"area ({unit})"),
        color=alt.Color("what:N", title=None),
        tooltip=["class", "what", "area", "lo", "hi"],
    )
    errors = base.transform_filter(alt.datum.what == "estimated").mark_rule(color="black").encode(y="lo:Q", y2="hi:Q")
    return alt.layer(bars, errors)
