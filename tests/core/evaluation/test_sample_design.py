"""Sample design: sample size from a target SE, allocation, and the two-pass block-wise stratified draw."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import fiona
import numpy as np
import pytest

from core.errors import ConfigError
from core.evaluation.sample_design import (
    SampleDesign,
    allocate,
    draw_stratified_sample,
    min_then_proportional,
    total_sample_size,
)
from core.evaluation.sample_files import SAMPLE_COLUMNS, read_sample, write_sample


def _map(rng_seed: int = 0, shape: tuple[int, int] = (70, 90)) -> np.ndarray:
    rng = np.random.default_rng(rng_seed)
    data = rng.choice([0, 1, 2, 3], size=shape, p=[0.1, 0.6, 0.25, 0.05]).astype(np.uint8)
    return data


def test_sample_size_from_target_se_olofsson_example() -> None:
    """Olofsson et al. (2014) eq. 13 on their example (W = 0.02, 0.015, 0.32, 0.645; expected UA 0.7, 0.6,
    0.9, 0.95; target SE of overall accuracy 0.01): n = (sum W_i S_i / 0.01)^2 = 640.7 -> 641 points."""
    d = SampleDesign(target_se=0.01, expected_ua={1: 0.7, 2: 0.6, 3: 0.9, 4: 0.95})
    assert total_sample_size(d, {1: 0.02, 2: 0.015, 3: 0.32, 4: 0.645}) == 641


def test_allocation_min_per_class_then_proportional() -> None:
    w = {1: 0.02, 2: 0.015, 3: 0.32, 4: 0.645}
    a = min_then_proportional(641, w, 75)
    assert a[1] == a[2] == 75 and sum(a.values()) == 641
    assert a[4] / a[3] == pytest.approx(0.645 / 0.32, rel=0.01)  # the rest is proportional
    assert min_then_proportional(100, w, 50) == {1: 50, 2: 50, 3: 50, 4: 50}  # n too small: the minimum for all
    assert min_then_proportional(1000, {1: 0.5, 2: 0.5, 3: 0.0}, 50) == {1: 500, 2: 500, 3: 0}


def test_allocate_caps_at_stratum_size_and_needs_every_mapped_class() -> None:
    assert allocate(SampleDesign(per_class={1: 10, 2: 10, 3: 10}), {1: 100, 2: 4, 3: 0}) == {1: 10, 2: 4, 3: 0}
    with pytest.raises(ConfigError, match=r"no sample size for mapped classes \[3\]"):
        allocate(SampleDesign(per_class={1: 10, 2: 10}), {1: 100, 2: 40, 3: 7})
    a = allocate(SampleDesign(target_se=0.02, expected_ua=0.8, min_per_class=20), {1: 6000, 2: 3000, 3: 1000})
    assert a == {1: 240, 2: 120, 3: 40}  # n = (0.4 / 0.02)^2 = 400, proportional (all above the minimum)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({}, "give exactly one"),
        ({"per_class": {1: 5}, "target_se": 0.01}, "give exactly one"),
        ({"target_se": 0.7}, "target_se 0.7"),
        ({"target_se": 0.01, "expected_ua": 1.0}, "expected_ua 1.0"),
        ({"per_class": {1: -1}}, "negative sample sizes"),
    ],
)
def test_design_validation(kw: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match=match):
        SampleDesign(**kw)


def test_design_round_trips_json() -> None:
    d = SampleDesign(per_class={1: 5, 3: 7}, seed=4)
    assert SampleDesign.from_dict(json.loads(json.dumps(d.to_dict()))) == d


@pytest.mark.parametrize(
    "crs, transform",
    [
        ("EPSG:32633", (10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0)),
        ("EPSG:4326", (0.0001, 0.0, 16.2, 0.0, -0.0001, 50.9)),
    ],
)
def test_draw_is_reproducible_with_exact_counts_per_class(class_map, crs: str, transform: tuple) -> None:  # type: ignore[no-untyped-def,type-arg]
    data = _map()
    path = class_map("m.tif", data, [1, 2, 3], crs=crs, transform=transform)
    design = SampleDesign(per_class={1: 30, 2: 20, 3: 15}, seed=11)
    s1, s2 = draw_stratified_sample(str(path), design), draw_stratified_sample(str(path), design)
    assert s1 == s2
    s3 = draw_stratified_sample(str(path), SampleDesign(per_class={1: 30, 2: 20, 3: 15}, seed=12))
    assert {(p.row, p.col) for p in s3.points} != {(p.row, p.col) for p in s1.points}
    assert sorted(p.id for p in s1.points) == list(range(1, 66))
    per_class = {c: sum(p.map_class == c for p in s1.points) for c in (1, 2, 3)}
    assert per_class == {1: 30, 2: 20, 3: 15}
    assert len({(p.row, p.col) for p in s1.points}) == 65  # distinct pixels
    assert all(data[p.row, p.col] == p.map_class for p in s1.points)
    assert s1.stratum_pixels == {c: int((data == c).sum()) for c in (1, 2, 3)}
    a, _, c, _, e, f = transform
    p = s1.points[0]
    assert p.x == pytest.approx(c + a * (p.col + 0.5)) and p.y == pytest.approx(f + e * (p.row + 0.5))
    if crs == "EPSG:4326":
        assert (p.lon, p.lat) == pytest.approx((p.x, p.y))
    else:
        assert 14.9 < p.lon < 15.1 and 50.4 < p.lat < 50.6


def test_every_pixel_of_a_stratum_is_equally_likely(class_map) -> None:  # type: ignore[no-untyped-def]
    """20 pixels of class 2 spread over several blocks; 200 draws of 5: each pixel is drawn ~50 times (SD ~6.1)."""
    data = np.ones((40, 40), dtype=np.uint8)
    cells = [(r, c) for r in range(0, 40, 9) for c in range(0, 40, 10)]
    for rc in cells:
        data[rc] = 2
    path = str(class_map("m.tif", data, [1, 2]))
    hits: dict[tuple[int, int], int] = {rc: 0 for rc in cells}
    for seed in range(200):
        for p in draw_stratified_sample(path, SampleDesign(per_class={1: 1, 2: 5}, seed=seed)).points:
            if p.map_class == 2:
                hits[(p.row, p.col)] += 1
    counts = np.array(list(hits.values()))
    assert counts.sum() == 1000 and counts.min() >= 28 and counts.max() <= 72, counts


def test_sample_files(class_map, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = class_map("m.tif", _map(), [1, 2, 3], class_names=["forest", "water", "urban"])
    s = draw_stratified_sample(str(path), SampleDesign(per_class={1: 8, 2: 6, 3: 4}, seed=1))
    files = write_sample(s, tmp_path / "out")
    rows = list(csv.DictReader(Path(files["csv"]).read_text().splitlines()))
    assert tuple(rows[0]) == SAMPLE_COLUMNS and len(rows) == 18 and rows[0]["ref_class"] == ""
    assert {r["map_class_name"] for r in rows} == {"forest", "water", "urban"}
    with fiona.open(files["gpkg"], layer="sample") as src:
        feats = list(src)
        assert src.crs.to_epsg() == 32633 and len(feats) == 18
        assert feats[0]["geometry"]["coordinates"] == pytest.approx((float(rows[0]["x"]), float(rows[0]["y"])))
    meta = json.loads(Path(files["json"]).read_text())
    assert meta["map"]["width"] == 90 and meta["map"]["height"] == 70
    assert meta["map"]["transform"] == [10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0]
    assert "UTM zone 33N" in meta["map"]["crs_wkt"] and meta["map"]["path"] == str(Path(path).resolve())
    assert read_sample(files["json"]) == s and read_sample(files["csv"]) == s
    Path(files["json"]).unlink()
    assert read_sample(files["gpkg"]) == s  # the GeoPackage carries the metadata too
    with pytest.raises(ConfigError, match="no sample metadata"):
        read_sample(files["csv"])
