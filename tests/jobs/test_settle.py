"""Settling a launch given with its defaults: the tile side is searched with the split, so a small AOI gets
smaller tiles instead of an empty split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core.configs import TilingConfig
from jobs.pipeline import PipelineJobConfig
from jobs.settle import settle
from tests.core.tiling.test_census import tiny_scene


def test_small_aoi_gets_smaller_tiles_than_the_default(make_raster: Callable[..., Path]) -> None:
    scene, _ = tiny_scene(make_raster, 200)
    names = {1: "a", 2: "b"}
    needed = {"train": 10}  # 10 workers: 64 px tiles give the 200 px scene 8 training tiles, 32 px ones 24
    config = PipelineJobConfig(scene="tiny", model="unet", num_workers=10)
    settled, census = settle(config, scene, needed)
    assert settled.tiling.tile_size < 64 and census.problems(settled.split.fractions, names, needed) == []
    assert all(census.samples[s] >= 1 for s in ("train", "val", "test")) and census.samples["train"] >= 10
    # the settled config is stated in full: settling it again changes nothing
    assert settle(PipelineJobConfig.model_validate_json(settled.model_dump_json()), scene, needed)[0] == settled
    # 64 px tiles the user asked for are kept, and the census says what they leave empty
    given = config.model_copy(update={"tiling": TilingConfig(tile_size=64)})
    kept, census64 = settle(given, scene, needed)
    assert kept.tiling.tile_size == 64 and census64.problems(kept.split.fractions, names, needed) != []
