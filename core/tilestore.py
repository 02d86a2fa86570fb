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

``split`` is one of ``train``, ``val``, ``test``. Chunks of ``x_*`` and tile ``y`` hold one sample, so each worker
writes whole chunks (no two tasks share a chunk) and each training rank reads only its own samples. The small 1-D /
2-D arrays (patch ``y``, ``loc``, ``date``, ``valid``) are known to the driver when the job ends and are written by
it in one go (chunks of up to 65536 samples).
"""

from __future__ import annotations

import os
import sys
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
    warnings: tuple[str, ...] = ()  # messages for the user (e.g. the AOI was clipped to the scene)

    def to_attrs(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> "StoreInfo":
        d = dict(attrs)
        d["modalities"] = tuple(d["modalities"])
        d["classes"] = tuple(d["classes"])
        d["dates"] = tuple(d["dates"])
        d["warnings"] = tuple(d.get("warnings", ()))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


_SMALL_CHUNK = 65536


def _fast_codec() -> Any:
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")  # < 1 ms per 1.5 MB tile: keeps up with reads


class ChunkWriter:
    """Writes one sample (= one whole chunk) of a store array at a time, from a worker.

    zarr-python's ``array[i] = sample`` costs ~8 ms of CPU per 1.5 MB chunk in its async machinery, more than
    reading the tile from a GeoTIFF. For the arrays this module creates (local store, one sample per chunk,
    ``bytes`` + ``blosc`` codecs, default ``c/i/0/...`` chunk keys) this writer encodes the chunk with the same
    Blosc settings and writes the chunk file itself: the same bytes at the same key zarr would write (~2.5 ms).
    Any other array (remote store, other codecs) falls back to ``array[i] = sample``.
    """

    def __init__(self, array: zarr.Array) -> None:
        self.array = array
        self._codec, self._root = self._direct(array)

    @staticmethod
    def _direct(array: zarr.Array) -> tuple[Any, str | None]:
        import numcodecs
        from zarr.codecs import BloscCodec, BytesCodec
        from zarr.storage import LocalStore

        md = array.metadata
        codecs = getattr(md, "codecs", ())
        ok = (getattr(md, "zarr_format", 2) == 3 and isinstance(array.store, LocalStore)
              and len(codecs) == 2 and isinstance(codecs[0], BytesCodec) and isinstance(codecs[1], BloscCodec)
              and getattr(md.chunk_key_encoding, "name", "") == "default"
              and getattr(md.chunk_key_encoding, "separator", "") == "/"
              and tuple(array.chunks) == (1, *array.shape[1:]) and sys.byteorder == "little")
        if not ok:
            return None, None
        blosc = codecs[1]
        shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[blosc.shuffle.value]  # type: ignore[union-attr]
        codec = numcodecs.Blosc(cname=blosc.cname.value, clevel=blosc.clevel, shuffle=shuffle,
                                blocksize=blosc.blocksize)
        # Blosc's own thread pool only adds hand-off cost in one-thread Dask workers (numcodecs advises this
        # setting under Dask); it is process-wide, and only affects speed, never the bytes written.
        numcodecs.blosc.use_threads = False
        return codec, str(Path(array.store.root) / array.path / "c")

    def write(self, index: int, sample: np.ndarray) -> None:
        """Store ``sample`` (shape ``array.shape[1:]``) as sample ``index``; an all-zero sample is not stored."""
        if sample.shape != tuple(self.array.shape[1:]):
            raise ValueError(f"sample of shape {sample.shape} does not fit array of shape {self.array.shape}")
        if self._codec is None or self._root is None:
            self.array[index] = sample
            return
        if not sample.any():  # zarr's write_empty_chunks=False: missing chunks read as the fill value (0)
            return
        data = np.ascontiguousarray(sample, dtype=self.array.dtype)
        folder = os.path.join(self._root, str(index), *("0",) * (sample.ndim - 1))
        os.makedirs(folder, exist_ok=True)
        # No temp file + rename: each chunk has exactly one writer and nobody reads the store before the job ends;
        # a retried task simply rewrites the whole chunk.
        with open(os.path.join(folder, "0"), "wb") as f:
            f.write(self._codec.encode(data))


class TileStore:
    """Read access to a store (and the small write helpers the tiling tasks use)."""

    @classmethod
    def create(cls, path: str | Path) -> "TileStore":
        """A new, empty store at ``path`` (an existing store there is replaced)."""
        zarr.open_group(str(path), mode="w")
        return cls(path, mode="r+")

    def create_split(self, split: str, n: int, x_shapes: dict[str, tuple[int, int, int, str]],
                     y_shape: tuple[int, ...]) -> None:
        """Pre-create the arrays of ``split`` for ``n`` samples.

        Args:
            split: ``train``, ``val`` or ``test``.
            n: number of sample slots.
            x_shapes: modality -> (H, W, C, dtype name) of one sample.
            y_shape: ``(H, W)`` for tiles, ``()`` for patches.
        """
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not one of {SPLITS}")
        g = self.root.require_group(split)
        for m, (h, w, c, dtype) in x_shapes.items():
            g.create_array(f"x_{m}", shape=(n, h, w, c), chunks=(1, h, w, c), dtype=dtype, fill_value=0,
                           compressors=_fast_codec(), overwrite=True)
        small = max(1, min(n, _SMALL_CHUNK))
        y_chunks = (1, *y_shape) if y_shape else (small,)
        g.create_array("y", shape=(n, *y_shape), chunks=y_chunks, dtype="uint8", fill_value=0,
                       compressors=_fast_codec(), overwrite=True)
        g.create_array("loc", shape=(n, 4), chunks=(small, 4), dtype="int64", fill_value=0, overwrite=True)
        g.create_array("date", shape=(n,), chunks=(small,), dtype="int16", fill_value=0, overwrite=True)
        g.create_array("valid", shape=(n,), chunks=(small,), dtype="bool", fill_value=False, overwrite=True)

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
