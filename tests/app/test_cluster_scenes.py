"""AppTest of the Cluster page (a real LocalCluster) and the Scenes page (registering, confinement to data roots)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.app.conftest import T0, app_test
from tests.conftest import write_raster


@pytest.mark.cluster
def test_cluster_page_shows_workers_and_dashboard(
    home: Path, cluster_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_SCHEDULER", cluster_client.scheduler.address)
    at = app_test("cluster").run()
    assert not at.exception
    m = {x.label: x.value for x in at.metric}
    assert m["Workers"] == "2" and m["Threads"] == "2"
    assert m["Memory"] == "8.0 GiB"  # 2 workers x 4 GiB
    text = " ".join(x.value for x in at.markdown)
    assert cluster_client.scheduler.address in text and "(remote)" in text
    assert "Dashboard:" in text and "/status" in text
    assert len(at.dataframe[0].value) == 2


def test_cluster_page_without_cluster_offers_to_start_one(home: Path) -> None:
    at = app_test("cluster").run()
    assert "no Dask cluster is running" in at.warning[0].value
    assert at.button(key="cluster_start").label == "Start the local cluster"


def test_unreachable_scheduler_is_reported(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_SCHEDULER", "tcp://127.0.0.1:9")  # nothing listens on the discard port
    at = app_test("cluster", timeout=60).run()
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in at.warning[0].value


def _fill(at: Any, **values: str) -> Any:
    for k, v in values.items():
        widget = at.text_area(key=f"scenes_{k}") if k in ("images", "classes") else at.text_input(key=f"scenes_{k}")
        widget.set_value(v)
    return at.button(key="scenes_register").click().run()


def test_register_scene_from_files_under_the_data_roots(home: Path, tmp_path: Path, db_url: str) -> None:
    from db.scenes import SceneStore

    img = write_raster(tmp_path / "s.tif", np.ones((2, 16, 16), dtype="uint16"), transform=T0)
    lab = write_raster(tmp_path / "l.tif", np.ones((16, 16), dtype="uint8"), transform=T0)
    at = _fill(app_test("scenes").run(), name="mine", images=str(img), labels=str(lab), classes="1,forest,#228b22")
    assert not at.error, at.error[0].value
    scene = SceneStore(db_url).get("mine")
    assert scene.primary.band_count == 2 and scene.classes[0].name == "forest"
    assert "mine" in at.dataframe[0].value["name"].tolist()


def test_paths_outside_the_data_roots_are_refused(
    home: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from db.scenes import SceneStore

    monkeypatch.setenv("WORKBENCH_DATA_ROOTS", str(tmp_path / "allowed"))
    at = _fill(app_test("scenes").run(), name="etc", images="/etc/passwd")
    assert "path '/etc/passwd' (resolved to '/etc/passwd') is outside the data roots" in at.error[0].value
    at = _fill(app_test("scenes").run(), name="dots", images=str(tmp_path / "allowed" / ".." / "x.tif"))
    assert "is outside the data roots" in at.error[0].value
    assert SceneStore(db_url).list() == []


def test_bad_registration_shows_the_registry_message(home: Path, tmp_path: Path, db_url: str) -> None:
    at = _fill(app_test("scenes").run(), name="nofile", images=str(tmp_path / "nothing.tif"))
    assert at.error and "nothing.tif" in at.error[0].value
