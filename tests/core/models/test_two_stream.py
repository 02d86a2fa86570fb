"""The two-stream CNN and the parts of its model-parallel splits, in one process (no ranks)."""

from __future__ import annotations

import numpy as np
import pytest

from core.models.two_stream import activation_bytes, activation_shape

HOUSTON = {"rgb": (25, 25, 3), "hsi": (7, 7, 48)}  # a 25 px RGB patch and its 7 px, 48-band HSI patch


# ---- pure shape arithmetic -------------------------------------------------------------------------------------
def test_activation_shapes_of_the_houston_patches() -> None:
    # rgb 25x25x3 -> 13x13x2 -> 7x7x1 -> 4x4x1; hsi 7x7x48 -> 4x4x24 -> 2x2x12 -> 1x1x6 (filters 8, 16, 32)
    assert activation_shape(HOUSTON["rgb"], "baseline", width=8, blocks=3) == (4 * 4 * 1 * 32,)
    assert activation_shape(HOUSTON["hsi"], "baseline", width=8, blocks=3) == (1 * 1 * 6 * 32,)
    assert activation_shape(HOUSTON["rgb"], "optimized", width=8, blocks=3) == (7, 7, 1, 16)
    assert activation_shape(HOUSTON["hsi"], "optimized", width=8, blocks=3) == (2, 2, 12, 16)
    assert activation_bytes(HOUSTON["hsi"], "baseline", batch=10) == 10 * 192 * 4


def test_optimized_split_sends_more_at_houston_sizes_and_less_once_pooling_stops_shrinking() -> None:
    # The last block pools every axis by 2 (1/8) and doubles the filters (x2): its output is 1/4 of its input while
    # all axes are > 1, so moving it to the fusion rank makes the branches send MORE (houston patches) ...
    for m, shape in HOUSTON.items():
        assert activation_bytes(shape, "optimized", 50) > activation_bytes(shape, "baseline", 50), m
    # ... and less only once the axes are already 1 px (pooling removes nothing, the filters still double).
    assert activation_shape((3, 3, 4), "baseline", width=8, blocks=3) == (32,)
    assert activation_shape((3, 3, 4), "optimized", width=8, blocks=3) == (1, 1, 1, 16)


def test_bad_split_and_block_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="split 'middle' is unknown"):
        activation_shape((5, 5, 3), "middle")
    with pytest.raises(ValueError, match="blocks=1: .*'optimized' split moves the last one"):
        activation_shape((5, 5, 3), "optimized", blocks=1)


# ---- Keras models ----------------------------------------------------------------------------------------------
keras = pytest.importorskip("keras")

from core.models import get_model  # noqa: E402
from core.models.two_stream import (  # noqa: E402
    build_branch_part,
    build_fusion_part,
    build_two_stream,
    build_two_stream_hsi,
    build_two_stream_rgb,
    set_weights_by_layer,
    weights_by_layer,
)

SMALL = {"width": 2, "dense": (16, 8), "blocks": 3}


def _inputs(shapes: dict[str, tuple[int, int, int]], n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, *s)).astype("float32") for s in shapes.values()]


def test_two_stream_maps_both_modalities_to_class_probabilities() -> None:
    model = build_two_stream(HOUSTON, num_classes=12, **SMALL)
    out = model.predict(_inputs(HOUSTON, 3), verbose=0)
    assert out.shape == (3, 12)
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)
    names = {layer.name for layer in model.layers}
    assert {"rgb_conv3", "hsi_bn3", "hsi_pool3", "fusion", "dense1", "dropout2", "probabilities"} <= names
    assert model.get_layer("hsi_conv1").kernel.shape == (3, 3, 3, 1, 2)  # 3D kernels, bands as depth
    assert model.get_layer("dense1").kernel.shape == (4 * 4 * 8 + 6 * 8, 16)  # concat of both flattened branches


def test_single_modality_variants_have_one_branch() -> None:
    rgb = build_two_stream_rgb(HOUSTON["rgb"], num_classes=4, **SMALL)
    hsi = build_two_stream_hsi({"hsi": HOUSTON["hsi"]}, num_classes=4, **SMALL)
    assert rgb.output_shape == hsi.output_shape == (None, 4)
    assert not any(layer.name.startswith("hsi") for layer in rgb.layers) and "fusion" not in {
        layer.name for layer in rgb.layers
    }
    assert hsi.predict(_inputs({"hsi": HOUSTON["hsi"]}, 2)[0], verbose=0).shape == (2, 4)
    with pytest.raises(ValueError, match=r"two_stream_rgb uses one modality but got \['hsi', 'rgb'\]"):
        build_two_stream_rgb(HOUSTON, num_classes=4)


@pytest.mark.parametrize("split", ["baseline", "optimized"])
def test_parts_compose_to_the_whole_model_with_its_weights(split: str) -> None:
    full = build_two_stream(HOUSTON, num_classes=5, **SMALL)
    weights = weights_by_layer(full)
    branches = {m: build_branch_part(m, s, split, **SMALL) for m, s in HOUSTON.items()}
    fusion = build_fusion_part(HOUSTON, 5, split, **SMALL)
    for m, part in branches.items():
        assert part.output_shape[1:] == activation_shape(HOUSTON[m], split, SMALL["width"], SMALL["blocks"])
        set_weights_by_layer(part, weights)
    set_weights_by_layer(fusion, weights)
    xs = _inputs(HOUSTON, 4, seed=1)
    acts = [branches[m](x, training=False) for m, x in zip(HOUSTON, xs)]
    np.testing.assert_allclose(fusion(acts, training=False), full(xs, training=False), rtol=1e-5, atol=1e-6)
    # the parts together hold every weight of the whole model, each exactly once
    held = [n for p in [*branches.values(), fusion] for n in weights_by_layer(p)]
    assert sorted(held) == sorted(weights)
    if split == "optimized":
        assert {"rgb_conv3", "hsi_conv3"} <= set(weights_by_layer(fusion))


def test_setting_weights_from_an_incomplete_source_names_the_missing_layers() -> None:
    part = build_branch_part("rgb", HOUSTON["rgb"], "baseline", **SMALL)
    with pytest.raises(ValueError, match=r"no weights given for layers \['rgb_conv1'"):
        set_weights_by_layer(part, {})


def test_registry_has_the_two_stream_models() -> None:
    for name in ("two_stream", "two_stream_rgb", "two_stream_hsi"):
        assert get_model(name).task == "patch" and get_model(name).store_mode == "patches"
    assert get_model("two_stream").builder(HOUSTON, 3, **SMALL).output_shape == (None, 3)
    assert get_model("two_stream").branches == ("rgb", "hsi") and get_model("two_stream_rgb").branches == ()
    assert get_model("two_stream_hsi").modality == "hsi"
