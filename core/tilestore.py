"""The on-disk sample store that tiling writes and training / evaluation read.

One Zarr (v3) store per tiling run. Layout (channels-last, as Keras wants)::

    <store>/                          attrs: see StoreInfo (scene spec, job config, classes, split record,
                                             band statistics of the train split, counts, skipped tiles)
    <store>/<split>/x_<modality>      (N, H_m, W_m, C_m) source dtype; H_m/W_m are the tile or patch size at
                                      that modality's own resolution (e.g. HSI patch = RGB patch / 4)
    <store>/<split>/y                 tiles: (N, H, W) uint8 class ids on the label grid (0 = unlabelled)
                                      patches: (N,) uint8 class id of the centre pixel
    <store>/<split>/loc               (N, 4) int64: row_off, col_off, height, width of the sample on the label
                                      grid (patches: the patch window; its centre is the labelled pixel)
    <store>/<split>/date              (N,) int16 index into StoreInfo.dates
    <store>/<split>/valid             (N,) bool: False for slots left empty (all-nodata tiles, not written)

``split`` is one of ``train``, ``val``, ``test``. Chunks hold one sample, so each worker writes whole chunks
(no two tasks share a chunk) and each training rank reads only its own samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class StoreInfo:
    """Root metadata of a store (kept in the Zarr root attrs as JSON)."""

    scene: dict[str, Any]  # core.scene.Scene.to_dict()
    config: dict[str, Any]  # the TileJobConfig that made it
    mode: str  # "tiles" or "patches"
    modalities: tuple[str, ...]
    sample_size: dict[str, int]  # modality -> H (= W) of one sample at that modality's resolution
    classes: tuple[dict[str, Any], ...]  # [{"id", "name", "color"}]
    dates: tuple[str | None, ...]
    counts: dict[str, int] = field(default_factory=dict)  # split -> valid samples
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> {class id: pixels or patches}
    band_stats: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # modality -> {"mean", "std"} (train)
    split: dict[str, Any] = field(default_factory=dict)  # the split record (method, blocks, buffer, ...)
    skipped_nodata: int = 0
    run_id: int | None = None

    def to_attrs(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> "StoreInfo":
        d = dict(attrs)
        d["modalities"] = tuple(d["modalities"])
        d["classes"] = tuple(d["classes"])
        d["dates"] = tuple(d["dates"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class TileStore:
    """Read access to a store (and the small write helpers the tiling tasks use)."""

    def __init__(self, path: str | Path, mode: str = "r") -> None:
        self.path = Path(path)
        self.root = zarr.open_group(str(self.path), mode=mode)

    @property
    def info(self) -> StoreInfo:
        return StoreInfo.from_attrs(dict(self.root.attrs))

    def set_info(self, info: StoreInfo) -> None:
        self.root.attrs.update(info.to_attrs())

    def array(self, split: str, name: str) -> zarr.Array:
        return self.root[f"{split}/{name}"]  # type: ignore[return-value]

    def has_split(self, split: str) -> bool:
        return split in self.root and "y" in self.root[split]  # type: ignore[operator]

    def valid_indices(self, split: str) -> np.ndarray:
        """Indices of written samples of ``split`` (empty when the split has none)."""
        if not self.has_split(split):
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.array(split, "valid")[:])

    def shard(self, split: str, rank: int, size: int) -> np.ndarray:
        """The sample indices rank ``rank`` of ``size`` reads: an equal share (+-1) of the valid samples."""
        idx = self.valid_indices(split)
        return idx[rank::size]

    def read(self, split: str, indices: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Samples ``indices`` of ``split``: ({modality: (n, H, W, C)}, y)."""
        indices = np.asarray(indices, dtype=np.int64)
        xs = {m: self.array(split, f"x_{m}").get_orthogonal_selection((indices,)) for m in self.info.modalities}
        y = self.array(split, "y").get_orthogonal_selection((indices,))
        return xs, y
