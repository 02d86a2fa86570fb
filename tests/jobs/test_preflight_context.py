"""Pre-flight states what a dense prediction spends on context (predict job CLI, pipeline pre-flight) and the form
says which per-pixel models map densely (issue 20)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.services.launch_form import launch_models
from core.data.scene import Acquisition, ClassInfo, Modality, Scene
from jobs.cli import main
from jobs.pipeline import PipelineJobConfig
from jobs.preflight.context import mapping_note, pipeline_context
from tests.conftest import write_raster

keras = pytest.importorskip("keras")


def _scene_and_unet(home: Path, tmp_path: Path) -> Path:
    """A registered 10-band 300 x 300 px scene ``tiny`` and a U-Net bundle (width 2, depth 4: radius 107 px)."""
    from core.models.bundle import ModelMeta, save_bundle
    from core.models.unet import build_unet

    data = np.random.default_rng(0).integers(0, 3000, (10, 300, 300)).astype(np.uint16)
    image = write_raster(tmp_path / "img.tif", data)
    assert main(["scenes", "register", "--name", "tiny", "--modality", "s2", "--image", str(image)]) == 0
    meta = ModelMeta(
        model="unet",
        task="dense",
        modalities=("s2",),
        sample_size={"s2": 64},
        class_ids=(1, 2),
        class_names=("a", "b"),
        class_colors=("#000000", "#ffffff"),
        band_stats={"s2": {"mean": [1500.0] * 10, "std": [800.0] * 10}},
        scene="tiny",
        extra={"model_params": {"width": 2, "depth": 4}},
    )
    return save_bundle(tmp_path / "unet", build_unet((64, 64, 10), 2, width=2, depth=4), meta)


def test_predict_dry_run_states_the_context_share_and_warns_on_a_small_exact_tile(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _scene_and_unet(home, tmp_path)
    capsys.readouterr()
    config = tmp_path / "p.json"
    config.write_text(json.dumps({"kind": "predict", "model": str(bundle), "scene": "tiny", "tile_size": 256}))
    assert main(["run", str(config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "warning: prediction: 99% of the model's computation is context (256 px tiles, 107 px overlap" in out
    assert "use the default tile size (544 px" in out  # one tile holds the whole 300 px scene and its context
    config.write_text(
        json.dumps(
            {"kind": "predict", "model": str(bundle), "scene": "tiny", "tile_size": 256, "overlap": 32, "seams": "crop"}
        )  # fmt: skip
    )
    assert main(["run", str(config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "info: prediction: 52% of the model's computation is context (256 px tiles, 32 px overlap" in out


def test_pipeline_context_follows_the_prediction_tiling() -> None:
    exact = PipelineJobConfig(scene="s", model="unet", model_params={"width": 8, "depth": 4})
    level, text = pipeline_context(exact, 4096)  # default tile of ~6 overlaps: 672 px
    assert level == "info" and text.startswith("prediction: 57% of the model's computation is context (672 px tiles")
    crop = exact.model_copy(update={"seams": "crop", "overlap": 100})
    level, text = pipeline_context(crop, 4096)  # 4 overlaps: 400 px tiles, a 185 px core
    assert level == "warning" and "79%" in text and text.endswith("use a smaller overlap")
    assert pipeline_context(exact.model_copy(update={"model": "patch_fcn"}), 4096) is None  # per pixel


def test_form_offers_the_dense_per_pixel_model_first_and_says_how_each_maps() -> None:
    models = [m for m, task in launch_models().items() if task == "patch"]
    assert models[0] == "patch_fcn"
    assert mapping_note("patch_fcn") == "maps densely"
    assert mapping_note("patch_cnn") == "maps patch by patch, slow"
    assert mapping_note("unet") is None and mapping_note("rf") is None


def test_preflight_of_a_pipeline_lists_the_context_check(home: Path) -> None:
    from jobs.preflight import ClusterFacts, check

    scene = Scene(
        "s",
        False,
        None,
        (Modality("s2", 300, 300, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), 3, "float32", (None,) * 3),),
        (Acquisition(None, {"s2": ("/nonexistent.tif",)}),),
        (ClassInfo(1, "a", "#000000"),),
        "s2",
    )
    config = PipelineJobConfig(scene="s", model="unet", seams="crop", overlap=100)
    report = check(config, scene=scene, cluster=ClusterFacts(2))
    assert any(c.level == "warning" and "of the model's computation is context" in c.message for c in report.checks)
