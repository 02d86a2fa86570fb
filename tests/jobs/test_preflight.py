"""Pre-flight (:func:`jobs.preflight.check`): AOI measures, label counts, cluster size and memory estimates, what a
job kind declares (a train job with a ``tile_job`` included), and the list of checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.services.launch_form import build_config, preflight
from core.configs import AOIConfig
from core.errors import AOIOutsideSceneError, ConfigError
from core.training.config import TrainJobConfig
from jobs.pipeline import pipeline_parts
from jobs.preflight import (
    Check,
    ClusterFacts,
    PreflightCheck,
    aoi_stats,
    check,
    estimate_memory_per_worker,
    register_check,
)
from jobs.preflight.checks import CHECKS
from tests.app.conftest import FORM, pixel_box_wgs84, tiny_scene  # noqa: F401 - fixture


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


def test_scene_without_labels_cannot_train(home: Path, tmp_path: Path, db_url: str) -> None:
    import numpy as np

    from core.data.catalog import SceneSpec, register_scene
    from db.scenes import SceneStore
    from tests.conftest import write_raster

    img = write_raster(tmp_path / "i.tif", np.ones((1, 16, 16), dtype="uint8"))
    scene = register_scene(
        SceneSpec.model_validate({"name": "nolab", "acquisitions": [{"files": {"x": [str(img)]}}]}),
        SceneStore(db_url),
        home,
    )
    report = preflight(build_config({**FORM, "scene": "nolab"}), scene, cluster_workers=2)
    assert "has no label rasters" in " ".join(report.errors)


def test_preflight_of_a_baseline(tiny_scene: Any) -> None:
    config = build_config({**FORM, "model": "knn", "size": 5, "aoi": pixel_box_wgs84(0, 0, 64, 64)})
    ok = preflight(config, tiny_scene, cluster_workers=1, worker_memory_bytes=8 * 2**30)
    assert ok.ok and ok.stats is not None and ok.stats.labelled == 64 * 63
    assert "asks for 1 worker but the cluster has 0" in " ".join(preflight(config, tiny_scene, 0).errors)
    patch = build_config({**FORM, "model": "knn", "size": 5, "features": "patch"})
    assert estimate_memory_per_worker(patch, tiny_scene, None) > estimate_memory_per_worker(config, tiny_scene, None)
    small = preflight(patch, tiny_scene, cluster_workers=1, worker_memory_bytes=2**20)
    assert "lower max_train_samples or use features 'center'" in " ".join(small.errors)


def test_preflight_of_scene_classifier_and_model_parallel(tiny_scene: Any) -> None:
    resnet = build_config({**FORM, "model": "resnet50", "size": 16, "model_params": {"width": 8}})
    assert preflight(resnet, tiny_scene, cluster_workers=2).ok
    wide = build_config({**FORM, "model": "resnet50", "size": 16})
    assert estimate_memory_per_worker(wide, tiny_scene, None) > estimate_memory_per_worker(resnet, tiny_scene, None)
    mp = build_config({**FORM, "model": "two_stream", "scheme": "model_parallel", "num_workers": 3, "size": 9})
    assert "runs one branch per modality (RGB and HSI) but scene 'tiny' has ['s2']" in " ".join(
        preflight(mp, tiny_scene, cluster_workers=3).errors
    )


def test_preflight_of_two_modalities(home: Path, tmp_path: Path, db_url: str) -> None:
    from tests.app.test_launch import register_duo

    duo = register_duo(home, tmp_path, db_url)
    mp = build_config(
        {**FORM, "scene": "duo", "model": "two_stream", "scheme": "model_parallel", "num_workers": 3, "size": 9}
    )
    assert preflight(mp, duo, cluster_workers=3).ok
    rgb = build_config({**FORM, "scene": "duo", "model": "two_stream_rgb", "size": 9})
    assert preflight(rgb, duo, cluster_workers=2).ok  # the pipeline tiles the RGB modality alone
    tile = pipeline_parts(rgb, Path("/tmp/s.zarr"), [m.name for m in duo.modalities])[0]
    assert tile.modalities == ("rgb",)


def _train_with_tile_job(**tile: Any) -> TrainJobConfig:
    """The defect's shape: a train job that tiles its scene first (``tile_job``) instead of naming a store."""
    return TrainJobConfig.model_validate(
        {
            "kind": "train",
            "scene": "tiny",
            "tile_job": {"scene": "tiny", "mode": "patches", "sampling": {"patch_size": 5, "per_class": 50}, **tile},
            "model": "patch_cnn",
            "epochs": 1,
        }
    )


def test_a_train_job_with_a_tile_job_is_checked_and_its_split_derived(tiny_scene: Any) -> None:
    config = _train_with_tile_job()
    assert config.tile_job is not None and config.tile_job.split.block_size is None
    report = check(config, scene=tiny_scene, cluster=ClusterFacts(1, 8 * 2**30))
    assert report.ok, report.errors
    assert report.stats is not None and report.stats.labelled == 64 * 63
    assert report.census is not None and all(report.census.samples[s] > 0 for s in ("train", "val", "test"))
    settled = report.config.tile_job
    assert settled.split.block_size is not None and settled.split.buffer is not None  # derived and stated
    assert report.memory_per_worker_bytes is not None and report.memory_per_worker_bytes > 700 * 2**20
    sources = [c.source for c in report.checks]
    assert sources == ["derived", "memory"], report.checks
    far = {"type": "Polygon", "coordinates": [[[0, 0], [0.01, 0], [0.01, 0.01], [0, 0.01], [0, 0]]]}
    outside = check(_train_with_tile_job(aoi={"geometry": far}), scene=tiny_scene, cluster=ClusterFacts(1))
    assert "does not overlap scene 'tiny'" in " ".join(outside.errors)
    with pytest.raises(
        ConfigError, match="pre-flight refused the job:\n- AOI with bounds .*does not overlap scene 'tiny'"
    ):
        outside.raise_if_refused()


def test_a_train_job_on_a_store_reads_no_scene(home: Path) -> None:
    config = TrainJobConfig(
        scene="not-registered", store="/tmp/s.zarr", model="patch_cnn", scheme="data_parallel", num_workers=2
    )
    report = check(config, cluster=ClusterFacts(1))
    assert report.errors == [
        "the job asks for 2 workers but the cluster has 1; lower the number of workers to 1 or "
        "add workers to the cluster"
    ]
    assert report.scene is None and report.stats is None and report.config is config


def test_a_registered_check_runs_for_every_caller(tiny_scene: Any) -> None:
    def planned_steps(s: Any) -> list[Check]:
        return [Check("info", f"{s.config.kind} on {s.workers} worker(s)")]

    register_check(PreflightCheck("planned_steps", planned_steps), before="memory")
    try:
        with pytest.raises(ValueError, match="'planned_steps' is registered twice"):
            register_check(PreflightCheck("planned_steps", planned_steps))
        with pytest.raises(ValueError, match="pre-flight check 'nope' is unknown"):
            register_check(PreflightCheck("other", planned_steps), before="nope")
        form = preflight(build_config({**FORM, "aoi": pixel_box_wgs84(0, 0, 64, 64)}), tiny_scene, 2)
        train = check(_train_with_tile_job(), scene=tiny_scene, cluster=ClusterFacts(1))
    finally:
        CHECKS[:] = [c for c in CHECKS if c.name != "planned_steps"]
    assert [c.message for c in form.checks if c.source == "planned_steps"] == ["pipeline on 2 worker(s)"]
    assert [c.message for c in train.checks if c.source == "planned_steps"] == ["train on 1 worker(s)"]
    assert [c.source for c in train.checks].index("planned_steps") < [c.source for c in train.checks].index("memory")


def test_a_date_split_without_a_validation_date_is_not_refused(home: Path, tmp_path: Path, db_url: str) -> None:
    """A date split holds out ``test_date`` and trains on the other dates; without ``val_date`` it has no validation
    samples by design (training runs without early stopping), which pre-flight must not refuse."""
    import numpy as np

    from core.data.catalog import SceneSpec, register_scene
    from db.scenes import SceneStore
    from tests.conftest import write_raster

    lab = np.ones((32, 32), dtype="uint8")
    lab[:, 16:] = 2
    acquisitions = []
    for date in ("20220101", "20230101"):
        img = write_raster(tmp_path / f"{date}.tif", np.full((2, 32, 32), int(date[:4]), dtype="uint16"))
        acquisitions.append(
            {"date": date, "files": {"s2": [str(img)]}, "labels": str(write_raster(tmp_path / f"{date}_l.tif", lab))}
        )
    spec = {
        "name": "two_dates",
        "classes": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "acquisitions": acquisitions,
    }
    scene = register_scene(SceneSpec.model_validate(spec), SceneStore(db_url), home)
    form = {
        **FORM,
        "scene": "two_dates",
        "model": "patch_cnn",
        "size": 5,
        "split_method": "date",
        "test_date": "20230101",
    }
    report = preflight(build_config(form), scene, cluster_workers=2)
    assert report.ok, report.errors
    assert report.census is not None and report.census.samples.get("val", 0) == 0 and report.census.samples["test"] > 0


def test_preflight_states_the_planned_steps(tiny_scene: Any) -> None:
    auto = build_config({**FORM, "epochs": 0, "aoi": pixel_box_wgs84(0, 0, 64, 64)})
    assert auto.epochs is None  # the form's 0: sized by the step budget
    infos = " ".join(c.message for c in preflight(auto, tiny_scene, cluster_workers=2).checks if c.level == "info")
    assert "optimizer steps planned (step budget of" in infos and "min on the cluster" in infos
    capped = auto.model_copy(update={"max_steps": 7})
    infos = " ".join(c.message for c in preflight(capped, tiny_scene, cluster_workers=2).checks if c.level == "info")
    assert "training: 7 optimizer steps planned" in infos and "capped by max_steps=7" in infos


def test_a_class_with_a_handful_of_pixels_is_named_before_a_run(home: Path, tmp_path: Path, db_url: str) -> None:
    from core.data.catalog import SceneSpec, register_scene
    from db.scenes import SceneStore
    from tests.app.conftest import SIZE, T0
    from tests.conftest import write_raster

    rng = np.random.default_rng(0)
    img = write_raster(tmp_path / "img.tif", rng.integers(1, 4000, (3, SIZE, SIZE)).astype("uint16"), transform=T0)
    lab = np.ones((SIZE, SIZE), dtype="uint8")
    lab[:, SIZE // 2 :] = 2
    lab[10, 10:13] = 3  # three pixels of quarry
    write_raster(tmp_path / "labels.tif", lab, transform=T0)
    spec = SceneSpec.model_validate(
        {
            "name": "rare",
            "classes": [
                {"id": 1, "name": "forest", "color": "#228b22"},
                {"id": 2, "name": "water", "color": "#1f78b4"},
                {"id": 3, "name": "quarry", "color": "#999999"},
            ],
            "acquisitions": [{"date": "20220101", "files": {"s2": [str(img)]}, "labels": str(tmp_path / "labels.tif")}],
        }
    )
    scene = register_scene(spec, SceneStore(db_url), home)
    report = preflight(build_config({**FORM, "scene": "rare"}), scene, cluster_workers=2)
    warned = " ".join(c.message for c in report.checks if c.level == "warning")
    assert report.ok  # the other classes are still learnt: said, not refused
    assert (
        "fewer than 5 labelled pixels in the training split cannot be learnt (the map will hardly show them): quarry"
        in warned
    )
    assert "merge them into a neighbouring class, or label more of them" in warned
