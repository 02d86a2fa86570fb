"""Pre-flight checks: AOI measures, label counts, cluster size and memory estimates, form validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.configs import AOIConfig, BaselineJobConfig
from core.errors import AOIOutsideSceneError, ConfigError
from jobs.engine_kinds import pipeline_parts
from jobs.preflight import (
    aoi_stats,
    build_config,
    estimate_memory_per_worker,
    launch_models,
    model_params,
    preflight,
    recipe_defaults,
    recipes,
)
from tests.app.conftest import pixel_box_wgs84, tiny_scene  # noqa: F401 - fixture

FORM = {
    "scene": "tiny",
    "model": "unet",
    "scheme": "data_parallel",
    "num_workers": 2,
    "epochs": 2,
    "batch_size": 4,
    "learning_rate": 1e-3,
    "size": 16,
}


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
        build_config({**FORM, "model": "patch_cnn", "size": 8, "epochs": -1})
    text = str(info.value)
    assert "sampling.patch_size: patch_size 8 is even" in text and "epochs" in text


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


def _train(config: Any) -> Any:
    return pipeline_parts(config, Path("/tmp/s.zarr"))[1]


def test_mp_split_reaches_the_pipeline_and_its_training() -> None:
    config = build_config(
        {
            **FORM,
            "model": "two_stream",
            "scheme": "model_parallel",
            "num_workers": 3,
            "size": 9,
            "mp_split": "optimized",
            "model_params": {"width": 4, "dense": "64, 32"},
        }
    )
    assert config.mp_split == "optimized"
    train = _train(config)
    assert (train.scheme, train.mp_split, train.num_workers) == ("model_parallel", "optimized", 3)
    assert train.model_params == {"width": 4, "dense": (64, 32)}
    assert build_config(FORM).mp_split == "baseline" and _train(build_config(FORM)).mp_split == "baseline"


def test_heterogeneous_worker_speeds_and_calibration() -> None:
    form = {**FORM, "model": "patch_cnn", "scheme": "heterogeneous", "num_workers": 3, "size": 9}
    train = _train(build_config({**form, "worker_speeds": "1, 1, 0.5"}))
    assert train.worker_speeds == (1.0, 1.0, 0.5)
    measured = _train(build_config({**form, "worker_speeds": "", "calibration_steps": 12}))
    assert measured.worker_speeds is None and measured.calibration_steps == 12
    with pytest.raises(
        ConfigError,
        match=r"worker_speeds \[1.0, 1.0\] must give one positive speed per worker "
        r"\(3 workers\)",
    ):
        build_config({**form, "worker_speeds": "1, 1"})


def test_resnet_paper_recipe() -> None:
    assert recipe_defaults(None)["optimizer"] == "adam" and recipe_defaults("resnet")["optimizer"] == "sgd_nesterov"
    config = build_config({**FORM, "model": "resnet50", "size": 32, "label_fraction": 0.1, **recipes()["resnet"]})
    tile, train = pipeline_parts(config, Path("/tmp/s.zarr"))
    assert tile.mode == "tiles" and tile.tiling.tile_size == 32
    assert (train.model, train.optimizer, train.momentum, train.warmup_epochs) == ("resnet50", "sgd_nesterov", 0.9, 5)
    assert (train.lr_decay_at, train.lr_decay_factor, train.mixup_alpha) == ((0.3, 0.6, 0.8), 0.1, 0.2)
    assert train.label_fraction == 0.1 and train.augment
    with pytest.raises(ConfigError, match="training recipe 'sgd' is unknown; choose one of"):
        recipe_defaults("sgd")


def test_form_offers_every_registered_model_with_its_builder_defaults() -> None:
    import inspect

    from core.models import get_model, list_models

    assert [m for m, task in launch_models().items() if task != "baseline"] == list_models()
    for model in list_models():
        spec = get_model(model)
        assert model_params(model) == spec.params
        sig = inspect.signature(spec.builder).parameters
        declared = {p.name: sig[p.name].default for p in spec.params if p.name in sig}
        assert declared == {k: v for k, v in spec.defaults().items() if k in declared}, model
    assert model_params("rf") == ()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"optimizer": "rmsprop"}, "- optimizer: Input should be 'adam' or 'sgd_nesterov'"),
        ({"patience": 0}, "- patience: Input should be greater than or equal to 1"),
        ({"model_params": {"width": 0}}, r"- model_params.width: 0 is not a number in \[1, 512\]"),
        ({"model_params": {"dense": "10"}}, "- model_params.dense: model 'unet' has no size parameter 'dense'"),
        ({"model_params": {"depth": 6}}, r"- tiling.tile_size: a 16-px tile is not divisible by 2\*\*depth = 64"),
        ({"lr_decay_at": "0.3, 1.2"}, r"- lr_decay_at: \[0.3, 1.2\] must be increasing fractions of the epochs"),
        ({"lr_decay_at": "a, b"}, "- lr_decay_at: 'a, b' is not a comma-separated list of float numbers"),
        ({"mp_split": "optimized"}, "- mp_split: only used when the scheme is 'model_parallel', not 'data_parallel'"),
        ({"label_fraction": 0.1}, "- label_fraction: only used when the task is 'multilabel', not 'dense'"),
        ({"calibration_steps": 3}, "- calibration_steps: only used when the scheme is 'heterogeneous'"),
    ],
)
def test_bad_advanced_value_names_the_field(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config({**FORM, **extra})


def test_lr_decay_epochs_zero_means_none() -> None:
    assert _train(build_config({**FORM, "lr_decay_epochs": 0})).lr_decay_epochs is None
    assert _train(build_config({**FORM, "lr_decay_epochs": 3})).lr_decay_epochs == 3


def test_baseline_model_gives_a_baseline_job_that_tiles_patches_first() -> None:
    config = build_config(
        {
            **FORM,
            "model": "svm",
            "size": 7,
            "per_class": 50,
            "split_method": "date",
            "test_date": "20220101",
            "fractions": (0.7, 0.3, 0.0),
            "features": "patch",
            "max_train_samples": 1000,
            "aoi": pixel_box_wgs84(0, 0, 64, 64),
        }
    )
    assert isinstance(config, BaselineJobConfig) and config.kind == "baseline"
    assert (config.method, config.features, config.max_train_samples, config.split) == ("svm", "patch", 1000, "test")
    tile = config.tile_job
    assert tile is not None and tile.scene == "tiny" and tile.mode == "patches"
    assert (tile.sampling.patch_size, tile.sampling.per_class) == (7, 50)
    assert (tile.split.method, tile.split.test_date, tile.split.fractions) == ("date", "20220101", (0.7, 0.3, 0.0))
    assert config.predict and config.date == "20220101" and config.aoi == tile.aoi
    assert BaselineJobConfig.model_validate_json(config.model_dump_json()) == config
    with pytest.raises(ConfigError, match="tile_job.sampling.patch_size: patch_size 8 is even"):
        build_config({**FORM, "model": "rf", "size": 8})


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
    errors = " ".join(report.errors)
    assert not report.ok and "fewer than 5 labelled pixels in the training split cannot be learnt: quarry" in errors
    assert "merge them into a neighbouring class, or label more of them" in errors
