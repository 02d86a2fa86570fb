"""The first launch from the CLI: the minimal pipeline config ``{"kind": "pipeline", "scene": "strzegom"}``, every
other field default, on a real 2-worker cluster with Horovod ranks. ``--dry-run`` shows what each split gets and the
config as it will run; the run itself succeeds with that config stored and a georeferenced map."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import rasterio

from core.data.samples import register_samples
from db.runs import RunTracker
from db.scenes import SceneStore
from jobs.cli import main

pytestmark = [pytest.mark.cluster, pytest.mark.horovod, pytest.mark.shared_data, pytest.mark.slow]


def _census(out: str) -> dict[str, list[int]]:
    """The dry run's table: row name -> [train, val, test]."""
    lines = out.split("what each split gets:\n", 1)[1].split("the job as it would run:", 1)[0].strip().splitlines()
    rows = {}
    for line in lines[1:]:
        *name, train, val, test = line.split()
        rows[" ".join(name)] = [int(v.replace(",", "")) for v in (train, val, test)]
    return rows


def test_minimal_strzegom_config_runs_from_the_cli(
    home: Path,
    tmp_path: Path,
    db_url: str,
    cluster_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    register_samples(None, SceneStore(db_url), home, only=["strzegom"])
    path = tmp_path / "p.json"
    # the minimal config plus a cap on the steps (the default budget trains for minutes: benchmarks/defaults.py)
    path.write_text(json.dumps({"kind": "pipeline", "scene": "strzegom", "max_steps": 10}))
    monkeypatch.setenv("WORKBENCH_SCHEDULER", cluster_client.scheduler.address)

    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    census = _census(out)
    assert all(n > 0 for n in census.pop("tiles (all classes)")), out
    assert census and all(train > 0 for train, _, _ in census.values()), out  # every class has training pixels
    stated = json.loads(out.split("the job as it would run:\n", 1)[1])
    assert stated["tiling"]["tile_size"] == 64 and stated["split"]["block_size"] and stated["split"]["seed"] is not None
    assert RunTracker(db_url).list() == [], "a dry run creates no run"

    assert main(["run", str(path)]) == 0, capsys.readouterr().err
    (row,) = RunTracker(db_url).list()
    assert row.status == "succeeded", row.error
    assert row.config["tiling"] == stated["tiling"] and row.config["split"] == stated["split"]
    assert 0 <= row.metrics["oa"] <= 1 and row.metrics["steps"] == 10
    rf = row.metrics["rf"]  # the random forest fitted beside the pipeline on the same store, scored on the same rows
    assert 0 < rf["oa"] <= 1 and 0 < rf["macro_f1"] <= 1 and rf["n_test"] == row.metrics["test"]["n_pixels"]
    assert row.metrics["verdict"]["text"] and "random forest" in row.metrics["verdict"]["text"]
    with rasterio.open(row.artifacts["prediction"]) as ds:
        scene = SceneStore(db_url).get("strzegom")
        assert ds.crs is not None and (ds.height, ds.width) == (scene.primary.height, scene.primary.width)
