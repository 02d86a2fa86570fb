"""Pre-flight checks: AOI measures, label counts, cluster size and memory estimates, form validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.configs import AOIConfig
from core.errors import AOIOutsideSceneError, ConfigError
from jobs.preflight import aoi_stats, build_config, estimate_memory_per_worker, preflight
from tests.app.conftest import pixel_box_wgs84, tiny_scene  # noqa: F401 - fixture

FORM = {"scene": "tiny", "model": "unet", "scheme": "data_parallel", "num_workers": 2, "epochs": 2,
        "batch_size": 4, "learning_rate": 1e-3, "size": 32}


def test_aoi_stats_counts_pixels_and_labels(tiny_scene: Any) -> None:
    s = aoi_stats(tiny_scene, AOIConfig(geometry=pixel_box_wgs84(28, 0, 36, 4)))  # 8 x 4 px, row 0 unlabelled
    assert s.pixels == 32 and s.labelled == 24
    assert s.per_class == {1: 12, 2: 12}
    assert s.area_km2 == pytest.approx(32 * 100 / 1e6, rel=1e-3)


def test_aoi_outside_raises(tiny_scene: Any) -> None:
    far = {"type": "Polygon", "coordinates": [[[0, 0], [0.01, 0], [0.01, 0.01], [0, 0.01], [0, 0]]]}
    with pytest.raises(AOIOutsideSceneError, match="does not overlap scene 'tiny'"):
        aoi_stats(tiny_scene, AOIConfig(geometry=far))


def test_preflight_findings(tiny_scene: Any) -> None:
    config = build_config({**FORM, "aoi": pixel_box_wgs84(0, 0, 64, 64)})
    ok = preflight(config, tiny_scene, cluster_workers=2, worker_memory_bytes=8 * 2**30)
    assert ok.ok and ok.stats is not None and ok.stats.labelled == 64 * 63
    too_many = preflight(config, tiny_scene, cluster_workers=1)
    assert "asks for 2 workers but the cluster has 1" in " ".join(too_many.errors)
    small = preflight(config, tiny_scene, cluster_workers=2, worker_memory_bytes=2**20)
    assert "above the worker memory limit of 0.00 GiB" in " ".join(small.errors)


def test_memory_estimate_grows_with_batch_and_tile(tiny_scene: Any) -> None:
    small = estimate_memory_per_worker(build_config(FORM), tiny_scene, None)
    bigger = estimate_memory_per_worker(build_config({**FORM, "batch_size": 64, "size": 64}), tiny_scene, None)
    assert 700 * 2**20 < small < bigger


def test_build_config_lists_every_bad_field() -> None:
    with pytest.raises(ConfigError) as info:
        build_config({**FORM, "model": "patch_cnn", "size": 8, "epochs": 0})
    text = str(info.value)
    assert "sampling.patch_size: patch_size 8 is even" in text and "epochs" in text


def test_scene_without_labels_cannot_train(home: Path, tmp_path: Path, db_url: str) -> None:
    import numpy as np

    from core.registry import SceneSpec, register_scene
    from db.scenes import SceneStore
    from tests.conftest import write_raster

    img = write_raster(tmp_path / "i.tif", np.ones((1, 16, 16), dtype="uint8"))
    scene = register_scene(SceneSpec.model_validate({"name": "nolab", "acquisitions": [
        {"files": {"x": [str(img)]}}]}), SceneStore(db_url), home)
    report = preflight(build_config({**FORM, "scene": "nolab"}), scene, cluster_workers=2)
    assert "has no label rasters" in " ".join(report.errors)
