"""Derived spatial-split block sizes and buffers: every default holds 2 x 2 blocks with samples in every core."""

from __future__ import annotations

import pytest

from core.configs import SplitConfig
from core.errors import ConfigError
from core.geo.windows import PixelWindow
from core.sampling.split_defaults import default_split_geometry, largest_fitting_size, resolve_split
from core.sampling.splits import spatial_split


@pytest.mark.parametrize(
    "size,mode,shape",
    [
        (64, "tiles", (401, 401)),
        (64, "tiles", (443, 489)),
        (64, "tiles", (250, 250)),
        (32, "tiles", (100, 101)),
        (9, "patches", (401, 401)),
        (9, "patches", (100, 101)),
        (15, "patches", (64, 64)),
        (16, "tiles", (48, 48)),
    ],
)
def test_every_block_core_holds_a_sample(size: int, mode: str, shape: tuple[int, int]) -> None:
    geo = default_split_geometry(size, mode, shape)
    assert geo.block_size >= size + geo.buffer
    split = spatial_split(shape[0], shape[1], SplitConfig(block_size=geo.block_size, buffer=geo.buffer), geo.buffer)
    full = [c for b, c in zip(split.blocks, split.cores) if b.height == geo.block_size and b.width == geo.block_size]
    assert len(split.blocks) >= 4 and full
    for core in full:  # a full block keeps a core of at least one sample whatever its neighbours are
        assert core is not None and core.height >= size and core.width >= size
    if mode == "tiles":
        tiles = split.tiles(PixelWindow(0, 0, *shape), size, None)
        assert {s for _, s in tiles} == {"train", "val", "test"}


def test_blocks_divide_the_aoi_evenly() -> None:
    geo = default_split_geometry(64, "tiles", (401, 401))
    assert (geo.block_size, geo.buffer) == (134, 32)  # 3 x 3 blocks of 134 px (the last 133): no thin sliver
    assert default_split_geometry(9, "patches", (512, 512)).buffer == 9  # patches: one patch apart


def test_alignment_to_a_coarser_grid() -> None:
    geo = default_split_geometry(64, "tiles", (512, 512), align=4)
    assert geo.block_size % 4 == 0 and (geo.buffer // 2) % 4 == 0


def test_too_small_aoi_says_which_size_fits() -> None:
    with pytest.raises(
        ConfigError,
        match=r"100 x 101 px cannot hold 2 x 2 split blocks for 64 px samples.*"
        r"at most 32 px",
    ):
        default_split_geometry(64, "tiles", (100, 101))
    assert largest_fitting_size(100, "tiles") == 32 and largest_fitting_size(100, "patches") == 17
    assert largest_fitting_size(10, "tiles") is None


def test_resolve_keeps_given_block_sizes_and_date_splits() -> None:
    given = SplitConfig(block_size=64)
    assert resolve_split(given, 64, "tiles", (401, 401)) is given
    date = SplitConfig(method="date", test_date="2020")
    assert resolve_split(date, 64, "tiles", (401, 401)) is date
    derived = resolve_split(SplitConfig(), 64, "tiles", (401, 401))
    assert (derived.block_size, derived.buffer) == (134, 32)
    assert resolve_split(SplitConfig(buffer=10), 64, "tiles", (401, 401)).buffer == 10
