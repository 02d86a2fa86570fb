"""The random forest beside every pipeline: fitted on the same store and split, scored on the same test rows.

A pipeline's deep model is only as good as what it beats. :func:`fit_rf_beside` fits the ``rf`` baseline
(:mod:`core.baselines`) on the pipeline's store (seconds on the sample scenes) and :func:`compare` puts its test
metrics beside the deep model's with a plain-words verdict, stored in the run's metrics as ``rf`` (OA, macro F1,
per-class F1, fit seconds) and ``verdict`` (``{"deep_wins": bool, "text": str}``), which the Runs page and the
run's page show.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from core.configs import BaselineJobConfig
from jobs.pipeline import PipelineJobConfig

log = logging.getLogger(__name__)


def fit_rf_beside(config: PipelineJobConfig, client: Any, store_path: Path, run_dir: Path) -> dict[str, Any] | None:
    """Fit the random forest on the pipeline's store (train split), score it on the test split.

    Returns the ``rf`` metrics (``oa``, ``macro_f1``, ``per_class_f1``, ``test`` (the full metrics), ``fit_s``), or
    None when the store has no test samples.
    """
    from core.baselines.job import run_baseline_job

    baseline = BaselineJobConfig(
        scene=config.scene, store=str(store_path), method="rf", split="test", seed=config.split.seed
    )
    t0 = time.perf_counter()
    result = run_baseline_job(baseline, client, store_path, run_dir / "rf")
    test = result["metrics"].get("test")
    if not test:
        return None
    return {
        "method": "rf",
        "oa": test.get("overall_accuracy"),
        "macro_f1": test.get("macro_f1"),
        "per_class_f1": per_class_f1(test),
        "fit_s": time.perf_counter() - t0,
        "n_train": result["metrics"]["baseline"].get("n_train"),
        "n_test": test.get("n_pixels"),
        "model": result["artifacts"]["model"],
    }


def per_class_f1(test: dict[str, Any]) -> dict[str, float]:
    """Class name -> F1 of a test metrics dict (:func:`core.tasks.metrics.metrics_from_confusion`)."""
    return {str(v.get("name", k)): float(v.get("f1") or 0.0) for k, v in (test.get("per_class") or {}).items()}


def compare(deep: dict[str, Any] | None, rf: dict[str, Any] | None, model: str) -> dict[str, Any] | None:
    """The verdict of a deep model's test metrics ``deep`` against the RF's ``rf`` (None when either is missing).

    The deep model wins when its macro F1 is at least the RF's. When it loses, the text says by how much, which
    classes it misses most against the RF, and what to try: more steps, another model, more labels.
    """
    if not deep or not rf or deep.get("macro_f1") is None or rf.get("macro_f1") is None:
        return None
    d, r = float(deep["macro_f1"]), float(rf["macro_f1"])
    if d >= r:
        return {
            "deep_wins": True,
            "text": f"{model} beats the random forest on macro F1 ({d:.3f} vs {r:.3f}).",
        }
    deep_f1, rf_f1 = per_class_f1(deep), rf.get("per_class_f1") or {}
    gaps = sorted(((rf_f1.get(c, 0.0) - f, c) for c, f in deep_f1.items()), reverse=True)
    worst = ", ".join(f"{c} ({deep_f1[c]:.2f} vs {rf_f1.get(c, 0.0):.2f})" for g, c in gaps[:3] if g > 0)
    text = (
        f"{model} loses to the random forest fitted on the same samples: macro F1 {d:.3f} vs {r:.3f}"
        + (f"; it does worse on {worst}" if worst else "")
        + ". Try: more training steps (leave epochs at auto, or set more epochs or a higher max_steps), another "
        "model or model size (the form's model list and Advanced), or more labels for the weak classes (a larger "
        "area of interest or more labelled pixels)."
    )
    return {"deep_wins": False, "text": text}


__all__ = ["compare", "fit_rf_beside", "per_class_f1"]
