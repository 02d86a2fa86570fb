"""AppTest of the Map-and-launch page: AOI measures, launch-form validation, pre-flight messages, launching."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.app.conftest import SIZE, app_test, pixel_box_wgs84
from tests.conftest import write_raster


def _page(aoi: dict[str, Any] | None = None, scene: str = "tiny") -> Any:
    at = app_test("launch")
    if aoi is not None:
        at.session_state["launch_aoi"] = aoi
        at.session_state["launch_aoi_scene"] = scene
    return at.run()


def _metrics(at: Any) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _texts(elements: Any) -> str:
    return "\n".join(e.value for e in elements)


def test_aoi_area_and_pixel_counts_are_shown(tiny_scene: Any) -> None:
    at = _page(pixel_box_wgs84(8, 8, 40, 40))  # 32 x 32 pixels of 10 m, all labelled
    assert not at.exception
    m = _metrics(at)
    assert m["Area"] == "0.10 km²"  # 1024 px * 100 m² = 0.1024 km²
    assert m["Pixels"] == "1,024"
    assert m["Labelled pixels (all dates)"] == "1,024"


def test_whole_scene_counts_every_pixel(tiny_scene: Any) -> None:
    at = app_test("launch").run()
    at.checkbox(key="launch_whole").check().run()
    m = _metrics(at)
    assert m["Pixels"] == f"{SIZE * SIZE:,}"
    assert m["Labelled pixels (all dates)"] == f"{SIZE * SIZE - SIZE:,}"  # row 0 is unlabelled


def test_launch_without_aoi_is_refused(tiny_scene: Any) -> None:
    at = _page()
    at.button(key="launch_go").click().run()
    assert "No AOI" in _texts(at.error)


def test_aoi_outside_scene_is_an_error(tiny_scene: Any) -> None:
    far = {"type": "Polygon", "coordinates": [[[0, 0], [0.01, 0], [0.01, 0.01], [0, 0.01], [0, 0]]]}
    at = _page(far)
    at.button(key="launch_check").click().run()
    errors = _texts(at.error)
    assert "does not overlap scene 'tiny'" in errors
    assert "Pre-flight check passed" not in _texts(at.success)


def test_too_few_labelled_pixels_blocks_launch(tiny_scene: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs import launch

    monkeypatch.setattr(launch, "launch_detached", lambda *a, **k: pytest.fail("must not launch"))
    at = _page(pixel_box_wgs84(8, 8, 11, 11))  # 3 x 3 = 9 labelled pixels
    at.button(key="launch_go").click().run()
    errors = _texts(at.error)
    assert "the AOI holds only 9 labelled pixels" in errors
    assert "Not launched" in errors


def test_invalid_settings_are_listed(tiny_scene: Any) -> None:
    at = _page(pixel_box_wgs84(0, 0, 64, 64))
    at.selectbox(key="launch_model").set_value("patch_cnn").run()
    at.number_input(key="launch_size_patch").set_value(8)
    at.number_input(key="launch_f_test").set_value(0.5)
    at.button(key="launch_check").click().run()
    errors = _texts(at.error)
    assert "patch_size 8 is even" in errors
    assert "must be >= 0 and sum to 1" in errors


def test_preflight_passes_and_estimates_memory(tiny_scene: Any) -> None:
    at = _page(pixel_box_wgs84(0, 0, 64, 64))
    at.button(key="launch_check").click().run()
    assert not at.error, _texts(at.error)
    assert "Pre-flight check passed" in _texts(at.success)
    assert "estimated peak memory per worker" in _texts(at.info)
    assert "could not be reached" in _texts(at.warning)  # no cluster in this test


def test_launch_creates_a_run_with_the_form_config(
    tiny_scene: Any, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from db.runs import RunTracker
    from jobs import launch

    launched: list[Any] = []

    def fake_launch(config: Any, scheduler: str | None = None, db: str | None = None) -> int:
        launched.append(config)
        return RunTracker(db).create(config.kind, config.model_dump(mode="json"))

    monkeypatch.setattr(launch, "launch_detached", fake_launch)
    aoi = pixel_box_wgs84(0, 0, 64, 64)
    at = _page(aoi)
    at.number_input(key="launch_epochs").set_value(3)
    at.number_input(key="launch_workers").set_value(1)
    at.number_input(key="launch_restarts_default").set_value(4)
    at.button(key="launch_go").click().run()
    assert "Launched run 1" in _texts(at.success), _texts(at.error)
    assert at.session_state["live_run_id"] == 1
    cfg = RunTracker(db_url).get(1).config
    assert cfg["kind"] == "pipeline" and cfg["scene"] == "tiny" and cfg["epochs"] == 3 and cfg["num_workers"] == 1
    assert cfg["train_options"]["max_restarts"] == 4 and cfg["train_options"]["restart_wait_s"] == 120.0
    assert cfg["aoi"]["geometry"] == aoi and cfg["aoi"]["crs"] == "EPSG:4326"


def test_not_georeferenced_scene_runs_on_whole_scene(home: Path, tmp_path: Path, db_url: str) -> None:
    from core.data.catalog import SceneSpec, register_scene
    from db.scenes import SceneStore

    img = write_raster(tmp_path / "px.tif", np.ones((2, 32, 48), dtype="uint8"), crs=None, transform=None)
    lab = write_raster(tmp_path / "pxl.tif", np.full((32, 48), 1, dtype="uint8"), crs=None, transform=None)
    register_scene(
        SceneSpec.model_validate(
            {
                "name": "pixels",
                "georeferenced": False,
                "classes": [{"id": 1, "name": "a"}],
                "acquisitions": [{"files": {"rgb": [str(img)]}, "labels": str(lab)}],
            }
        ),
        SceneStore(db_url),
        home,
    )
    at = app_test("launch").run()
    assert not at.exception
    assert "is not georeferenced" in _texts(at.info)
    assert not at.get("arrow_data_frame") and "launch_whole" not in [c.key for c in at.checkbox]  # no map, no switch
    m = _metrics(at)
    assert m["Pixels"] == f"{32 * 48:,}" and m["Area"] == "n/a"


@pytest.mark.cluster
def test_more_workers_than_the_cluster_has(
    tiny_scene: Any, cluster_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_SCHEDULER", cluster_client.scheduler.address)
    at = _page(pixel_box_wgs84(0, 0, 64, 64))
    at.number_input(key="launch_workers").set_value(3)
    at.button(key="launch_check").click().run()
    assert "the job asks for 3 workers but the cluster has 2" in _texts(at.error)


def _fake_launch(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    from db.runs import RunTracker
    from jobs import launch

    launched: list[Any] = []

    def fake(config: Any, scheduler: str | None = None, db: str | None = None) -> int:
        launched.append(config)
        return RunTracker(db).create(config.kind, config.model_dump(mode="json"))

    monkeypatch.setattr(launch, "launch_detached", fake)
    return launched


def _keys(elements: Any) -> list[str]:
    return [e.key for e in elements]


def register_duo(home: Path, tmp_path: Path, db_url: str) -> Any:
    """A registered 64x64 scene 'duo' with two modalities (rgb, hsi) on one grid, two classes, all labelled."""
    from core.data.catalog import SceneSpec, register_scene
    from db.scenes import SceneStore
    from tests.app.conftest import T0

    rgb = write_raster(tmp_path / "rgb.tif", np.ones((3, SIZE, SIZE), dtype="uint8"), transform=T0)
    hsi = write_raster(tmp_path / "hsi.tif", np.ones((4, SIZE, SIZE), dtype="uint16"), transform=T0)
    lab = np.ones((SIZE, SIZE), dtype="uint8")
    lab[:, SIZE // 2 :] = 2
    labels = write_raster(tmp_path / "lab.tif", lab, transform=T0)
    return register_scene(
        SceneSpec.model_validate(
            {
                "name": "duo",
                "classes": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
                "acquisitions": [{"files": {"rgb": [str(rgb)], "hsi": [str(hsi)]}, "labels": str(labels)}],
            }
        ),
        SceneStore(db_url),
        home,
    )


def test_model_parallel_shows_the_split_and_launches_it(
    home: Path, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_duo(home, tmp_path, db_url)
    launched = _fake_launch(monkeypatch)
    at = app_test("launch").run()
    at.checkbox(key="launch_whole").check()
    at.selectbox(key="launch_model").set_value("two_stream").run()
    assert "launch_mp_split" not in _keys(at.radio)  # data_parallel: no split to choose
    at.selectbox(key="launch_scheme").set_value("model_parallel").run()
    assert "launch_mp_split" in _keys(at.radio)
    assert "launch_worker_speeds" not in _keys(at.text_input)
    at.radio(key="launch_mp_split").set_value("optimized")
    at.number_input(key="launch_workers").set_value(3)
    at.text_input(key="launch_two_stream_dense").set_value("64, 32")
    at.button(key="launch_go").click().run()
    assert "Launched run 1" in _texts(at.success), _texts(at.error)
    cfg = launched[0]
    assert (cfg.kind, cfg.scheme, cfg.mp_split, cfg.num_workers) == ("pipeline", "model_parallel", "optimized", 3)
    assert cfg.model_params["dense"] == (64, 32)


def test_baseline_launches_a_baseline_job(tiny_scene: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    launched = _fake_launch(monkeypatch)
    at = _page(pixel_box_wgs84(0, 0, 64, 64))
    at.selectbox(key="launch_model").set_value("rf").run()
    assert at.selectbox(key="launch_scheme").disabled
    assert "launch_workers" not in _keys(at.number_input) and "launch_optimizer_default" not in _keys(at.selectbox)
    at.number_input(key="launch_size_patch").set_value(5)
    at.number_input(key="launch_per_class").set_value(30)
    at.radio(key="launch_bl_features").set_value("patch")
    at.button(key="launch_go").click().run()
    assert "Launched run 1" in _texts(at.success), _texts(at.error)
    cfg = launched[0]
    assert (cfg.kind, cfg.method, cfg.features, cfg.predict) == ("baseline", "rf", "patch", True)
    assert cfg.tile_job.mode == "patches" and cfg.tile_job.sampling.patch_size == 5
    assert cfg.tile_job.sampling.per_class == 30 and cfg.tile_job.aoi.geometry == pixel_box_wgs84(0, 0, 64, 64)


def test_resnet_recipe_preset_and_bad_advanced_value(tiny_scene: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    launched = _fake_launch(monkeypatch)
    at = _page(pixel_box_wgs84(0, 0, 64, 64))
    at.selectbox(key="launch_model").set_value("resnet50").run()
    at.toggle(key="launch_recipe_resnet").set_value(True).run()
    assert at.selectbox(key="launch_optimizer_resnet").value == "sgd_nesterov"
    at.text_input(key="launch_decay_at_resnet").set_value("0.5, 0.2")
    at.button(key="launch_check").click().run()
    assert "lr_decay_at: [0.5, 0.2] must be increasing fractions" in _texts(at.error)
    at.text_input(key="launch_decay_at_resnet").set_value("0.3, 0.6, 0.8")
    at.number_input(key="launch_size_multilabel").set_value(16)
    at.button(key="launch_go").click().run()
    assert "Launched run 1" in _texts(at.success), _texts(at.error)
    opts = launched[0].train_options
    assert (opts["optimizer"], opts["warmup_epochs"], opts["lr_decay_at"]) == ("sgd_nesterov", 5, (0.3, 0.6, 0.8))
    assert (opts["lr_decay_factor"], opts["mixup_alpha"], opts["label_fraction"]) == (0.1, 0.2, 0.05)


def test_defaults_are_derived_shown_and_stored(tiny_scene: Any, monkeypatch: Any) -> None:
    """The form's defaults (tile size auto, split block size and buffer auto) give a config that pre-flight states
    in full: the launched config holds the derived tile size, block size, buffer and seed, and pre-flight shows the
    samples of every split. The detached launcher is replaced, as in the tests above (it would start training)."""
    from jobs import launch

    launched: list[Any] = []
    monkeypatch.setattr(launch, "launch_detached", lambda cfg, *a, **k: launched.append(cfg) or 1)
    at = _page(pixel_box_wgs84(0, 0, 64, 64))
    at.button(key="launch_go").click().run()
    assert "Launched run 1" in _texts(at.success), _texts(at.error)
    cfg = launched[0]
    assert cfg.tiling.tile_size == 16 and cfg.split.block_size == 32 and cfg.split.buffer == 8
    assert cfg.split.seed is not None
    info = _texts(at.info)
    assert "tiles of 16 px, spatial split in blocks of 32 px, buffer 8 px" in info and "train: " in info
    at.number_input(key="launch_block_size").set_value(64)
    at.button(key="launch_check").click().run()
    assert "the val split gets 0 tiles" in _texts(at.error)  # one block: everything is training data


def test_labelled_pixels_of_several_dates_are_explained(tiny_scene: Any, db_url: str, home: Path) -> None:
    """A scene labelled on two dates: its labelled pixels (summed over dates) exceed its pixels, and the page
    says why."""
    from core.data.catalog import SceneSpec, register_scene
    from db.scenes import SceneStore

    acq = tiny_scene.acquisitions[0]
    files = {k: list(v) for k, v in acq.files.items()}
    spec = SceneSpec.model_validate(
        {
            "name": "twice",
            "classes": [{"id": c.id, "name": c.name, "color": c.color} for c in tiny_scene.classes],
            "acquisitions": [
                {"date": "20220101", "files": files, "labels": acq.labels},
                {"date": "20220601", "files": files, "labels": acq.labels},
            ],
        }
    )
    register_scene(spec, SceneStore(db_url), home)
    at = app_test("launch").run()
    at.selectbox(key="launch_scene").set_value("twice").run()
    at.checkbox(key="launch_whole").check().run()
    m = _metrics(at)
    assert m["Pixels"] == f"{SIZE * SIZE:,}" and m["Labelled pixels (all dates)"] == f"{2 * (SIZE * SIZE - SIZE):,}"
    assert "a pixel labelled on two dates counts twice" in _texts(at.caption)
