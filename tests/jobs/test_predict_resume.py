"""``runs rerun ID --resume`` of a cancelled predict run, through the CLI, the runner and the session's real
2-worker cluster: the resumed run computes only the windows the first had not written and its map is the one an
uninterrupted run makes."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from core.configs import PredictJobConfig
from core.errors import JobCancelledError
from tests.conftest import write_raster
from tests.core.inference.test_predict import patch_bundle

pytestmark = pytest.mark.cluster


def _register(tmp_path: Path, home: Path, db_url: str) -> None:
    from core.data.catalog import SceneSpec, register_scene
    from db.scenes import SceneStore

    data = (np.random.default_rng(0).random((3, 480, 480)) * 1000).astype("uint16")
    img = write_raster(tmp_path / "img.tif", data)
    spec = SceneSpec.model_validate(
        {
            "name": "scene",
            "classes": [{"id": i, "name": f"c{i}", "color": "#000000"} for i in (3, 5, 9)],
            "acquisitions": [{"date": "20220101", "files": {"s2": [str(img)]}}],
        }
    )
    register_scene(spec, SceneStore(db_url), home)


def test_rerun_resume_finishes_a_cancelled_prediction(
    tmp_path: Path, home: Path, db_url: str, cluster_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from db.runs import RunTracker
    from jobs.cli import main
    from jobs.engine_kinds import run_predict
    from jobs.runner import execute

    _register(tmp_path, home, db_url)
    bundle, _, _ = patch_bundle(tmp_path, 3)  # per-pixel: one task per 24 px block
    config = PredictJobConfig(model=str(bundle), scene="scene", tile_size=24, confidence=False)
    tracker = RunTracker(db_url)
    stop = threading.Event()

    def cancel_midway() -> None:
        while not stop.wait(0.1):
            runs = tracker.list(kind="predict")
            if runs and (runs[0].progress_done or 0) >= 10:
                tracker.request_cancel(runs[0].id)
                return

    threading.Thread(target=cancel_midway, daemon=True).start()
    try:
        with pytest.raises(JobCancelledError):
            execute(config, run_predict, db_url=db_url, client=cluster_client)
    finally:
        stop.set()
    first = tracker.list(kind="predict")[0]
    parts = list((home / "runs" / f"run-{first.id:05d}" / "prediction.tif.parts").glob("r*_c*.npz"))
    assert first.status == "cancelled" and 10 <= len(parts) < 400  # 20 x 20 blocks of 24 px

    monkeypatch.setenv("WORKBENCH_SCHEDULER", cluster_client.scheduler.address)
    assert main(["runs", "rerun", str(first.id), "--resume"]) == 0
    resumed = tracker.list(kind="predict")[0]
    assert resumed.status == "succeeded" and resumed.config["resume_from"] == first.id
    assert resumed.metrics["resumed_windows"] == len(parts) and resumed.metrics["windows"] == 400
    computed = [e for e in tracker.events(resumed.id) if e.kind == "progress" and e.phase == "inference"]
    assert computed[0].data["done"] > len(parts)  # counting went on from the finished windows

    whole = execute(
        config.model_copy(update={"output": str(tmp_path / "whole" / "map.tif")}),
        run_predict,
        db_url=db_url,
        client=cluster_client,
    )
    whole_map = tracker.get(whole).artifacts["prediction"]
    with rasterio.open(resumed.artifacts["prediction"]) as a, rasterio.open(whole_map) as b:
        assert np.array_equal(a.read(1), b.read(1)) and a.transform == b.transform
    assert tracker.get(whole).metrics["class_pixels"] == resumed.metrics["class_pixels"]
