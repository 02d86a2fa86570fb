"""Training-time augmentation of batches (numpy, on the rank that trains on them)."""

from __future__ import annotations

import numpy as np


def dihedral(
    xs: list[np.ndarray], y: np.ndarray, dense: bool, rng: np.random.Generator
) -> tuple[list[np.ndarray], np.ndarray]:
    """A random rot90 (k = 0..3) and horizontal flip of the whole batch, the same for every modality.

    Args:
        xs: one (B, H, W, C) array per modality.
        y: (B, H, W) label tiles when ``dense`` (transformed like the inputs), else per-sample labels (unchanged).
    """
    k, flip = int(rng.integers(4)), bool(rng.integers(2))

    def tf_(a: np.ndarray) -> np.ndarray:
        a = np.rot90(a, k, axes=(1, 2))
        return np.ascontiguousarray(a[:, :, ::-1] if flip else a)

    return [tf_(x) for x in xs], (tf_(y) if dense else y)
