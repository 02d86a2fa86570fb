"""AppTest of the Live run page: progress and phase from the database, loss curve, workers, a real cancel."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.app.conftest import REPO, app_test


def _running_run(db_url: str) -> int:
    from db.runs import RunTracker

    t = RunTracker(db_url)
    rid = t.create("pipeline", {"kind": "pipeline", "scene": "tiny", "model": "unet", "epochs": 3})
    t.start(rid)
    t.progress(rid, "tiling", 10, 10)
    t.progress(rid, "training", 1, 6)
    t.event(
        rid, "epoch", phase="training", epoch=1, loss=0.9, accuracy=0.6, val_loss=1.0, val_accuracy=0.55, seconds=3.0
    )
    for step in range(1, 5):
        t.event(rid, "step", phase="training", epoch=2, step=step, loss=0.9 - 0.1 * step, samples_per_s=50.0, rank=0)
    t.progress(rid, "training", 3, 6)
    t.worker_stat(rid, "tcp://127.0.0.1:4001", rank=0, phase="training", bytes_sent=3 * 2**20, cpu_percent=80.0)
    return rid


def test_progress_phase_epoch_and_step(db_url: str) -> None:
    rid = _running_run(db_url)
    at = app_test("live").run()
    assert not at.exception
    bar = at.get("progress")[0].proto
    assert bar.value == 50  # 3 of 6 training units
    assert bar.text == "phase 2/4: training - 3/6"
    m = {x.label: x.value for x in at.metric}
    assert m["Status"] == "running" and m["Epoch"] == "2" and m["Step"] == "4"
    assert len(at.get("vega_lite_chart")) == 1  # the loss curve
    assert at.dataframe[0].value["worker"].tolist() == ["tcp://127.0.0.1:4001"]
    assert at.button(key="live_cancel").label == "Cancel run"
    assert at.session_state["live_run_id"] == rid


def test_finished_run_has_no_cancel_button(db_url: str) -> None:
    from db.runs import RunTracker

    t = RunTracker(db_url)
    rid = t.create("pipeline", {"kind": "pipeline", "scene": "tiny"})
    t.start(rid)
    t.fail(rid, "ValueError: bad tile")
    at = app_test("live").run()
    assert "Run failed: ValueError: bad tile" in at.error[0].value
    assert not [b for b in at.button if b.key == "live_cancel"]


DRIVER = """
import sys, time
from db.runs import RunTracker
t = RunTracker(sys.argv[1]); rid = int(sys.argv[2])
t.start(rid)
while not t.cancel_requested(rid):
    t.heartbeat(rid); time.sleep(0.2)
t.cancel(rid, "cancelled by the user")
"""


def test_cancel_button_stops_the_driver(db_url: str, home: Path) -> None:
    """A real driver process polls the database like jobs.runner does; the button must make it stop."""
    from db.runs import RunTracker

    t = RunTracker(db_url)
    rid = t.create("pipeline", {"kind": "pipeline", "scene": "tiny"})
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, db_url, str(rid)],
        cwd=REPO,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 30
        while t.get(rid).status != "running" and time.monotonic() < deadline:
            time.sleep(0.2)
        at = app_test("live", timeout=60).run()
        at.button(key="live_cancel").click().run()
        assert not at.exception
        assert proc.wait(timeout=30) == 0
        assert t.get(rid).status == "cancelled"
        assert not [b for b in at.button if b.key == "live_cancel"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_workers_table_is_readable(db_url: str) -> None:
    _running_run(db_url)
    at = app_test("live").run()
    table = at.dataframe[0].value
    assert list(table.columns)[:8] == [
        "worker",
        "rank",
        "phase",
        "CPU %",
        "peak memory (MiB)",
        "sent (MiB)",
        "received (MiB)",
        "samples",
    ]
    assert table["sent (MiB)"].tolist() == [3.0] and table["CPU %"].tolist() == [80.0]


def test_vector_and_sample_runs_point_to_their_map(db_url: str) -> None:
    from db.runs import RunTracker

    t = RunTracker(db_url)
    parent = t.create("pipeline", {"kind": "pipeline", "scene": "tiny"})
    t.succeed(parent, artifacts={"prediction": "/nowhere/prediction.tif"})
    for kind, words in (("vectorize", "Polygons written"), ("sample", "Reference sample drawn")):
        rid = t.create(kind, {"kind": kind, "prediction_run": parent})
        t.succeed(rid, artifacts={"gpkg": "/x.gpkg"})
        at = app_test("live").run()
        at.selectbox(key="live_select").set_value(rid).run()
        text = at.success[0].value
        assert words in text and f"run {parent}'s map on the **Map review** page" in text
        assert "Review its prediction" not in text
        assert any(f"review?run={parent}" in m.value for m in at.markdown)
    at.selectbox(key="live_select").set_value(parent).run()
    assert at.success[0].value == "Run finished. Review its map on the **Map review** page."
    assert any(f"review?run={parent}" in m.value for m in at.markdown)


def test_a_finished_pipeline_shows_its_random_forest_beside_it(db_url: str) -> None:
    from db.runs import RunTracker
    from jobs.rf_beside import compare

    rid = _running_run(db_url)
    deep = {"overall_accuracy": 0.93, "macro_f1": 0.71, "per_class": {"1": {"name": "forest", "f1": 0.71}}}
    rf = {"oa": 0.9, "macro_f1": 0.6, "per_class_f1": {"forest": 0.6}}
    metrics = {"oa": 0.93, "macro_f1": 0.71, "per_class": deep["per_class"], "rf": rf}
    RunTracker(db_url).succeed(rid, metrics={**metrics, "verdict": compare(deep, rf, "unet")})
    at = app_test("live").run()
    assert not at.exception
    assert "unet beats the random forest on macro F1 (0.710 vs 0.600)" in " ".join(s.value for s in at.success)
    scores = at.dataframe[-1].value.set_index("score")
    assert scores.loc["macro F1", "difference"] == 0.71 - 0.6 and scores.loc["F1 forest", "rf"] == 0.6
