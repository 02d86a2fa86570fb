import json

import pytest
from pydantic import ValidationError

from core.configs import SamplingConfig, SplitConfig, TileJobConfig, TilingConfig


def test_tile_config_round_trips_through_json():
    cfg = TileJobConfig(
        scene="strzegom",
        tiling=TilingConfig(tile_size=64, stride=32),
        split=SplitConfig(method="date", test_date="2023-03-01"),
    )
    again = TileJobConfig.model_validate(json.loads(cfg.model_dump_json()))
    assert again == cfg and again.tiling.step == 32


def test_config_is_frozen_and_strict():
    cfg = TileJobConfig(scene="s")
    with pytest.raises(ValidationError):
        cfg.scene = "t"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        TileJobConfig(scene="s", tile_sise=3)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TilingConfig(tile_size=64, stride=65), "stride 65 is larger than tile_size 64"),
        (lambda: SamplingConfig(patch_size=24), "patch_size 24 is even; use an odd size"),
        (lambda: SplitConfig(fractions=(0.5, 0.5, 0.5)), "must be >= 0 and sum to 1"),
        (lambda: SplitConfig(method="date"), "a date split needs test_date"),
    ],
)
def test_bad_values_are_explained(make, message):
    with pytest.raises(ValidationError, match=message):
        make()
