"""The sample store: chunk layout of patch stores, the direct chunk writer, format versions."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import zarr

from core.errors import ConfigError
from core.tiling.store import FORMAT_VERSION, ChunkWriter, StoreInfo, TileStore, patches_per_chunk
from tests.stores import write_store

CLASSES = ({"id": 1, "name": "a", "color": "#ff0000"}, {"id": 2, "name": "b", "color": "#00ff00"})


def chunk_files(array_dir: Path) -> list[Path]:
    return [p for p in (array_dir / "c").rglob("*") if p.is_file()]


def test_patches_per_chunk_fills_about_4_mib_of_the_widest_modality() -> None:
    assert patches_per_chunk({"rgb": (17, 17, 3, "uint8"), "hsi": (5, 5, 48, "uint16")}) == 1024  # capped
    assert patches_per_chunk({"hsi": (17, 17, 48, "float32")}) == 4 * 2**20 // (17 * 17 * 48 * 4)  # 75
    assert patches_per_chunk({"big": (512, 512, 16, "float64")}) == 1  # never less than one sample


def test_concurrent_writers_of_disjoint_chunk_ranges(tmp_path: Path) -> None:
    store = TileStore.create(tmp_path / "s.zarr")
    store.create_split("train", 103, {"a": (3, 3, 5, "float32")}, (), samples_per_chunk=8)
    path = str(tmp_path / "s.zarr/train/x_a")
    assert zarr.open_array(path).chunks == (8, 3, 3, 5)
    rng = np.random.default_rng(0)
    expected = rng.random((103, 3, 3, 5)).astype(np.float32)
    expected[16:24] = 0  # an all-zero chunk: not stored, reads as the fill value
    expected[40] = 0  # a single empty slot inside a chunk
    ranges = [(s, min(s + 16, 103)) for s in range(0, 103, 16)]  # two chunks per task...
    assert ranges[-1] == (96, 103)  # ...but the last: the ragged last chunk (7 samples of 8)

    def task(r: tuple[int, int]) -> None:  # each task opens its own writer, as the Dask tasks do
        ChunkWriter(zarr.open_array(path, mode="r+")).write_range(r[0], expected[r[0] : r[1]])

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(task, rng.permutation(np.array(ranges)).tolist()))
    np.testing.assert_array_equal(zarr.open_array(path)[:], expected)
    np.testing.assert_array_equal(TileStore(tmp_path / "s.zarr").array("train", "x_a")[:], expected)
    assert len(chunk_files(tmp_path / "s.zarr/train/x_a")) == 12  # 13 chunks, one all zero


def test_direct_chunks_are_the_bytes_zarr_writes(tmp_path: Path) -> None:
    x = np.random.default_rng(1).integers(0, 4000, (21, 4, 4, 3)).astype(np.uint16)
    for name in ("direct", "zarr"):
        TileStore.create(tmp_path / f"{name}.zarr").create_split(
            "val", 21, {"a": (4, 4, 3, "uint16")}, (), samples_per_chunk=10
        )
    writer = ChunkWriter(zarr.open_array(str(tmp_path / "direct.zarr/val/x_a"), mode="r+"))
    assert writer._codec is not None and writer.length == 10
    writer.write_range(0, x[:20])
    writer.write_range(20, x[20:])
    zarr.open_array(str(tmp_path / "zarr.zarr/val/x_a"), mode="r+")[:] = x
    direct, own = (sorted(chunk_files(tmp_path / f"{n}.zarr/val/x_a")) for n in ("direct", "zarr"))
    assert [p.relative_to(tmp_path / "direct.zarr") for p in direct] == [
        p.relative_to(tmp_path / "zarr.zarr") for p in own
    ] and len(direct) == 3
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(direct, own))


def test_write_range_refuses_ranges_that_split_a_chunk(tmp_path: Path) -> None:
    TileStore.create(tmp_path / "s.zarr").create_split("test", 20, {"a": (2, 2, 1, "uint8")}, (), samples_per_chunk=8)
    writer = ChunkWriter(zarr.open_array(str(tmp_path / "s.zarr/test/x_a"), mode="r+"))
    with pytest.raises(ValueError, match=r"samples 4\.\.11 are not whole chunks of 8 samples \(array of 20\)"):
        writer.write_range(4, np.ones((8, 2, 2, 1), np.uint8))
    with pytest.raises(ValueError, match=r"samples 8\.\.12 are not whole chunks of 8 samples"):
        writer.write_range(8, np.ones((5, 2, 2, 1), np.uint8))
    with pytest.raises(ValueError, match=r"block of shape \(8, 2, 2, 3\) at sample 0 does not fit array of shape"):
        writer.write_range(0, np.ones((8, 2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match=r"samples 0\.\.0 are not whole chunks of 8 samples"):
        writer.write(0, np.ones((2, 2, 1), np.uint8))  # one sample is a whole chunk only in tile stores


def test_store_without_format_version_reads_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    x = np.random.default_rng(2).integers(1, 255, (6, 3, 3, 2)).astype(np.uint8)
    y = np.array([1, 2, 1, 2, 1, 2], np.uint8)
    path = write_store(tmp_path / "old.zarr", {"train": (x, y)}, "patches", CLASSES)  # one patch per chunk
    root = zarr.open_group(str(path), mode="r+")
    del root.attrs["format_version"]  # as written before format versions
    assert StoreInfo.from_attrs(dict(root.attrs)).format_version == 1
    with caplog.at_level(logging.WARNING, logger="core.tiling.store"):
        store = TileStore(path)
    assert "has format version 1 (one patch per file), which reads slowly; re-run the tile job" in caplog.text
    xs, yy = store.read("train", np.arange(6))
    np.testing.assert_array_equal(xs["s2"], x)
    np.testing.assert_array_equal(yy, y)


def test_store_from_a_newer_workbench_is_refused(tmp_path: Path) -> None:
    x = np.zeros((2, 3, 3, 2), np.uint8)
    path = write_store(tmp_path / "new.zarr", {"train": (x, np.ones(2, np.uint8))}, "patches", CLASSES)
    assert TileStore(path).info.format_version == FORMAT_VERSION
    zarr.open_group(str(path), mode="r+").attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(
        ConfigError,
        match=rf"has format version {FORMAT_VERSION + 1}, newer than this workbench "
        rf"reads \({FORMAT_VERSION}\); update the workbench or re-run the tile job",
    ):
        TileStore(path)
