"""The sample and assess job kinds through the runner: a real SQLite run database, a registered tiny scene and a
class-map COG; bad inputs fail the run with a clear message and write no report."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from core.data.cog import write_class_metadata
from core.errors import ConfigError, WorkbenchError
from db.runs import RunTracker
from jobs.assess import AssessJobConfig, SampleJobConfig, run_assess_job, run_sample
from jobs.runner import execute
from tests.app.conftest import SIZE, T0, tiny_scene  # noqa: F401 - the fixture
from tests.conftest import write_raster


def _prediction_run(db_url: str, tmp_path: Path, wrong_cols: int = 4) -> int:
    """A succeeded predict run whose map is the labels with ``wrong_cols`` columns of class 1 mapped as 2."""
    pred = np.ones((SIZE, SIZE), np.uint8)
    pred[:, SIZE // 2 - wrong_cols :] = 2
    path = write_raster(tmp_path / f"pred{wrong_cols}.tif", pred, transform=T0, nodata=0)
    with rasterio.open(path, "r+") as dst:
        write_class_metadata(dst, [1, 2], ["forest", "water"], ["#228b22", "#1f78b4"])
    t = RunTracker(db_url)
    rid = t.create("predict", {"kind": "predict", "scene": "tiny", "model": "m", "date": "20220101"})
    t.start(rid)
    t.succeed(rid, metrics={"prediction_date": "20220101"}, artifacts={"prediction": str(path)})
    return rid


def test_sample_then_assess_with_the_scene_labels(tiny_scene: Any, db_url: str, tmp_path: Path) -> None:
    pid = _prediction_run(db_url, tmp_path)
    sid = execute(SampleJobConfig(prediction_run=pid, per_class=30, seed=3), run_sample, db_url=db_url)
    t = RunTracker(db_url)
    srow = t.get(sid)
    assert srow.status == "succeeded" and srow.metrics["n_points"] == 60
    with open(srow.artifacts["csv"]) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 60 and {"id", "x", "y", "lon", "lat", "map_class"} <= set(rows[0])
    aid = execute(
        AssessJobConfig(prediction_run=pid, sample_run=sid, reference="scene_labels"), run_assess_job, db_url=db_url
    )
    arow = t.get(aid)
    assert arow.status == "succeeded", arow.error
    m = arow.metrics
    # the truth: class 1 is 32 columns x 63 labelled rows; the map says 28 columns; the estimate is unbiased
    mapped = {r["class_name"]: r for r in m["classes"]}
    assert mapped["forest"]["mapped_area"] < mapped["forest"]["estimated_area"]
    assert mapped["forest"]["users_accuracy"] == pytest.approx(1.0)
    assert 0 < m["oa"] < 1 and m["overall"]["overall_accuracy_ci_low"] < m["oa"]
    assert "not collected for this sample" in m["reference"]["note"] or m["reference"]["source"] == "label_raster"
    assert Path(arow.artifacts["report"]).read_text().startswith("<!DOCTYPE html>")


def test_interpreted_labels_with_a_duplicate_id_fail_and_write_nothing(
    tiny_scene: Any, db_url: str, tmp_path: Path
) -> None:
    pid = _prediction_run(db_url, tmp_path)
    sid = execute(SampleJobConfig(prediction_run=pid, per_class=5), run_sample, db_url=db_url)
    t = RunTracker(db_url)
    with open(t.get(sid).artifacts["csv"]) as fh:
        rows = list(csv.DictReader(fh))
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "ref_class"])
        for r in rows + rows[:1]:
            w.writerow([r["id"], r["map_class"]])
    with pytest.raises(WorkbenchError, match=r"ids \[1\] \(1\) more than once"):
        execute(AssessJobConfig(prediction_run=pid, sample_run=sid, labels=str(labels)), run_assess_job, db_url=db_url)
    failed = t.list(kind="assess")[0]
    assert failed.status == "failed" and "more than once" in failed.error
    from core.settings import get_settings

    assert not list((get_settings().runs_dir / f"run-{failed.id:05d}").glob("*"))  # nothing written


def test_bad_run_ids_are_refused_with_the_fix(tiny_scene: Any, db_url: str, tmp_path: Path) -> None:
    t = RunTracker(db_url)
    tile = t.create("tile", {"kind": "tile", "scene": "tiny"})
    with pytest.raises(ConfigError, match=r"run \d+ \(tile, pending\) has no prediction map"):
        execute(SampleJobConfig(prediction_run=tile, per_class=5), run_sample, db_url=db_url)
    with pytest.raises(ConfigError, match="run 999 does not exist"):
        execute(SampleJobConfig(prediction_run=999, per_class=5), run_sample, db_url=db_url)
    first, second = _prediction_run(db_url, tmp_path, 4), _prediction_run(db_url, tmp_path, 2)
    sid = execute(SampleJobConfig(prediction_run=first, per_class=5), run_sample, db_url=db_url)
    with pytest.raises(ConfigError, match=f"was drawn from run {first}, not {second}"):
        execute(
            AssessJobConfig(prediction_run=second, sample_run=sid, reference="scene_labels"),
            run_assess_job,
            db_url=db_url,
        )
    with pytest.raises(ValueError, match="give exactly one of per_class"):
        SampleJobConfig(prediction_run=first)
