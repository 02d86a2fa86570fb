"""The U-Net of the thesis (Ronneberger et al. 2015 layout), narrowed by ``width`` so it trains on a CPU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.models.api import Context, ModelSpec, Param, register_model

Shape = tuple[int, int, int]
InputShape = Sequence[int] | Mapping[str, Sequence[int]]
"""One (H, W, C) shape, or {modality: (H, W, C)} for multi-modal models (shared by the builders)."""


def as_shapes(input_shape: InputShape) -> dict[str, Shape]:
    """``(H, W, C)`` or ``{modality: (H, W, C)}`` -> ``{name: (H, W, C)}`` (a single shape is named ``"x"``)."""
    if isinstance(input_shape, Mapping):
        shapes = {str(k): tuple(int(d) for d in v) for k, v in input_shape.items()}
    else:
        shapes = {"x": tuple(int(d) for d in input_shape)}
    if not shapes:
        raise ValueError("input_shape is empty: give (H, W, C) or {modality: (H, W, C)}")
    for name, s in shapes.items():
        if len(s) != 3 or min(s) < 1:
            raise ValueError(f"input shape {s} of {name!r} is not (H, W, C) with positive sizes")
    return shapes  # type: ignore[return-value]


def fused_input(input_shape: InputShape) -> tuple[list[Any], Any]:
    """Keras inputs (one per modality, in order) and one tensor on the finest grid with all bands concatenated.

    Coarser modalities are upsampled (bilinear) to the largest H x W, so a 4x coarser hyperspectral patch lines up
    with its RGB patch. Returns ``(inputs, x)`` with ``x`` of shape (B, H_max, W_max, sum C).
    """
    import keras
    from keras import layers

    shapes = as_shapes(input_shape)
    inputs = [keras.Input(shape=s, name=name) for name, s in shapes.items()]
    h = max(s[0] for s in shapes.values())
    w = max(s[1] for s in shapes.values())
    parts = []
    for inp, s in zip(inputs, shapes.values()):
        parts.append(inp if s[:2] == (h, w) else layers.Resizing(h, w, interpolation="bilinear")(inp))
    x = parts[0] if len(parts) == 1 else layers.Concatenate(axis=-1)(parts)
    return inputs, x


def _conv_block(x: Any, filters: int, name: str) -> Any:
    from keras import layers

    x = layers.Conv2D(
        filters, 3, padding="same", activation="relu", kernel_initializer="he_normal", name=f"{name}_conv1"
    )(x)
    return layers.Conv2D(
        filters, 3, padding="same", activation="relu", kernel_initializer="he_normal", name=f"{name}_conv2"
    )(x)


def build_unet(input_shape: InputShape, num_classes: int, width: int = 16, depth: int = 4, dropout: float = 0.5) -> Any:
    """Build a U-Net for dense (per-pixel) classification.

    Encoder: ``depth`` conv-conv blocks (3x3, ReLU) each followed by 2x2 max-pooling, filters ``width * 2**level``;
    bottleneck conv-conv block with dropout (as in the classic U-Net); decoder: 2x2 transposed convolution up,
    concatenation with the encoder block of the same level (skip connection), conv-conv block; a 1x1 convolution
    with softmax gives the class probabilities. No batch normalisation, so every weight is trainable and data-parallel
    ranks that average gradients hold bit-identical weights.

    Args:
        input_shape: ``(H, W, C)`` of a tile (channels last, any number of bands C), or ``{modality: (H, W, C)}``
            for several modalities (coarser ones are upsampled to the finest grid and concatenated).
            H and W must be divisible by ``2**depth``.
        num_classes: K, the number of output classes.
        width: filters of the first level (the thesis used 64; 8-16 trains on a CPU).
        depth: number of down-sampling steps.
        dropout: dropout rate in the bottleneck (0 disables it).

    Returns:
        An uncompiled ``keras.Model`` mapping (B, H, W, C) float32 to (B, H, W, K) softmax probabilities.
    """
    import keras
    from keras import layers

    shapes = as_shapes(input_shape)
    h = max(s[0] for s in shapes.values())
    w = max(s[1] for s in shapes.values())
    factor = 2**depth
    if depth < 1 or h % factor or w % factor:
        raise ValueError(
            f"U-Net input {h}x{w} px is not divisible by 2**depth = {factor}: use a tile size that is "
            f"a multiple of {factor} or a smaller depth (depth >= 1)"
        )
    if num_classes < 2 or width < 1:
        raise ValueError(f"num_classes={num_classes}, width={width}: need at least 2 classes and width >= 1")
    if len(shapes) == 1:
        # Fully convolutional: accept any H x W (multiples of 2**depth), so inference can run on tiles larger than
        # the training tiles and keep a receptive-field-wide overlap that leaves no seams.
        ((name, (_, _, c)),) = shapes.items()
        inputs = [keras.Input(shape=(None, None, c), name=name)]
        x = inputs[0]
    else:
        inputs, x = fused_input(input_shape)
    skips = []
    for level in range(depth):
        x = _conv_block(x, width * 2**level, f"down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"down{level}_pool")(x)
    x = _conv_block(x, width * 2**depth, "bottleneck")
    if dropout > 0:
        x = layers.Dropout(dropout, name="bottleneck_dropout")(x)
    for level in reversed(range(depth)):
        x = layers.Conv2DTranspose(width * 2**level, 2, strides=2, padding="same", name=f"up{level}_deconv")(x)
        x = layers.Concatenate(axis=-1, name=f"up{level}_skip")([x, skips[level]])
        x = _conv_block(x, width * 2**level, f"up{level}")
    outputs = layers.Conv2D(num_classes, 1, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs=inputs if len(inputs) > 1 else inputs[0], outputs=outputs, name="unet")


def unet_context(model_params: Mapping[str, Any]) -> Context:
    """Pooling multiple and receptive-field radius of a U-Net of ``model_params["depth"]`` levels.

    Tile offsets must be multiples of ``2 ** depth`` (the pooling grid). The radius of two 3x3 convolutions per
    level with 2x2 pooling over ``d`` levels is ``2 (2^(d+1) - 1) + 2 (2^d - 1) + 2^d - 1``.
    """
    d = int(model_params["depth"])
    radius = 2 * (2 ** (d + 1) - 1) + 2 * (2**d - 1) + 2**d - 1 if d else 2
    return Context(align=2**d, radius=radius, rule=f"2**depth = {2**d} (U-Net depth {d})")


WIDTH_LABEL = "Width (filters of the first {})"
DROPOUT = Param("dropout", "Dropout", 0.5, 0.0, 0.95)

register_model(
    ModelSpec(
        name="unet",
        builder=build_unet,
        task="dense",
        context=unet_context,
        activation_channels=192,
        params=(
            Param("width", WIDTH_LABEL.format("level"), 16, 1, 512),
            Param("depth", "Depth (down-samplings)", 4, 1, 8),
            DROPOUT,
        ),
        description="U-Net (Ronneberger et al. 2015): per-pixel classes of a tile",
    )
)
