"""The launch form's adapter: form values -> a validated job config, every bad field named; what the form offers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.services.launch_form import build_config, launch_models, model_params, recipe_defaults, recipes
from core.configs import BaselineJobConfig
from core.errors import ConfigError
from jobs.pipeline import pipeline_parts
from tests.app.conftest import FORM, pixel_box_wgs84


def _train(config: Any) -> Any:
    return pipeline_parts(config, Path("/tmp/s.zarr"))[1]


def test_build_config_lists_every_bad_field() -> None:
    with pytest.raises(ConfigError) as info:
        build_config({**FORM, "model": "patch_cnn", "size": 8, "epochs": -1})
    text = str(info.value)
    assert "sampling.patch_size: patch_size 8 is even" in text and "epochs" in text


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
