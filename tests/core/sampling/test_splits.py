"""Spatial-block and date splits: fractions, seeds, buffers between splits, records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.configs import SplitConfig
from core.errors import ConfigError
from core.geo.windows import PixelWindow
from core.sampling.splits import SPLITS, date_record, date_split, spatial_split


def test_blocks_dealt_by_fraction_and_seeded() -> None:
    cfg = SplitConfig(block_size=10, fractions=(0.6, 0.2, 0.2), seed=3)
    sp = spatial_split(100, 100, cfg, buffer=4)
    assert len(sp.blocks) == 100
    assert [sp.assignment.count(s) for s in SPLITS] == [60, 20, 20]
    assert spatial_split(100, 100, cfg, buffer=4).assignment == sp.assignment
    other = spatial_split(100, 100, SplitConfig(block_size=10, seed=4), buffer=4)
    assert other.assignment != sp.assignment


def test_few_blocks_still_give_each_split_one() -> None:
    sp = spatial_split(20, 30, SplitConfig(block_size=10), buffer=2)
    assert [sp.assignment.count(s) for s in SPLITS] == [4, 1, 1]


@pytest.mark.parametrize("origin", [(0, 0), (3, 7)])
def test_cores_of_different_splits_are_a_buffer_apart(origin: tuple[int, int]) -> None:
    buffer = 5
    sp = spatial_split(60, 70, SplitConfig(block_size=10, seed=1), buffer=buffer, origin=origin)
    codes = sp.split_codes(PixelWindow(0, 0, 60, 70))
    pts = {s: np.argwhere(codes == i) for i, s in enumerate(SPLITS)}
    for a in range(3):
        for b in range(a + 1, 3):
            pa, pb = pts[SPLITS[a]], pts[SPLITS[b]]
            # Chebyshev distance between any two pixels of different splits is > buffer
            d = np.abs(pa[:, None, :] - pb[None, :, :]).max(axis=2)
            assert d.min() > buffer
    # sides facing blocks of the same split (or the raster edge) are not shrunk
    ncol = len({b.col_off for b in sp.blocks})
    grid = np.array(sp.assignment, dtype=object).reshape(-1, ncol)
    for i, (b, c) in enumerate(zip(sp.blocks, sp.cores)):
        br, bc = divmod(i, ncol)
        hood = grid[max(0, br - 1) : br + 2, max(0, bc - 1) : bc + 2]
        if (hood == grid[br, bc]).all():
            assert c == b
    sp0 = spatial_split(60, 70, SplitConfig(block_size=10, seed=1), buffer=0, origin=origin)
    assert sp0.cores == sp0.blocks


def test_unused_blocks_and_record_is_json() -> None:
    used = [PixelWindow(0, 0, 10, 10), PixelWindow(0, 10, 10, 10), PixelWindow(10, 0, 10, 10)]
    sp = spatial_split(20, 20, SplitConfig(block_size=10), buffer=3, used=used)
    assert sp.assignment[3] is None and sp.cores[3] is None
    rec = json.loads(json.dumps(sp.record(0, (0.6, 0.2, 0.2))))
    assert rec["method"] == "spatial" and rec["block_size"] == 10 and rec["buffer"] == 3
    assert [b[:4] for b in rec["blocks"]] == [list(u.as_tuple()) for u in used]


def test_tiles_stay_inside_one_core() -> None:
    sp = spatial_split(64, 64, SplitConfig(block_size=32, seed=2), buffer=4)
    tiles = sp.tiles(PixelWindow(0, 0, 64, 64), 8, None)
    assert tiles
    for w, s in tiles:
        inside = [c for c, a in zip(sp.cores, sp.assignment) if c is not None and c.contains(w)]
        assert len(inside) == 1 and sp.assignment[sp.cores.index(inside[0])] == s


def test_buffer_larger_than_block() -> None:
    with pytest.raises(ConfigError, match="split buffer 40 px is larger than block_size 32 px; use block_size >= 40"):
        spatial_split(64, 64, SplitConfig(block_size=32), buffer=40)


def test_date_split() -> None:
    cfg = SplitConfig(method="date", test_date="b", val_date="c")
    got = date_split(("a", "b", "c", "d"), cfg)
    assert got == {"a": "train", "b": "test", "c": "val", "d": "train"}
    assert date_record(got, cfg)["dates"]["b"] == "test"
    with pytest.raises(ConfigError, match=r"test_date 'z' is not one of the job's acquisition dates \['a', 'b'\]"):
        date_split(("a", "b"), SplitConfig(method="date", test_date="z"))
    with pytest.raises(ConfigError, match="val_date and test_date are both 'a'"):
        date_split(("a", "b"), SplitConfig(method="date", test_date="a", val_date="a"))
