"""Work is kept across pages and toggles: the whole app (app/main.py) in AppTest, switching pages as a user does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.app.conftest import REPO, pixel_box_wgs84


def _app() -> Any:
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(REPO / "app" / "main.py"), default_timeout=60)


def _second_scene(tiny_scene: Any, db_url: str, home: Path) -> str:
    """Scene 'tiny2': the files of 'tiny' registered again, so the launch page's default scene is the other one."""
    from core.data.catalog import SceneSpec, register_scene
    from db.scenes import SceneStore

    acq = tiny_scene.acquisitions[0]
    spec = SceneSpec.model_validate(
        {
            "name": "tiny2",
            "classes": [{"id": c.id, "name": c.name, "color": c.color} for c in tiny_scene.classes],
            "acquisitions": [
                {"date": acq.date, "files": {k: list(v) for k, v in acq.files.items()}, "labels": acq.labels}
            ],
        }
    )
    return register_scene(spec, SceneStore(db_url), home).name


def test_map_and_launch_keeps_scene_aoi_and_form(tiny_scene: Any, db_url: str, home: Path) -> None:
    name = _second_scene(tiny_scene, db_url, home)
    at = _app().run()
    assert at.selectbox(key="launch_scene").value == "tiny"
    at.selectbox(key="launch_scene").set_value(name).run()
    aoi = pixel_box_wgs84(8, 8, 40, 40)
    at.text_area(key="launch_geojson").set_value(__import__("json").dumps(aoi))
    at.button(key="launch_use_geojson").click().run()
    at.selectbox(key="launch_model").set_value("patch_cnn").run()
    at.number_input(key="launch_epochs").set_value(7)
    at.number_input(key="launch_f_test").set_value(0.3)
    at.button(key="launch_check").click().run()
    assert not at.exception, at.exception
    pixels = {m.label: m.value for m in at.metric}["Pixels"]
    assert pixels == "1,024"

    at.switch_page("views/runs.py").run()
    at.switch_page("views/launch.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="launch_scene").value == name
    assert at.selectbox(key="launch_model").value == "patch_cnn"
    assert at.number_input(key="launch_epochs").value == 7
    assert at.number_input(key="launch_f_test").value == 0.3
    assert {m.label: m.value for m in at.metric}["Pixels"] == "1,024"  # the AOI is still there
    assert at.session_state["launch_aoi"] == aoi


def test_map_review_keeps_its_run_and_layers(tiny_scene: Any, db_url: str, tmp_path: Path) -> None:
    from tests.app.test_review import _prediction, _run_with_prediction

    a = _run_with_prediction(db_url, _prediction(tmp_path, "a.tif", 0))
    _run_with_prediction(db_url, _prediction(tmp_path, "b.tif", 0))
    at = _app()
    at.switch_page("views/review.py").run()
    at.selectbox(key="review_run_a").set_value(a).run()
    at.toggle(key="review_error").set_value(True).run()
    at.radio(key="review_mode").set_value("side by side").run()
    at.switch_page("views/live.py").run()
    at.switch_page("views/review.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="review_run_a").value == a
    assert at.toggle(key="review_error").value is True
    assert at.radio(key="review_mode").value == "side by side"
