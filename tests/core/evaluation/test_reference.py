"""Reference labels: validation of interpreted label files, and labels taken from a label raster."""

from __future__ import annotations

import csv
from pathlib import Path

import fiona
import numpy as np
import pytest

from core.data.vectors import GPKG_OPTIONS
from core.errors import LabelError
from core.evaluation.errors import ReferenceLabelError, SampleMismatchError
from core.evaluation.reference import read_reference_labels, reference_from_label_raster
from core.evaluation.sample_design import (
    ReferenceSample,
    SampleDesign,
    draw_stratified_sample,
)
from core.evaluation.sample_files import write_sample


@pytest.fixture
def sample(class_map) -> ReferenceSample:  # type: ignore[no-untyped-def]
    data = np.ones((40, 50), dtype=np.uint8)
    data[:, 20:35] = 2
    data[30:, :] = 3
    path = class_map("m.tif", data, [1, 2, 3], class_names=["forest", "water", "urban"])
    return draw_stratified_sample(str(path), SampleDesign(per_class={1: 5, 2: 4, 3: 3}, seed=2))


def _labels_csv(path: Path, rows: list[tuple[object, object]], header: tuple[str, str] = ("id", "ref_class")) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_interpreted_labels_by_id_or_name(sample: ReferenceSample, tmp_path: Path) -> None:
    names = {1: "Forest", 2: "water", 3: "3"}
    rows = [(p.id, names[p.map_class]) for p in reversed(sample.points)]
    lab = read_reference_labels(_labels_csv(tmp_path / "l.csv", rows), sample)
    assert lab.source == "interpreted" and lab.ids == tuple(range(1, 13))
    assert lab.ref_class == lab.map_class == tuple(p.map_class for p in sample.points)
    assert "interpreted for this sample" in lab.note


def test_labels_from_the_filled_in_geopackage(sample: ReferenceSample, tmp_path: Path) -> None:
    gpkg = write_sample(sample, tmp_path)["gpkg"]
    with fiona.open(gpkg, layer="sample") as src:
        schema, crs, feats = src.schema, src.crs, list(src)
    filled = tmp_path / "filled.gpkg"
    with fiona.open(filled, "w", driver="GPKG", layer="sample", schema=schema, crs=crs, **GPKG_OPTIONS) as dst:
        for f in feats:
            props = dict(f["properties"])
            props["ref_class"] = "1"
            dst.write({"geometry": f["geometry"], "properties": props})
    lab = read_reference_labels(filled, sample)
    assert set(lab.ref_class) == {1} and len(lab.ids) == 12


def test_unknown_ids(sample: ReferenceSample, tmp_path: Path) -> None:
    rows = [(p.id, 1) for p in sample.points] + [(99, 1), (100, 2)]
    with pytest.raises(ReferenceLabelError, match=r"has ids \[99, 100\] \(2\) that are not in the sample"):
        read_reference_labels(_labels_csv(tmp_path / "l.csv", rows), sample)


def test_duplicate_ids(sample: ReferenceSample, tmp_path: Path) -> None:
    rows = [(p.id, 1) for p in sample.points] + [(3, 2)]
    with pytest.raises(ReferenceLabelError, match=r"labels ids \[3\] \(1\) more than once"):
        read_reference_labels(_labels_csv(tmp_path / "l.csv", rows), sample)


def test_missing_ids(sample: ReferenceSample, tmp_path: Path) -> None:
    rows = [(p.id, 1) for p in sample.points if p.id not in (4, 7)]
    with pytest.raises(ReferenceLabelError, match=r"no label for sample ids \[4, 7\] \(2\)"):
        read_reference_labels(_labels_csv(tmp_path / "l.csv", rows), sample)


def test_classes_outside_the_scene(sample: ReferenceSample, tmp_path: Path) -> None:
    rows = [(p.id, 9 if p.id == 5 else ("swamp" if p.id == 6 else 1)) for p in sample.points]
    with pytest.raises(
        ReferenceLabelError,
        match=r"'ref_class' values \[id 5: '9', id 6: 'swamp'\] \(2\) are not "
        r"classes of the scene; expected one of 1=forest, 2=water, 3=urban",
    ):
        read_reference_labels(_labels_csv(tmp_path / "l.csv", rows), sample)
    assert issubclass(ReferenceLabelError, LabelError) and issubclass(ReferenceLabelError, ValueError)


def test_missing_column_and_bad_ids(sample: ReferenceSample, tmp_path: Path) -> None:
    with pytest.raises(ReferenceLabelError, match=r"has no column 'ref_class' \(columns: \['id', 'label'\]\)"):
        read_reference_labels(_labels_csv(tmp_path / "a.csv", [(1, 1)], ("id", "label")), sample)
    with pytest.raises(ReferenceLabelError, match=r"'id' values \['x'\] \(1\) are not integer sample ids"):
        read_reference_labels(_labels_csv(tmp_path / "b.csv", [("x", 1)]), sample)


def test_labels_made_for_another_sample(sample: ReferenceSample, tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "map_class", "ref_class"])
        for p in sample.points:
            w.writerow([p.id, p.map_class if p.id != 2 else p.map_class % 3 + 1, 1])
    with pytest.raises(SampleMismatchError, match=r"map class of ids \[2\] \(1\) differs from the sample"):
        read_reference_labels(path, sample)


def test_labels_from_a_label_raster_say_they_were_not_collected(sample: ReferenceSample, make_raster) -> None:  # type: ignore[no-untyped-def]
    labels = np.zeros((40, 50), dtype=np.float32)
    labels[:, :25] = 2.0  # covers only the left half, and says "water" there
    path = make_raster("labels.tif", labels, nodata=0.0)
    lab = reference_from_label_raster(path, sample)
    left = [p.id for p in sample.points if p.col < 25]
    assert lab.ids == tuple(left) and set(lab.ref_class) == {2}
    assert len(lab.not_covered) == 12 - len(left)
    assert lab.note.startswith("Reference labels were NOT collected for this sample")
    assert f"({len(left)} of 12 points; {12 - len(left)} uncovered points dropped)" in lab.note


def test_label_raster_with_foreign_classes(sample: ReferenceSample, make_raster) -> None:  # type: ignore[no-untyped-def]
    path = make_raster("labels.tif", np.full((40, 50), 12, dtype=np.uint8))
    with pytest.raises(
        ReferenceLabelError,
        match=r"has values \[12.0\] \(1\) at sample points; expected classes of "
        r"the scene \[1, 2, 3\]",
    ):
        reference_from_label_raster(path, sample)
