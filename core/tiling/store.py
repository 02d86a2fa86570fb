"""The on-disk sample store that tiling writes and training / evaluation read.

One Zarr (v3) store per tiling run. Layout (channels-last, as Keras wants)::

    <store>/                          attrs: see StoreInfo (scene spec, job config, classes, split record,
                                             band statistics of the train split, counts, skipped tiles,
                                             format_version)
    <store>/<split>/x_<modality>      (N, H_m, W_m, C_m) source dtype; H_m/W_m are the tile or patch size at
                                      that modality's own resolution (e.g. HSI patch = RGB patch / 4)
    <store>/<split>/y                 tiles: (N, H, W) uint8 class ids on the label grid (0 = unlabelled)
                                      patches: (N,) uint8 class id of the centre pixel
    <store>/<split>/loc               (N, 4) int64: row_off, col_off, height, width of the sample on the label
                                      grid (patches: the patch window; its centre is the labelled pixel)
    <store>/<split>/date              (N,) int16 index into StoreInfo.dates
    <store>/<split>/valid             (N,) bool: False for slots left empty (all-nodata tiles, not written)

``split`` is one of ``train``, ``val``, ``test``. Chunks of ``x_*`` hold whole samples and split only the sample
axis: one tile per chunk in tile stores, up to :data:`MAX_PATCHES_PER_CHUNK` patches (about
:data:`PATCH_CHUNK_BYTES` of the widest modality) per chunk in patch stores, so reading a shard of small patches
opens a few files instead of one per patch. Each tiling task cuts a chunk-aligned range of samples and writes whole
chunks (no two tasks share a chunk). Tile ``y`` is chunked like ``x_*``; the small 1-D / 2-D arrays (patch ``y``,
``loc``, ``date``, ``valid``) are known to the driver when the job ends and are written by it in one go (chunks
of up to 65536 samples).

Format versions (root attr ``format_version``; absent = 1): 1, one sample per chunk of ``x_*`` in every store;
2, many patches per chunk in patch stores. Version 1 stores still read (Zarr records each array's chunking),
patch stores slowly, with a warning to re-run the tile job.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr

from core.errors import ConfigError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
FORMAT_VERSION = 2
"""Store layout version this module writes (see the module docstring)."""
PATCH_CHUNK_BYTES = 4 * 2**20
"""Target uncompressed size of one ``x_*`` chunk of a patch store, for its widest modality."""
MAX_PATCHES_PER_CHUNK = 1024

OpenMode = Literal["r", "r+", "a", "w", "w-"]
"""How :class:`TileStore` opens a store (zarr's file-like access modes)."""


@dataclass(frozen=True)
class StoreInfo:
    """Root metadata of a store (kept in the Zarr root attrs as JSON)."""

    scene: dict[str, Any]  # core.data.scene.Scene.to_dict()
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
    format_version: int = FORMAT_VERSION  # store layout (module docstring); stores without it are version 1

    def to_attrs(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> StoreInfo:
        d = dict(attrs)
        d["modalities"] = tuple(d["modalities"])
        d["classes"] = tuple(d["classes"])
        d["dates"] = tuple(d["dates"])
        d["warnings"] = tuple(d.get("warnings", ()))
        d.setdefault("format_version", 1)
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


_SMALL_CHUNK = 65536


def patches_per_chunk(x_shapes: dict[str, tuple[int, int, int, str]]) -> int:
    """Patches per ``x_*`` chunk of a patch store: as many of the widest modality's patches as fit in
    :data:`PATCH_CHUNK_BYTES` (at least 1, at most :data:`MAX_PATCHES_PER_CHUNK`).

    Args:
        x_shapes: modality -> (H, W, C, dtype name) of one patch.
    """
    widest = max(h * w * c * np.dtype(dtype).itemsize for h, w, c, dtype in x_shapes.values())
    return max(1, min(MAX_PATCHES_PER_CHUNK, PATCH_CHUNK_BYTES // max(1, widest)))


def _fast_codec() -> Any:
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")  # < 1 ms per 1.5 MB tile: keeps up with reads


class ChunkWriter:
    """Writes whole chunks of a store array from a worker.

    Chunk ``k`` of an array this module creates holds samples ``k * L`` to ``(k + 1) * L - 1`` (``L`` =
    ``array.chunks[0]``: 1 for tiles, many for patches; the last chunk may hold fewer). zarr-python's
    ``array[a:b] = block`` costs ~8 ms of CPU per 1.5 MB chunk in its async machinery, more than reading the tile
    from a GeoTIFF. For the arrays this module creates (local store, chunks split only the sample axis, ``bytes`` +
    ``blosc`` codecs, default ``c/i/0/...`` chunk keys) this writer encodes the chunk with the same Blosc settings
    and writes the chunk file itself: the same bytes at the same key zarr would write (~2.5 ms). Any other array
    (remote store, other codecs) falls back to ``array[a:b] = block``.
    """

    def __init__(self, array: zarr.Array) -> None:
        self.array = array
        self.length = int(array.chunks[0])  # samples per chunk
        self._codec, self._root = self._direct(array)

    @staticmethod
    def _direct(array: zarr.Array) -> tuple[Any, str | None]:
        import numcodecs
        from zarr.codecs import BloscCodec, BytesCodec
        from zarr.core.metadata import ArrayV3Metadata
        from zarr.storage import LocalStore

        md, store = array.metadata, array.store
        if not isinstance(md, ArrayV3Metadata) or not isinstance(store, LocalStore) or len(md.codecs) != 2:
            return None, None
        first, blosc = md.codecs
        if not isinstance(first, BytesCodec) or not isinstance(blosc, BloscCodec):
            return None, None
        ok = (
            getattr(md.chunk_key_encoding, "name", "") == "default"
            and getattr(md.chunk_key_encoding, "separator", "") == "/"
            and tuple(array.chunks[1:]) == tuple(array.shape[1:])
            and sys.byteorder == "little"
        )
        if not ok:
            return None, None
        shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[blosc.shuffle.value]
        codec = numcodecs.Blosc(
            cname=blosc.cname.value, clevel=blosc.clevel, shuffle=shuffle, blocksize=blosc.blocksize
        )
        # Blosc's own thread pool only adds hand-off cost in one-thread Dask workers (numcodecs advises this
        # setting under Dask); it is process-wide, and only affects speed, never the bytes written.
        numcodecs.blosc.use_threads = False
        return codec, str(Path(store.root) / array.path / "c")

    def write(self, index: int, sample: np.ndarray) -> None:
        """Store ``sample`` (shape ``array.shape[1:]``) as sample ``index`` of a one-sample-per-chunk array."""
        if sample.shape != tuple(self.array.shape[1:]):
            raise ValueError(f"sample of shape {sample.shape} does not fit array of shape {self.array.shape}")
        self.write_range(index, sample[None])

    def write_range(self, start: int, block: np.ndarray) -> None:
        """Store ``block`` (shape ``(n, *array.shape[1:])``) as samples ``start`` to ``start + n - 1``.

        The range must cover whole chunks (``start`` a multiple of the chunk length; ``n`` a multiple of it, or
        reaching the end of the array), so concurrent writers of disjoint ranges never share a chunk. An all-zero
        chunk is not stored (it reads as the fill value, 0).
        """
        n_all, n = int(self.array.shape[0]), len(block)
        end = start + n
        if block.shape[1:] != tuple(self.array.shape[1:]) or start < 0 or end > n_all:
            raise ValueError(
                f"block of shape {block.shape} at sample {start} does not fit array of shape {self.array.shape}"
            )
        if start % self.length or (end % self.length and end != n_all):
            raise ValueError(
                f"samples {start}..{end - 1} are not whole chunks of {self.length} samples (array of "
                f"{n_all}); give each writer a range that starts and ends on chunk boundaries"
            )
        if self._codec is None or self._root is None:
            self.array[start:end] = block
            return
        for c0 in range(start, end, self.length):
            part = block[c0 - start : c0 - start + self.length]
            if not part.any():  # zarr's write_empty_chunks=False: missing chunks read as the fill value (0)
                continue
            if len(part) < self.length:  # zarr stores the array's ragged last chunk at full chunk shape
                full = np.zeros((self.length, *part.shape[1:]), dtype=self.array.dtype)
                full[: len(part)] = part
                part = full
            data = np.ascontiguousarray(part, dtype=self.array.dtype)
            path = os.path.join(self._root, str(c0 // self.length), *("0",) * (block.ndim - 1))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            # No temp file + rename: each chunk has exactly one writer and nobody reads the store before the job
            # ends; a retried task simply rewrites its whole chunks.
            with open(path, "wb") as f:
                f.write(self._codec.encode(data))


class TileStore:
    """Read access to a store (and the small write helpers the tiling tasks use)."""

    @classmethod
    def create(cls, path: str | Path) -> TileStore:
        """A new, empty store at ``path`` (an existing store there is replaced)."""
        zarr.open_group(str(path), mode="w")
        return cls(path, mode="r+")

    def create_split(
        self,
        split: str,
        n: int,
        x_shapes: dict[str, tuple[int, int, int, str]],
        y_shape: tuple[int, ...],
        samples_per_chunk: int = 1,
    ) -> None:
        """Pre-create the arrays of ``split`` for ``n`` samples.

        Args:
            split: ``train``, ``val`` or ``test``.
            n: number of sample slots.
            x_shapes: modality -> (H, W, C, dtype name) of one sample.
            y_shape: ``(H, W)`` for tiles, ``()`` for patches.
            samples_per_chunk: samples per chunk of the ``x_*`` arrays (capped at ``n``): 1 for tiles,
                :func:`patches_per_chunk` for patches.
        """
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not one of {SPLITS}")
        g = self.root.require_group(split)
        per = max(1, min(n, samples_per_chunk))
        for m, (h, w, c, dtype) in x_shapes.items():
            g.create_array(
                f"x_{m}",
                shape=(n, h, w, c),
                chunks=(per, h, w, c),
                dtype=dtype,
                fill_value=0,
                compressors=_fast_codec(),
                overwrite=True,
            )
        small = max(1, min(n, _SMALL_CHUNK))
        y_chunks = (1, *y_shape) if y_shape else (small,)
        g.create_array(
            "y",
            shape=(n, *y_shape),
            chunks=y_chunks,
            dtype="uint8",
            fill_value=0,
            compressors=_fast_codec(),
            overwrite=True,
        )
        g.create_array("loc", shape=(n, 4), chunks=(small, 4), dtype="int64", fill_value=0, overwrite=True)
        g.create_array("date", shape=(n,), chunks=(small,), dtype="int16", fill_value=0, overwrite=True)
        g.create_array("valid", shape=(n,), chunks=(small,), dtype="bool", fill_value=False, overwrite=True)

    def __init__(self, path: str | Path, mode: OpenMode = "r") -> None:
        """Open the store at ``path``.

        Raises:
            ConfigError: the store was written in a newer format than this workbench reads.
        """
        self.path = Path(path)
        self.root = zarr.open_group(str(self.path), mode=mode)
        attrs = self.root.attrs
        if "mode" not in attrs:  # a store being created: no StoreInfo yet
            return
        raw_version = attrs.get("format_version", 1)
        if not isinstance(raw_version, int | float | str):
            raise ConfigError(
                f"tile store {self.path} has format_version {raw_version!r}, not a number; re-run the "
                "tile job that made it"
            )
        version = int(raw_version)
        if version > FORMAT_VERSION:
            raise ConfigError(
                f"tile store {self.path} has format version {version}, newer than this workbench "
                f"reads ({FORMAT_VERSION}); update the workbench or re-run the tile job that made it"
            )
        if version < 2 and attrs.get("mode") == "patches":
            log.warning(
                "tile store %s has format version %d (one patch per file), which reads slowly; re-run the "
                "tile job that made it for format version %d",
                self.path,
                version,
                FORMAT_VERSION,
            )

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
        # np.asarray: zarr types the selection as array-like or scalar; with the default (NumPy) buffers it is
        # already an ndarray, returned as it is.
        xs = {
            m: np.asarray(self.array(split, f"x_{m}").get_orthogonal_selection((indices,)))
            for m in self.info.modalities
        }
        y = np.asarray(self.array(split, "y").get_orthogonal_selection((indices,)))
        return xs, y
