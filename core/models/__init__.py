"""Model builders: pure functions ``build_x(input_shape, num_classes, ...) -> keras.Model`` (no compile, no I/O).

``MODELS`` maps a model name (the ``model`` field of a train config) to its builder and task:
``"dense"`` models map (B, H, W, C) tiles to (B, H, W, K) class probabilities; ``"patch"`` models map patches
centred on a pixel to (B, K) probabilities for that pixel (see :mod:`core.models.bundle`); ``"multilabel"`` models map
(B, H, W, C) tiles to (B, K) independent (sigmoid) probabilities that each class is present in the tile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.models.patch_cnn import build_patch_cnn
from core.models.resnet import build_resnet50
from core.models.two_stream import build_two_stream, build_two_stream_hsi, build_two_stream_rgb
from core.models.unet import build_unet


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder and the task it solves (``"dense"``, ``"patch"`` or ``"multilabel"``)."""

    builder: Callable[..., Any]
    task: str
    store_mode: str  # the tile-store mode it trains on: "tiles" or "patches"
    modality: str | None = None  # the one modality it reads from a multi-modal scene (None = every modality)


MODELS: dict[str, ModelSpec] = {
    "unet": ModelSpec(build_unet, "dense", "tiles"),
    "patch_cnn": ModelSpec(build_patch_cnn, "patch", "patches"),
    "resnet50": ModelSpec(build_resnet50, "multilabel", "tiles"),
    "two_stream": ModelSpec(build_two_stream, "patch", "patches"),
    "two_stream_rgb": ModelSpec(build_two_stream_rgb, "patch", "patches", modality="rgb"),
    "two_stream_hsi": ModelSpec(build_two_stream_hsi, "patch", "patches", modality="hsi"),
}

__all__ = ["MODELS", "ModelSpec", "build_patch_cnn", "build_resnet50", "build_two_stream", "build_two_stream_hsi",
           "build_two_stream_rgb", "build_unet"]
