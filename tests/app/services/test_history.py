"""The runs table and comparison data built from the database, tolerant of old runs and missing keys."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from app.services import history
from app.services.live import estimate_eta, format_seconds, live_status
from db.runs import RunTracker


def test_metric_aliases_and_nesting() -> None:
    assert history.metric({"overall_accuracy": 0.8}, "oa") == 0.8
    assert history.metric({"test": {"mean_iou": 0.5}}, "miou") == 0.5
    assert history.metric({"oa": None, "overall_accuracy": 0.7}, "oa") == 0.7
    assert history.metric(None, "oa") is None and history.metric({}, "kappa") is None


def test_table_filters_and_csv(db_url: str) -> None:
    t = RunTracker(db_url)
    a = t.create("pipeline", {"scene": "s1", "model": "unet", "num_workers": 2})
    t.succeed(a, metrics={"overall_accuracy": 0.9, "mean_iou": 0.6})
    b = t.create("tile", {"scene": "s2", "cluster": {"n_workers": 3}})
    df = history.runs_table(t)
    assert list(df["id"]) == [b, a] and list(df["workers"]) == [3, 2]
    assert df.set_index("id").loc[a, "test_oa"] == 0.9 and df.set_index("id").loc[a, "miou"] == 0.6
    assert list(history.filter_runs(df, scenes=["s1"])["id"]) == [a]
    assert list(history.filter_runs(df, text="TILE")["id"]) == [b]
    csv = history.table_csv(df).decode()
    assert csv.splitlines()[0].startswith("id,kind,started,scene") and len(csv.splitlines()) == 3


def test_config_diff_marks_differences(db_url: str) -> None:
    t = RunTracker(db_url)
    ids = [
        t.create("pipeline", {"model": m, "epochs": 3, "split": {"method": "spatial", "seed": s}})
        for m, s in (("unet", 0), ("unet", 1))
    ]
    diff = history.config_diff([t.get(i) for i in ids])
    assert diff.index[0] == "split.seed" and bool(diff.loc["split.seed", "differs"])
    assert not diff.loc["model", "differs"] and not diff.loc["epochs", "differs"]


def test_confusion_in_both_layouts(db_url: str) -> None:
    t = RunTracker(db_url)
    a = t.create("evaluate", {})
    t.succeed(a, metrics={"confusion": {"matrix": [[3, 1], [0, 4]], "ids": [1, 2], "names": ["a", "b"]}})
    b = t.create("evaluate", {})
    t.succeed(b, metrics={"confusion_matrix": [[5]], "class_ids": [7]})
    c = t.create("evaluate", {})
    t.succeed(c, metrics={"confusion": {"matrix": [[1, 2]], "ids": [1, 2]}})  # malformed: not square
    cm = history.confusion(t.get(a))
    assert cm is not None and cm.loc["a", "b"] == 1 and list(cm.columns) == ["a", "b"]
    long = history.confusion_long(t.get(a)).set_index(["reference", "predicted"])
    assert long.loc[("a", "a"), "share"] == pytest.approx(0.75)
    assert history.confusion(t.get(b)).loc["7", "7"] == 5  # type: ignore[union-attr]
    assert history.confusion(t.get(c)) is None


def test_eta_and_live_status(db_url: str) -> None:
    t0 = datetime(2026, 1, 1)
    points = [(t0, 0), (t0 + timedelta(seconds=10), 5)]
    assert estimate_eta(points, 20) == pytest.approx(30.0)
    assert estimate_eta(points, 20, now=t0 + timedelta(seconds=20)) == pytest.approx(20.0)
    assert estimate_eta(points[:1], 20) is None
    assert format_seconds(75.2) == "1 min 15 s" and format_seconds(None) == "-" and format_seconds(7300) == "2 h 01 min"
    tr = RunTracker(db_url)
    rid = tr.create("pipeline", {})
    tr.start(rid)
    tr.progress(rid, "inference", 2, 8)
    s = live_status(tr, rid)
    assert (s.phase, s.phase_index, s.fraction, s.active) == ("inference", 3, 0.25, True)


def test_confusion_in_class_id_order_with_scene_names(db_url: str) -> None:
    """Ids 1, 2, 10 come in that order (not '1', '10', '2'); ids without names take the scene's class names."""
    t = RunTracker(db_url)
    rid = t.create("evaluate", {})
    cm = [[5, 0, 1], [0, 7, 0], [2, 0, 9]]  # stored in the order 10, 2, 1
    t.succeed(rid, metrics={"confusion_matrix": cm, "class_ids": [10, 2, 1], "class_names": ["10", "2", "1"]})
    table = history.confusion(t.get(rid), class_names={1: "forest", 2: "water", 10: "urban"})
    assert table is not None and list(table.index) == ["forest", "water", "urban"] == list(table.columns)
    assert table.loc["urban", "urban"] == 5 and table.loc["urban", "forest"] == 1 and table.loc["forest", "urban"] == 2
    long = history.confusion_long(t.get(rid), class_names={1: "forest", 2: "water", 10: "urban"})
    assert list(dict.fromkeys(long["reference"])) == ["forest", "water", "urban"]
    assert list(history.confusion(t.get(rid)).index) == ["1", "2", "10"]  # type: ignore[union-attr]


def test_assessed_oa_has_its_own_column(db_url: str) -> None:
    t = RunTracker(db_url)
    p = t.create("pipeline", {})
    t.succeed(p, metrics={"oa": 0.91})
    a = t.create("assess", {"prediction_run": p})
    t.succeed(a, metrics={"oa": 0.84, "overall": {"overall_accuracy": 0.84, "overall_accuracy_ci_low": 0.8}})
    table = history.runs_table(t).set_index("id")
    assert table.loc[p, "test_oa"] == 0.91 and pd.isna(table.loc[p, "assessed_oa"])
    assert pd.isna(table.loc[a, "test_oa"]) and table.loc[a, "assessed_oa"] == 0.84
