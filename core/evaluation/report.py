"""Accuracy and area report: per-class CSV, estimated error matrix CSV and a one-page offline HTML report.

The HTML is self-contained (inline CSS, an inline SVG bar chart of mapped vs estimated area with 95 % error bars,
no scripts, no external files), so it opens offline and can be mailed as one file.
"""

from __future__ import annotations

import csv
import html
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.evaluation.areas import MappedAreas
from core.evaluation.estimator import StratifiedEstimates
from core.evaluation.reference import ReferenceLabels

log = logging.getLogger(__name__)

REPORT_COLUMNS = (
    "class_id",
    "class_name",
    "mapped_pixels",
    "mapped_area",
    "mapped_percent",
    "n_sample",
    "n_reference",
    "estimated_area",
    "estimated_area_se",
    "estimated_area_ci_low",
    "estimated_area_ci_high",
    "users_accuracy",
    "users_accuracy_se",
    "users_accuracy_ci_low",
    "users_accuracy_ci_high",
    "producers_accuracy",
    "producers_accuracy_se",
    "producers_accuracy_ci_low",
    "producers_accuracy_ci_high",
    "area_unit",
)


@dataclass(frozen=True)
class AssessmentReport:
    """Everything a report shows.

    Attributes:
        title: heading of the report.
        map_path: the assessed map.
        areas: its mapped areas.
        estimates: stratified estimates (areas in the unit of ``areas.stratum_sizes()``: m², or pixels).
        labels: where the reference labels come from.
        date: date of the map or assessment (free text, may be empty).
    """

    title: str
    map_path: str
    areas: MappedAreas
    estimates: StratifiedEstimates
    labels: ReferenceLabels
    date: str = ""

    @property
    def area_unit(self) -> str:
        """``"ha"`` for georeferenced maps, ``"pixels"`` otherwise."""
        return "pixels" if self.areas.method == "pixels" else "ha"

    @property
    def _scale(self) -> float:
        return 1.0 if self.areas.method == "pixels" else 1e-4  # estimator unit (m² or px) -> report unit

    def class_rows(self) -> list[dict[str, Any]]:
        """One dict per class with ``REPORT_COLUMNS`` (areas in :attr:`area_unit`, accuracies 0-1, NaN -> None)."""
        e, s = self.estimates, self._scale
        lo_a, hi_a = e.ci(e.area, e.area_se)
        lo_u, hi_u = e.ci(e.users, e.users_se)
        lo_p, hi_p = e.ci(e.producers, e.producers_se)
        n_i, n_j = e.counts.sum(axis=1), e.counts.sum(axis=0)
        rows = []
        for k, c in enumerate(self.areas.classes):
            rows.append(
                {
                    "class_id": c.class_id,
                    "class_name": c.name,
                    "mapped_pixels": c.pixels,
                    "mapped_area": _n(self.areas.stratum_sizes()[c.class_id] * s),
                    "mapped_percent": c.percent,
                    "n_sample": int(n_i[k]),
                    "n_reference": int(n_j[k]),
                    "estimated_area": _n(e.area[k] * s),
                    "estimated_area_se": _n(e.area_se[k] * s),
                    "estimated_area_ci_low": _n(lo_a[k] * s),
                    "estimated_area_ci_high": _n(hi_a[k] * s),
                    "users_accuracy": _n(e.users[k]),
                    "users_accuracy_se": _n(e.users_se[k]),
                    "users_accuracy_ci_low": _n(lo_u[k]),
                    "users_accuracy_ci_high": _n(hi_u[k]),
                    "producers_accuracy": _n(e.producers[k]),
                    "producers_accuracy_se": _n(e.producers_se[k]),
                    "producers_accuracy_ci_low": _n(lo_p[k]),
                    "producers_accuracy_ci_high": _n(hi_p[k]),
                    "area_unit": self.area_unit,
                }
            )
        return rows

    def overall(self) -> dict[str, float]:
        """Overall accuracy, its SE and 95 % interval."""
        e = self.estimates
        lo, hi = e.ci(e.overall_accuracy, e.overall_accuracy_se)
        return {
            "overall_accuracy": e.overall_accuracy,
            "overall_accuracy_se": e.overall_accuracy_se,
            "overall_accuracy_ci_low": float(lo),
            "overall_accuracy_ci_high": float(hi),
        }


def _n(v: float) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def _cell(v: Any) -> Any:
    return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)


def write_report_csv(report: AssessmentReport, path: str | Path) -> Path:
    """Per-class table (``REPORT_COLUMNS``) and a last ``overall`` row with overall accuracy in the UA columns."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    o = report.overall()
    with p.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=REPORT_COLUMNS)
        w.writeheader()
        for r in report.class_rows():
            w.writerow({k: _cell(v) for k, v in r.items()})
        w.writerow(
            {
                "class_name": "overall",
                "users_accuracy": _cell(o["overall_accuracy"]),
                "users_accuracy_se": _cell(o["overall_accuracy_se"]),
                "users_accuracy_ci_low": _cell(o["overall_accuracy_ci_low"]),
                "users_accuracy_ci_high": _cell(o["overall_accuracy_ci_high"]),
                "area_unit": report.area_unit,
            }
        )
    return p


def write_error_matrix_csv(report: AssessmentReport, path: str | Path) -> Path:
    """Estimated error matrix of area proportions ``p_ij`` (rows map, columns reference) with margins."""
    p = Path(path)
    names = [c.name for c in report.areas.classes]
    e = report.estimates
    with p.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["map \\ reference", *names, "total"])
        for k, n in enumerate(names):
            w.writerow([n, *(f"{v:.6f}" for v in e.proportions[k]), f"{e.proportions[k].sum():.6f}"])
        w.writerow(["total", *(f"{v:.6f}" for v in e.area_proportion), f"{e.proportions.sum():.6f}"])
    return p


def _fmt(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _fmt_area(v: float | None) -> str:
    return "–" if v is None else f"{v:,.1f}"


def bar_chart_svg(report: AssessmentReport, width: int = 680) -> str:
    """Inline SVG: per class, a grey bar (mapped area) and a blue bar (estimated area) with its 95 % interval."""
    rows = report.class_rows()
    top = max([r["mapped_area"] or 0.0 for r in rows] + [r["estimated_area_ci_high"] or 0.0 for r in rows] + [1e-9])
    left, right, bar_h, gap = 170, 20, 11, 12
    plot_w = width - left - right
    height = 30 + len(rows) * (2 * bar_h + gap) + 20

    def x(v: float) -> float:
        return left + plot_w * max(v, 0.0) / top

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="mapped vs estimated area">',
        f'<text x="{left}" y="14" class="lg"><tspan fill="#9e9e9e">■</tspan> mapped '
        f'<tspan fill="#1f77b4">■</tspan> estimated ± 95% CI ({report.area_unit})</text>',
    ]
    for k, r in enumerate(rows):
        y0 = 26 + k * (2 * bar_h + gap)
        mapped, est = r["mapped_area"] or 0.0, r["estimated_area"] or 0.0
        lo, hi = r["estimated_area_ci_low"] or 0.0, r["estimated_area_ci_high"] or 0.0
        cy = y0 + bar_h + bar_h / 2
        parts += [
            f'<text x="{left - 6}" y="{y0 + bar_h + 4}" text-anchor="end">{html.escape(r["class_name"])}</text>',
            f'<rect x="{left}" y="{y0}" width="{x(mapped) - left:.1f}" height="{bar_h}" fill="#9e9e9e"/>',
            f'<rect x="{left}" y="{y0 + bar_h}" width="{x(est) - left:.1f}" height="{bar_h}" fill="#1f77b4"/>',
            f'<line x1="{x(lo):.1f}" y1="{cy}" x2="{x(hi):.1f}" y2="{cy}" stroke="#000"/>',
            f'<line x1="{x(lo):.1f}" y1="{cy - 4}" x2="{x(lo):.1f}" y2="{cy + 4}" stroke="#000"/>',
            f'<line x1="{x(hi):.1f}" y1="{cy - 4}" x2="{x(hi):.1f}" y2="{cy + 4}" stroke="#000"/>',
        ]
    parts.append(f'<line x1="{left}" y1="22" x2="{left}" y2="{height - 16}" stroke="#444"/>')
    parts.append(f'<text x="{left}" y="{height - 4}" text-anchor="middle">0</text>')
    parts.append(
        f'<text x="{width - right}" y="{height - 4}" text-anchor="end">{_fmt_area(top)} {report.area_unit}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


_CSS = (
    "body{font-family:Helvetica,Arial,sans-serif;font-size:13px;margin:24px;max-width:980px;color:#222}"
    "h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:18px 0 6px}"
    "table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
    "th{background:#f2f2f2}td.l,th.l{text-align:left}.note{background:#fff4e5;border-left:4px solid #f0a000;"
    "padding:6px 10px}.meta{color:#555}svg text{font-size:11px}svg .lg{font-size:12px}"
)


def _class_table(report: AssessmentReport) -> str:
    u = report.area_unit
    head = (
        f"<tr><th class='l'>class</th><th>mapped ({u})</th><th>mapped %</th><th>n</th>"
        f"<th>estimated area ({u}) ± 95% CI</th><th>user's accuracy ± CI</th><th>producer's accuracy ± CI</th></tr>"
    )
    body = []
    z = report.estimates.z
    for r in report.class_rows():

        def pm(v: float | None, se: float | None, area: bool = False) -> str:
            if v is None:
                return "–"
            half = z * (se or 0.0)
            return f"{_fmt_area(v)} ± {_fmt_area(half)}" if area else f"{v:.3f} ± {half:.3f}"

        body.append(
            f"<tr><td class='l'>{html.escape(r['class_name'])}</td><td>{_fmt_area(r['mapped_area'])}</td>"
            f"<td>{r['mapped_percent']:.2f}</td><td>{r['n_sample']}</td>"
            f"<td>{pm(r['estimated_area'], r['estimated_area_se'], True)}</td>"
            f"<td>{pm(r['users_accuracy'], r['users_accuracy_se'])}</td>"
            f"<td>{pm(r['producers_accuracy'], r['producers_accuracy_se'])}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _matrix_table(report: AssessmentReport) -> str:
    names = [html.escape(c.name) for c in report.areas.classes]
    e = report.estimates
    head = "<tr><th class='l'>map \\ reference</th>" + "".join(f"<th>{n}</th>" for n in names) + "<th>total</th></tr>"
    rows = [
        f"<tr><th class='l'>{n}</th>"
        + "".join(f"<td>{v:.4f}</td>" for v in e.proportions[k])
        + f"<td>{e.proportions[k].sum():.4f}</td></tr>"
        for k, n in enumerate(names)
    ]
    rows.append(
        "<tr><th class='l'>total</th>"
        + "".join(f"<td>{v:.4f}</td>" for v in e.area_proportion)
        + f"<td>{e.proportions.sum():.4f}</td></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def render_report_html(report: AssessmentReport) -> str:
    """The one-page HTML report as a string (see module docstring)."""
    o = report.overall()
    z = report.estimates.z
    lab = report.labels
    note_cls = "note" if lab.source == "label_raster" else "meta"
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(report.title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(report.title)}</h1>"
        f"<p class='meta'>Map: {html.escape(report.map_path)}{' · ' + html.escape(report.date) if report.date else ''}"
        f" · stratified random sample, {lab.n_sample} points ({len(lab.ids)} with reference labels) · "
        "estimators of Olofsson et al. (2014, RSE 148:42-57)</p>"
        f"<p class='{note_cls}'>{html.escape(lab.note)}</p>"
        f"<h2>Overall accuracy: {o['overall_accuracy']:.3f} ± {z * o['overall_accuracy_se']:.3f} (95% CI "
        f"{o['overall_accuracy_ci_low']:.3f}–{o['overall_accuracy_ci_high']:.3f})</h2>"
        f"<h2>Areas and accuracies per class</h2>{_class_table(report)}"
        f"<h2>Mapped vs estimated area</h2>{bar_chart_svg(report)}"
        f"<h2>Estimated error matrix (proportions of area; rows map, columns reference)</h2>{_matrix_table(report)}"
        "</body></html>"
    )


def write_report_html(report: AssessmentReport, path: str | Path) -> Path:
    """Write :func:`render_report_html` to ``path`` (UTF-8)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_report_html(report), encoding="utf-8")
    return p
