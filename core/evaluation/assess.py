"""Job-level functions: draw a reference sample, and assess a map (accuracy + error-adjusted areas + report).

Each takes a frozen config that round-trips JSON (``to_dict`` / ``from_dict``) and an optional
``progress(phase, done, total)`` callable, writes its files into the config's output folder and returns a
JSON-serialisable dict. Inputs are all read and validated before anything is written, so a bad input writes
nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rasterio.windows import Window

from core.data.rasters import open_raster
from core.errors import ConfigError
from core.evaluation.areas import MappedAreas, mapped_areas, write_areas_csv
from core.evaluation.errors import SampleMismatchError
from core.evaluation.estimator import error_matrix, stratified_estimates
from core.evaluation.map_identity import check_same_map, read_map_identity
from core.evaluation.reference import (
    ReferenceLabels,
    read_reference_labels,
    reference_from_label_raster,
)
from core.evaluation.report import (
    AssessmentReport,
    write_error_matrix_csv,
    write_report_csv,
    write_report_html,
)
from core.evaluation.sample_design import (
    ReferenceSample,
    SampleDesign,
    draw_stratified_sample,
)
from core.evaluation.sample_files import read_sample, write_sample

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


def _from_dict(cls: type, d: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys {sorted(unknown)}; expected some of {sorted(names)}")
    return dict(d)


@dataclass(frozen=True)
class DrawSampleJobConfig:
    """Draw a stratified random sample from a prediction.

    Attributes:
        prediction: uint8 class map (nodata 0, ``CLASSES`` tag).
        output_dir: folder for ``<stem>.gpkg/.csv/.json`` and ``mapped_areas.csv``.
        design: the sample design (sizes per class or target SE, seed).
        stem: base name of the sample files.
    """

    prediction: str
    output_dir: str
    design: SampleDesign = field(default_factory=lambda: SampleDesign(target_se=0.01))
    stem: str = "sample"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (see :meth:`from_dict`)."""
        return {
            "prediction": self.prediction,
            "output_dir": self.output_dir,
            "design": self.design.to_dict(),
            "stem": self.stem,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DrawSampleJobConfig:
        """Inverse of :meth:`to_dict` (raises ConfigError on unknown keys)."""
        kw = _from_dict(cls, d)
        if "design" in kw:
            kw["design"] = SampleDesign.from_dict(kw["design"])
        return cls(**kw)


def run_draw_sample(config: DrawSampleJobConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Draw the sample and write it (GeoPackage, CSV, JSON metadata) with the map's mapped areas.

    Returns:
        ``{"n_points", "allocation", "stratum_pixels", "files", "mapped_areas"}`` (JSON-serialisable).
    """
    sample = draw_stratified_sample(config.prediction, config.design, progress)
    areas = mapped_areas(config.prediction)
    files = write_sample(sample, config.output_dir, config.stem)
    files["mapped_areas"] = str(write_areas_csv(areas, Path(config.output_dir) / "mapped_areas.csv"))
    return {
        "n_points": len(sample.points),
        "allocation": {str(k): v for k, v in sample.allocation.items()},
        "stratum_pixels": {str(k): v for k, v in sample.stratum_pixels.items()},
        "files": files,
        "mapped_areas": areas.to_dict(),
    }


@dataclass(frozen=True)
class AssessJobConfig:
    """Assess a prediction with a reference sample.

    Give exactly one reference source: ``labels`` (interpreted CSV / GeoPackage with ``id_field`` and
    ``class_field``) or ``label_raster`` (an existing label raster, read where it covers the sample).

    Attributes:
        prediction: the class map the sample was drawn from.
        sample: the sample's ``.json`` or ``.gpkg`` (as written by the draw-sample job).
        output_dir: folder for the report files.
        labels, class_field, id_field: interpreted reference labels.
        label_raster: label raster (0 = unlabelled) to take the reference classes from.
        date: date of the map (free text shown in the report).
        title: report heading.
        z: normal quantile of the confidence intervals (1.96 = 95 %).
    """

    prediction: str
    sample: str
    output_dir: str
    labels: str | None = None
    class_field: str = "ref_class"
    id_field: str = "id"
    label_raster: str | None = None
    date: str = ""
    title: str = "Accuracy assessment and area estimate"
    z: float = 1.959963984540054

    def __post_init__(self) -> None:
        if (self.labels is None) == (self.label_raster is None):
            raise ConfigError(
                f"labels={self.labels!r} and label_raster={self.label_raster!r}: give exactly one "
                "reference source (an interpreted labels file, or a label raster)"
            )
        if not 0 < self.z < 10:
            raise ConfigError(f"z {self.z!r} is not a normal quantile; use 1.96 for 95 % intervals")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (see :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AssessJobConfig:
        """Inverse of :meth:`to_dict` (raises ConfigError on unknown keys)."""
        return cls(**_from_dict(cls, d))


def check_sample_against_map(sample: ReferenceSample, prediction: str, areas: MappedAreas) -> None:
    """Refuse a sample not drawn from ``prediction`` as it is now (grid, classes, stratum sizes, point classes).

    Raises:
        SampleMismatchError: naming what differs.
    """
    check_same_map(sample.map, read_map_identity(prediction))
    now = {c.class_id: c.pixels for c in areas.classes}
    if now != sample.stratum_pixels:
        diff = {
            c: (sample.stratum_pixels.get(c), now.get(c))
            for c in set(now) | set(sample.stratum_pixels)
            if sample.stratum_pixels.get(c) != now.get(c)
        }
        raise SampleMismatchError(
            f"{prediction!r} has other class pixel counts than the map the sample was drawn "
            f"from ((then, now) per class: {diff}); the map changed since; draw a new sample"
        )
    with open_raster(prediction) as src:
        wrong = [
            p.id for p in sample.points if int(src.read(1, window=Window(p.col, p.row, 1, 1))[0, 0]) != p.map_class
        ]
    if wrong:
        raise SampleMismatchError(
            f"{prediction!r}: the map class at sample ids {wrong[:10]} differs from the "
            "sample's; the sample was drawn from another map; draw a new sample"
        )


def _reference(config: AssessJobConfig, sample: ReferenceSample) -> ReferenceLabels:
    if config.labels is not None:
        return read_reference_labels(config.labels, sample, config.class_field, config.id_field)
    return reference_from_label_raster(str(config.label_raster), sample)


def run_assess(config: AssessJobConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Validate the sample and labels against the map, estimate, and write the report files.

    Files in ``output_dir``: ``mapped_areas.csv``, ``assessment.csv``, ``error_matrix.csv``, ``report.html``,
    ``assessment.json``.

    Returns:
        JSON-serialisable results: ``mapped_areas``, ``estimates``, ``classes`` (report rows), ``overall``,
        ``reference``, ``files``.

    Raises:
        SampleMismatchError, ReferenceLabelError, InsufficientSampleError, ConfigError: before anything is written.
    """
    step = (lambda name, k: progress(name, k, 4)) if progress else (lambda name, k: None)
    step("read", 0)
    sample = read_sample(config.sample)
    areas = mapped_areas(config.prediction)
    check_sample_against_map(sample, config.prediction, areas)
    step("labels", 1)
    labels = _reference(config, sample)
    ids = list(sample.map.class_ids)
    step("estimate", 2)
    counts = error_matrix(labels.map_class, labels.ref_class, ids)
    sizes = areas.stratum_sizes()
    est = stratified_estimates(counts, [sizes[c] for c in ids], ids, list(sample.map.class_names), z=config.z)
    report = AssessmentReport(
        title=config.title,
        map_path=str(Path(config.prediction).resolve()),
        areas=areas,
        estimates=est,
        labels=labels,
        date=config.date,
    )
    step("write", 3)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "mapped_areas": str(write_areas_csv(areas, out / "mapped_areas.csv")),
        "assessment": str(write_report_csv(report, out / "assessment.csv")),
        "error_matrix": str(write_error_matrix_csv(report, out / "error_matrix.csv")),
        "report": str(write_report_html(report, out / "report.html")),
        "json": str(out / "assessment.json"),
    }
    result = {
        "config": config.to_dict(),
        "mapped_areas": areas.to_dict(),
        "estimates": est.to_dict(),
        "classes": report.class_rows(),
        "overall": report.overall(),
        "area_unit": report.area_unit,
        "reference": labels.to_dict(),
        "files": files,
    }
    Path(files["json"]).write_text(json.dumps(result, indent=1))
    step("done", 4)
    log.info(
        "assessment of %s: OA %.3f ± %.3f; files in %s",
        config.prediction,
        est.overall_accuracy,
        config.z * est.overall_accuracy_se,
        out,
    )
    return result
