"""The multi-modal two-stream CNN of the multi-modal paper, and the parts of its model-parallel splits.

One branch of 3D convolutions per modality: a patch ``(h, w, C)`` is reshaped to ``(h, w, C, 1)`` so the bands are
the depth axis, then ``blocks`` blocks of Conv3D (3x3x3, ``width * 2**i`` filters) + BatchNormalization + ReLU +
MaxPool3D (2x2x2, 'same' padding, so odd and 1-px sizes work). Each branch is flattened; the branches are fused by
concatenation before Dense 1000, 500 (configurable) with dropout and a softmax over classes.

Layer names are ``<modality>_conv<i>``, ``<modality>_bn<i>``, ``dense<j>``, ``probabilities``: the parts of a split
model use the same names as the whole model, so weights move between them by layer name (:func:`weights_by_layer`,
:func:`set_weights_by_layer`). The two splits (multi-modal paper, section "model parallelism"):

- ``baseline``: each branch whole on its rank (output: the flattened features); fusion = concat + dense head.
- ``optimized``: the last conv-pool block and the flatten of both branches run on the fusion rank; a branch rank
  sends the output of its block ``blocks - 1``.

Which split sends fewer bytes depends on the sizes: a block halves every axis (when > 1) and doubles the filters,
so its output is 1/4 of its input when all three axes are > 1, but up to 2x its input once axes have shrunk to 1
(pooling a 1-px axis removes nothing). :func:`activation_shape` gives the exact per-sample shape each branch sends.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import numpy as np

from core.models.api import ModelSpec, Param, register_model
from core.models.unet import DROPOUT, WIDTH_LABEL, InputShape, Shape, as_shapes

SPLITS = ("baseline", "optimized")


def _pooled(n: int) -> int:
    return math.ceil(n / 2)  # MaxPool3D(2, padding="same")


def activation_shape(shape: Sequence[int], split: str, width: int = 8, blocks: int = 3) -> tuple[int, ...]:
    """Per-sample shape of what a branch rank sends to the fusion rank (no batch axis).

    Args:
        shape: ``(h, w, C)`` of the branch's patch.
        split: ``"baseline"`` (flattened output of all blocks: ``(d,)``) or ``"optimized"`` (output of block
            ``blocks - 1``: ``(h', w', C', filters)``).
        width, blocks: as in :func:`build_two_stream`.
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is unknown; choose one of {list(SPLITS)}")
    _check_blocks(split, blocks)
    h, w, c = (int(d) for d in shape)
    depth, f = c, 1
    n = blocks if split == "baseline" else blocks - 1
    for i in range(n):
        h, w, depth, f = _pooled(h), _pooled(w), _pooled(depth), width * 2**i
    out = (h, w, depth, f)
    return (int(np.prod(out)),) if split == "baseline" else out


def activation_bytes(shape: Sequence[int], split: str, batch: int, width: int = 8, blocks: int = 3) -> int:
    """Bytes (float32) one branch sends per step for ``batch`` samples (its gradient comes back with as many)."""
    return 4 * batch * int(np.prod(activation_shape(shape, split, width, blocks)))


def _check_blocks(split: str, blocks: int) -> None:
    if blocks < 1 or (split == "optimized" and blocks < 2):
        raise ValueError(
            f"blocks={blocks}: a branch needs at least 1 conv block, and the 'optimized' split moves "
            "the last one to the fusion rank, so it needs at least 2"
        )


def _branch_input(name: str, shape: Shape) -> tuple[Any, Any]:
    import keras
    from keras import layers

    inp = keras.Input(shape=shape, name=name)
    return inp, layers.Reshape((*shape, 1), name=f"{name}_to3d")(inp)  # bands become the depth axis


def _blocks(x: Any, name: str, width: int, start: int, stop: int) -> Any:
    from keras import layers

    for i in range(start, stop):
        x = layers.Conv3D(width * 2**i, 3, padding="same", name=f"{name}_conv{i + 1}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i + 1}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i + 1}")(x)
        x = layers.MaxPooling3D(2, padding="same", name=f"{name}_pool{i + 1}")(x)
    return x


def _head(features: list[Any], num_classes: int, dense: Sequence[int], dropout: float) -> Any:
    from keras import layers

    x = layers.Concatenate(name="fusion")(features) if len(features) > 1 else features[0]
    for j, units in enumerate(dense, start=1):
        x = layers.Dense(int(units), activation="relu", name=f"dense{j}")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name=f"dropout{j}")(x)
    return layers.Dense(num_classes, activation="softmax", name="probabilities")(x)


def _check(num_classes: int, width: int, dropout: float) -> None:
    if num_classes < 2 or width < 1 or not 0 <= dropout < 1:
        raise ValueError(
            f"num_classes={num_classes}, width={width}, dropout={dropout}: need at least 2 classes, "
            "width >= 1 and 0 <= dropout < 1"
        )


def build_two_stream(
    input_shapes: InputShape,
    num_classes: int,
    width: int = 8,
    dense: Sequence[int] = (1000, 500),
    dropout: float = 0.5,
    blocks: int = 3,
    name: str = "two_stream",
) -> Any:
    """Build the two-stream (one branch per modality) 3D CNN.

    Args:
        input_shapes: ``{modality: (h, w, C)}`` patches centred on the same ground point, each at its own
            resolution (houston_crop: ``{"rgb": (25, 25, 3), "hsi": (7, 7, 48)}``); inputs follow this order.
            A single ``(h, w, C)`` builds one branch named ``"x"``.
        num_classes: K, the number of output classes.
        width: filters of a branch's first block (block i has ``width * 2**i``).
        dense: units of the dense layers after fusion (the paper: 1000, 500).
        dropout: dropout rate after each dense layer (0 disables it).
        blocks: conv-BN-pool blocks per branch.

    Returns:
        An uncompiled ``keras.Model`` mapping one (B, h_m, w_m, C_m) float32 input per modality to (B, K)
        softmax probabilities of the centre pixel.
    """
    import keras
    from keras import layers

    shapes = as_shapes(input_shapes)
    _check(num_classes, width, dropout)
    _check_blocks("baseline", blocks)
    inputs, features = [], []
    for m, shape in shapes.items():
        inp, x = _branch_input(m, shape)
        x = _blocks(x, m, width, 0, blocks)
        inputs.append(inp)
        features.append(layers.Flatten(name=f"{m}_flatten")(x))
    outputs = _head(features, num_classes, dense, dropout)
    return keras.Model(inputs=inputs if len(inputs) > 1 else inputs[0], outputs=outputs, name=name)


def _single(modality: str, input_shape: InputShape, num_classes: int, **kw: Any) -> Any:
    shapes = as_shapes(input_shape)
    if len(shapes) != 1:
        raise ValueError(
            f"two_stream_{modality} uses one modality but got {sorted(shapes)}; tile the store with "
            f"modalities=({modality!r},), or use model 'two_stream' for both"
        )
    return build_two_stream({modality: next(iter(shapes.values()))}, num_classes, name=f"two_stream_{modality}", **kw)


def build_two_stream_rgb(input_shape: InputShape, num_classes: int, **kw: Any) -> Any:
    """The RGB branch alone with the same head (the paper's Table 2, RGB only); ``kw`` as :func:`build_two_stream`."""
    return _single("rgb", input_shape, num_classes, **kw)


def build_two_stream_hsi(input_shape: InputShape, num_classes: int, **kw: Any) -> Any:
    """The HSI branch alone with the same head (the paper's Table 2, HSI only); ``kw`` as :func:`build_two_stream`."""
    return _single("hsi", input_shape, num_classes, **kw)


# ---- parts of the split model ---------------------------------------------------------------------------------------
def build_branch_part(
    modality: str, shape: Sequence[int], split: str, width: int = 8, blocks: int = 3, **_: Any
) -> Any:
    """The part of one branch that runs on its own rank.

    Returns:
        ``keras.Model``: (B, h, w, C) -> (B, *activation_shape(shape, split, width, blocks)).
    """
    import keras
    from keras import layers

    _check_blocks(split, blocks)
    inp, x = _branch_input(modality, tuple(int(d) for d in shape))  # type: ignore[arg-type]
    if split == "baseline":
        x = layers.Flatten(name=f"{modality}_flatten")(_blocks(x, modality, width, 0, blocks))
    else:
        x = _blocks(x, modality, width, 0, blocks - 1)
    return keras.Model(inp, x, name=f"{modality}_branch_{split}")


def build_fusion_part(
    input_shapes: Mapping[str, Sequence[int]],
    num_classes: int,
    split: str,
    width: int = 8,
    dense: Sequence[int] = (1000, 500),
    dropout: float = 0.5,
    blocks: int = 3,
) -> Any:
    """The part on the fusion rank: (optimized: each branch's last block and flatten), concat, dense head.

    Args:
        input_shapes: ``{modality: (h, w, C)}`` of the *patches* (the branch activations' shapes follow from them),
            in the whole model's input order: the concatenation follows it, so the dense weights line up.

    Returns:
        ``keras.Model`` taking one (B, *activation_shape(...)) input per modality (same order) -> (B, K).
    """
    import keras
    from keras import layers

    _check(num_classes, width, dropout)
    inputs, features = [], []
    for m, shape in input_shapes.items():
        inp = keras.Input(shape=activation_shape(shape, split, width, blocks), name=f"{m}_activations")
        x = inp
        if split == "optimized":
            x = layers.Flatten(name=f"{m}_flatten")(_blocks(x, m, width, blocks - 1, blocks))
        inputs.append(inp)
        features.append(x)
    return keras.Model(inputs, _head(features, num_classes, dense, dropout), name=f"fusion_{split}")


# ---- weights by layer name -------------------------------------------------------------------------------------------
def weights_by_layer(model: Any) -> dict[str, list[np.ndarray]]:
    """``{layer name: [arrays]}`` of every layer of ``model`` that holds weights (BN statistics included)."""
    return {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


def set_weights_by_layer(model: Any, weights: Mapping[str, Sequence[np.ndarray]], strict: bool = True) -> None:
    """Set the weights of ``model``'s layers from ``weights`` (by layer name).

    Raises:
        ValueError: ``strict`` and a layer of ``model`` with weights has no entry in ``weights``.
    """
    missing = [layer.name for layer in model.layers if layer.weights and layer.name not in weights]
    if strict and missing:
        raise ValueError(
            f"no weights given for layers {missing} of model {model.name!r}; gather every part of the "
            "split model (same model_params and split) before assembling"
        )
    for layer in model.layers:
        if layer.weights and layer.name in weights:
            layer.set_weights(list(weights[layer.name]))


PARAMS = (
    Param("width", WIDTH_LABEL.format("block"), 8, 1, 512),
    Param("dense", "Dense units after fusion", (1000, 500), 1, 65536),
    DROPOUT,
)


class _SharedSpec(TypedDict):
    """The :class:`ModelSpec` fields the two-stream model and its single-branch variants share."""

    task: str
    params: tuple[Param, ...]
    activation_channels: int


_TWO_STREAM: _SharedSpec = {"task": "patch", "params": PARAMS, "activation_channels": 96}

register_model(
    ModelSpec(
        name="two_stream",
        builder=build_two_stream,
        branches=("rgb", "hsi"),
        **_TWO_STREAM,
        description="two-stream 3D CNN, one branch per modality (RGB + HSI)",
    )
)
register_model(
    ModelSpec(
        name="two_stream_rgb",
        builder=build_two_stream_rgb,
        modality="rgb",
        **_TWO_STREAM,
        description="the two-stream CNN's RGB branch alone",
    )
)
register_model(
    ModelSpec(
        name="two_stream_hsi",
        builder=build_two_stream_hsi,
        modality="hsi",
        **_TWO_STREAM,
        description="the two-stream CNN's HSI branch alone",
    )
)
