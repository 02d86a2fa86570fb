"""Writing small sample stores (core/tilestore.py layout) from arrays the tests generate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr

from core.tiling.store import StoreInfo, TileStore


def write_store(
    path: Path,
    samples: dict[str, tuple[np.ndarray, np.ndarray]],
    mode: str,
    classes: tuple[dict[str, Any], ...],
    band_mean: float = 110.0,
    band_std: float = 25.0,
    modality: str = "s2",
) -> Path:
    """Write ``{split: (x (N, H, W, C), y)}`` as a one-modality store with one sample per chunk; returns ``path``."""
    root = zarr.open_group(str(path), mode="w")
    counts = {}
    for split, (x, y) in samples.items():
        n = len(x)
        counts[split] = n
        g = root.require_group(split)
        for name, arr in (
            (f"x_{modality}", x),
            ("y", y),
            ("valid", np.ones(n, bool)),
            ("loc", np.zeros((n, 4), np.int64)),
            ("date", np.zeros(n, np.int16)),
        ):
            a = g.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=(1, *arr.shape[1:]))
            a[...] = arr
    size, bands = next(iter(samples.values()))[0].shape[1], next(iter(samples.values()))[0].shape[-1]
    info = StoreInfo(
        scene={"name": "tiny"},
        config={},
        mode=mode,
        modalities=(modality,),
        sample_size={modality: size},
        classes=classes,
        dates=(None,),
        counts=counts,
        band_stats={modality: {"mean": [band_mean] * bands, "std": [band_std] * bands}},
    )
    TileStore(path, mode="a").set_info(info)
    return path
