"""The verdict of a deep model against the random forest fitted beside it (jobs/rf_beside.py)."""

from __future__ import annotations

from jobs.rf_beside import compare, per_class_f1

DEEP = {
    "overall_accuracy": 0.9,
    "macro_f1": 0.7,
    "per_class": {"1": {"name": "forest", "f1": 0.9}, "2": {"name": "water", "f1": 0.5}, "3": {"name": "urban"}},
}


def test_per_class_f1_by_name() -> None:
    assert per_class_f1(DEEP) == {"forest": 0.9, "water": 0.5, "urban": 0.0}


def test_a_deep_model_that_wins_is_said_to_win() -> None:
    v = compare(DEEP, {"oa": 0.85, "macro_f1": 0.6, "per_class_f1": {"forest": 0.8}}, "unet")
    assert v == {"deep_wins": True, "text": "unet beats the random forest on macro F1 (0.700 vs 0.600)."}


def test_a_deep_model_that_loses_is_told_what_to_try() -> None:
    rf = {"oa": 0.95, "macro_f1": 0.8, "per_class_f1": {"forest": 0.95, "water": 0.9, "urban": 0.55}}
    v = compare(DEEP, rf, "patch_cnn")
    assert v is not None and not v["deep_wins"]
    text = v["text"]
    assert text.startswith("patch_cnn loses to the random forest fitted on the same samples: macro F1 0.700 vs 0.800")
    assert "urban (0.00 vs 0.55), water (0.50 vs 0.90), forest (0.90 vs 0.95)" in text  # largest gaps first
    assert "more training steps" in text and "another model" in text and "more labels" in text


def test_no_verdict_without_both_scores() -> None:
    assert compare(None, {"macro_f1": 0.5}, "unet") is None and compare(DEEP, None, "unet") is None
