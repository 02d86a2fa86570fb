"""AppTest of the Map-review page: overlay and legend, error layer, two runs, GeoTIFF download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

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
