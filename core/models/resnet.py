"""ResNet-50 (He et al. 2016) for multi-label scene classification of tiles, written with Keras layers.

Not ``keras.applications.ResNet50``: that builder insists on 3-band inputs for its ImageNet layout and would want
weights from the internet; this one takes any number of bands (and several modalities), is initialised from
scratch, and is narrowed by ``width`` so it trains on a CPU in tests (``width=64`` is the real ResNet-50: 64, 128,
256, 512 bottleneck filters, 2048 output channels, about 23.5 M weights for 3 bands).
"""

from __future__ import annotations

from typing import Any

from core.models.api import ModelSpec, Param, Recipe, register_model
from core.models.unet import DROPOUT, WIDTH_LABEL, InputShape, as_shapes, fused_input

STAGES = (3, 4, 6, 3)
"""Bottleneck blocks per stage: the 50-layer network (1 stem conv + 16 blocks x 3 convs + 1 dense)."""
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def _bottleneck(x: Any, filters: int, stride: int, l2: float, name: str) -> Any:
    """One bottleneck block: 1x1 (filters) -> 3x3 (filters, stride) -> 1x1 (4 filters), plus the shortcut.

    The shortcut is a strided 1x1 projection with batch norm when the shape changes (ResNet option B). The last
    batch norm of the residual branch starts with gamma = 0 (Goyal et al. 2017), so every block starts as the
    identity, which keeps the large-batch warm-up stable.
    """
    from keras import layers, regularizers

    def conv(t: Any, f: int, k: int, s: int, suffix: str) -> Any:
        return layers.Conv2D(
            f,
            k,
            strides=s,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            kernel_regularizer=regularizers.L2(l2) if l2 > 0 else None,
            name=f"{name}_{suffix}_conv",
        )(t)

    def bn(t: Any, suffix: str, gamma: str = "ones") -> Any:
        return layers.BatchNormalization(
            momentum=BN_MOMENTUM, epsilon=BN_EPSILON, gamma_initializer=gamma, name=f"{name}_{suffix}_bn"
        )(t)

    out_filters = 4 * filters
    shortcut = x
    if stride != 1 or x.shape[-1] != out_filters:
        shortcut = bn(conv(x, out_filters, 1, stride, "0"), "0")
    y = layers.Activation("relu", name=f"{name}_1_relu")(bn(conv(x, filters, 1, 1, "1"), "1"))
    y = layers.Activation("relu", name=f"{name}_2_relu")(bn(conv(y, filters, 3, stride, "2"), "2"))
    y = bn(conv(y, out_filters, 1, 1, "3"), "3", gamma="zeros")
    return layers.Activation("relu", name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def build_resnet50(
    input_shape: InputShape, num_classes: int, l2: float = 1e-4, dropout: float = 0.5, width: int = 64
) -> Any:
    """Build a ResNet-50 multi-label classifier.

    Layout: 7x7/2 convolution (``width`` filters), batch norm, ReLU, 3x3/2 max-pool; four stages of 3, 4, 6 and 3
    bottleneck blocks with ``width``, 2, 4 and 8 ``width`` inner filters (stride 2 at the start of stages 2-4);
    global average pooling, dropout, and a dense layer with one sigmoid per class. Every convolution and pooling
    uses 'same' padding, so any tile size works: the total stride is 32, and tiles smaller than 32 px end at 1x1
    after the last stage (the ResNet paper's 120 px BigEarthNet patches end at 4x4).

    Args:
        input_shape: ``(H, W, C)`` of a tile with any number of bands C, or ``{modality: (H_m, W_m, C_m)}``
            (coarser modalities are upsampled to the finest grid and the bands concatenated).
        num_classes: K, the number of labels.
        l2: L2 weight decay on every convolution kernel (the model's ``losses``; add them to the training loss).
        dropout: dropout rate before the last dense layer (0 disables it).
        width: filters of the stem and first stage; 64 is the real ResNet-50.

    Returns:
        An uncompiled ``keras.Model`` mapping (B, H, W, C) float32 to (B, K) independent class probabilities in
        [0, 1] (sigmoid: a tile can hold several classes).
    """
    import keras
    from keras import layers, regularizers

    if num_classes < 1 or width < 1 or not 0 <= dropout < 1 or l2 < 0:
        raise ValueError(
            f"num_classes={num_classes}, width={width}, dropout={dropout}, l2={l2}: need at least 1 "
            "class, width >= 1, 0 <= dropout < 1 and l2 >= 0"
        )
    as_shapes(input_shape)  # validates the shapes
    inputs, x = fused_input(input_shape)
    x = layers.Conv2D(
        width,
        7,
        strides=2,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=regularizers.L2(l2) if l2 > 0 else None,
        name="stem_conv",
    )(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, blocks in enumerate(STAGES):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _bottleneck(x, width * 2**stage, stride, l2, name=f"stage{stage + 1}_block{block + 1}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="sigmoid", name="probabilities", dtype="float32")(x)
    return keras.Model(inputs=inputs if len(inputs) > 1 else inputs[0], outputs=outputs, name="resnet50")


RESNET_RECIPE = Recipe(
    name="resnet",
    label="ResNet paper recipe: SGD with Nesterov momentum, 5 warm-up epochs, LR x0.1 at 30/60/80 % of the epochs, "
    "mixup 0.2 (keep the learning rate 0.001 to get 0.1·k·n/256)",
    fields={
        "optimizer": "sgd_nesterov",
        "momentum": 0.9,
        "warmup_epochs": 5,
        "lr_decay_at": (0.3, 0.6, 0.8),
        "lr_decay_factor": 0.1,
        "mixup_alpha": 0.2,
        "augment": True,
    },
)
"""TrainJobConfig fields of the ResNet paper's recipe (Goyal et al.'s large-batch SGD): Nesterov momentum 0.9,
5 warm-up epochs, x0.1 at 30/60/80 % of the epochs, mixup. Keep the default ``learning_rate`` to get
``0.1 * k * n / 256`` (the spec's ``lr_per_sample``)."""

register_model(
    ModelSpec(
        name="resnet50",
        builder=build_resnet50,
        task="multilabel",
        recipe=RESNET_RECIPE,
        lr_per_sample=0.1 / 256,
        activation_channels=512,
        params=(Param("width", WIDTH_LABEL.format("stage (64 = ResNet-50)"), 64, 1, 512), DROPOUT),
        description="ResNet-50 (He et al. 2016): the classes present in a tile (multi-label)",
    )
)
