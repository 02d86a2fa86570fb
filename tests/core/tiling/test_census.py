"""Pre-flight census of a tiling job: samples per split and labelled pixels per class, before any image read."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from core.configs import SamplingConfig, SplitConfig, TileJobConfig, TilingConfig
from core.data.scene import Acquisition, ClassInfo, Modality, Scene
from core.tiling.census import settle_split, take_census

T0 = (10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0)


def tiny_scene(make_raster: Callable[..., Path], size: int = 96) -> tuple[Scene, np.ndarray]:
    """A size x size 2-band scene; labels: class 1 on the left half, class 2 on the right, row 0 unlabelled."""
    img = make_raster("img.tif", np.arange(2 * size * size, dtype=np.uint16).reshape(2, size, size))
    labels = np.ones((size, size), np.uint8)
    labels[:, size // 2 :] = 2
    labels[0] = 0
    lab = make_raster("lab.tif", labels)
    mod = Modality("s2", size, size, T0, 2, "uint16", (None, None))
    scene = Scene(
        "tiny",
        True,
        "EPSG:32633",
        (mod,),
        (Acquisition("2020", {"s2": (str(img),)}, str(lab)),),
        (ClassInfo(1, "a", "#00ff00"), ClassInfo(2, "b", "#0000ff")),
        label_modality="s2",
    )
    return scene, labels


def test_tile_census_counts_labelled_pixels_per_split(make_raster: Callable[..., Path]) -> None:
    scene, labels = tiny_scene(make_raster)
    cfg = TileJobConfig(
        scene="tiny", mode="tiles", tiling=TilingConfig(tile_size=16), split=SplitConfig(block_size=32, buffer=0)
    )
    c = take_census(cfg, scene)
    assert sum(c.samples.values()) == 36  # 6 x 6 tiles of 16 px, every block core whole (no buffer)
    assert sum(n for per in c.labelled.values() for n in per.values()) == int((labels > 0).sum())
    assert c.split["block_size"] == 32 and c.mode == "tiles"


def test_patch_census_counts_planned_centres(make_raster: Callable[..., Path]) -> None:
    scene, _ = tiny_scene(make_raster)
    cfg = TileJobConfig(scene="tiny", mode="patches", sampling=SamplingConfig(patch_size=5, per_class=20))
    c = take_census(cfg, scene)
    per_class = {k: sum(per.get(k, 0) for per in c.labelled.values()) for k in (1, 2)}
    assert per_class == {1: 20, 2: 20} and sum(c.samples.values()) == 40  # balanced: per_class patches per class
    assert (c.split["block_size"], c.split["buffer"]) == (48, 5)  # derived for 5 px patches on 96 px, recorded
    # with seed 0 both class-2 blocks went to val and test: the census says so before anything runs
    assert c.problems((0.6, 0.2, 0.2), {1: "a", 2: "b"}) == [
        "class 2 (b) of the area of interest has no training patches"
    ]


def test_problems_name_the_empty_split_and_the_missing_class(make_raster: Callable[..., Path]) -> None:
    scene, _ = tiny_scene(make_raster)
    cfg = TileJobConfig(
        scene="tiny",
        mode="tiles",
        tiling=TilingConfig(tile_size=16),
        split=SplitConfig(block_size=48, buffer=0, seed=0),
    )
    c = take_census(cfg, scene)
    problems = c.problems((0.6, 0.2, 0.2), {1: "a", 2: "b"}, needed={"train": 1000})
    assert any(p.startswith("the train split gets") and "needs 1000" in p for p in problems)
    one_class = {**c.labelled, "train": {1: 5}}
    c2 = type(c)(c.mode, c.samples, one_class)
    assert c2.problems((0.6, 0.2, 0.2), {1: "a", 2: "b"}) == [
        "class 2 (b) of the area of interest has no training tiles"
    ]


@pytest.mark.parametrize("size", [64, 96])
def test_default_split_gives_every_split_tiles(make_raster: Callable[..., Path], size: int) -> None:
    scene, _ = tiny_scene(make_raster, size)
    cfg = TileJobConfig(scene="tiny", mode="tiles", tiling=TilingConfig(tile_size=16))
    c = take_census(cfg, scene)
    assert all(c.samples[s] > 0 for s in ("train", "val", "test")), c.samples


def test_settle_split_tries_seeds_only_when_the_user_set_none(make_raster: Callable[..., Path]) -> None:
    scene, _ = tiny_scene(make_raster)
    cfg = TileJobConfig(scene="tiny", mode="patches", sampling=SamplingConfig(patch_size=5, per_class=20))
    settled, census = settle_split(cfg, scene)
    assert settled.split.seed != 0 and census.problems((0.6, 0.2, 0.2)) == []  # seed 0 trained on class 1 only
    assert (settled.split.block_size, settled.split.buffer) == (48, 5)
    # the settled config is stated in full: it round-trips through JSON and re-runs the same split
    again = TileJobConfig.model_validate_json(settled.model_dump_json())
    assert settle_split(again, scene)[0] == settled
    kept, census0 = settle_split(cfg.model_copy(update={"split": SplitConfig(seed=0, block_size=48)}), scene)
    assert (kept.split.seed, kept.split.block_size) == (0, 48) and census0.problems((0.6, 0.2, 0.2))
    smaller, census1 = settle_split(cfg.model_copy(update={"split": SplitConfig(seed=0)}), scene)
    # the seed is the user's, the block size is not: smaller blocks mix the two classes into the training split
    assert (smaller.split.seed, smaller.split.block_size) == (0, 32) and census1.problems((0.6, 0.2, 0.2)) == []
