"""The ``baseline`` job kind: config validation, and a whole run (tile -> fit -> score -> map) through the runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from core.configs import BaselineJobConfig, SamplingConfig, SplitConfig, TileJobConfig
from core.errors import ConfigError
from tests.conftest import write_raster
from tests.core.baselines.test_bundle import T, class_map, spectra


def test_config_round_trips_and_refuses_nonsense() -> None:
    c = BaselineJobConfig(scene="s", store="/s.zarr", method="svm", features="patch", predict=True)
    assert BaselineJobConfig.model_validate_json(c.model_dump_json()) == c
    with pytest.raises(ValueError, match="give the training data: store .* or tile_job"):
        BaselineJobConfig(scene="s")
    with pytest.raises(ValueError, match="tile_job is for scene 'a' but the baseline is for 's'"):
        BaselineJobConfig(scene="s", tile_job=TileJobConfig(scene="a"))
    with pytest.raises(ValueError, match="features='patch' vectorises patches but the tile_job has mode 'tiles'"):
        BaselineJobConfig(scene="s", features="patch", tile_job=TileJobConfig(scene="s", mode="tiles"))
    with pytest.raises(ValueError, match="method"):
        BaselineJobConfig(scene="s", store="/s.zarr", method="xgb")  # type: ignore[arg-type]


def test_cli_dispatches_the_baseline_kind() -> None:
    from jobs.kinds import list_kinds, parse_config

    assert "baseline" in list_kinds()
    cfg = parse_config('{"kind": "baseline", "scene": "s", "store": "/s.zarr", "method": "knn"}')
    assert isinstance(cfg, BaselineJobConfig) and cfg.method == "knn"
    with pytest.raises(ConfigError, match="is not a valid baseline config"):
        parse_config('{"kind": "baseline", "scene": "s", "store": "/s.zarr", "method": "tree"}')


def test_missing_store_and_scene_are_config_errors(tmp_path: Path) -> None:
    from core.baselines.job import run_baseline_job

    with pytest.raises(ConfigError, match="tile store '.*nope.zarr' does not exist"):
        run_baseline_job(BaselineJobConfig(scene="s", store="x"), None, tmp_path / "nope.zarr", tmp_path)
    (tmp_path / "s.zarr").mkdir()
    with pytest.raises(ConfigError, match="predict=True needs the scene"):
        run_baseline_job(BaselineJobConfig(scene="s", store="x", predict=True), None, tmp_path / "s.zarr", tmp_path)


@pytest.mark.cluster
def test_baseline_run_records_metrics_and_map(tmp_path: Path, home: Path, db_url: str, cluster_client: Any) -> None:
    from core.data.catalog import SceneSpec, register_scene
    from db.runs import RunTracker
    from db.scenes import SceneStore
    from jobs.engine_kinds import KINDS
    from jobs.runner import execute

    rng = np.random.default_rng(7)
    truth = class_map(48, 48, rng)
    img = write_raster(tmp_path / "img.tif", spectra(truth, rng), transform=T)
    labels = write_raster(tmp_path / "labels.tif", truth, transform=T, nodata=0)
    register_scene(
        SceneSpec.model_validate(
            {
                "name": "synth",
                "classes": [
                    {"id": 2, "name": "forest", "color": "#00aa00"},
                    {"id": 4, "name": "water", "color": "#0000ff"},
                    {"id": 7, "name": "urban", "color": "#ff0000"},
                ],
                "acquisitions": [{"date": "2022-06-01", "files": {"s2": [str(img)]}, "labels": str(labels)}],
            }
        ),
        SceneStore(db_url),
        home,
    )
    config = BaselineJobConfig(
        scene="synth",
        method="knn",
        predict=True,
        block_size=24,
        tile_job=TileJobConfig(
            scene="synth",
            mode="patches",
            sampling=SamplingConfig(patch_size=3, per_class=100),
            split=SplitConfig(block_size=16, seed=2),
        ),
    )
    run_id = execute(config, KINDS["baseline"].executor, db_url=db_url, client=cluster_client)
    row = RunTracker(db_url).get(run_id)
    assert row.status == "succeeded" and row.kind == "baseline"
    m = row.metrics
    assert m["oa"] == m["test"]["overall_accuracy"] > 0.8 and m["kappa"] > 0.7  # chance ~1/3
    assert m["baseline"]["method"] == "knn" and m["baseline"]["n_train"] > 0 and m["baseline"]["n_test"] > 0
    assert m["inference"]["windows"] == 4
    art = row.artifacts
    assert Path(art["store"]).exists() and (Path(art["model"]) / "estimator.joblib").exists()
    assert Path(art["prediction"]).parent.resolve() == (home / "runs" / f"run-{run_id:05d}").resolve()
    with rasterio.open(art["prediction"]) as src:
        got = src.read(1)
        assert src.crs.to_epsg() == 32633 and tuple(src.transform)[:6] == T
    assert got.shape == (48, 48) and np.all(got > 0) and float((got == truth).mean()) > 0.8
    with rasterio.open(art["confidence"]) as src:
        assert src.read(1).max() <= 100  # KNN: share of the 5 neighbours
