"""The step budget (core/training/budget.py): sized by the data, capped by ``max_steps``, with a cosine learning rate
over it; and a budget-sized job on real Horovod ranks runs exactly its planned steps."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from core.training.budget import MAX_STEPS, MIN_STEPS, ROUNDS, plan_steps, step_budget
from core.training.config import TrainJobConfig
from core.training.schedule import COSINE_FLOOR, learning_rate
from tests.core.training.test_loop import _config, _train, make_store


def _cfg(**kw: Any) -> TrainJobConfig:
    return TrainJobConfig(scene="s", store="x", **kw)


def test_step_budget_grows_with_the_data_between_its_bounds() -> None:
    budgets = [step_budget(n, 16) for n in (10, 100, 200, 400, 800, 5000)]
    assert budgets == sorted(budgets) and len(set(budgets)) >= 4, budgets
    assert budgets[0] == MIN_STEPS and budgets[-1] == MAX_STEPS
    assert step_budget(200, 16) > step_budget(100, 16) and step_budget(200, 32) < step_budget(200, 16)


def test_plan_follows_epochs_or_the_budget_and_max_steps_caps_both() -> None:
    budget = plan_steps(_cfg(), n_train=400, global_batch=16, steps_per_pass=13)
    assert budget.budget and budget.total_steps <= step_budget(400, 16) and budget.epochs == ROUNDS
    assert budget.total_steps > step_budget(400, 16) - budget.steps_per_epoch
    assert budget.patience == ROUNDS // 2  # early stopping waits for the cosine's low-rate end
    epochs = plan_steps(_cfg(epochs=3), n_train=400, global_batch=16, steps_per_pass=13)
    assert (epochs.budget, epochs.epochs, epochs.steps_per_epoch, epochs.total_steps) == (False, 3, 13, 39)
    assert epochs.patience == 5  # the config's own patience when epochs are set
    capped = plan_steps(_cfg(max_steps=7), n_train=400, global_batch=16, steps_per_pass=13)
    assert capped.total_steps == 7 and capped.budget
    capped = plan_steps(_cfg(epochs=3, max_steps=20), n_train=400, global_batch=16, steps_per_pass=13)
    assert capped.total_steps <= 20 and capped.epochs == 1
    assert plan_steps(_cfg(epochs=5, max_steps=2), 400, 16, 13).total_steps == 2


def test_budget_learning_rate_warms_up_then_follows_a_cosine_to_the_floor() -> None:
    cfg = _cfg(learning_rate=0.01, warmup_epochs=1)
    plan = plan_steps(cfg, n_train=400, global_batch=16, steps_per_pass=13)
    total, spe = plan.total_steps, plan.steps_per_epoch
    lr = [learning_rate(cfg, 2, s, spe, total) for s in range(total)]
    assert lr[0] == pytest.approx(0.01) and lr[spe] == pytest.approx(0.02)  # warm-up to base x 2 ranks
    assert all(a >= b for a, b in zip(lr[spe:], lr[spe + 1 :]))  # then never rises
    assert lr[-1] == pytest.approx(0.02 * COSINE_FLOOR, rel=0.05)
    mid = spe + (total - spe) // 2
    assert lr[mid] == pytest.approx(0.02 * (COSINE_FLOOR + (1 - COSINE_FLOOR) / 2), rel=0.02)
    # a job that sets epochs keeps its constant rate (no decay asked)
    fixed = _cfg(learning_rate=0.01, warmup_epochs=0, epochs=4)
    assert learning_rate(fixed, 1, 39, 13, 52) == pytest.approx(0.01)


@pytest.mark.skipif(importlib.util.find_spec("horovod") is None, reason="horovod is not installed")
@pytest.mark.cluster
@pytest.mark.horovod
@pytest.mark.usefixtures("home")
def test_budget_sized_job_runs_its_planned_steps_on_real_ranks(
    cluster_client: Any, db_url: str, tmp_path: Path
) -> None:
    store = make_store(tmp_path / "s.zarr")
    config = _config(store, epochs=None, max_steps=6, max_steps_per_epoch=None, patience=10)
    tracker, run_id, out = _train(config, cluster_client, db_url, store)
    assert [r["optimizer_iterations"] for r in out["ranks"]] == [6, 6]
    m = tracker.get(run_id).metrics
    assert (m["planned_steps"], m["steps_run"], m["step_budget"]) == (6, 6, True)
    assert m["window"] == 12  # 3/4 of the 16-px tiles, a multiple of the U-Net's 4-px pooling grid
    assert len(m["class_weights"]) == 3 and min(m["class_weights"]) > 0
    assert m["best_epoch"] >= 2  # the warm-up round is never kept as the best model
