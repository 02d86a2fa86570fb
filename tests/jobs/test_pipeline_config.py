from pathlib import Path

import pytest
from pydantic import ValidationError

from core.errors import ConfigError
from core.models import list_models
from core.training.schemes import list_schemes
from jobs.engine_kinds import pipeline_parts
from jobs.pipeline import PipelineJobConfig, model_modalities


def test_gui_offers_every_model_and_scheme_of_the_engine():
    for model in list_models():
        assert PipelineJobConfig(scene="s", model=model, scheme="single", num_workers=1).model == model
    with pytest.raises(ValidationError, match="model 'nope' is unknown; choose one of"):
        PipelineJobConfig(scene="s", model="nope")
    for scheme in list_schemes():
        assert (
            PipelineJobConfig(
                scene="s",
                model="two_stream",
                scheme=scheme,
                num_workers=3 if scheme == "model_parallel" else 1 if scheme == "single" else 2,
            ).scheme
            == scheme
        )
    with pytest.raises(ValidationError, match="scheme 'nope' is unknown; choose one of"):
        PipelineJobConfig(scene="s", scheme="nope")


def test_pipeline_passes_scheme_options_to_training():
    cfg = PipelineJobConfig(
        scene="houston_crop",
        model="two_stream",
        scheme="model_parallel",
        num_workers=3,
        mp_split="optimized",
        train_options={"optimizer": "sgd_nesterov", "patience": 3},
    )
    tile, train = pipeline_parts(cfg, Path("/tmp/s.zarr"))
    assert tile.mode == "patches" and train.scheme == "model_parallel" and train.mp_split == "optimized"
    assert (train.optimizer, train.patience, train.num_workers) == ("sgd_nesterov", 3, 3)
    resnet = PipelineJobConfig(scene="strzegom", model="resnet50", tiling={"tile_size": 32})
    assert pipeline_parts(resnet, Path("/tmp/s.zarr"))[0].mode == "tiles"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"model": "unet", "scheme": "model_parallel", "num_workers": 3}, "has a single branch"),
        ({"model": "patch_cnn", "scheme": "heterogeneous", "num_workers": 1}, "needs num_workers >= 2"),
        ({"model": "patch_cnn", "train_options": {"optimizer": "rmsprop"}}, "optimizer"),
    ],
)
def test_combinations_that_make_no_sense_are_refused(kw, message):
    with pytest.raises((ValidationError, ValueError), match=message):
        cfg = PipelineJobConfig(scene="s", **kw)
        pipeline_parts(cfg, Path("/tmp/s.zarr"))


def test_single_modality_variants_tile_their_modality_of_a_multimodal_scene():
    assert model_modalities("two_stream_rgb", ["rgb", "hsi"]) == ("rgb",)
    assert model_modalities("two_stream_hsi", ["rgb", "hsi"]) == ("hsi",)
    assert model_modalities("two_stream", ["rgb", "hsi"]) is None  # every modality
    assert model_modalities("two_stream_rgb", ["s2"]) is None  # a single-modality scene feeds its only one
    with pytest.raises(ConfigError, match="reads the 'hsi' modality but the scene has \\['rgb', 'lidar'\\]"):
        model_modalities("two_stream_hsi", ["rgb", "lidar"])
    cfg = PipelineJobConfig(scene="houston_crop", model="two_stream_hsi", num_workers=2)
    assert pipeline_parts(cfg, Path("/tmp/s.zarr"), ["rgb", "hsi"])[0].modalities == ("hsi",)


def test_one_input_model_reads_the_label_grid_modality_of_a_multimodal_scene():
    """patch_fcn takes one input: on RGB + HSI it tiles the label grid's modality, not both (which its builder
    refuses)."""
    assert model_modalities("patch_fcn", ["rgb", "hsi"], "hsi") == ("hsi",)
    assert model_modalities("patch_fcn", ["rgb", "hsi"]) == ("rgb",)  # no label grid named: the first
    assert model_modalities("patch_fcn", ["s2"]) is None
    assert model_modalities("patch_cnn", ["rgb", "hsi"], "rgb") is None  # reads every modality
    cfg = PipelineJobConfig(scene="houston_crop", model="patch_fcn", num_workers=2)
    assert pipeline_parts(cfg, Path("/tmp/s.zarr"), ["rgb", "hsi"], "rgb")[0].modalities == ("rgb",)
