"""AppTest of the Runs page: the history table from a test database, filters, CSV export, comparing runs."""

from __future__ import annotations

import pytest

from tests.app.conftest import app_test


def make_runs(db_url: str) -> list[int]:
    """Three runs: two finished pipeline runs (unet 2 workers, patch_cnn 1 worker) and one failed tile run."""
    from db.runs import RunTracker

    t = RunTracker(db_url)
    ids = []
    for model, workers, epochs, oa in (("unet", 2, 3, 0.81), ("patch_cnn", 1, 2, 0.74)):
        rid = t.create(
            "pipeline",
            {
                "kind": "pipeline",
                "scene": "tiny",
                "model": model,
                "scheme": "data_parallel",
                "num_workers": workers,
                "epochs": epochs,
                "batch_size": 8,
            },
        )
        t.start(rid)
        for e in range(1, epochs + 1):
            t.event(
                rid,
                "epoch",
                phase="training",
                epoch=e,
                loss=1.0 / e,
                accuracy=0.5 + 0.1 * e,
                val_loss=1.2 / e,
                val_accuracy=0.45 + 0.1 * e,
                seconds=2.0 * workers,
            )
        t.worker_stat(
            rid,
            "tcp://127.0.0.1:1",
            rank=0,
            phase="training",
            bytes_sent=2**20,
            bytes_recv=2 * 2**20,
            cpu_percent=95.0,
            peak_mem_bytes=2**30,
        )
        t.succeed(
            rid,
            metrics={
                "oa": oa,
                "kappa": 0.7,
                "miou": oa - 0.2,
                "macro_f1": oa - 0.1,
                "best_val_accuracy": oa + 0.02,
                "train_seconds": 10.0 * epochs,
                "samples_per_s": 100.0 * workers,
                "per_class": {"1": {"name": "forest", "f1": oa}, "2": {"name": "water", "f1": oa - 0.3}},
                "confusion": {"matrix": [[8, 2], [1, 9]], "ids": [1, 2], "names": ["forest", "water"]},
            },
        )
        ids.append(rid)
    rid = t.create("tile", {"kind": "tile", "scene": "other"})
    t.fail(rid, "ValueError: broken")
    return [*ids, rid]


def frame_with(at: object, column: str):  # type: ignore[no-untyped-def]
    """The first dataframe shown whose columns include ``column`` (dataframes have no key in AppTest)."""
    for df in at.dataframe:  # type: ignore[attr-defined]
        value = df.value
        value = getattr(value, "data", value)  # a Styler holds its frame in .data
        if column in value.columns:
            return value
    raise AssertionError(f"no dataframe with column {column!r}")


def test_history_table_lists_every_run_with_scores(db_url: str) -> None:
    make_runs(db_url)
    at = app_test("runs").run()
    assert not at.exception
    df = at.dataframe[0].value
    assert list(df["id"]) == [3, 2, 1]  # newest first
    assert list(df["status"]) == ["failed", "succeeded", "succeeded"]
    assert df.set_index("id").loc[1, "test_oa"] == 0.81
    assert df.set_index("id").loc[2, "samples_per_s"] == 100.0
    assert df.set_index("id").loc[1, "workers"] == 2
    assert df.set_index("id").loc[3, "test_oa"] != df.set_index("id").loc[3, "test_oa"]  # NaN for the tile run


def test_filters_narrow_the_table(db_url: str) -> None:
    make_runs(db_url)
    at = app_test("runs").run()
    at.multiselect(key="runs_status").set_value(["succeeded"]).run()
    assert sorted(at.dataframe[0].value["id"]) == [1, 2]
    at.text_input(key="runs_text").set_value("patch").run()
    assert list(at.dataframe[0].value["id"]) == [2]


def test_compare_two_runs(db_url: str) -> None:
    make_runs(db_url)
    at = app_test("runs").run()
    at.multiselect(key="runs_compare").set_value([1, 2]).run()
    assert not at.exception
    diff = frame_with(at, "run 1")
    assert list(diff.columns) == ["run 1", "run 2"]
    assert diff.loc["model", "run 1"] == "unet" and diff.loc["model", "run 2"] == "patch_cnn"
    caption = " ".join(c.value for c in at.caption)
    assert "3 of 7 settings differ" in caption  # model, num_workers, epochs
    tp = frame_with(at, "mean_epoch_seconds").set_index("run")
    assert tp.loc["run 1", "mean_epoch_seconds"] == 4.0 and tp.loc["run 2", "samples_per_s"] == 100.0
    traffic = frame_with(at, "MiB_sent")
    assert list(traffic["MiB_sent"]) == [1.0, 1.0]
    charts = at.get("vega_lite_chart")
    assert len(charts) >= 5  # loss, accuracy, per-class F1, epoch time, traffic, 2 confusion heatmaps


def test_one_run_selected_asks_for_more(db_url: str) -> None:
    make_runs(db_url)
    at = app_test("runs").run()
    at.multiselect(key="runs_compare").set_value([1]).run()
    assert "Pick two or more runs" in " ".join(c.value for c in at.caption)


def test_empty_history(db_url: str) -> None:
    at = app_test("runs").run()
    assert "No run yet" in at.info[0].value


def test_compare_tolerates_runs_without_metrics(db_url: str) -> None:
    ids = make_runs(db_url)
    at = app_test("runs").run()
    at.multiselect(key="runs_compare").set_value([ids[0], ids[2]]).run()
    assert not at.exception
    assert any("no confusion matrix" in c.value for c in at.caption)


def test_an_assessment_links_to_its_map_and_has_its_own_oa_column(db_url: str) -> None:
    from db.runs import RunTracker

    t = RunTracker(db_url)
    p = t.create("pipeline", {"kind": "pipeline", "scene": "tiny"})
    t.succeed(p, metrics={"oa": 0.9})
    a = t.create("assess", {"kind": "assess", "prediction_run": p, "sample_run": 3})
    cls = {"class_name": "forest", "n_sample": 50, "mapped_area": 10.0, "estimated_area": 11.0}
    t.succeed(a, metrics={"oa": 0.8, "overall": {"overall_accuracy": 0.8}, "classes": [cls], "area_unit": "ha"})
    at = app_test("runs").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value.set_index("id")
    assert table.loc[a, "assessed_oa"] == 0.8 and table.loc[p, "test_oa"] == 0.9
    assert any(f"review?run={p}" in m.value and f"run {p}" in m.value for m in at.markdown)


def test_deep_model_and_its_random_forest_side_by_side(db_url: str) -> None:
    """A pipeline stores its RF's metrics and the verdict (jobs.rf_beside); the page shows them beside the deep
    model's, and says in plain words when the deep model loses."""
    from db.runs import RunTracker
    from jobs.rf_beside import compare

    make_runs(db_url)
    t = RunTracker(db_url)
    deep = {
        "overall_accuracy": 0.70,
        "macro_f1": 0.40,
        "per_class": {"1": {"name": "forest", "f1": 0.75}, "2": {"name": "water", "f1": 0.05}},
    }
    rf = {"oa": 0.80, "macro_f1": 0.62, "per_class_f1": {"forest": 0.70, "water": 0.54}}
    rid = t.create("pipeline", {"kind": "pipeline", "scene": "tiny", "model": "unet", "num_workers": 2})
    t.start(rid)
    verdict = compare(deep, rf, "unet")
    t.succeed(
        rid,
        metrics={"oa": 0.70, "macro_f1": 0.40, "per_class": deep["per_class"], "rf": rf, "verdict": verdict},
    )
    at = app_test("runs").run()
    assert not at.exception
    row = at.dataframe[0].value.set_index("id").loc[rid]
    assert (row["rf_oa"], row["rf_macro_f1"], row["vs_rf"]) == (0.80, 0.62, "loses")
    assert not isinstance(at.dataframe[0].value.set_index("id").loc[1, "vs_rf"], str)  # no RF: no verdict
    text = " ".join(w.value for w in at.warning)
    assert "unet loses to the random forest" in text and "0.400 vs 0.620" in text and "water (0.05 vs 0.54)" in text
    assert "more training steps" in text and "another model" in text and "more labels" in text
    scores = frame_with(at, "difference").set_index("score")
    assert scores.loc["OA", "deep"] == 0.70 and scores.loc["OA", "rf"] == 0.80
    assert scores.loc["F1 water", "difference"] == pytest.approx(0.05 - 0.54)
