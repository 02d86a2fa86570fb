"""Heterogeneous data parallelism: batch shares, count-weighted gradients (numpy and on real Horovod ranks), and a
training run on the session's 2-worker LocalCluster with one worker throttled."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest

from core.training.schemes.heterogeneous import (
    SLOWDOWN_ENV,
    proportional_shard,
    shares,
    slowdown,
    throttle,
    weighted_average,
)

# Rank functions of this module travel by value: the workers need not import the test package.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

needs_horovod = pytest.mark.skipif(importlib.util.find_spec("horovod") is None, reason="horovod is not installed")


# ---- pure functions ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("speeds", "batch", "expected"),
    [
        ((1, 1), 10, [5, 5]),
        ((3, 7), 10, [3, 7]),
        ((1, 2, 3), 7, [1, 2, 4]),  # quotas 1.17, 2.33, 3.5: the one left over goes to the largest remainder
        ((100, 1), 4, [3, 1]),  # 3.96 / 0.04 would leave rank 1 idle: it gets 1, taken from the largest share
        ((2.5, 2.5, 5.0), 8, [2, 2, 4]),
    ],
)
def test_shares_follow_speeds_and_sum_to_the_global_batch(
    speeds: tuple[float, ...], batch: int, expected: list[int]
) -> None:
    out = shares(speeds, batch)
    assert out == expected and sum(out) == batch and min(out) >= 1


def test_shares_are_monotone_in_speed_for_many_draws() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        speeds = rng.uniform(0.1, 10, size=int(rng.integers(2, 6)))
        batch = int(rng.integers(len(speeds), 200))
        out = shares(speeds, batch)
        assert sum(out) == batch and min(out) >= 1
        quota = batch * speeds / speeds.sum()
        if quota.min() >= 1:  # (below 1 a rank is raised to 1 sample at the largest share's expense)
            assert np.all(np.abs(np.array(out) - quota) < 1)  # never off by a whole sample or more...
        order = np.argsort(speeds)
        assert np.all(np.diff(np.array(out)[order]) >= 0)  # ...and a faster rank never gets fewer samples


def test_shares_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match=r"speeds \[1, 0\] must be one positive"):
        shares([1, 0], 4)
    with pytest.raises(ValueError, match="global batch 2 is smaller than the 3 ranks"):
        shares([1, 1, 1], 2)


def _lsq_grad(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of the mean squared error of a linear model over the samples given."""
    return 2 * x.T @ (x @ w - y) / len(y)


def test_weighted_average_of_rank_means_is_the_large_batch_gradient() -> None:
    rng = np.random.default_rng(1)
    x, y, w = rng.normal(size=(10, 4)), rng.normal(size=10), rng.normal(size=4)
    per_rank = [[_lsq_grad(w, x[:3], y[:3])], [_lsq_grad(w, x[3:], y[3:])]]  # 3 and 7 samples
    np.testing.assert_allclose(weighted_average(per_rank, [3, 7])[0], _lsq_grad(w, x, y), rtol=1e-12)
    plain = (per_rank[0][0] + per_rank[1][0]) / 2  # what plain data parallelism would apply
    assert not np.allclose(plain, _lsq_grad(w, x, y))
    with pytest.raises(ValueError, match=r"counts \[3\] must give one non-negative count per rank \(2 ranks\)"):
        weighted_average(per_rank, [3])


def test_proportional_shard_is_a_disjoint_cover_in_the_given_sizes() -> None:
    idx = np.arange(100, 130)
    parts = [proportional_shard(idx, [8, 22], r, seed=4) for r in (0, 1)]
    assert [len(p) for p in parts] == [8, 22] and sorted(np.concatenate(parts).tolist()) == idx.tolist()
    assert np.array_equal(parts[0], proportional_shard(idx, [8, 22], 0, seed=4))  # same on every rank
    with pytest.raises(ValueError, match="counts \\[8, 21\\] sum to 29, not to the 30 indices"):
        proportional_shard(idx, [8, 21], 0)


def test_throttle_sleeps_the_slowdown_factor_minus_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SLOWDOWN_ENV, raising=False)
    assert slowdown() == 1.0 and throttle(0.01) == 0.0
    monkeypatch.setenv(SLOWDOWN_ENV, "3")
    assert throttle(0.01) == pytest.approx(0.02)
    monkeypatch.setenv(SLOWDOWN_ENV, "fast")
    with pytest.raises(ValueError, match="WORKBENCH_SLOWDOWN='fast' is not a number"):
        slowdown()
    monkeypatch.setenv(SLOWDOWN_ENV, "0.5")
    with pytest.raises(ValueError, match="WORKBENCH_SLOWDOWN='0.5' is below 1"):
        slowdown()


# ---- real ranks --------------------------------------------------------------------------------------------------
def _model(weights: list[np.ndarray] | None = None) -> Any:
    from core.models import build_patch_cnn

    model = build_patch_cnn((5, 5, 2), 3, width=2, dropout=0.0)
    if weights is not None:
        model.set_weights(weights)
    return model


def weighted_sgd_step(
    weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, counts: list[int], lr: float, weighted: bool
) -> list[np.ndarray]:
    """Rank function: one SGD step on this rank's ``counts[rank]`` samples, gradients combined across ranks."""
    import horovod.tensorflow as hvd
    import keras
    import tensorflow as tf

    from core.training.schemes.heterogeneous import allreduce_weighted

    start = sum(counts[: hvd.rank()])
    xs, ys = x[start : start + counts[hvd.rank()]], y[start : start + counts[hvd.rank()]]
    model = _model(weights)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(ys, model(xs, training=True)))
    grads = tape.gradient(loss, model.trainable_variables)
    if weighted:
        grads = allreduce_weighted(grads, float(len(ys)), hvd)
    else:
        grads = hvd.grouped_allreduce(grads, op=hvd.Average)
    keras.optimizers.SGD(learning_rate=lr).apply_gradients(zip(grads, model.trainable_variables))
    return [np.asarray(w) for w in model.get_weights()]


def _worker_addresses(client: Any) -> list[str]:
    """The cluster's workers, asked of the scheduler directly (``client.scheduler_info()`` can return a list cut
    short by the client's own periodic refresh, which asks for ``n_workers=0``)."""
    return list(client.sync(client.scheduler.identity, n_workers=-1)["workers"])


def _set_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


@needs_horovod
@pytest.mark.cluster
@pytest.mark.horovod
def test_weighted_allreduce_on_two_ranks_equals_one_large_batch_step(cluster_client: Any) -> None:
    import keras
    import tensorflow as tf

    from core.distributed.launcher import run_horovod

    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(10, 5, 5, 2)).astype(np.float32), rng.integers(0, 3, size=10)
    keras.utils.set_random_seed(0)
    model = _model()
    w0 = [np.asarray(w) for w in model.get_weights()]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, model(x, training=True)))
    big = [w - 0.5 * g.numpy() for w, g in zip(w0, tape.gradient(loss, model.trainable_variables))]

    kwargs = {"weights": w0, "x": x, "y": y, "counts": [3, 7], "lr": 0.5}
    ranks = run_horovod(cluster_client, weighted_sgd_step, kwargs={**kwargs, "weighted": True}, num_ranks=2)
    for got in ranks:  # both ranks hold the large batch's update
        for a, b in zip(got, big):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    plain = run_horovod(cluster_client, weighted_sgd_step, kwargs={**kwargs, "weighted": False}, num_ranks=2)[0]
    assert max(float(np.abs(a - b).max()) for a, b in zip(plain, big)) > 1e-4  # the unweighted mean is not


@needs_horovod
@pytest.mark.cluster
@pytest.mark.horovod
@pytest.mark.usefixtures("home")
def test_calibration_gives_the_throttled_worker_the_smaller_share(
    cluster_client: Any, db_url: str, tmp_path: Path
) -> None:
    from core.training.config import TrainJobConfig
    from tests.core.models.test_resnet import make_store
    from tests.runs import train_run

    store = make_store(tmp_path / "p.zarr", mode="patches", size=5, counts={"train": 24, "val": 4})  # 3 steps of 8
    slow_worker = sorted(_worker_addresses(cluster_client))[0]
    config = TrainJobConfig(
        scene="tiny",
        store=str(store),
        model="patch_cnn",
        model_params={"width": 4},
        scheme="heterogeneous",
        num_workers=2,
        epochs=1,
        batch_size=4,
        calibration_steps=8,
        max_steps_per_epoch=3,
        log_every=1,
    )
    cluster_client.run(_set_env, SLOWDOWN_ENV, "4", workers=[slow_worker])
    try:
        tracker, run_id, out = train_run(config, cluster_client, db_url, store)
    finally:  # (a worker restarted after a failure has a fresh environment already)
        if slow_worker in _worker_addresses(cluster_client):
            cluster_client.run(_set_env, SLOWDOWN_ENV, None, workers=[slow_worker])
    m = tracker.get(run_id).metrics
    slow = next(r["rank"] for r in out["ranks"] if r["worker"] == slow_worker)
    het = m["heterogeneous"]
    assert sum(het["shares"]) == 8 and het["shares"][slow] < het["shares"][1 - slow]
    assert het["speeds"][slow] < het["speeds"][1 - slow] and len(het["calibration"]) == 2
    assert m["batch_per_rank"] == het["shares"] and m["weights_identical"]
    assert all(s > 0 for s in m["step_s_per_rank"]) and all(t["bytes_sent"] > 0 for t in m["traffic_per_rank"])
    assert [e.data["shares"] for e in tracker.events(run_id, kind="calibration")] == [het["shares"]]
    rows = tracker.worker_stats(run_id)
    assert {r.rank for r in rows} == {0, 1} and all(r.bytes_sent > 0 and r.data["batch"] >= 1 for r in rows)
    assert {r.rank: r.data["batch"] for r in rows} == dict(enumerate(het["shares"]))


def test_calibration_refined_at_each_ranks_share_balances_a_fixed_step_cost() -> None:
    from core.training.schemes.heterogeneous import calibrated_shares

    # step seconds = fixed + per-sample cost; rank 1 is 3x slower in both (a throttled worker)
    fixed, per_sample, slow = 0.02, 0.004, (1.0, 3.0)

    def seconds(batches: list[int]) -> list[float]:
        return [f * (fixed + per_sample * b) for f, b in zip(slow, batches)]

    def time_at(batches: list[int]) -> list[dict[str, float]]:
        return [{"samples_per_s": b / t, "step_s": t} for b, t in zip(batches, seconds(batches))]

    once, speeds, _ = calibrated_shares(time_at, 32, 2, rounds=1)
    assert once == [24, 8] and speeds[0] / speeds[1] == pytest.approx(3.0)  # timed at 16 each
    refined, _, timings = calibrated_shares(time_at, 32, 2, rounds=3)
    assert sum(refined) == 32 and refined[0] > once[0]  # the slow rank's small batch is slower per sample
    spread = lambda b: max(seconds(b)) / min(seconds(b))  # noqa: E731
    assert spread(refined) < spread(once) < spread([16, 16])
    assert len(timings) == 2
