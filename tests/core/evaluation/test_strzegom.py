"""Integration on real data: the authors' U-Net prediction of Strzegom 2023-07-09 assessed with a stratified sample
whose reference labels come from the 2023-07-09 test mask (shared/data/strzegom, see its SOURCE.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from core.data.cog import write_class_metadata
from core.evaluation.assess import (
    AssessJobConfig,
    DrawSampleJobConfig,
    run_assess,
    run_draw_sample,
)
from core.evaluation.errors import InsufficientSampleError
from core.evaluation.sample_design import SampleDesign

pytestmark = pytest.mark.shared_data

NAMES = {
    1: "conifer forest",
    2: "mixed forest",
    3: "urban",
    4: "crops (pre-harvest)",
    5: "bare soil",
    6: "permanent grassland",
    7: "roads",
    8: "water",
    9: "crops (vegetation)",
    10: "quarries",
}
COLORS = ["#1b5e20", "#66bb6a", "#e53935", "#fdd835", "#8d6e63", "#aed581", "#616161", "#1e88e5", "#f9a825", "#9e9e9e"]


def _write_prediction(strzegom: Path, out: Path, only_labelled: bool) -> tuple[Path, np.ndarray, np.ndarray]:
    """The published U-Net class map as a workbench prediction (nodata 0, CLASSES tag, 64 px tiles); with
    ``only_labelled`` the map is cut to the test mask's labelled pixels (the AOI where reference exists)."""
    with rasterio.open(strzegom / "published_unet_prediction_20230709.tif") as src:
        pred, profile = src.read(1), src.profile
    with rasterio.open(strzegom / "test_labels_20230709.tif") as src:
        mask = src.read(1).astype(np.uint8)
    if only_labelled:
        pred = np.where(mask > 0, pred, 0).astype(np.uint8)
    profile.update(nodata=0, tiled=True, blockxsize=64, blockysize=64, compress="deflate")
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(pred, 1)
        write_class_metadata(dst, list(NAMES), list(NAMES.values()), COLORS)
    return out, pred, mask


def test_strzegom_within_the_test_mask(shared_data: Path, tmp_path: Path) -> None:
    """AOI = the 2023-07-09 test mask's labelled pixels, so the mask labels every sample point and the population
    truth (the mask's class areas, the map's pixel accuracy in the AOI) is known.

    (The authors' published_confusion_matrix_20230709.csv is not that truth: it counts 38,571 pixels, not the
    mask's 38,199, and ~1,250 of its reference pixels are in crops 9 where the mask has crops 4.)"""
    strz = shared_data / "strzegom"
    path, pred, mask = _write_prediction(strz, tmp_path / "pred.tif", only_labelled=True)
    cov = mask > 0
    assert int(cov.sum()) == 38199
    drawn = run_draw_sample(
        DrawSampleJobConfig(
            str(path), str(tmp_path / "sample"), SampleDesign(per_class={c: 50 for c in NAMES}, seed=2023)
        )
    )
    assert drawn["allocation"]["6"] == 17 and drawn["n_points"] == 9 * 50 + 17  # grassland: 17 mapped pixels
    out = run_assess(
        AssessJobConfig(
            prediction=str(path),
            sample=drawn["files"]["json"],
            label_raster=str(strz / "test_labels_20230709.tif"),
            output_dir=str(tmp_path / "report"),
            date="2023-07-09",
            title="Strzegom 2023-07-09, U-Net (published), within the test mask",
        )
    )
    assert out["reference"]["n_not_covered"] == 0 and out["reference"]["source"] == "label_raster"
    rows = {r["class_id"]: r for r in out["classes"]}
    true_ha = {c: float((mask == c).sum()) * 100 / 1e4 for c in NAMES}
    _print_table(out, true_ha)
    assert sum(r["mapped_area"] for r in rows.values()) == pytest.approx(cov.sum() * 100 / 1e4)
    true_oa = float((pred[cov] == mask[cov]).mean())
    print(f"true pixel accuracy in the AOI {true_oa:.4f}")
    o = out["overall"]
    assert abs(o["overall_accuracy"] - true_oa) < 3 * o["overall_accuracy_se"]
    covered = [rows[c]["estimated_area_ci_low"] <= true_ha[c] <= rows[c]["estimated_area_ci_high"] for c in NAMES]
    assert sum(covered) >= 7, covered
    err_map = sum(abs(rows[c]["mapped_area"] - true_ha[c]) for c in NAMES)
    err_est = sum(abs(rows[c]["estimated_area"] - true_ha[c]) for c in NAMES)
    assert err_est < err_map  # the error-adjusted areas are closer to the truth than the pixel counts
    assert rows[6]["users_accuracy"] == 0.0 and rows[6]["estimated_area"] == 0.0  # no grassland in the reference
    html = Path(out["files"]["report"]).read_text()
    assert "NOT collected for this sample" in html and html.count("<rect") == 20
    json.dumps(out)


def test_strzegom_full_scene_refuses_a_stratum_the_mask_does_not_reach(shared_data: Path, tmp_path: Path) -> None:
    """Whole scene, 50 points per class, labels from the test mask where it covers: only 17 of the 904 grassland
    pixels are in the mask (and 698 of 7,838 urban ones), so some stratum keeps fewer than 2 labelled points (which
    one depends on the seed and the map's block layout), and the estimator says which class lacks reference points.
    Nothing is written."""
    strz = shared_data / "strzegom"
    path, _, _ = _write_prediction(strz, tmp_path / "pred.tif", only_labelled=False)
    drawn = run_draw_sample(
        DrawSampleJobConfig(
            str(path), str(tmp_path / "sample"), SampleDesign(per_class={c: 50 for c in NAMES}, seed=2023)
        )
    )
    with pytest.raises(
        InsufficientSampleError,
        match=r"stratum '[a-z ()-]+' \(map class \d+, mapped size \d+\) has "
        r"[01] reference point\(s\); the estimator needs at least 2",
    ):
        run_assess(
            AssessJobConfig(
                prediction=str(path),
                sample=drawn["files"]["json"],
                label_raster=str(strz / "test_labels_20230709.tif"),
                output_dir=str(tmp_path / "report"),
            )
        )
    assert not (tmp_path / "report").exists()


def _print_table(out: dict, true_ha: dict[int, float]) -> None:  # type: ignore[type-arg]
    print(
        f"\n{'class':22s} {'n':>3s} {'mapped ha':>9s} {'estimated ha ± 95% CI':>22s} {'true ha':>8s} "
        f"{'UA ± CI':>13s} {'PA ± CI':>13s}"
    )
    z = out["estimates"]["z"]
    for r in out["classes"]:
        ua = "–" if r["users_accuracy"] is None else f"{r['users_accuracy']:.3f}±{z * r['users_accuracy_se']:.3f}"
        pa = (
            "–"
            if r["producers_accuracy"] is None
            else f"{r['producers_accuracy']:.3f}±{z * r['producers_accuracy_se']:.3f}"
        )
        print(
            f"{r['class_name']:22s} {r['n_sample']:3d} {r['mapped_area']:9.1f} "
            f"{r['estimated_area']:12.1f} ± {z * r['estimated_area_se']:7.1f} {true_ha[r['class_id']]:8.1f} "
            f"{ua:>13s} {pa:>13s}"
        )
    o = out["overall"]
    print(f"overall accuracy {o['overall_accuracy']:.3f} ± {z * o['overall_accuracy_se']:.3f}")
