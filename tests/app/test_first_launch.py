"""The first click on a sample scene: strzegom with the launch form's defaults (whole scene, unet) passes
pre-flight, shows what each split gets, and launches a config with its derived tile size and split stated. The
detached launcher is replaced by a recorder (it would start training; the same config runs for real in
tests/jobs/test_first_launch.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.app.conftest import app_test

pytestmark = pytest.mark.shared_data


def test_strzegom_unet_with_the_form_defaults_launches(
    home: Path, db_url: str, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.data.samples import register_samples
    from db.scenes import SceneStore
    from jobs import launch

    register_samples(shared_data, SceneStore(db_url), home, only=["strzegom"])
    launched: list[Any] = []
    monkeypatch.setattr(launch, "launch_detached", lambda cfg, *a, **k: launched.append(cfg) or 1)
    at = app_test("launch", timeout=120).run()
    at.checkbox(key="launch_whole").check().run()
    at.button(key="launch_check").click().run()
    assert not at.error, [e.value for e in at.error]
    info = "\n".join(i.value for i in at.info)
    assert "tiles of 64 px, spatial split in blocks of" in info and "train: " in info
    (table,) = [d for d in at.dataframe if list(d.value.columns) == ["class", "train", "val", "test"]]
    rows = table.value.set_index("class")
    assert (rows.loc["tiles (all classes)", ["train", "val", "test"]] > 0).all()
    assert (rows.drop("tiles (all classes)")["train"] > 0).all()  # every class of the scene trains
    at.button(key="launch_go").click().run()
    assert "Launched run 1" in "\n".join(s.value for s in at.success)
    cfg = launched[0]
    assert cfg.model == "unet" and cfg.tiling.tile_size == 64
    assert cfg.split.block_size is not None and cfg.split.buffer is not None and cfg.split.seed is not None
