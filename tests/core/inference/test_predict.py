"""Distributed tiled inference on a real 2-worker LocalCluster with tiny Keras models saved as bundles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine

from core.configs import AOIConfig
from core.data.scene import Acquisition, ClassInfo, Modality, Scene
from core.geo.windows import PixelWindow
from core.models.bundle import ModelMeta, save_bundle
from tests.conftest import write_raster

keras = pytest.importorskip("keras")

T = (10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0)
CLASSES = (ClassInfo(3, "forest", "#00aa00"), ClassInfo(5, "water", "#0000ff"), ClassInfo(9, "urban", "#ff0000"))


def make_scene(
    tmp_path: Path, data: np.ndarray, crs: str | None = "EPSG:32633", nodata: float | None = None, name: str = "s2"
) -> Scene:
    """A one-modality scene over one GeoTIFF of ``data`` (bands, rows, cols)."""
    path = write_raster(tmp_path / f"{name}.tif", data, crs=crs, transform=T if crs else None, nodata=nodata)
    c, h, w = data.shape
    mod = Modality(name, w, h, T if crs else (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), c, data.dtype.name, (nodata,) * c)
    wkt = rasterio.crs.CRS.from_user_input(crs).to_wkt() if crs else None
    return Scene("test", crs is not None, wkt, (mod,), (Acquisition(None, {name: (str(path),)}),), CLASSES, name)


def meta_for(task: str, bands: int, size: int, mean: float = 0.5, std: float = 0.25) -> ModelMeta:
    return ModelMeta(
        model="tiny",
        task=task,
        modalities=("s2",),
        sample_size={"s2": size},
        class_ids=tuple(c.id for c in CLASSES),
        class_names=tuple(c.name for c in CLASSES),
        class_colors=tuple(c.color for c in CLASSES),
        band_stats={"s2": {"mean": [mean] * bands, "std": [std] * bands}},
        scene="test",
    )


def dense_bundle(tmp_path: Path, bands: int) -> tuple[Path, Any, ModelMeta]:
    """Two stacked 3x3 convs (receptive-field radius 2), any input size."""
    keras.utils.set_random_seed(1)
    inp = keras.Input((None, None, bands))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="tanh")(inp)
    out = keras.layers.Conv2D(3, 3, padding="same", activation="softmax")(x)
    model = keras.Model(inp, out)
    meta = meta_for("dense", bands, 32)
    return save_bundle(tmp_path / "dense", model, meta), model, meta


def patch_bundle(tmp_path: Path, bands: int, p: int = 5) -> tuple[Path, Any, ModelMeta]:
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [keras.Input((p, p, bands)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")]
    )
    meta = meta_for("patch", bands, p)
    return save_bundle(tmp_path / "patch", model, meta), model, meta


def whole_prediction(model: Any, meta: ModelMeta, data: np.ndarray) -> np.ndarray:
    x = meta.normalise("s2", np.moveaxis(data, 0, -1))[None]
    probs = np.asarray(model.predict_on_batch(x))[0]
    return np.asarray(meta.class_ids, dtype=np.uint8)[probs.argmax(-1)]


@pytest.mark.cluster
def test_dense_tiles_leave_no_seams(tmp_path: Path, cluster_client: Any) -> None:
    from core.inference.predict import run_predict

    rng = np.random.default_rng(0)
    data = rng.random((3, 70, 90), dtype=np.float32)
    scene = make_scene(tmp_path, data)
    bundle, model, meta = dense_bundle(tmp_path, 3)
    expected = whole_prediction(model, meta, data)
    seen: list[tuple[int, int]] = []
    res = run_predict(
        bundle,
        scene,
        AOIConfig(),
        cluster_client,
        tmp_path / "out" / "map.tif",
        tile_size=24,
        overlap=4,
        progress=lambda d, t: seen.append((d, t)),
        min_overview_size=8,
    )
    assert res["windows"] == 5 * 6 and seen[-1] == (30, 30)  # cores of 24 - 2*4 = 16 px over 70 x 90
    with rasterio.open(res["path"]) as src:
        got = src.read(1)
        assert src.crs.to_epsg() == 32633 and src.transform == Affine(*T)
        assert src.overviews(1) == [2, 4, 8]
        assert src.colormap(1)[5][:3] == (0, 0, 255) and src.tags()["CLASS_9"] == "urban"
    assert got.shape == (70, 90)
    assert np.array_equal(got, expected), f"{int((got != expected).sum())} pixels differ from one whole prediction"
    assert sum(res["class_pixels"].values()) == 70 * 90
    with rasterio.open(res["confidence_path"]) as src:
        conf = src.read(1)
        assert src.nodata == 255 and conf.min() >= 33 and conf.max() <= 100  # max of 3 probabilities >= 1/3

    # Without context the tile borders differ: the comparison above can fail.
    res0 = run_predict(
        bundle, scene, AOIConfig(), cluster_client, tmp_path / "seams.tif", tile_size=24, overlap=0, confidence=False
    )
    with rasterio.open(res0["path"]) as src:
        assert (src.read(1) != expected).sum() > 0
    assert res0["confidence_path"] is None


@pytest.mark.cluster
def test_dense_aoi_polygon_and_nodata(tmp_path: Path, cluster_client: Any) -> None:
    from core.inference.predict import run_predict

    rng = np.random.default_rng(1)
    data = rng.random((3, 60, 60), dtype=np.float32)
    data[:, 30, 30] = -1  # one nodata pixel inside the AOI
    scene = make_scene(tmp_path, data, nodata=-1)
    bundle, _, _ = dense_bundle(tmp_path, 3)
    # A triangle in map coordinates (EPSG:32633): pixel corners (10, 10), (50, 10), (10, 50).
    x0, y0 = T[2], T[5]
    tri = {
        "type": "Polygon",
        "coordinates": [[(x0 + 100, y0 - 100), (x0 + 500, y0 - 100), (x0 + 100, y0 - 500), (x0 + 100, y0 - 100)]],
    }
    res = run_predict(
        bundle,
        scene,
        AOIConfig(geometry=tri, crs="EPSG:32633"),
        cluster_client,
        tmp_path / "tri.tif",
        tile_size=24,
        overlap=4,
    )
    assert res["bbox"] == (10, 10, 40, 40)
    with rasterio.open(res["path"]) as src:
        got = src.read(1)
        assert src.transform == Affine(*T) @ Affine.translation(10, 10)
        assert src.nodata == 0
    assert got.shape == (40, 40)
    rows, cols = np.mgrid[0:40, 0:40] + 0.5
    inside = rows + cols < 40  # pixel centres inside the triangle (centres on the hypotenuse are ambiguous)
    outside = rows + cols > 40
    inside[20, 20] = False  # the nodata pixel (30, 30) of the scene
    assert np.all(got[inside] > 0) and np.all(got[outside] == 0) and got[20, 20] == 0
    with rasterio.open(res["confidence_path"]) as src:
        conf = src.read(1)
        assert np.all(conf[outside] == 255) and conf[20, 20] == 255 and np.all(conf[inside] <= 100)


@pytest.mark.cluster
def test_patch_model_covers_every_aoi_pixel(tmp_path: Path, cluster_client: Any) -> None:
    from core.inference.predict import run_predict

    rng = np.random.default_rng(2)
    data = rng.random((2, 21, 23), dtype=np.float32)
    scene = make_scene(tmp_path, data, crs=None)
    bundle, model, meta = patch_bundle(tmp_path, 2)
    res = run_predict(bundle, scene, AOIConfig(), cluster_client, tmp_path / "patch.tif", tile_size=8, batch_size=37)
    with rasterio.open(res["path"]) as src:
        got = src.read(1)
        assert src.crs is None
    # Reference: one patch per pixel from a NaN-padded copy (NaN -> 0 after normalisation).
    padded = np.pad(np.moveaxis(data, 0, -1), ((2, 2), (2, 2), (0, 0)), constant_values=np.nan)
    patches = np.stack([padded[r : r + 5, c : c + 5] for r in range(21) for c in range(23)])
    probs = np.asarray(model.predict_on_batch(meta.normalise("s2", patches)))
    expected = np.asarray(meta.class_ids, dtype=np.uint8)[probs.argmax(-1)].reshape(21, 23)
    assert np.all(got > 0)
    assert np.array_equal(got, expected)


def test_read_window_stays_inside_raster() -> None:
    from core.inference.predict import read_window_for

    assert read_window_for(PixelWindow(0, 0, 16, 16), 24, 4, 70, 90) == PixelWindow(0, 0, 24, 24)
    assert read_window_for(PixelWindow(16, 32, 16, 16), 24, 4, 70, 90) == PixelWindow(12, 28, 24, 24)
    assert read_window_for(PixelWindow(64, 80, 6, 10), 24, 4, 70, 90) == PixelWindow(46, 66, 24, 24)
    assert read_window_for(PixelWindow(17, 17, 8, 8), 24, 4, 70, 90, align=4) == PixelWindow(12, 12, 24, 24)


@pytest.mark.cluster
def test_missing_modality_is_a_config_error(tmp_path: Path, cluster_client: Any) -> None:
    from core.errors import ConfigError
    from core.inference.predict import run_predict

    scene = make_scene(tmp_path, np.zeros((3, 10, 10), np.float32), name="rgb")
    bundle, _, _ = dense_bundle(tmp_path, 3)
    with pytest.raises(ConfigError, match=r"needs modalities \['s2'\] but acquisition None .* has \['rgb'\]"):
        run_predict(bundle, scene, AOIConfig(), cluster_client, tmp_path / "x.tif")


def two_modality_scene(tmp_path: Path, rng: np.random.Generator) -> tuple[Scene, np.ndarray, np.ndarray]:
    """Label grid ``rgb`` 48 x 44 px at 10 m plus ``hsi`` 12 x 11 px at 40 m over the same ground (Houston-like)."""
    fine = rng.random((3, 48, 44), dtype=np.float32)
    coarse = rng.random((2, 12, 11), dtype=np.float32)
    tc = (40.0, 0.0, T[2], 0.0, -40.0, T[5])
    p_f = write_raster(tmp_path / "rgb.tif", fine, transform=T)
    p_c = write_raster(tmp_path / "hsi.tif", coarse, transform=tc)
    mods = (
        Modality("rgb", 44, 48, T, 3, "float32", (None,) * 3),
        Modality("hsi", 11, 12, tc, 2, "float32", (None,) * 2),
    )
    wkt = rasterio.crs.CRS.from_epsg(32633).to_wkt()
    acq = Acquisition(None, {"rgb": (str(p_f),), "hsi": (str(p_c),)})
    return Scene("two", True, wkt, mods, (acq,), CLASSES, "rgb"), fine, coarse


def two_modality_meta(task: str, sizes: dict[str, int]) -> ModelMeta:
    return ModelMeta(
        model="tiny2",
        task=task,
        modalities=("rgb", "hsi"),
        sample_size=sizes,
        class_ids=tuple(c.id for c in CLASSES),
        class_names=tuple(c.name for c in CLASSES),
        class_colors=tuple(c.color for c in CLASSES),
        band_stats={"rgb": {"mean": [0.5] * 3, "std": [0.3] * 3}, "hsi": {"mean": [0.4] * 2, "std": [0.2] * 2}},
        scene="two",
    )


@pytest.mark.cluster
def test_two_modality_dense_no_seams(tmp_path: Path, cluster_client: Any) -> None:
    from core.inference.predict import run_predict

    scene, fine, coarse = two_modality_scene(tmp_path, np.random.default_rng(3))
    keras.utils.set_random_seed(3)
    a, b = keras.Input((None, None, 3)), keras.Input((None, None, 2))
    x = keras.layers.Concatenate()([a, keras.layers.UpSampling2D(4)(b)])
    x = keras.layers.Conv2D(6, 3, padding="same", activation="tanh")(x)
    out = keras.layers.Conv2D(3, 3, padding="same", activation="softmax")(x)
    model, meta = keras.Model([a, b], out), two_modality_meta("dense", {"rgb": 32, "hsi": 8})
    bundle = save_bundle(tmp_path / "dense2", model, meta)
    probs = np.asarray(
        model.predict_on_batch(
            [
                meta.normalise("rgb", np.moveaxis(fine, 0, -1))[None],
                meta.normalise("hsi", np.moveaxis(coarse, 0, -1))[None],
            ]
        )
    )[0]
    expected = np.asarray(meta.class_ids, dtype=np.uint8)[probs.argmax(-1)]
    res = run_predict(bundle, scene, AOIConfig(), cluster_client, tmp_path / "two.tif", tile_size=32, overlap=4)
    with rasterio.open(res["path"]) as src:
        got = src.read(1)
    assert got.shape == (48, 44) and np.array_equal(got, expected)


@pytest.mark.cluster
def test_two_modality_patch_matches_sampling_rule(tmp_path: Path, cluster_client: Any) -> None:
    from core.inference.predict import run_predict
    from core.sampling.patches import modality_patch_size

    scene, fine, coarse = two_modality_scene(tmp_path, np.random.default_rng(4))
    pc = modality_patch_size(9, scene.modality("rgb"), scene.modality("hsi"))
    assert pc == 3
    keras.utils.set_random_seed(4)
    a, b = keras.Input((9, 9, 3)), keras.Input((pc, pc, 2))
    x = keras.layers.Concatenate()([keras.layers.Flatten()(a), keras.layers.Flatten()(b)])
    model = keras.Model([a, b], keras.layers.Dense(3, activation="softmax")(x))
    meta = two_modality_meta("patch", {"rgb": 9, "hsi": pc})
    bundle = save_bundle(tmp_path / "patch2", model, meta)
    res = run_predict(
        bundle,
        scene,
        AOIConfig(
            geometry={"type": "Polygon", "coordinates": [[(0, 0), (20, 0), (20, 30), (0, 30), (0, 0)]]}, crs="pixel"
        ),
        cluster_client,
        tmp_path / "p2.tif",
        tile_size=16,
        batch_size=50,
    )
    with rasterio.open(res["path"]) as src:
        got = src.read(1)
    assert got.shape == (30, 20)
    pf = np.pad(meta.normalise("rgb", np.moveaxis(fine, 0, -1)), ((4, 4), (4, 4), (0, 0)))
    pcoarse = np.pad(meta.normalise("hsi", np.moveaxis(coarse, 0, -1)), ((1, 1), (1, 1), (0, 0)))
    rc = [(r, c) for r in range(30) for c in range(20)]
    xf = np.stack([pf[r : r + 9, c : c + 9] for r, c in rc])
    xc = np.stack([pcoarse[r // 4 : r // 4 + 3, c // 4 : c // 4 + 3] for r, c in rc])  # centre pixel r // 4, +-1
    probs = np.asarray(model.predict_on_batch([xf, xc]))
    expected = np.asarray(meta.class_ids, dtype=np.uint8)[probs.argmax(-1)].reshape(30, 20)
    assert np.array_equal(got, expected)


@pytest.mark.cluster
def test_cancel_and_worker_failure(tmp_path: Path, cluster_client: Any) -> None:
    from core.errors import JobCancelledError, JobFailedError
    from core.inference.predict import run_predict

    data = np.random.default_rng(5).random((3, 40, 40), dtype=np.float32)
    scene = make_scene(tmp_path, data)
    bundle, _, _ = dense_bundle(tmp_path, 3)
    out = tmp_path / "c" / "map.tif"
    with pytest.raises(JobCancelledError, match="cancelled after 0 of 9 windows"):
        run_predict(bundle, scene, AOIConfig(), cluster_client, out, tile_size=24, overlap=5, cancelled=lambda: True)
    assert [p.name for p in out.parent.iterdir()] == ["map.tif.parts"]  # partial files removed, the ledger kept
    # A "dense" model whose output is half the tile size fails in the worker; the driver names the task.
    model = keras.Sequential(
        [keras.Input((None, None, 3)), keras.layers.MaxPooling2D(2), keras.layers.Conv2D(3, 1, activation="softmax")]
    )
    bad = save_bundle(tmp_path / "bad", model, meta_for("dense", 3, 16))
    with pytest.raises(JobFailedError, match=r"prediction task .* failed on the cluster: .*returned \(8, 8\) pixels"):
        run_predict(bad, scene, AOIConfig(), cluster_client, out, tile_size=16, overlap=2)


def test_predict_config_validation() -> None:
    from core.configs import PredictJobConfig

    c = PredictJobConfig(model="/m", scene="s", tile_size=64, overlap=8)
    assert PredictJobConfig.model_validate_json(c.model_dump_json()) == c
    assert c.seams == "exact" and PredictJobConfig(model="/m", scene="s").overlap is None
    with pytest.raises(ValueError, match="overlap 32 leaves no pixels of a 64-pixel tile"):
        PredictJobConfig(model="/m", scene="s", tile_size=64, overlap=32)
    with pytest.raises(ValueError, match="seams='crop' trades exact seams for speed with an overlap you choose"):
        PredictJobConfig(model="/m", scene="s", seams="crop")
    assert PredictJobConfig(model="/m", scene="s", seams="crop", overlap=4).overlap == 4


SEAM_TOY = "seam_toy"


def _build_seam_toy(input_shape: Any, num_classes: int) -> Any:
    inp = keras.Input((None, None, input_shape[-1]))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="tanh")(inp)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="tanh")(x)
    return keras.Model(inp, keras.layers.Conv2D(num_classes, 3, padding="same", activation="softmax")(x))


def _seam_toy_bundle(tmp_path: Path, bands: int, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Any, ModelMeta]:
    """A dense model of three 3x3 convolutions registered for this test only: receptive-field radius 3, declared
    as its context."""
    from dataclasses import replace

    from core.models import Context, ModelSpec, api, list_models, register_model

    list_models()  # discover the package's models first, then register the toy in a copy of the registry
    monkeypatch.setattr(api, "_REGISTRY", dict(api._REGISTRY))
    register_model(
        ModelSpec(
            name=SEAM_TOY,
            builder=_build_seam_toy,
            task="dense",
            context=lambda params: Context(align=1, radius=3, rule="1"),
        )
    )
    keras.utils.set_random_seed(8)
    model = _build_seam_toy((16, 16, bands), 3)
    meta = replace(meta_for("dense", bands, 16), model=SEAM_TOY)
    return save_bundle(tmp_path / "seam_toy", model, meta), model, meta


@pytest.mark.cluster
def test_default_overlap_is_exact_and_crop_trades_it(
    tmp_path: Path, cluster_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.errors import ConfigError
    from core.inference.predict import run_predict

    data = np.random.default_rng(9).random((3, 61, 75), dtype=np.float32)
    scene = make_scene(tmp_path, data)
    bundle, model, meta = _seam_toy_bundle(tmp_path, 3, monkeypatch)
    expected = whole_prediction(model, meta, data)
    res = run_predict(
        bundle, scene, AOIConfig(), cluster_client, tmp_path / "exact.tif", tile_size=20, confidence=False
    )
    assert res["overlap"] == 3 and res["seams"] == "exact" and res["windows"] == 5 * 6  # cores of 14 px
    assert 0 < res["first_pixel_s"] <= res["seconds"] and res["tasks"] < res["windows"]  # chunks of tiles
    with rasterio.open(res["path"]) as src:
        got = src.read(1)
    assert np.array_equal(got, expected), f"{int((got != expected).sum())} pixels differ from one whole prediction"
    default_tile = run_predict(bundle, scene, AOIConfig(), cluster_client, tmp_path / "d.tif", confidence=False)
    assert default_tile["tile_size"] >= 6 * 3 and default_tile["overlap"] == 3
    with rasterio.open(default_tile["path"]) as src:
        assert np.array_equal(src.read(1), expected)
    with pytest.raises(
        ConfigError, match="overlap 1 is below the receptive-field radius 3 of model .*: exact seams need overlap >= 3"
    ):
        run_predict(bundle, scene, AOIConfig(), cluster_client, tmp_path / "x.tif", tile_size=20, overlap=1)
    crop = run_predict(
        bundle,
        scene,
        AOIConfig(),
        cluster_client,
        tmp_path / "crop.tif",
        tile_size=20,
        overlap=1,
        seams="crop",
        confidence=False,
    )
    assert crop["seams"] == "crop" and crop["windows"] == 4 * 5  # cores of 18 px
    with rasterio.open(crop["path"]) as src:
        assert (src.read(1) != expected).sum() > 0  # seams where the overlap is below the receptive field
    with pytest.raises(ConfigError, match="seams='crop' needs the overlap to crop"):
        run_predict(bundle, scene, AOIConfig(), cluster_client, tmp_path / "y.tif", seams="crop")


@pytest.mark.cluster
def test_patch_fcn_is_mapped_densely_with_per_patch_classes(tmp_path: Path, cluster_client: Any) -> None:
    from core.inference.predict import run_predict
    from core.models.patch_fcn import build_patch_fcn

    rng = np.random.default_rng(10)
    data = rng.random((2, 37, 300), dtype=np.float32)
    data[:, 5, 7] = -1
    scene = make_scene(tmp_path, data, crs=None, nodata=-1)
    keras.utils.set_random_seed(10)
    model = build_patch_fcn((5, 5, 2), 3, width=4)
    from dataclasses import replace

    meta = replace(meta_for("patch", 2, 5), model="patch_fcn")
    bundle = save_bundle(tmp_path / "fcn", model, meta)
    res = run_predict(bundle, scene, AOIConfig(), cluster_client, tmp_path / "fcn.tif")
    assert res["tile_size"] == 256 and res["windows"] == 2  # 256 px blocks: one model call each
    with rasterio.open(res["path"]) as src:
        got = src.read(1)
    x = meta.normalise("s2", np.where(data == -1, np.nan, data).transpose(1, 2, 0))
    padded = np.pad(x, ((2, 2), (2, 2), (0, 0)))
    patches = np.lib.stride_tricks.sliding_window_view(padded, (5, 5), axis=(0, 1)).transpose(0, 1, 3, 4, 2)
    probs = np.asarray(model.predict_on_batch(patches.reshape(-1, 5, 5, 2)))
    expected = np.asarray(meta.class_ids, dtype=np.uint8)[probs.argmax(-1)].reshape(37, 300)
    expected[5, 7] = 0
    assert np.array_equal(got, expected)


@pytest.mark.cluster
def test_fixed_size_model_sets_tile(tmp_path: Path, cluster_client: Any) -> None:
    from core.inference.predict import run_predict

    data = np.random.default_rng(6).random((3, 30, 37), dtype=np.float32)
    scene = make_scene(tmp_path, data)
    keras.utils.set_random_seed(6)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(3, 1, activation="softmax")])
    bundle = save_bundle(tmp_path / "fixed", model, meta_for("dense", 3, 16))
    res = run_predict(bundle, scene, AOIConfig(), cluster_client, tmp_path / "f.tif", tile_size=64, overlap=2)
    assert res["tile_size"] == 16 and res["windows"] == 3 * 4  # cores of 12 px over 30 x 37
    from core.configs import PredictJobConfig
    from core.inference.predict import run_predict_job

    job = PredictJobConfig(model=str(bundle), scene="test", overlap=2, confidence=False)
    res2 = run_predict_job(job, scene, cluster_client, tmp_path / "job.tif")
    assert res2["confidence_path"] is None and res2["windows"] == 12
    with rasterio.open(res["path"]) as src:
        got = src.read(1)
    x = meta_for("dense", 3, 16).normalise("s2", np.moveaxis(data, 0, -1))
    w, b = (np.asarray(v) for v in model.layers[0].get_weights())
    expected = np.asarray([3, 5, 9], np.uint8)[(x @ w[0, 0] + b).argmax(-1)]
    assert np.array_equal(got, expected)
