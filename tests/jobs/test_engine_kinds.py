"""The engine's job kinds around multi-label models: the label fraction a bundle was trained with, the test
metrics' summary keys for the history table, and the ``evaluate`` kind on a multi-label bundle."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from app.services import history
from core.configs import EvaluateJobConfig
from core.models.bundle import load_meta
from core.training.config import TrainJobConfig
from db.runs import RunTracker
from jobs.engine_kinds import run_evaluate, summary_metrics, trained_label_fraction
from tests.core.evaluation.test_job import multilabel_case


def with_run(bundle: Path, run_id: int | None) -> Path:
    meta = dataclasses.replace(load_meta(bundle), train_run_id=run_id)
    (bundle / "meta.json").write_text(meta.to_json())
    return bundle


def test_trained_label_fraction_from_meta_then_the_training_run(tmp_path: Path, db_url: str) -> None:
    t = RunTracker(db_url)
    train = t.create(
        "train", TrainJobConfig(scene="s", store="x", model="resnet50", label_fraction=0.3).model_dump(mode="json")
    )
    pipe = t.create("pipeline", {"kind": "pipeline", "model": "resnet50", "train_options": {"label_fraction": 0.2}})
    plain = t.create("pipeline", {"kind": "pipeline", "model": "resnet50", "train_options": {}})
    other = t.create("train", TrainJobConfig(scene="s", store="x", model="unet").model_dump(mode="json"))
    bundle, _, _, _ = multilabel_case(tmp_path / "a")
    assert trained_label_fraction(with_run(bundle, train), t) == 0.3
    assert trained_label_fraction(with_run(bundle, pipe), t) == 0.2
    assert trained_label_fraction(with_run(bundle, plain), t) == 0.05  # the training default
    assert trained_label_fraction(with_run(bundle, other), t) is None  # another model: not this bundle's run
    assert trained_label_fraction(with_run(bundle, 999), t) is None
    assert trained_label_fraction(with_run(bundle, None), t) is None
    in_meta, _, _, _ = multilabel_case(tmp_path / "b", fraction_in_meta=0.4)
    assert trained_label_fraction(with_run(in_meta, train), t) == 0.4


def test_evaluate_kind_scores_a_multilabel_bundle_with_its_training_fraction(tmp_path: Path, db_url: str) -> None:
    t = RunTracker(db_url)
    train = t.create(
        "train", TrainJobConfig(scene="s", store="x", model="resnet50", label_fraction=0.3).model_dump(mode="json")
    )
    bundle, store, _, _ = multilabel_case(tmp_path)
    ctx = SimpleNamespace(tracker=t, progress=lambda *a, **k: None)
    config = EvaluateJobConfig(model=str(with_run(bundle, train)), store=str(store))
    out = run_evaluate(config, ctx)  # type: ignore[arg-type]
    m = out["metrics"]
    assert m["label_fraction"] == 0.3 and m["task"] == "multilabel"
    assert 0 <= m["micro_f1"] <= 1 and m["per_class"]["2"]["name"] == "forest" and "confusion" not in m


def test_multilabel_test_metrics_reach_the_history_table_and_per_class_f1(db_url: str) -> None:
    test = {
        "micro_f1": 0.7,
        "macro_f1": 0.6,
        "subset_accuracy": 0.5,
        "hamming_loss": 0.1,
        "per_class": {
            "1": {"name": "water", "f1": 0.9, "precision": 1.0, "recall": 0.8, "support": 3.0},
            "2": {"name": "forest", "f1": 0.3, "precision": 0.5, "recall": 0.2, "support": 4.0},
        },
    }
    s = summary_metrics(test, None)
    assert s["micro_f1"] == 0.7 and s["macro_f1"] == 0.6 and s["subset_accuracy"] == 0.5
    assert "confusion" not in s and "oa" not in s
    single = summary_metrics({"overall_accuracy": 0.8, "confusion_matrix": [[1]], "class_ids": [1]}, None)
    assert single["confusion"] == {"matrix": [[1]], "class_ids": [1]} and "micro_f1" not in single
    t = RunTracker(db_url)
    rid = t.create("pipeline", {"kind": "pipeline", "model": "resnet50"})
    t.succeed(rid, metrics={"test": test, **s})
    row = history.runs_table(t).set_index("id").loc[rid]
    assert row["micro_f1"] == 0.7 and row["macro_f1"] == 0.6 and pd.isna(row["test_oa"])
    f1 = history.per_class_f1([t.get(rid)])
    assert dict(zip(f1["class"], f1["f1"])) == {"water": 0.9, "forest": 0.3}


def test_prediction_tiling_exact_leaves_the_tile_to_run_predict_crop_takes_the_overlap(tmp_path: Path) -> None:
    """Exact seams: run_predict picks the tile and the receptive-field radius (no scene needed here, so no database
    is read); crop: the config's overlap on tiles of >= 256 px, a multiple of the U-Net's 2 ** depth."""
    import pytest

    from core.models.bundle import ModelMeta
    from jobs.engine_kinds import prediction_tiling
    from jobs.pipeline import PipelineJobConfig

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    meta = ModelMeta(
        model="unet",
        task="dense",
        modalities=("s2",),
        sample_size={"s2": 64},
        class_ids=(1,),
        class_names=("a",),
        class_colors=("#000000",),
        band_stats={},
        scene="elsewhere",
        extra={"model_params": {"width": 2, "depth": 2}},
    )
    (bundle / "meta.json").write_text(meta.to_json())
    config = PipelineJobConfig(scene="elsewhere", model="unet", num_workers=1, scheme="single")
    assert prediction_tiling(str(bundle), config) == (None, None)
    crop = config.model_copy(update={"seams": "crop", "overlap": 70})
    assert prediction_tiling(str(bundle), crop) == (280, 70)  # 4 x 70, a multiple of 4
    patch = PipelineJobConfig(scene="elsewhere", model="patch_cnn", num_workers=1, scheme="single")
    assert prediction_tiling(str(bundle), patch) == (None, None)
    with pytest.raises(ValueError, match="seams='crop' trades exact seams for speed"):
        PipelineJobConfig(scene="elsewhere", model="unet", num_workers=1, scheme="single", seams="crop")
