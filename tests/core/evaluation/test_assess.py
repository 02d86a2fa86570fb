"""Job-level functions: draw a sample, assess with interpreted labels or a label raster, report files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigError, GridMismatchError
from core.evaluation.assess import (
    AssessJobConfig,
    DrawSampleJobConfig,
    run_assess,
    run_draw_sample,
)
from core.evaluation.errors import InsufficientSampleError, SampleMismatchError
from core.evaluation.estimator import stratified_estimates
from core.evaluation.sample_design import SampleDesign

NAMES = ["forest", "water", "urban"]


def _truth_and_map() -> tuple[np.ndarray, np.ndarray]:
    """A 60x80 truth (forest/water/urban) and a map that calls 20 % of the water forest."""
    truth = np.ones((60, 80), dtype=np.uint8)
    truth[:, 40:] = 2
    truth[45:, :30] = 3
    rng = np.random.default_rng(5)
    pred = truth.copy()
    pred[(truth == 2) & (rng.random(truth.shape) < 0.2)] = 1
    return truth, pred


@pytest.fixture
def drawn(class_map, tmp_path: Path) -> tuple[Path, dict, np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def,type-arg]
    truth, pred = _truth_and_map()
    path = class_map("pred.tif", pred, [1, 2, 3], class_names=NAMES)
    calls: list[tuple[str, int, int]] = []
    res = run_draw_sample(
        DrawSampleJobConfig(str(path), str(tmp_path / "sample"), SampleDesign(per_class={1: 40, 2: 30, 3: 20}, seed=3)),
        progress=lambda *a: calls.append(a),
    )
    assert calls[-1][0] == "resolve" and calls[-1][1] == calls[-1][2]
    return path, res, truth, pred


def _fill_labels(sample_csv: str, truth: np.ndarray, out: Path, meta: dict) -> Path:  # type: ignore[type-arg]
    rows = list(csv.DictReader(Path(sample_csv).read_text().splitlines()))
    by_id = {p["id"]: p for p in meta["points"]}
    for r in rows:
        p = by_id[int(r["id"])]
        r["ref_class"] = int(truth[p["row"], p["col"]])
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


def test_draw_sample_job(drawn) -> None:  # type: ignore[no-untyped-def]
    path, res, _, pred = drawn
    assert res["n_points"] == 90 and res["allocation"] == {"1": 40, "2": 30, "3": 20}
    assert res["stratum_pixels"] == {str(c): int((pred == c).sum()) for c in (1, 2, 3)}
    assert all(Path(f).is_file() for f in res["files"].values())
    json.dumps(res)
    cfg = DrawSampleJobConfig(str(path), "out", SampleDesign(target_se=0.02, seed=1))
    assert DrawSampleJobConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_assess_with_interpreted_labels(drawn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, res, truth, pred = drawn
    meta = json.loads(Path(res["files"]["json"]).read_text())
    labels = _fill_labels(res["files"]["csv"], truth, tmp_path / "labels.csv", meta)
    cfg = AssessJobConfig(
        prediction=str(path),
        sample=res["files"]["gpkg"],
        labels=str(labels),
        output_dir=str(tmp_path / "report"),
        date="2023-07-09",
    )
    assert AssessJobConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    out = run_assess(cfg)
    json.dumps(out)
    counts = np.zeros((3, 3), dtype=int)
    for p in meta["points"]:
        counts[p["map_class"] - 1, truth[p["row"], p["col"]] - 1] += 1
    px = [int((pred == c).sum()) for c in (1, 2, 3)]
    ref = stratified_estimates(counts, [100.0 * n for n in px])
    assert out["estimates"]["counts"] == counts.tolist()
    assert out["overall"]["overall_accuracy"] == pytest.approx(ref.overall_accuracy)
    rows = {r["class_name"]: r for r in out["classes"]}
    assert rows["water"]["estimated_area"] == pytest.approx(ref.area[1] / 1e4)
    assert rows["water"]["mapped_area"] == pytest.approx(px[1] * 100 / 1e4)
    assert rows["urban"]["users_accuracy"] == 1.0 and out["area_unit"] == "ha"
    # the estimate corrects the map's bias: water is under-mapped, the estimate is closer to the truth
    true_water_ha = (truth == 2).sum() * 100 / 1e4
    assert abs(rows["water"]["estimated_area"] - true_water_ha) < abs(rows["water"]["mapped_area"] - true_water_ha)
    assert rows["water"]["estimated_area_ci_low"] <= true_water_ha <= rows["water"]["estimated_area_ci_high"]
    _check_files(out["files"], n_classes=3)


def _check_files(files: dict, n_classes: int) -> None:  # type: ignore[type-arg]
    table = list(csv.DictReader(Path(files["assessment"]).read_text().splitlines()))
    assert len(table) == n_classes + 1 and table[-1]["class_name"] == "overall" and table[0]["area_unit"] == "ha"
    matrix = list(csv.reader(Path(files["error_matrix"]).read_text().splitlines()))
    assert len(matrix) == n_classes + 2 and float(matrix[-1][-1]) == pytest.approx(1.0, abs=1e-5)
    html = Path(files["report"]).read_text()
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html and "<svg" in html
    assert "<script" not in html and "src=" not in html and "href=" not in html and "<link" not in html
    assert html.count("<rect") == 2 * n_classes and "Overall accuracy" in html
    assert json.loads(Path(files["json"]).read_text())["files"] == files


def test_assess_with_a_label_raster_says_so(drawn, make_raster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, res, truth, _ = drawn
    lab = truth.astype(np.float32)
    lab[:5, :] = 0  # a few rows unlabelled
    raster = make_raster("labels.tif", lab, nodata=0.0)
    out = run_assess(
        AssessJobConfig(
            prediction=str(path), sample=res["files"]["json"], label_raster=str(raster), output_dir=str(tmp_path / "r")
        )
    )
    assert out["reference"]["source"] == "label_raster" and out["reference"]["n_not_covered"] > 0
    html = Path(out["files"]["report"]).read_text()
    assert "Reference labels were NOT collected for this sample" in html and "class='note'" in html


def test_stratum_without_reference_points_writes_nothing(drawn, make_raster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, res, truth, _ = drawn
    lab = truth.astype(np.float32)
    lab[45:, :30] = 0  # the label raster does not cover any urban pixel
    raster = make_raster("labels.tif", lab, nodata=0.0)
    out_dir = tmp_path / "r"
    with pytest.raises(
        InsufficientSampleError,
        match=r"stratum 'urban' \(map class 3, mapped size .*\) has 0 "
        r"reference point\(s\)",
    ):
        run_assess(
            AssessJobConfig(
                prediction=str(path), sample=res["files"]["json"], label_raster=str(raster), output_dir=str(out_dir)
            )
        )
    assert not out_dir.exists()


def test_prediction_of_another_scene_is_refused(drawn, class_map, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, res, truth, pred = drawn
    other = class_map(
        "other.tif", pred, [1, 2, 3], class_names=NAMES, transform=(10.0, 0.0, 600000.0, 0.0, -10.0, 5600000.0)
    )
    labels = _fill_labels(
        res["files"]["csv"], truth, tmp_path / "l.csv", json.loads(Path(res["files"]["json"]).read_text())
    )
    out_dir = tmp_path / "r"
    with pytest.raises(
        SampleMismatchError,
        match=r"was drawn from map '.*pred.tif', not from '.*other.tif': "
        r"transform \(10.0, 0.0, 500000.0",
    ):
        run_assess(
            AssessJobConfig(
                prediction=str(other), sample=res["files"]["json"], labels=str(labels), output_dir=str(out_dir)
            )
        )
    assert issubclass(SampleMismatchError, GridMismatchError) and not out_dir.exists()


def test_same_grid_but_repredicted_map_is_refused(drawn, class_map, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, res, truth, pred = drawn
    changed = pred.copy()
    changed[:3, :3] = 3
    other = class_map("again.tif", changed, [1, 2, 3], class_names=NAMES)
    labels = _fill_labels(
        res["files"]["csv"], truth, tmp_path / "l.csv", json.loads(Path(res["files"]["json"]).read_text())
    )
    with pytest.raises(SampleMismatchError, match=r"other class pixel counts than the map the sample was drawn from"):
        run_assess(
            AssessJobConfig(
                prediction=str(other), sample=res["files"]["json"], labels=str(labels), output_dir=str(tmp_path / "r")
            )
        )


def test_config_needs_exactly_one_reference_source() -> None:
    with pytest.raises(ConfigError, match="give exactly one reference source"):
        AssessJobConfig(prediction="p.tif", sample="s.json", output_dir="o")
    with pytest.raises(ConfigError, match=r"unknown AssessJobConfig keys \['colour'\]"):
        AssessJobConfig.from_dict({"prediction": "p", "sample": "s", "output_dir": "o", "labels": "l", "colour": 1})
