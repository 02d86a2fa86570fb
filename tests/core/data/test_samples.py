"""Every folder of ../shared/data registers through its preset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from core.data.catalog import verify_files
from core.data.samples import PRESETS, register_samples
from core.errors import ConfigError, SceneFileChangedError
from db.scenes import SceneStore

ALL_SCENES = {
    "strzegom",
    "north_carolina",
    "north_carolina_polygons",
    "chiapas_landsat",
    "slovenia_s2",
    "houston_crop",
    "landsat_rgb",
}


def test_unknown_folder_is_refused(tmp_path: Path, db_url: str, home: Path) -> None:
    with pytest.raises(ConfigError, match=r"no sample preset for 'mars'; known folders: \['chiapas_landsat'"):
        register_samples(tmp_path, SceneStore(db_url), home, only=["mars"])
    assert SceneStore(db_url).list() == []


def test_presets_cover_every_shared_folder(shared_data: Path) -> None:
    if not shared_data.exists():
        pytest.skip("no shared data")
    folders = {p.name for p in shared_data.iterdir() if p.is_dir()}
    assert folders == set(PRESETS)


@pytest.mark.shared_data
def test_every_sample_folder_registers(shared_data: Path, db_url: str, home: Path) -> None:
    store = SceneStore(db_url)
    scenes = {s.name: s for s in register_samples(shared_data, store, home)}
    assert set(scenes) == ALL_SCENES
    assert {s.name for s in SceneStore(db_url).list()} == ALL_SCENES
    for s in scenes.values():
        verify_files(s)

    strz = scenes["strzegom"]
    assert strz.dates == ("2021-06-19", "2022-06-19", "2022-07-19", "2022-10-12", "2023-02-09", "2023-03-01")
    assert all(a.labels and a.labels.endswith(f"labels_{a.date.replace('-', '')}.tif") for a in strz.acquisitions)
    assert strz.modality("s2").band_count == 10 and len(strz.classes) == 10

    nc = scenes["north_carolina"]  # bands EPSG:32119, labels EPSG:3358: accepted
    m = nc.modality("landsat")
    assert (m.width, m.height, m.band_count, m.dtype) == (489, 443, 6, "float32")
    assert m.nodata == (-99999.0,) * 5 + (-32768.0,)
    assert [Path(p).name for p in nc.acquisitions[0].files["landsat"]] == [
        f"lsat7_2000_{b}.tif" for b in (10, 20, 30, 40, 50, 70)
    ]
    assert [c.name for c in nc.classes] == [
        "developed",
        "agriculture",
        "herbaceous",
        "shrubland",
        "forest",
        "water",
        "sediment",
    ]
    lon, lat = np.array(nc.footprint_wgs84["coordinates"][0]).mean(axis=0)  # type: ignore[index]
    assert -79.5 < lon < -78 and 35 < lat < 36.5  # near Raleigh, NC

    poly = scenes["north_carolina_polygons"]
    with rasterio.open(poly.acquisitions[0].labels or "") as ds:
        lab = ds.read(1)
    counts = np.bincount(lab.ravel(), minlength=8)
    assert lab.shape == (443, 489) and counts[0] > 200_000 and (counts[1:] > 0).all()

    chi = scenes["chiapas_landsat"]
    assert chi.dates == ("1999-11-18", "2002-04-16") and chi.modality("landsat").band_count == 8
    assert chi.modality("landsat").nodata[0] == -9999.0

    slo = scenes["slovenia_s2"]
    assert len(slo.acquisitions) == 5 and slo.modality("s2").band_count == 13
    assert [c.id for c in slo.classes] == [1, 2, 3, 4, 8]
    assert all(
        Path(p).is_relative_to(home / "converted") for a in slo.acquisitions for ps in a.files.values() for p in ps
    )

    hou = scenes["houston_crop"]
    assert not hou.georeferenced and hou.footprint_wgs84 is None and hou.label_modality == "rgb"
    assert [(m.name, m.width, m.band_count, m.resolution) for m in hou.modalities] == [
        ("rgb", 512, 3, 1.0),
        ("hsi", 128, 48, 4.0),
    ]

    rgb = scenes["landsat_rgb"]
    assert not rgb.has_labels and rgb.classes == ()

    # second run: nothing new, nothing rewritten
    assert register_samples(shared_data, store, home) == []
    for s in scenes.values():
        verify_files(s)


@pytest.mark.shared_data
def test_only_and_fingerprint_of_converted_files(shared_data: Path, db_url: str, home: Path) -> None:
    store = SceneStore(db_url)
    (scene,) = register_samples(shared_data, store, home, only=["slovenia_s2"])
    assert [s.name for s in store.list()] == ["slovenia_s2"]
    (poly,) = register_samples(None, store, home, only=["north_carolina_polygons"])
    assert poly.name == "north_carolina_polygons"
    assert [s.name for s in store.list()] == ["north_carolina_polygons", "slovenia_s2"]
    labels = Path(scene.acquisitions[0].labels or "")
    labels.unlink()
    with pytest.raises(SceneFileChangedError, match=r"lulc\.tif \(vanished\)"):
        verify_files(scene)
