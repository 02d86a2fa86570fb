"""Per-pixel classification of patches: (B, P, P, C) centred on a pixel -> (B, K) softmax for that pixel."""

from __future__ import annotations

import numpy as np

from core.sampling.augment import dihedral
from core.tasks.api import TaskSpec, register_task
from core.tasks.dense import accuracy_headline, index_targets, masked_loss, score_classes
from core.tasks.predictors import PER_PIXEL


def augment_patches(
    xs: list[np.ndarray], y: np.ndarray, rng: np.random.Generator
) -> tuple[list[np.ndarray], np.ndarray]:
    """A random rotation / flip of the batch's patches (their centre labels do not change)."""
    return dihedral(xs, y, False, rng)


PATCH_TASK = register_task(
    TaskSpec(
        name="patch",
        store_mode="patches",
        make_loss=masked_loss,
        targets=index_targets,
        augment=augment_patches,
        score=score_classes,
        headline=accuracy_headline,
        predictor=PER_PIXEL,
        activation_channels=96,
        class_weighted=True,
    )
)
