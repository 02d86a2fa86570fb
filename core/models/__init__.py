"""Model architectures: one module per architecture, each registering a :class:`ModelSpec` when imported.

Builders are pure functions ``build_x(input_shape, num_classes, ...) -> keras.Model`` (no compile, no I/O). The
first :func:`get_model` / :func:`list_models` imports every module of this package (``pkgutil``), so adding a model
is adding one file that calls :func:`register_model`; everything else reads the registry. A model's
task (:mod:`core.tasks`) says what its outputs are: ``"dense"`` models map (B, H, W, C) tiles to (B, H, W, K) class
probabilities; ``"patch"`` models map patches centred on a pixel to (B, K) probabilities for that pixel (see
:mod:`core.models.bundle`); ``"multilabel"`` models map (B, H, W, C) tiles to (B, K) independent (sigmoid)
probabilities that each class is present in the tile.
"""

from __future__ import annotations

from core.models.api import NO_CONTEXT, Context, ModelSpec, Param, Recipe, get_model, list_models, register_model

# isort: off
# registration order is the launch form's order: the densely mapped per-pixel model comes first
from core.models.patch_fcn import build_patch_fcn
from core.models.patch_cnn import build_patch_cnn

# isort: on
from core.models.resnet import build_resnet50
from core.models.two_stream import build_two_stream, build_two_stream_hsi, build_two_stream_rgb
from core.models.unet import build_unet

__all__ = [
    "NO_CONTEXT",
    "Context",
    "ModelSpec",
    "Param",
    "Recipe",
    "build_patch_cnn",
    "build_patch_fcn",
    "build_resnet50",
    "build_two_stream",
    "build_two_stream_hsi",
    "build_two_stream_rgb",
    "build_unet",
    "get_model",
    "list_models",
    "register_model",
]
