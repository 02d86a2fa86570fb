"""AppTest of the Map-review page: every kind of run that writes a map opens, overlay and legend, error layer, two
runs, vector layers made from a map, downloads named after the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.app.conftest import SIZE, T0, app_test
from tests.conftest import write_raster


def _prediction(tmp_path: Path, name: str, wrong_rows: int) -> Path:
    pred = np.ones((SIZE, SIZE), dtype="uint8")
    pred[:, SIZE // 2 :] = 2
    pred[10 : 10 + wrong_rows, :8] = 2  # wrong: the labels say 1 there
    return write_raster(tmp_path / name, pred, transform=T0, nodata=0)


def _run_with_prediction(db_url: str, path: Path, model: str = "unet") -> int:
    from db.runs import RunTracker

    t = RunTracker(db_url)
    rid = t.create("pipeline", {"kind": "pipeline", "scene": "tiny", "model": model})
    t.start(rid)
    t.succeed(rid, metrics={"oa": 0.9}, artifacts={"prediction": str(path)})
    return rid


def _components(at: Any) -> int:
    return sum(1 for e in at.main if type(e).__name__ == "UnknownElement") + len(at.get("iframe"))


def test_overlay_legend_and_download(tiny_scene: Any, db_url: str, tmp_path: Path) -> None:
    path = _prediction(tmp_path, "pred.tif", 8)
    _run_with_prediction(db_url, path)
    at = app_test("review").run()
    assert not at.exception
    legend = " ".join(h.proto.body for h in at.get("html"))
    assert "1 forest" in legend and "2 water" in legend and "#228b22" in legend
    assert at.get("download_button")[0].proto.label == "Download GeoTIFF"
    assert len(at.get("slider")) == 1 and at.slider(key="review_opacity").value == 0.7


def test_error_layer_reports_share_of_wrong_pixels(tiny_scene: Any, db_url: str, tmp_path: Path) -> None:
    _run_with_prediction(db_url, _prediction(tmp_path, "pred.tif", 8))
    at = app_test("review").run()
    at.toggle(key="review_error").set_value(True).run()
    at.toggle(key="review_truth").set_value(True).run()
    assert not at.exception
    captions = " ".join(c.value for c in at.caption)
    # 8 rows x 8 cols wrong out of 63 labelled rows x 64 cols (row 0 is unlabelled)
    assert f"{64 / (63 * 64):.1%} of labelled pixels" in captions


def test_two_runs_side_by_side_and_swap(tiny_scene: Any, db_url: str, tmp_path: Path) -> None:
    a = _run_with_prediction(db_url, _prediction(tmp_path, "a.tif", 2))
    b = _run_with_prediction(db_url, _prediction(tmp_path, "b.tif", 4), model="patch_cnn")
    at = app_test("review").run()
    at.radio(key="review_mode").set_value("side by side").run()
    assert not at.exception
    bold = " ".join(m.value for m in at.markdown)
    assert f"run {a}" in bold and f"run {b}" in bold
    at.radio(key="review_mode").set_value("swap").run()
    first = " ".join(m.value for m in at.markdown if m.value.startswith("**Showing"))
    at.button(key="review_swap").click().run()
    second = " ".join(m.value for m in at.markdown if m.value.startswith("**Showing"))
    assert first != second and "run" in second


def test_runs_without_prediction_file_are_not_offered(tiny_scene: Any, db_url: str, tmp_path: Path) -> None:
    _run_with_prediction(db_url, tmp_path / "missing.tif")
    at = app_test("review").run()
    assert "No run has a prediction yet" in at.info[0].value


def test_mapped_areas_beside_the_legend_with_csv(tiny_scene: Any, db_url: str, tmp_path: Path) -> None:
    import rasterio

    from core.data.cog import write_class_metadata

    path = _prediction(tmp_path, "pred.tif", 0)  # left half class 1, right half class 2: 64 x 32 px each
    with rasterio.open(path, "r+") as dst:
        write_class_metadata(dst, [1, 2], ["forest", "water"], ["#228b22", "#1e90ff"])
    _run_with_prediction(db_url, path)
    at = app_test("review").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["class"]) == ["forest", "water"]
    assert list(table["pixels"]) == [SIZE * SIZE // 2] * 2
    assert list(table["ha"]) == [SIZE * SIZE // 2 * 100 / 1e4] * 2  # 10 m pixels: 100 m² each
    assert list(table["%"]) == [50.0, 50.0]
    assert any(b.proto.label == "Areas (CSV)" for b in at.get("download_button"))


def test_vectorize_and_sample_buttons_launch_jobs(
    tiny_scene: Any, db_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    """The detached launcher is replaced (it would start a driver process): the test checks the configs the page
    builds and that they validate."""
    from jobs import launch

    launched: list[Any] = []
    monkeypatch.setattr(launch, "launch_detached", lambda cfg, *a, **k: launched.append(cfg) or 41)
    rid = _run_with_prediction(db_url, _prediction(tmp_path, "pred.tif", 0))
    at = app_test("review").run()
    at.number_input(key="review_mmu").set_value(4.0).run()
    at.button(key="review_vectorize").click().run()
    at.button(key="review_sample").click().run()
    assert not at.exception
    assert [c.kind for c in launched] == ["vectorize", "sample"]
    assert launched[0].prediction_run == rid and launched[0].min_mapping_unit == 4.0
    assert launched[1].per_class == 50
    assert any("Launched run 41" in s.value for s in at.success)


def _config(kind: str, **extra: Any) -> dict[str, Any]:
    """The stored config of a real job of ``kind`` (what the runner keeps with the run)."""
    from core.configs import BaselineJobConfig, PredictJobConfig
    from jobs.pipeline import PipelineJobConfig

    classes = {"pipeline": PipelineJobConfig, "predict": PredictJobConfig, "baseline": BaselineJobConfig}
    return classes[kind](**extra).model_dump(mode="json")


MAP_KINDS = {
    "pipeline": {"scene": "tiny", "model": "unet"},
    "pipeline date split": {"scene": "tiny", "model": "unet", "split": {"method": "date", "test_date": "20220101"}},
    "predict": {"scene": "tiny", "model": "/runs/run-00003/model"},
    "baseline rf": {"scene": "tiny", "store": "/stores/run-1.zarr", "method": "rf", "predict": True},
    "baseline svm tiles": {
        "scene": "tiny",
        "method": "svm",
        "predict": True,
        "tile_job": {"scene": "tiny", "split": {"method": "date", "test_date": "20220101"}},
    },
}


@pytest.mark.parametrize("name", list(MAP_KINDS))
def test_every_kind_of_map_run_opens(name: str, tiny_scene: Any, db_url: str, tmp_path: Path) -> None:
    """pipeline, predict and baseline runs write maps (jobs/outputs.py record_prediction); each opens, with the
    error layer and ground truth on (which read the config's split), alone and beside a pipeline run."""
    from db.runs import RunTracker

    kind = name.split()[0]
    t = RunTracker(db_url)
    other = _run_with_prediction(db_url, _prediction(tmp_path, "other.tif", 0))
    rid = t.create(kind, _config(kind, **MAP_KINDS[name]))
    t.start(rid)
    t.succeed(rid, metrics={"oa": 0.8}, artifacts={"prediction": str(_prediction(tmp_path, "pred.tif", 8))})
    at = app_test("review").run()
    assert at.selectbox(key="review_run_a").value == rid
    at.toggle(key="review_error").set_value(True).run()
    at.toggle(key="review_truth").set_value(True).run()
    assert not at.exception, at.exception
    assert any(f"{64 / (63 * 64):.1%} of labelled pixels" in c.value for c in at.caption)
    at.radio(key="review_mode").set_value("side by side").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="review_run_b").value == other
    bold = " ".join(m.value for m in at.markdown)
    assert f"run {rid}" in bold and f"run {other}" in bold
    assert _components(at) == 1  # one frame holding both maps (they move together)


def test_baseline_label_names_its_method(tiny_scene: Any, db_url: str, tmp_path: Path) -> None:
    from db.runs import RunTracker

    t = RunTracker(db_url)
    rid = t.create("baseline", _config("baseline", **MAP_KINDS["baseline rf"]))
    t.succeed(rid, artifacts={"prediction": str(_prediction(tmp_path, "pred.tif", 0))})
    at = app_test("review").run()
    assert at.selectbox(key="review_run_a").format_func(rid) == f"run {rid} - tiny - rf baseline"


def _vector_runs(db_url: str, parent: int, tmp_path: Path) -> tuple[int, int]:
    """A real vectorize run and a real sample run of ``parent``'s map, their files written by the engine."""
    import rasterio

    from core.data.cog import write_class_metadata
    from core.evaluation.assess import DrawSampleJobConfig, run_draw_sample
    from core.evaluation.sample_design import SampleDesign
    from core.export.vectorize import vectorize
    from db.runs import RunTracker

    t = RunTracker(db_url)
    pred = t.get(parent).artifacts["prediction"]
    with rasterio.open(pred, "r+") as dst:  # as the workbench writes its maps
        write_class_metadata(dst, [1, 2], ["forest", "water"], ["#228b22", "#1f78b4"])
    out = tmp_path / "vec"
    out.mkdir()
    res = vectorize(pred, out / "polygons.gpkg", out / "polygons.geojson")
    vid = t.create("vectorize", {"kind": "vectorize", "prediction_run": parent, "min_mapping_unit": 0})
    t.succeed(
        vid,
        metrics={"polygons": res.polygons},
        artifacts={"gpkg": str(res.gpkg_path), "geojson": str(res.geojson_path)},
    )
    design = SampleDesign(per_class={1: 5, 2: 7}, seed=0)
    drawn = run_draw_sample(DrawSampleJobConfig(pred, str(tmp_path / "smp"), design), lambda *a: None)
    sid = t.create("sample", {"kind": "sample", "prediction_run": parent, "per_class": 5})
    t.succeed(sid, metrics={"n_points": drawn["n_points"]}, artifacts=drawn["files"])
    return vid, sid


def _record_downloads(monkeypatch: Any) -> dict[str, bytes]:
    """File name -> bytes of every download the page offers (Streamlit's media store is wrapped, not replaced)."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    files: dict[str, bytes] = {}
    real = MemoryMediaFileStorage.load_and_get_id

    def spy(self: Any, data: Any, mimetype: str, kind: Any, filename: str | None = None) -> str:
        if filename:
            files[filename] = data if isinstance(data, bytes) else Path(data).read_bytes()
        return real(self, data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", spy)
    return files


def test_polygons_and_sample_points_are_layers_of_their_map(
    tiny_scene: Any, db_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    import csv
    import io
    import json

    import fiona

    files = _record_downloads(monkeypatch)
    rid = _run_with_prediction(db_url, _prediction(tmp_path, "pred.tif", 8))
    vid, sid = _vector_runs(db_url, rid, tmp_path)
    at = app_test("review").run()
    assert not at.exception, at.exception
    assert at.multiselect(key=f"review_vectors_{rid}").value == [f"sample points (run {sid})", f"polygons (run {vid})"]
    assert _components(at) == 1
    assert sorted(files) == sorted(
        [
            f"run-{rid}-pred.tif",
            f"run-{rid}-areas.csv",
            f"run-{vid}-polygons.gpkg",
            f"run-{vid}-polygons.geojson",
            f"run-{vid}-polygons.csv",
            f"run-{sid}-sample.gpkg",
            f"run-{sid}-sample.geojson",
            f"run-{sid}-sample.csv",
        ]
    )
    polygons = json.loads(files[f"run-{vid}-polygons.geojson"])["features"]
    # class 1 left half with a class-2 notch (8 rows x 8 cols at the left edge), class 2 right half: 3 regions
    assert len(polygons) == 3
    assert sorted(f["properties"]["pixels"] for f in polygons) == [64, 32 * 64 - 64, 32 * 64]
    rows = list(csv.DictReader(io.StringIO(files[f"run-{vid}-polygons.csv"].decode())))
    assert len(rows) == 3 and {"class_id", "area_ha"} <= set(rows[0])
    points = json.loads(files[f"run-{sid}-sample.geojson"])["features"]
    assert len(points) == 12 and {p["properties"]["map_class"] for p in points} == {"1", "2"}
    gpkg = tmp_path / "dl.gpkg"
    gpkg.write_bytes(files[f"run-{sid}-sample.gpkg"])
    with fiona.open(gpkg, layer="sample") as src:
        assert len(src) == 12
    at.multiselect(key=f"review_vectors_{rid}").set_value([f"polygons (run {vid})"]).run()
    assert not at.exception, at.exception


def test_a_layer_too_large_to_draw_says_so(tiny_scene: Any, db_url: str, tmp_path: Path, monkeypatch: Any) -> None:
    from app.services import map_layers

    monkeypatch.setattr(map_layers, "MAX_DRAWN_FEATURES", 2)
    rid = _run_with_prediction(db_url, _prediction(tmp_path, "pred.tif", 8))
    vid, _ = _vector_runs(db_url, rid, tmp_path)
    at = app_test("review").run()
    assert any(f"polygons (run {vid}): 3 features are too many to draw" in c.value for c in at.caption)


def test_a_link_opens_the_map_of_a_run(tiny_scene: Any, db_url: str, tmp_path: Path) -> None:
    a = _run_with_prediction(db_url, _prediction(tmp_path, "a.tif", 0))
    _run_with_prediction(db_url, _prediction(tmp_path, "b.tif", 0))
    at = app_test("review")
    at.query_params["run"] = str(a)
    at.run()
    assert at.selectbox(key="review_run_a").value == a


def test_assess_refuses_labels_outside_the_data_roots(
    tiny_scene: Any, db_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    """The detached launcher is replaced by a recorder (it would start a driver process): nothing may reach it."""
    from db.runs import RunTracker
    from jobs import launch

    launched: list[Any] = []
    monkeypatch.setattr(launch, "launch_detached", lambda cfg, *a, **k: launched.append(cfg) or 41)
    rid = _run_with_prediction(db_url, _prediction(tmp_path, "pred.tif", 0))
    t = RunTracker(db_url)
    sid = t.create("sample", {"kind": "sample", "prediction_run": rid, "per_class": 5})
    t.succeed(sid, artifacts={})
    at = app_test("review").run()
    at.text_input(key="review_labels").set_value("/etc/passwd").run()
    at.button(key="review_assess").click().run()
    assert not at.exception
    assert "assess config field 'labels': path '/etc/passwd'" in at.error[0].value
    assert "outside the data roots and run folders" in at.error[0].value
    assert launched == [] and len(t.list()) == 2
    inside = tmp_path / "interpreted.csv"
    at.text_input(key="review_labels").set_value(str(inside)).run()
    at.button(key="review_assess").click().run()
    assert [c.labels for c in launched] == [str(inside)]


def _map_args(at: Any) -> list[dict[str, Any]]:
    """The arguments of the page's map components (st_folium): script, js_links, center, zoom, ..."""
    import json

    return [json.loads(e.proto.json_args) for e in at.main if type(e).__name__ == "UnknownElement"]


def test_a_layer_toggle_keeps_the_view(tiny_scene: Any, db_url: str, tmp_path: Path) -> None:
    """The browser reports the view (centre, zoom) after a pan; here it is put in the session as st_folium's
    return value would be, since AppTest has no browser (tests/app/test_browser.py zooms for real)."""
    a = _run_with_prediction(db_url, _prediction(tmp_path, "a.tif", 0))
    at = app_test("review").run()
    assert "fitBounds" in _map_args(at)[0]["script"]  # first visit: fitted to the map
    at.session_state[f"review_view_review_map_a_{a}"] = {"center": {"lat": 50.5, "lng": 15.0}, "zoom": 17}
    at.run()
    assert "fitBounds" in _map_args(at)[0]["script"]  # a report of the view alone does not re-create the map
    at.toggle(key="review_truth").set_value(True).run()
    script = _map_args(at)[0]["script"]
    assert "ground truth" in script  # a new map (another layer) ...
    assert "center: [50.5, 15.0]" in script and '"zoom": 17' in script and "fitBounds" not in script  # ... same place


def test_side_by_side_maps_move_together_offline(tiny_scene: Any, db_url: str, tmp_path: Path) -> None:
    _run_with_prediction(db_url, _prediction(tmp_path, "a.tif", 0))
    _run_with_prediction(db_url, _prediction(tmp_path, "b.tif", 2))
    at = app_test("review").run()
    at.radio(key="review_mode").set_value("side by side").run()
    (args,) = _map_args(at)
    assert "map_div2" in args["script"] and "dst.setView(src.getCenter(), src.getZoom()" in args["script"]
    assert not any("Sync" in link for link in args["js_links"])  # no CDN plugin: works offline


def test_a_georeferenced_map_is_drawn_as_full_resolution_tiles_of_the_app(
    tiny_scene: Any, db_url: str, tmp_path: Path
) -> None:
    rid = _run_with_prediction(db_url, _prediction(tmp_path, "pred.tif", 0))
    at = app_test("review").run()
    assert not at.exception
    script = _map_args(at)[0]["script"]
    for layer in ("prediction", "imagery"):
        assert f'"/tiles/{rid}/{layer}/{{z}}/{{x}}/{{y}}.png?v=' in script
    assert '"maxNativeZoom": 1' in script and "data:image/png" not in script  # no decimated overlay left


def test_a_deleted_confidence_cog_is_a_clear_error_on_the_page(tiny_scene: Any, db_url: str, tmp_path: Path) -> None:
    from db.runs import RunTracker

    t = RunTracker(db_url)
    rid = t.create("pipeline", {"kind": "pipeline", "scene": "tiny", "model": "unet"})
    gone = tmp_path / "pred_confidence.tif"
    t.succeed(rid, artifacts={"prediction": str(_prediction(tmp_path, "pred.tif", 0)), "confidence": str(gone)})
    at = app_test("review").run()
    assert not at.exception
    assert any("confidence file of run" in e.value and "missing" in e.value for e in at.error)
    assert f"/tiles/{rid}/prediction/" in _map_args(at)[0]["script"]  # the other layers are still drawn


def test_a_map_that_is_not_georeferenced_is_shown_as_images(tiny_scene: Any, db_url: str, tmp_path: Path) -> None:
    pred = write_raster(tmp_path / "pixels.tif", np.ones((SIZE, SIZE), dtype="uint8"), crs=None, transform=None)
    _run_with_prediction(db_url, pred)
    at = app_test("review").run()
    assert not at.exception
    assert not _map_args(at) and len(at.get("image")) >= 1


def test_imagery_band_choice_goes_into_its_tiles_and_a_wrong_band_is_an_error(
    tiny_scene: Any, db_url: str, tmp_path: Path
) -> None:
    rid = _run_with_prediction(db_url, _prediction(tmp_path, "pred.tif", 0))
    at = app_test("review").run()
    at.text_input(key="review_bands").set_value("1, 2, 3").run()
    assert not at.exception and not at.error
    assert f"/tiles/{rid}/imagery/{{z}}/{{x}}/{{y}}.png?v=" in _map_args(at)[0]["script"]
    assert "bands=1,2,3" in _map_args(at)[0]["script"]
    at.text_input(key="review_bands").set_value("4,2,1").run()
    assert any("bands 4,2,1 do not exist: the image has bands 1 to 3" in e.value for e in at.error)
    assert f"/tiles/{rid}/imagery/" not in _map_args(at)[0]["script"]
