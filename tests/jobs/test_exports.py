"""The vectorize and export_onnx job kinds through the CLI: a real SQLite run database, a registered tiny scene, a
class-map GeoTIFF and a model bundle of a finished run; the run's metrics say what was done."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fiona
import numpy as np
import pytest
import rasterio

from core.data.cog import write_class_metadata
from db.runs import RunTracker
from jobs.cli import main
from tests.app.conftest import T0, tiny_scene  # noqa: F401 - the fixture
from tests.conftest import write_raster


def _noisy_prediction_run(db_url: str, tmp_path: Path) -> tuple[int, np.ndarray]:
    """A succeeded predict run whose map is salt and pepper of 3 classes (10 m pixels) with a nodata edge."""
    classes = np.random.default_rng(7).integers(1, 4, (120, 130)).astype(np.uint8)
    classes[:, :6] = 0
    path = write_raster(tmp_path / "noisy.tif", classes, transform=T0, nodata=0)
    with rasterio.open(path, "r+") as dst:
        write_class_metadata(dst, [1, 2, 3], ["forest", "water", "urban"], ["#228b22", "#1f78b4", "#e31a1c"])
    t = RunTracker(db_url)
    rid = t.create("predict", {"kind": "predict", "scene": "tiny", "model": "m"})
    t.start(rid)
    t.succeed(rid, metrics={}, artifacts={"prediction": str(path)})
    return rid, classes


def test_vectorize_with_a_mmu_in_hectares_leaves_no_smaller_polygon(
    tiny_scene: Any, db_url: str, tmp_path: Path
) -> None:
    """``vectorize RUN --mmu 0.5 --mmu-unit ha``: the issue's command, on a map where one sieve pass leaves almost
    every polygon under the MMU."""
    rid, classes = _noisy_prediction_run(db_url, tmp_path)
    assert main(["vectorize", str(rid), "--mmu", "0.5", "--mmu-unit", "ha"]) == 0
    row = RunTracker(db_url).list(kind="vectorize")[0]
    assert row.status == "succeeded", row.error
    m = row.metrics
    assert m["mmu_pixels"] == 50 and m["mmu_unmerged"] == 0 and m["mmu_passes"] >= 2
    with fiona.open(row.artifacts["gpkg"]) as src:
        feats = list(src)
    assert len(feats) == m["polygons"] and min(f.properties["area_ha"] for f in feats) >= 0.5 - 1e-9
    assert sum(f.properties["area_ha"] for f in feats) == pytest.approx((classes != 0).sum() * 0.01)


def test_export_onnx_declares_its_tiling_and_the_trade(tiny_scene: Any, db_url: str, tmp_path: Path) -> None:
    """``export-onnx RUN``: context of the receptive-field radius (no seams); ``--tile-size 64 --overlap 8``: the
    trade is stated (seams: crop) and Deepness' overlap keeps the 8 px asked for."""
    from core.models import get_model
    from core.models.bundle import ModelMeta, save_bundle

    model = get_model("unet").builder((32, 32, 3), 2, width=4, depth=2, dropout=0.0)
    meta = ModelMeta(
        model="unet",
        task="dense",
        modalities=("s2",),
        sample_size={"s2": 32},
        class_ids=(1, 2),
        class_names=("forest", "water"),
        class_colors=("#228b22", "#1f78b4"),
        band_stats={"s2": {"mean": [2000.0] * 3, "std": [1000.0] * 3}},
        scene="tiny",
        extra={"model_params": {"width": 4, "depth": 2}},
    )
    bundle = save_bundle(tmp_path / "bundle", model, meta)
    t = RunTracker(db_url)
    rid = t.create("train", {"kind": "train", "scene": "tiny", "model": "unet"})
    t.start(rid)
    t.succeed(rid, metrics={}, artifacts={"model": str(bundle)})
    assert main(["export-onnx", str(rid)]) == 0
    assert main(["export-onnx", str(rid), "--tile-size", "64", "--overlap", "8"]) == 0
    exact, crop = sorted(t.list(kind="export_onnx"), key=lambda r: r.id)
    assert exact.status == crop.status == "succeeded", (exact.error, crop.error)
    assert exact.metrics["seams"] == "exact" and exact.metrics["context_px"] >= exact.metrics["receptive_field_px"]
    assert crop.metrics["seams"] == "crop" and crop.metrics["tile_size"] == 64 and crop.metrics["context_px"] >= 8
    assert crop.config["overlap"] == 8
    import onnx

    md = {p.key: json.loads(p.value) for p in onnx.load(crop.artifacts["onnx"]).metadata_props}
    assert md["tile_size"] == 64 and md["workbench_seams"] == "crop" and md["resolution"] == 1000.0
    assert int(64 * md["tiles_overlap"] / 100 * 2) // 2 // 2 == crop.metrics["context_px"]  # Deepness' arithmetic
