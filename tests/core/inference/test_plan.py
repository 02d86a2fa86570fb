"""The arithmetic of cutting a dense prediction: default tiles and the share of computation spent on context."""

from __future__ import annotations

import pytest

from core.inference.plan import (
    CONTEXT_WARN_SHARE,
    context_check,
    context_share,
    crop_tile,
    default_tile,
)


def test_context_share_of_the_issue_settings() -> None:
    # U-Net width 8 / depth 4: align 16, receptive-field radius 107 px
    assert context_share(256, 107, 16) == pytest.approx(1 - 27**2 / 256**2)  # 27 px core: 98.9 %
    assert context_share(256, 32, 16) == pytest.approx(1 - 177**2 / 256**2)  # 52.2 %
    assert context_share(64, 0) == 0.0
    assert context_share(64, 32) == 1.0  # no core left
    with pytest.raises(ValueError, match="must be >= 1"):
        context_share(0, 3)


def test_context_check_warns_above_the_threshold_and_suggests_the_default_tile() -> None:
    suggested = default_tile(256, 107, 16, True, 4096)
    assert suggested == 672  # 6 overlaps + the core's align - 1, a multiple of 16
    level, text = context_check(256, 107, 16, suggested)
    assert level == "warning"
    assert "99% of the model's computation is context" in text
    assert "a 27 px core" in text and "89.9 px per map pixel" in text
    assert "default tile size (672 px, 57% context: leave tile_size empty)" in text
    level, text = context_check(256, 32, 16, suggested)
    assert level == "info" and text.startswith("prediction: 52% of the model's computation is context")
    assert context_check(672, 107, 16, suggested)[0] == "info"
    level, text = context_check(280, 70, 4, None)  # a derived tile: only the overlap can change
    assert level == "warning" and context_share(280, 70, 4) > CONTEXT_WARN_SHARE
    assert text.endswith("use a smaller overlap")


def test_default_and_crop_tiles() -> None:
    assert default_tile(64, 32, 16, False, 4096) == 64  # crop: the training sample side
    assert default_tile(64, 2, 1, True, 300) == 64  # at least the sample side
    assert default_tile(64, 2, 1, True, 30) == 34  # but one tile holds the whole 30 px AOI
    assert default_tile(64, 20, 1, True, 30) == 70  # one tile over the whole 30 px AOI
    assert default_tile(8, 20, 16, True, 4096) == 144  # 6 x 20 + 15, rounded up to 16
    assert crop_tile(64, 32, 16) == 256
    assert crop_tile(64, 70, 4) == 280
    assert crop_tile(300, 10, 16) == 304
