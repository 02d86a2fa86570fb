"""A small 2D CNN that classifies the centre pixel of a patch (the per-pixel baseline of the thesis)."""

from __future__ import annotations

from typing import Any

from core.models.api import ModelSpec, Param, register_model
from core.models.unet import WIDTH_LABEL, InputShape, as_shapes, fused_input


def build_patch_cnn(input_shape: InputShape, num_classes: int, width: int = 32, dropout: float = 0.3) -> Any:
    """Build a patch classifier.

    Two 3x3 conv blocks (``width`` then ``2 * width`` filters, ReLU, 'same' padding, so a patch of any size >= 1
    works), a 2x2 max-pool between them when the patch is at least 4 px wide, global average pooling, dropout and a
    softmax dense layer.

    Args:
        input_shape: ``(P, P, C)`` of a patch centred on the labelled pixel (any number of bands C), or
            ``{modality: (P_m, P_m, C_m)}`` for several modalities (upsampled to the largest patch, concatenated).
        num_classes: K, the number of output classes.
        width: filters of the first block.
        dropout: dropout rate before the classifier (0 disables it).

    Returns:
        An uncompiled ``keras.Model`` mapping (B, P, P, C) float32 to (B, K) softmax probabilities of the centre pixel.
    """
    import keras
    from keras import layers

    shapes = as_shapes(input_shape)
    if num_classes < 2 or width < 1:
        raise ValueError(f"num_classes={num_classes}, width={width}: need at least 2 classes and width >= 1")
    size = min(min(s[0], s[1]) for s in shapes.values())
    inputs, x = fused_input(input_shape)
    x = layers.Conv2D(width, 3, padding="same", activation="relu", name="block1_conv1")(x)
    x = layers.Conv2D(width, 3, padding="same", activation="relu", name="block1_conv2")(x)
    if size >= 4:
        x = layers.MaxPooling2D(2, name="block1_pool")(x)
    x = layers.Conv2D(2 * width, 3, padding="same", activation="relu", name="block2_conv1")(x)
    x = layers.Conv2D(2 * width, 3, padding="same", activation="relu", name="block2_conv2")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs=inputs if len(inputs) > 1 else inputs[0], outputs=outputs, name="patch_cnn")


register_model(
    ModelSpec(
        name="patch_cnn",
        builder=build_patch_cnn,
        task="patch",
        activation_channels=96,
        params=(Param("width", WIDTH_LABEL.format("block"), 32, 1, 512), Param("dropout", "Dropout", 0.3, 0.0, 0.95)),
        description="small 2D CNN: the class of a patch's centre pixel",
    )
)
