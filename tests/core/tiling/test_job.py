"""The tiling job on a real 2-worker LocalCluster: real strzegom scene and tiny synthetic multi-modal scenes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from distributed import Client
from pyproj import Transformer
from rasterio.windows import Window

from core.configs import AOIConfig, SamplingConfig, SplitConfig, TileJobConfig, TilingConfig
from core.data.scene import Acquisition, ClassInfo, Modality, Scene
from core.errors import AOIOutsideSceneError, ConfigError, JobCancelledError, JobFailedError
from core.tiling.job import run_tile_job
from core.tiling.store import ChunkWriter, TileStore

MakeRaster = Callable[..., Path]

STRZEGOM_DATES = ("20210619", "20220619", "20220719")


def modality_from(name: str, paths: list[Path]) -> Modality:
    with rasterio.open(paths[0]) as ds:
        nodata = tuple(ds.nodata for _ in range(ds.count * len(paths)))
        return Modality(name, ds.width, ds.height, tuple(ds.transform)[:6], ds.count * len(paths), ds.dtypes[0], nodata)


def strzegom_scene(root: Path, dates: tuple[str, ...] = STRZEGOM_DATES) -> Scene:
    d = root / "strzegom"
    mod = modality_from("s2", [d / f"image_{dates[0]}.tif"])
    with rasterio.open(d / f"image_{dates[0]}.tif") as ds:
        crs = ds.crs.to_wkt()
    acqs = tuple(Acquisition(x, {"s2": (str(d / f"image_{x}.tif"),)}, str(d / f"labels_{x}.tif")) for x in dates)
    classes = tuple(ClassInfo(i, f"class{i}", "#00ff00") for i in range(1, 11))
    return Scene("strzegom", True, crs, (mod,), acqs, classes, label_modality="s2")


def read_direct(path: str, row: int, col: int, h: int, w: int) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(window=Window(col, row, w, h))


@pytest.mark.cluster
@pytest.mark.shared_data
def test_tiles_date_split_on_strzegom(cluster_client: Client, shared_data: Path, tmp_path: Path) -> None:
    scene = strzegom_scene(shared_data)
    cfg = TileJobConfig(
        scene="strzegom",
        mode="tiles",
        tiling=TilingConfig(tile_size=64),
        split=SplitConfig(method="date", test_date="20220719", val_date="20220619"),
    )
    calls: list[tuple[int, int]] = []
    info = run_tile_job(cfg, scene, cluster_client, tmp_path / "s.zarr", progress=lambda d, t: calls.append((d, t)))
    # 401 px with 64 px tiles: starts 0, 64, ..., 320 and 337 (moved back to the edge) -> 7 x 7 per date
    assert info.counts == {"train": 49, "val": 49, "test": 49}
    assert calls[-1] == (147, 147) and [c[0] for c in calls] == sorted(c[0] for c in calls)
    store = TileStore(tmp_path / "s.zarr")
    assert store.info.counts == info.counts and store.info.split["dates"]["20220719"] == "test"
    x = store.array("train", "x_s2")
    assert x.shape == (49, 64, 64, 10) and x.dtype == np.uint16
    loc = store.array("train", "loc")[:]
    assert {tuple(r) for r in loc[:, :2]} == {
        (r, c) for r in (0, 64, 128, 192, 256, 320, 337) for c in (0, 64, 128, 192, 256, 320, 337)
    }
    for i in (0, 17, 48):
        r, c, h, w = loc[i]
        direct = read_direct(scene.acquisitions[0].files["s2"][0], r, c, h, w)
        np.testing.assert_array_equal(x[i], direct.transpose(1, 2, 0))
        labels = read_direct(scene.acquisitions[0].labels, r, c, h, w)[0]
        np.testing.assert_array_equal(store.array("train", "y")[i], np.nan_to_num(labels).astype(np.uint8))
    # train band statistics equal numpy over the same (overlapping) train tiles
    stack = np.stack([x[i] for i in range(49)]).reshape(-1, 10).astype(np.float64)
    np.testing.assert_allclose(info.band_stats["s2"]["mean"], stack.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(info.band_stats["s2"]["std"], stack.std(axis=0), rtol=1e-6)
    assert info.skipped_nodata == 0 and sum(info.class_counts["train"].values()) > 0


@pytest.mark.cluster
@pytest.mark.shared_data
def test_tiles_spatial_split_with_wgs84_aoi(cluster_client: Client, shared_data: Path, tmp_path: Path) -> None:
    scene = strzegom_scene(shared_data, ("20210619",))
    tr = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    x0, y0 = 585420 + 10 * 20, 5652250 - 10 * 390  # AOI = rows 30..390, cols 20..380 of the 401 x 401 grid
    ring = [
        tr.transform(x, y) for x, y in [(x0, y0), (x0 + 3600, y0), (x0 + 3600, y0 + 3600), (x0, y0 + 3600), (x0, y0)]
    ]
    cfg = TileJobConfig(
        scene="strzegom",
        mode="tiles",
        tiling=TilingConfig(tile_size=32),
        aoi=AOIConfig(geometry={"type": "Polygon", "coordinates": [ring]}),
        split=SplitConfig(method="spatial", block_size=96, buffer=16, seed=5),
    )
    info = run_tile_job(cfg, scene, cluster_client, tmp_path / "s.zarr")
    store = TileStore(tmp_path / "s.zarr")
    assert info.split["method"] == "spatial" and info.split["buffer"] == 16
    tiles = {s: store.array(s, "loc")[:] for s in ("train", "val", "test") if store.has_split(s)}
    assert set(tiles) == {"train", "val", "test"} and sum(info.counts.values()) == sum(map(len, tiles.values()))
    for locs in tiles.values():
        for r, c, h, w in locs:  # inside the AOI bbox (rows 30..390, cols 20..380) and the raster
            assert (h, w) == (32, 32) and r + h <= 401 and c + w <= 401 and c + w > 20 and r + h > 30
    names = list(tiles)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for ra, ca, _, _ in tiles[a]:
                gap_r = np.maximum(tiles[b][:, 0] - (ra + 32), ra - (tiles[b][:, 0] + 32))
                gap_c = np.maximum(tiles[b][:, 1] - (ca + 32), ca - (tiles[b][:, 1] + 32))
                assert (np.maximum(gap_r, gap_c) >= 16).all()  # tiles of different splits >= buffer apart


@pytest.mark.cluster
@pytest.mark.shared_data
def test_patches_balanced_spatial_on_strzegom(cluster_client: Client, shared_data: Path, tmp_path: Path) -> None:
    scene = strzegom_scene(shared_data, ("20210619",))
    cfg = TileJobConfig(
        scene="strzegom",
        mode="patches",
        sampling=SamplingConfig(patch_size=9, per_class=40, seed=1),
        split=SplitConfig(method="spatial", block_size=64, seed=2),
    )
    info = run_tile_job(cfg, scene, cluster_client, tmp_path / "p.zarr")
    store = TileStore(tmp_path / "p.zarr")
    labels = np.nan_to_num(read_direct(scene.acquisitions[0].labels, 0, 0, 401, 401)[0]).astype(np.uint8)
    per_class: dict[int, int] = {}
    centres: dict[str, np.ndarray] = {}
    for s in ("train", "val", "test"):
        if not store.has_split(s):
            continue
        n = store.array(s, "y").shape[0]
        x = store.array(s, "x_s2")
        assert x.shape == (n, 9, 9, 10)
        loc, y = store.array(s, "loc")[:], store.array(s, "y")[:]
        centres[s] = loc[:, :2] + 4
        assert (labels[centres[s][:, 0], centres[s][:, 1]] == y).all()
        for cls in y:
            per_class[int(cls)] = per_class.get(int(cls), 0) + 1
        r, c, h, w = loc[0]
        np.testing.assert_array_equal(
            x[0], read_direct(scene.acquisitions[0].files["s2"][0], r, c, h, w).transpose(1, 2, 0)
        )
        assert sum(info.class_counts[s].values()) == n
    # every class present with >= 40 eligible pixels gets exactly 40 patches
    assert per_class and all(v <= 40 for v in per_class.values())
    assert sum(1 for v in per_class.values() if v == 40) >= 5
    # centres of different splits are more than a buffer (= patch, 9 px) apart: patches never overlap
    names = list(centres)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            d = np.abs(centres[a][:, None, :] - centres[b][None, :, :]).max(axis=2)
            assert d.min() > 9


@pytest.mark.cluster
@pytest.mark.shared_data
def test_patches_date_split_on_strzegom(cluster_client: Client, shared_data: Path, tmp_path: Path) -> None:
    scene = strzegom_scene(shared_data, ("20210619", "20220619"))
    cfg = TileJobConfig(
        scene="strzegom",
        mode="patches",
        sampling=SamplingConfig(patch_size=5, per_class=15),
        split=SplitConfig(method="date", test_date="20220619"),
    )
    info = run_tile_job(cfg, scene, cluster_client, tmp_path / "d.zarr")
    store = TileStore(tmp_path / "d.zarr")
    assert set(store.array("train", "date")[:]) == {0} and set(store.array("test", "date")[:]) == {1}
    assert set(info.class_counts["train"].values()) == {15} and set(info.class_counts["test"].values()) == {15}
    assert info.counts["train"] == 15 * len(info.class_counts["train"]) and "val" not in info.counts
    assert info.split == {
        "method": "date",
        "test_date": "20220619",
        "val_date": None,
        "dates": {"20210619": "train", "20220619": "test"},
    }


@pytest.mark.cluster
@pytest.mark.shared_data
def test_aoi_outside_and_cancel(cluster_client: Client, shared_data: Path, tmp_path: Path) -> None:
    scene = strzegom_scene(shared_data, ("20210619",))
    far = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
    with pytest.raises(AOIOutsideSceneError, match=r"does not overlap scene 'strzegom', whose extent is \(16\.2"):
        run_tile_job(TileJobConfig(scene="s", aoi=AOIConfig(geometry=far)), scene, cluster_client, tmp_path / "a")
    with pytest.raises(JobCancelledError, match=r"cancelled after \d+ of 49 samples"):
        run_tile_job(
            TileJobConfig(
                scene="s", tiling=TilingConfig(tile_size=64), split=SplitConfig(method="date", test_date="20210619")
            ),
            scene,
            cluster_client,
            tmp_path / "b",
            cancelled=lambda: True,
        )
    with pytest.raises(ConfigError, match="has no acquisition dated '1999'"):
        run_tile_job(TileJobConfig(scene="s", dates=("1999",)), scene, cluster_client, tmp_path / "c")


def multimodal_scene(tmp_path: Path, make_raster: MakeRaster) -> Scene:
    """RGB 64x64 at 0.5 px units + HSI 16x16 at 2 (4x coarser), not georeferenced, with a nodata corner."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(1, 255, (3, 64, 64)).astype(np.uint8)
    hsi = rng.random((5, 16, 16)).astype(np.float32)
    hsi[:, :4, :4] = np.nan  # the top-left 16x16 RGB tile is all nodata in HSI
    lab = np.zeros((64, 64), np.uint8)
    lab[8:56, 8:56] = rng.integers(1, 4, (48, 48))
    t_rgb, t_hsi = (0.5, 0.0, 0.0, 0.0, -0.5, 0.0), (2.0, 0.0, 0.0, 0.0, -2.0, 0.0)
    p_rgb = make_raster("rgb.tif", rgb, crs=None, transform=t_rgb)
    p_hsi = make_raster("hsi.tif", hsi, crs=None, transform=t_hsi)
    p_lab = make_raster("lab.tif", lab, crs=None, transform=t_rgb)
    mods = (
        Modality("rgb", 64, 64, t_rgb, 3, "uint8", (None,) * 3),
        Modality("hsi", 16, 16, t_hsi, 5, "float32", (None,) * 5),
    )
    return Scene(
        "mm",
        False,
        None,
        mods,
        (Acquisition(None, {"rgb": (str(p_rgb),), "hsi": (str(p_hsi),)}, str(p_lab)),),
        tuple(ClassInfo(i, f"c{i}", "#112233") for i in (1, 2, 3)),
        label_modality="rgb",
    )


@pytest.mark.cluster
def test_labels_outside_a_triangular_aoi_are_zeroed(
    cluster_client: Client, tmp_path: Path, make_raster: MakeRaster
) -> None:
    scene = multimodal_scene(tmp_path, make_raster)
    tri = {"type": "Polygon", "coordinates": [[[8, 8], [56, 8], [8, 56], [8, 8]]]}  # (col, row) pixels
    cfg = TileJobConfig(
        scene="mm",
        mode="tiles",
        modalities=("rgb",),
        tiling=TilingConfig(tile_size=16),
        aoi=AOIConfig(geometry=tri, crs="pixel"),
        split=SplitConfig(block_size=64, buffer=0, fractions=(1.0, 0.0, 0.0)),
    )
    info = run_tile_job(cfg, scene, cluster_client, tmp_path / "tri.zarr")
    store = TileStore(tmp_path / "tri.zarr")
    loc, y = store.array("train", "loc")[:], store.array("train", "y")[:]
    # bbox rows/cols 8..56 -> starts 8, 24, 40; the 3 tiles below the diagonal's far side are skipped
    assert info.counts == {"train": 6} and len(loc) == 6
    labels = read_direct(scene.acquisitions[0].labels, 0, 0, 64, 64)[0]
    zeroed = 0
    for (r, c, h, w), yt in zip(loc, y):
        rows, cols = np.mgrid[r : r + h, c : c + w]
        inside = (cols + 0.5 >= 8) & (rows + 0.5 >= 8) & (cols + rows + 1 <= 64)  # pixel centre in the triangle
        np.testing.assert_array_equal(yt[inside], labels[r : r + h, c : c + w][inside])
        assert not yt[~inside].any()
        zeroed += int(labels[r : r + h, c : c + w][~inside].astype(bool).sum())
    assert zeroed > 100  # there were labels outside the AOI to remove


@pytest.mark.cluster
def test_multimodal_tiles_and_patches(cluster_client: Client, tmp_path: Path, make_raster: MakeRaster) -> None:
    scene = multimodal_scene(tmp_path, make_raster)
    split = SplitConfig(block_size=32, buffer=0, fractions=(1.0, 0.0, 0.0))
    info = run_tile_job(
        TileJobConfig(scene="mm", tiling=TilingConfig(tile_size=16), split=split),
        scene,
        cluster_client,
        tmp_path / "t.zarr",
    )
    store = TileStore(tmp_path / "t.zarr")
    assert info.sample_size == {"rgb": 16, "hsi": 4} and info.skipped_nodata == 1
    assert info.counts == {"train": 15}
    valid = store.array("train", "valid")[:]
    loc = store.array("train", "loc")[:]
    assert not valid[0] and tuple(loc[0]) == (0, 0, 16, 16)
    i = int(np.flatnonzero(valid)[3])
    r, c, _, _ = loc[i]
    np.testing.assert_array_equal(
        store.array("train", "x_hsi")[i],
        read_direct(scene.acquisitions[0].files["hsi"][0], r // 4, c // 4, 4, 4).transpose(1, 2, 0),
    )
    np.testing.assert_array_equal(
        store.array("train", "x_rgb")[i],
        read_direct(scene.acquisitions[0].files["rgb"][0], r, c, 16, 16).transpose(1, 2, 0),
    )
    assert len(info.band_stats["hsi"]["mean"]) == 5 and not np.isnan(info.band_stats["hsi"]["mean"]).any()

    info = run_tile_job(
        TileJobConfig(scene="mm", mode="patches", sampling=SamplingConfig(patch_size=9, per_class=10), split=split),
        scene,
        cluster_client,
        tmp_path / "p.zarr",
    )
    assert info.sample_size == {"rgb": 9, "hsi": 3}
    assert info.class_counts["train"] == {"1": 10, "2": 10, "3": 10}
    xs, y = TileStore(tmp_path / "p.zarr").read("train", np.arange(30))
    assert xs["rgb"].shape == (30, 9, 9, 3) and xs["hsi"].shape == (30, 3, 3, 5) and set(y.tolist()) == {1, 2, 3}


def test_chunk_writer_writes_what_zarr_reads(tmp_path: Path) -> None:
    import zarr

    store = TileStore.create(tmp_path / "w.zarr")
    store.create_split("val", 4, {"a": (8, 8, 3, "uint16")}, (8, 8))
    writer = ChunkWriter(zarr.open_array(str(tmp_path / "w.zarr/val/x_a"), mode="r+"))
    assert writer._codec is not None  # the direct path, not the fallback
    sample = np.random.default_rng(0).integers(0, 5000, (8, 8, 3)).astype(np.uint16)
    writer.write(2, sample)
    writer.write(3, np.zeros((8, 8, 3), np.uint16))
    x = TileStore(tmp_path / "w.zarr").array("val", "x_a")[:]
    np.testing.assert_array_equal(x[2], sample)
    assert not x[[0, 1, 3]].any()
    with pytest.raises(ValueError, match=r"sample of shape \(8, 8\) does not fit array of shape \(4, 8, 8, 3\)"):
        writer.write(0, np.zeros((8, 8), np.uint16))
    # an array with other codecs falls back to zarr's own write
    other = zarr.create_array(
        str(tmp_path / "o.zarr"),
        shape=(2, 8, 8, 3),
        chunks=(1, 8, 8, 3),
        dtype="uint16",
        compressors=None,
        fill_value=0,
    )
    fallback = ChunkWriter(other)
    assert fallback._codec is None
    fallback.write(1, sample)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "o.zarr"))[1], sample)


@pytest.mark.cluster
def test_raster_smaller_than_a_tile_gives_one_padded_tile(
    cluster_client: Client, tmp_path: Path, make_raster: MakeRaster
) -> None:
    img = np.arange(2 * 10 * 12, dtype=np.uint16).reshape(2, 10, 12) + 1
    lab = np.ones((10, 12), np.uint8)
    t = (10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0)
    mod = Modality("s2", 12, 10, t, 2, "uint16", (None, None))
    scene = Scene(
        "tiny",
        True,
        "EPSG:32633",
        (mod,),
        (Acquisition("d1", {"s2": (str(make_raster("i.tif", img)),)}, str(make_raster("l.tif", lab))),),
        (ClassInfo(1, "one", "#ffffff"),),
        label_modality="s2",
    )
    cfg = TileJobConfig(
        scene="tiny", tiling=TilingConfig(tile_size=16), split=SplitConfig(method="date", test_date="d1")
    )
    info = run_tile_job(cfg, scene, cluster_client, tmp_path / "tiny.zarr")
    store = TileStore(tmp_path / "tiny.zarr")
    assert info.counts == {"test": 1} and info.class_counts["test"] == {"1": 120}
    assert tuple(store.array("test", "loc")[0]) == (0, 0, 10, 12)
    x, y = store.array("test", "x_s2")[0], store.array("test", "y")[0]
    assert x.shape == (16, 16, 2) and y.shape == (16, 16)
    np.testing.assert_array_equal(x[:10, :12], img.transpose(1, 2, 0))
    assert not x[10:].any() and not x[:, 12:].any() and y[:10, :12].all() and not y[10:].any()


@pytest.mark.cluster
def test_a_failing_worker_read_fails_the_job(cluster_client: Client, tmp_path: Path) -> None:
    mod = Modality("s2", 32, 32, (10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0), 1, "uint16", (None,))
    scene = Scene("gone", True, "EPSG:32633", (mod,), (Acquisition("d1", {"s2": (str(tmp_path / "gone.tif"),)}),))
    cfg = TileJobConfig(
        scene="gone", tiling=TilingConfig(tile_size=16), split=SplitConfig(method="date", test_date="d1")
    )
    with pytest.raises(JobFailedError, match=r"a tiling task failed: RasterReadError.*cannot open raster .*gone\.tif"):
        run_tile_job(cfg, scene, cluster_client, tmp_path / "f.zarr")


@pytest.mark.cluster
def test_patch_chunks_hold_many_patches_and_match_one_patch_per_chunk(
    cluster_client: Client, tmp_path: Path, make_raster: MakeRaster, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.tiling.store
    from core.sampling.patches import patch_window

    scene = multimodal_scene(tmp_path, make_raster)
    with rasterio.open(scene.acquisitions[0].files["hsi"][0]) as ds:
        hsi_px = ds.read()
    hsi_px[:, :6, :6] = np.nan  # a wider nodata corner: some patches are all nodata in HSI (empty slots)
    make_raster("hsi.tif", hsi_px, crs=None, transform=scene.modality("hsi").transform)
    cfg = TileJobConfig(
        scene="mm",
        mode="patches",
        sampling=SamplingConfig(patch_size=9, per_class=40, seed=3),
        split=SplitConfig(block_size=32, buffer=0, fractions=(1.0, 0.0, 0.0)),
    )
    stores = {}
    for per_chunk in (1, 16):  # 1: the layout before format version 2; 16: several tasks, a ragged last chunk
        monkeypatch.setattr(core.tiling.store, "MAX_PATCHES_PER_CHUNK", per_chunk)
        info = run_tile_job(cfg, scene, cluster_client, tmp_path / f"p{per_chunk}.zarr")
        stores[per_chunk] = TileStore(tmp_path / f"p{per_chunk}.zarr")
    assert info.counts == {"train": 120 - info.skipped_nodata} and info.skipped_nodata > 0  # HSI nodata corner
    old, new = stores[1], stores[16]
    assert new.info.format_version == 2 and new.array("train", "x_hsi").chunks == (16, 3, 3, 5)
    n_files = sum(1 for p in (tmp_path / "p16.zarr/train").glob("x_*/c/**/*") if p.is_file())
    assert n_files == 16 < 120  # 8 chunks of x_rgb and of x_hsi (7 x 16 + 8 patches)
    for name in ("x_rgb", "x_hsi", "y", "loc", "date", "valid"):
        np.testing.assert_array_equal(new.array("train", name)[:], old.array("train", name)[:])
    # every patch and label against the rasters themselves
    xs, y = new.read("train", np.arange(120))
    valid, loc = new.array("train", "valid")[:], new.array("train", "loc")[:]
    labels = read_direct(scene.acquisitions[0].labels, 0, 0, 64, 64)[0]
    rgb, hsi = scene.modality("rgb"), scene.modality("hsi")
    for i in range(120):
        if not valid[i]:
            assert not xs["rgb"][i].any() and not xs["hsi"][i].any()
            continue
        r, c = int(loc[i, 0]) + 4, int(loc[i, 1]) + 4
        assert y[i] == labels[r, c]
        for m, x in ((rgb, xs["rgb"][i]), (hsi, xs["hsi"][i])):
            w = patch_window(r, c, 9, rgb, m)
            assert w is not None
            direct = read_direct(scene.acquisitions[0].files[m.name][0], w.row_off, w.col_off, w.height, w.width)
            np.testing.assert_array_equal(x, direct.transpose(1, 2, 0))


def test_chunk_groups_are_chunk_aligned_ranges_of_one_split() -> None:
    from core.geo.windows import PixelWindow
    from core.tiling.job import _chunk_groups
    from core.tiling.tasks import PlannedSample, _check_chunk_range

    w = PixelWindow(0, 0, 1, 1)
    samples = [PlannedSample(s, i, 0, w, {}) for s, n in (("train", 10), ("test", 3)) for i in range(n)]
    groups = _chunk_groups(samples, {"train": 4, "test": 3})
    assert [(g[0].split, g[0].index, len(g)) for g in groups] == [
        ("train", 0, 4),
        ("train", 4, 4),
        ("train", 8, 2),
        ("test", 0, 3),
    ]
    assert [_check_chunk_range(g) for g in groups] == [0, 4, 8, 0]
    with pytest.raises(ValueError, match=r"consecutive slots of one split; got 2 samples from train\[9\] to test\[0\]"):
        _check_chunk_range(samples[9:11])
