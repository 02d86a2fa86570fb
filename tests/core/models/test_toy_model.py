"""A model added in one new module (this one), editing no other file, is offered by config validation, the CLI and
the launch form (with its size control), trains with ``single`` and ``data_parallel`` on real ranks, and predicts.

Dask workers are other processes: they import this module (``client.run``) so the model is registered there too,
as they import every module of ``core.models`` for the built-in ones.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.models import Context, ModelSpec, Param, register_model
from tests.app.conftest import _restore_main_module, pixel_box_wgs84, tiny_scene  # noqa: F401 - fixtures


def build_toy_fcn(input_shape: Any, num_classes: int, width: int = 4) -> Any:
    """One 3x3 convolution and a 1x1 softmax convolution: a fully convolutional dense model of any tile size."""
    import keras

    from core.models.unet import as_shapes

    ((name, (_, _, bands)),) = as_shapes(input_shape).items()
    inp = keras.Input((None, None, bands), name=name)
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="toy_conv")(inp)
    out = keras.layers.Conv2D(num_classes, 1, activation="softmax", name="probabilities")(x)
    return keras.Model(inp, out, name="toy_fcn")


def toy_context(model_params: Mapping[str, Any]) -> Context:
    return Context(align=1, radius=1, rule="1 (no pooling)")


TOY = register_model(
    ModelSpec(
        name="toy_fcn",
        builder=build_toy_fcn,
        task="dense",
        context=toy_context,
        params=(Param("width", "Width (filters of the 3x3 convolution)", 4, 1, 64),),
        description="test model: one 3x3 conv and a 1x1 softmax conv",
    )
)


# ---- offered everywhere ------------------------------------------------------------------------------------------
def test_config_validation_accepts_it_and_still_refuses_unknown_models() -> None:
    from pydantic import ValidationError

    from core.training.config import TrainJobConfig
    from jobs.engine_kinds import pipeline_parts
    from jobs.pipeline import PipelineJobConfig

    train = TrainJobConfig(scene="s", store="x", model="toy_fcn", model_params={"width": 2})
    assert train.model == "toy_fcn"
    pipe = PipelineJobConfig(scene="s", model="toy_fcn", scheme="single", num_workers=1)
    assert pipe.task == "dense" and pipeline_parts(pipe, Path("/tmp/s.zarr"))[0].mode == "tiles"
    with pytest.raises(ValidationError, match=r"model 'toy_fcm' is unknown; choose one of \[.*'toy_fcn'"):
        TrainJobConfig(scene="s", store="x", model="toy_fcm")
    with pytest.raises(ValidationError, match="has a single branch"):
        PipelineJobConfig(scene="s", model="toy_fcn", scheme="model_parallel", num_workers=3)


@pytest.mark.usefixtures("home")
def test_cli_lists_it_and_names_it_when_a_config_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "toy_fcn" in out and "width=4 [1..64]" in out
    assert main(["models", "--task", "dense", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert {"unet", "toy_fcn"} <= set(listed) and all(m["task"] == "dense" for m in listed.values())
    assert listed["toy_fcn"]["params"][0]["default"] == 4
    bad = tmp_path / "train.json"
    bad.write_text(json.dumps({"kind": "train", "scene": "s", "store": "x", "model": "toy_fcm"}))
    assert main(["run", str(bad)]) == 2
    assert "'toy_fcn'" in capsys.readouterr().err


def test_launch_form_offers_it_with_its_size_control(tiny_scene: Any) -> None:
    from tests.app.conftest import app_test

    at = app_test("launch")
    at.session_state["launch_aoi"] = pixel_box_wgs84(0, 0, 64, 64)
    at.session_state["launch_aoi_scene"] = "tiny"
    at.run()
    assert "toy_fcn (dense)" in at.selectbox(key="launch_model").options
    at.selectbox(key="launch_model").set_value("toy_fcn").run()
    width = at.number_input(key="launch_toy_fcn_width")
    assert width.label == "Width (filters of the 3x3 convolution)" and width.value == 4
    assert [n.key for n in at.number_input if n.key == "launch_size_dense"]  # a tile task: tile size control
    width.set_value(7)
    at.button(key="launch_check").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Pre-flight check passed" in "\n".join(s.value for s in at.success)


def test_build_config_checks_its_size_range() -> None:
    from core.errors import ConfigError
    from jobs.preflight import build_config

    form = {
        "scene": "tiny",
        "model": "toy_fcn",
        "scheme": "single",
        "num_workers": 1,
        "epochs": 1,
        "batch_size": 2,
        "learning_rate": 1e-3,
        "size": 16,
    }
    assert build_config({**form, "model_params": {"width": 8}}).model_params == {"width": 8}
    with pytest.raises(ConfigError, match=r"model_params.width: 99 is not a number in \[1, 64\]"):
        build_config({**form, "model_params": {"width": 99}})


# ---- trains and predicts on the cluster --------------------------------------------------------------------------
needs_horovod = pytest.mark.skipif(importlib.util.find_spec("horovod") is None, reason="horovod is not installed")


def _train(client: Any, db_url: str, store: Path, **kw: Any) -> tuple[Any, int, dict[str, Any]]:
    from core.training.config import TrainJobConfig
    from tests.runs import train_run

    config = TrainJobConfig(
        scene="tiny",
        store=str(store),
        model="toy_fcn",
        model_params={"width": 3},
        epochs=2,
        batch_size=2,
        log_every=1,
        max_steps_per_epoch=2,
        **kw,
    )
    return train_run(config, client, db_url, store)


def _predict(client: Any, bundle: str, tmp_path: Path) -> None:
    import rasterio

    from core.configs import AOIConfig
    from core.inference.predict import run_predict
    from core.models.bundle import load_bundle
    from tests.core.inference.test_predict import make_scene, whole_prediction

    data = np.random.default_rng(3).normal(110, 25, size=(4, 40, 36)).astype(np.float32)
    scene = make_scene(tmp_path, data, name="s2")
    res = run_predict(
        bundle, scene, AOIConfig(), client, tmp_path / "toy.tif", tile_size=16, overlap=1, min_overview_size=8
    )
    model, meta = load_bundle(bundle)
    with rasterio.open(res["path"]) as src:
        got = src.read(1)
    assert got.shape == (40, 36) and set(np.unique(got)) <= {1, 2, 5}
    assert np.array_equal(got, whole_prediction(model, meta, data)), "overlap = the toy's radius leaves no seams"


@needs_horovod
@pytest.mark.cluster
@pytest.mark.horovod
@pytest.mark.usefixtures("home")
def test_it_trains_single_and_data_parallel_and_predicts(cluster_client: Any, db_url: str, tmp_path: Path) -> None:
    from core.models.bundle import load_meta
    from tests.core.training.test_loop import make_store

    cluster_client.run(importlib.import_module, __name__)  # the workers register the toy model too
    store = make_store(tmp_path / "s.zarr", mode="tiles", size=16)
    tracker, run_id, out = _train(cluster_client, db_url, store, scheme="single", num_workers=1)
    assert tracker.get(run_id).status == "succeeded" and out["ranks"][0]["task"] == "dense"
    tracker, run_id, out = _train(cluster_client, db_url, store, scheme="data_parallel", num_workers=2)
    row = tracker.get(run_id)
    assert row.status == "succeeded" and row.metrics["weights_identical"]
    assert len({r["checksum"] for r in out["ranks"]}) == 1 and len(out["ranks"]) == 2
    bundle = row.artifacts["model"]
    meta = load_meta(bundle)
    assert (meta.model, meta.task, meta.extra["model_params"]) == ("toy_fcn", "dense", {"width": 3})
    _predict(cluster_client, bundle, tmp_path)
