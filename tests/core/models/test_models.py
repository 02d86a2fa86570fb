"""Smoke tests of the model builders: tiny models, output shapes, bad sizes refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from core.errors import ConfigError  # noqa: E402
from core.models import build_patch_cnn, build_unet, get_model, list_models  # noqa: E402


def test_unet_output_is_per_pixel_probabilities() -> None:
    model = build_unet((32, 32, 5), num_classes=4, width=4, depth=3)
    out = model.predict(np.random.rand(2, 32, 32, 5).astype("float32"), verbose=0)
    assert out.shape == (2, 32, 32, 4)
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)
    assert any(layer.name == "bottleneck_dropout" for layer in model.layers)


def test_unet_any_band_count_and_no_dropout() -> None:
    model = build_unet((16, 16, 13), num_classes=2, width=2, depth=2, dropout=0.0)
    assert model.output_shape == (None, None, None, 2)  # fully convolutional: any multiple of 2**depth
    assert model.predict(np.zeros((1, 24, 40, 13), "float32"), verbose=0).shape == (1, 24, 40, 2)
    assert not any(layer.name == "bottleneck_dropout" for layer in model.layers)


def test_unet_two_modalities_on_different_grids() -> None:
    model = build_unet({"rgb": (32, 32, 3), "hsi": (8, 8, 48)}, num_classes=12, width=2, depth=2)
    out = model.predict([np.zeros((1, 32, 32, 3), "float32"), np.zeros((1, 8, 8, 48), "float32")], verbose=0)
    assert out.shape == (1, 32, 32, 12)


def test_unet_refuses_size_not_divisible_by_depth() -> None:
    with pytest.raises(ValueError, match=r"20x20 px is not divisible by 2\*\*depth = 16"):
        build_unet((20, 20, 3), num_classes=3, depth=4)


@pytest.mark.parametrize("patch", [1, 5, 25])
def test_patch_cnn_classifies_centre_pixel(patch: int) -> None:
    model = build_patch_cnn((patch, patch, 7), num_classes=3, width=4)
    out = model.predict(np.random.rand(3, patch, patch, 7).astype("float32"), verbose=0)
    assert out.shape == (3, 3)
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)


def test_registry_names_builder_and_task() -> None:
    assert get_model("unet").task == "dense" and get_model("unet").store_mode == "tiles"
    assert get_model("patch_cnn").task == "patch" and get_model("patch_cnn").store_mode == "patches"
    assert get_model("patch_cnn").builder((5, 5, 2), 2, width=2).output_shape == (None, 2)
    assert list_models()[:2] == ["unet", "patch_fcn"] and list_models("multilabel") == ["resnet50"]
    with pytest.raises(ConfigError, match=r"model 'nope' is unknown; choose one of \['unet', 'patch_fcn'"):
        get_model("nope")


def test_unet_context_is_its_pooling_multiple_and_receptive_field() -> None:
    spec = get_model("unet")
    assert spec.context_for({}).align == 16 and spec.context_for({}).radius == 107  # default depth 4
    ctx = spec.context_for({"depth": 2})
    assert (ctx.align, ctx.radius) == (4, 23) and "U-Net depth 2" in ctx.rule
    assert get_model("patch_cnn").context_for({}).align == 1  # no context declared


def test_registering_a_conflicting_or_inconsistent_model_is_refused() -> None:
    from core.models import ModelSpec, Param, register_model

    with pytest.raises(ConfigError, match="model 'unet' is registered twice"):
        register_model(ModelSpec(name="unet", builder=build_patch_cnn, task="patch"))
    with pytest.raises(ConfigError, match=r"size parameters \['depth'\] that its builder"):
        register_model(
            ModelSpec(name="x", builder=build_patch_cnn, task="patch", params=(Param("depth", "Depth", 2, 1, 8),))
        )
    with pytest.raises(ConfigError, match="'width' defaults to 3 but its builder's default is 32"):
        register_model(
            ModelSpec(name="x", builder=build_patch_cnn, task="patch", params=(Param("width", "Width", 3, 1, 8),))
        )
    assert "x" not in list_models()


def test_a_new_file_in_the_package_is_found_without_editing_init(tmp_path: Any, monkeypatch: Any) -> None:
    import sys

    import core.models
    from core import discovery
    from core.models import api

    (tmp_path / "plugin_net.py").write_text(
        "from core.models import ModelSpec, register_model\n"
        "from core.models.patch_cnn import build_patch_cnn\n"
        "register_model(ModelSpec(name='plugin_net', builder=build_patch_cnn, task='patch'))\n"
    )
    monkeypatch.setattr(core.models, "__path__", [*core.models.__path__, str(tmp_path)])
    monkeypatch.setattr(discovery, "_DONE", set())  # discover again, with the plugin folder on the path
    monkeypatch.setattr(api, "_REGISTRY", dict(api._REGISTRY))
    try:
        assert list_models("patch")[-1] == "plugin_net" and get_model("plugin_net").store_mode == "patches"
    finally:
        sys.modules.pop("core.models.plugin_net", None)
