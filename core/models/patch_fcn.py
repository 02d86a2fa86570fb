"""A patch classifier that can also be evaluated densely: every pixel of a window in one model call.

``patch_fcn`` classifies the centre pixel of a ``P x P`` patch like ``patch_cnn``, but every layer is built so the
same weights slide over a whole window and give, at every pixel, what the patch of that pixel would give:

- 3x3 convolutions with ``valid`` padding (no zeros padded inside the patch: a pixel's features never depend on
  where its patch ends);
- the 2x2 max-pool has stride 1, and the convolutions after it are dilated by 2 (a la trous: the same taps as
  convolutions on a stride-2 pooled grid, evaluated at every pixel instead of every second one);
- global average pooling over what remains of the patch is an average pool of that size with stride 1;
- the classifier is a 1x1 convolution.

Layers shrink the patch (3x3 valid: -2 px, pool: -1, dilated 3x3: -4); a layer is kept only while the remaining
extent allows it (a dilated convolution that does not fit is undilated; one that does not fit at all is left out),
so any odd patch side >= 3 builds. With a ``P x P`` input the model outputs ``(B, K)``; :func:`dense_model` builds
the fully convolutional twin (same layers, same weights) that maps ``(B, H + P - 1, W + P - 1, C)`` to
``(B, H, W, K)`` and :func:`predict_dense` runs it on one window.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from core.models.api import ModelSpec, Param, register_model
from core.models.unet import WIDTH_LABEL, InputShape, as_shapes
from core.tasks.predictors import DENSE_PATCH

log = logging.getLogger(__name__)

TRUNK_PREFIX = "fcn_"


def _layer_plan(patch: int, width: int) -> list[tuple[str, int, int, int]]:
    """``(name, filters, kernel, dilation)`` of each trunk layer for a ``patch`` px patch (filters 0 = max-pool)."""
    plan, extent = [], patch
    for i in (1, 2):
        if extent >= 3:
            plan.append((f"block1_conv{i}", width, 3, 1))
            extent -= 2
    if extent >= 2:
        plan.append(("block1_pool", 0, 2, 1))
        extent -= 1
    for i in (1, 2):
        dilation = 2 if extent >= 5 else 1
        if extent >= 3:
            plan.append((f"block2_conv{i}", 2 * width, 3, dilation))
            extent -= 2 * dilation
    plan.append(("pool", -1, extent, 1))
    return plan


def _trunk(x: Any, patch: int, width: int, dropout: float, num_classes: int) -> Any:
    from keras import layers

    for name, filters, kernel, dilation in _layer_plan(patch, width):
        if filters > 0:
            x = layers.Conv2D(
                filters, kernel, dilation_rate=dilation, padding="valid", activation="relu", name=TRUNK_PREFIX + name
            )(x)
        elif filters == 0:
            x = layers.MaxPooling2D(kernel, strides=1, padding="valid", name=TRUNK_PREFIX + name)(x)
        else:
            x = layers.AveragePooling2D(kernel, strides=1, padding="valid", name=TRUNK_PREFIX + name)(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name=TRUNK_PREFIX + "dropout")(x)
    return layers.Conv2D(num_classes, 1, activation="softmax", name=TRUNK_PREFIX + "probabilities")(x)


def _patch_side(input_shape: InputShape) -> tuple[int, int]:
    shapes = as_shapes(input_shape)
    if len(shapes) != 1:
        raise ValueError(
            f"patch_fcn takes one modality, got {list(shapes)}; use patch_cnn or two_stream for several modalities"
        )
    ((h, w, c),) = shapes.values()
    if h != w or h % 2 == 0 or h < 3:
        raise ValueError(f"patch_fcn needs a square patch with an odd side >= 3, got {h} x {w}")
    return h, c


def build_patch_fcn(input_shape: InputShape, num_classes: int, width: int = 32, dropout: float = 0.3) -> Any:
    """Build the densely evaluable patch classifier (see the module docstring for the layers).

    Args:
        input_shape: ``(P, P, C)``: an odd-sided square patch centred on the labelled pixel (one modality).
        num_classes: K, the number of output classes.
        width: filters of the first block (the second has ``2 * width``).
        dropout: dropout rate before the classifier (0 disables it).

    Returns:
        An uncompiled ``keras.Model`` mapping (B, P, P, C) float32 to (B, K) softmax probabilities of the centre
        pixel.
    """
    import keras
    from keras import layers

    if num_classes < 2 or width < 1:
        raise ValueError(f"num_classes={num_classes}, width={width}: need at least 2 classes and width >= 1")
    patch, bands = _patch_side(input_shape)
    name = next(iter(as_shapes(input_shape)))
    inp = keras.Input((patch, patch, bands), name=name)
    out = layers.Reshape((num_classes,), name="probabilities")(_trunk(inp, patch, width, dropout, num_classes))
    return keras.Model(inp, out, name="patch_fcn")


def is_patch_fcn(model: Any) -> bool:
    """True when ``model`` was built by :func:`build_patch_fcn`."""
    return getattr(model, "name", None) == "patch_fcn"


def dense_model(model: Any) -> Any:
    """The fully convolutional twin of a ``patch_fcn`` model: (B, H + P - 1, W + P - 1, C) -> (B, H, W, K).

    Same layers and weights (copied by layer name); any H, W >= 1.

    Raises:
        ValueError: ``model`` is not a ``patch_fcn``.
    """
    import keras

    if not is_patch_fcn(model):
        raise ValueError(
            f"model {getattr(model, 'name', model)!r} is not a patch_fcn; only patch_fcn models can be "
            "evaluated densely"
        )
    _, patch, _, bands = model.inputs[0].shape
    trunk = [layer for layer in model.layers if layer.name.startswith(TRUNK_PREFIX)]
    width = next(layer.filters for layer in trunk if layer.name.endswith("block1_conv1"))
    dropout = next((layer.rate for layer in trunk if layer.name.endswith("dropout")), 0.0)
    k = model.outputs[0].shape[-1]
    inp = keras.Input((None, None, bands), name=model.inputs[0].name)
    dense = keras.Model(inp, _trunk(inp, patch, width, dropout, k), name="patch_fcn_dense")
    for layer in trunk:
        dense.get_layer(layer.name).set_weights(layer.get_weights())
    return dense


def patch_side(model: Any) -> int:
    """Patch side P of a ``patch_fcn`` (or its dense twin: the receptive field, ``P = 1 + total shrink``)."""
    if is_patch_fcn(model):
        return int(model.inputs[0].shape[1])
    shrink = 0
    for layer in model.layers:
        if layer.name.startswith(TRUNK_PREFIX) and hasattr(layer, "kernel_size"):
            shrink += (layer.kernel_size[0] - 1) * layer.dilation_rate[0]
        elif layer.name.startswith(TRUNK_PREFIX) and hasattr(layer, "pool_size"):
            shrink += layer.pool_size[0] - 1
    return 1 + shrink


def predict_dense(dense: Any, x: np.ndarray) -> np.ndarray:
    """Class probabilities of every pixel whose whole patch lies in ``x``.

    Args:
        dense: a model from :func:`dense_model`.
        x: ``(H + P - 1, W + P - 1, C)`` normalised float32 window.

    Returns:
        ``(H, W, K)`` float32: pixel ``(r, c)`` is the patch of ``x[r:r + P, c:c + P]``.
    """
    return np.asarray(dense(x[None], training=False))[0]


register_model(
    ModelSpec(
        name="patch_fcn",
        builder=build_patch_fcn,
        task="patch",
        activation_channels=192,
        predictor=DENSE_PATCH,
        dense_twin=dense_model,
        one_input=True,
        params=(Param("width", WIDTH_LABEL.format("block"), 32, 1, 512), Param("dropout", "Dropout", 0.3, 0.0, 0.95)),
        description="patch CNN without padding inside the patch: maps are evaluated densely, one model call per block",
    )
)
