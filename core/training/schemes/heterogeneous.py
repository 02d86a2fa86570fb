"""Heterogeneous data parallelism (the balanced-gradient paper): batch shares by speed, gradients weighted by count.

On a cluster whose workers differ in speed, plain data parallelism gives every rank the same batch, so each step
waits for the slowest rank. Here each rank's share of every global batch is proportional to its measured speed
(:func:`shares`), so all ranks finish a step together, and each rank's gradient is weighted by the number of samples
its loss averaged over before the ranks' gradients are combined (:func:`weighted_average`; on real ranks
:func:`allreduce_weighted`: ``sum_r(g_r * n_r) / sum_r(n_r)``). For a loss that is a mean over samples this is
exactly the gradient of the one large batch of all ranks' samples (batch-norm statistics aside: they are per rank).

Speed comes from a short calibration (:func:`samples_per_second` of a few timed gradient steps on each rank,
allgathered) or from ``TrainJobConfig.worker_speeds``. For demonstrations and tests, a worker process can be made
slower on purpose: with ``WORKBENCH_SLOWDOWN=f`` in its environment, :func:`throttle` sleeps ``(f - 1)`` times the
compute time of each step, which is what a worker ``f`` times slower would take (see benchmarks/heterogeneous.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from core.training import loop as _loop
from core.training.schemes.api import Reduction, SchemeSpec, register_scheme
from core.training.throttle import SLOWDOWN_ENV, slowdown, throttle

log = logging.getLogger(__name__)

__all__ = [
    "SLOWDOWN_ENV",
    "allreduce_weighted",
    "calibrated_shares",
    "proportional_shard",
    "samples_per_second",
    "shares",
    "slowdown",
    "throttle",
    "weighted_average",
]


def shares(speeds: Sequence[float], global_batch: int) -> list[int]:
    """Split ``global_batch`` samples between ranks in proportion to their speeds (largest-remainder method).

    Each rank gets ``floor(global_batch * s_r / sum(s))``; the samples left over go one each to the ranks with the
    largest remainders (ties: lower rank first). A rank that would get 0 gets 1, taken from the largest share, so
    every rank takes part in every step. A faster rank never gets fewer samples than a slower one.

    Args:
        speeds: relative speed of each rank (samples/s or any positive unit).
        global_batch: samples per step, all ranks together; at least one per rank.

    Returns:
        Samples per step for each rank, in rank order; they sum to ``global_batch``.
    """
    s = np.asarray(list(speeds), dtype=np.float64)
    if len(s) == 0 or not np.all(np.isfinite(s)) or s.min() <= 0:
        raise ValueError(f"speeds {list(speeds)} must be one positive, finite value per rank")
    if global_batch < len(s):
        raise ValueError(
            f"global batch {global_batch} is smaller than the {len(s)} ranks: every rank needs at least "
            f"one sample per step; use a batch of at least {len(s)}"
        )
    quota = global_batch * s / s.sum()
    out = np.floor(quota).astype(np.int64)
    order = sorted(range(len(s)), key=lambda r: (-(quota[r] - out[r]), r))
    for r in order[: global_batch - int(out.sum())]:
        out[r] += 1
    while out.min() < 1:  # from the largest share (the slowest of equal ones, so faster never gets fewer)
        donor = min(np.flatnonzero(out == out.max()), key=lambda r: (s[r], -r))
        out[donor] -= 1
        out[int(np.argmin(out))] += 1
    return [int(v) for v in out]


def calibrated_shares(
    time_at: Callable[[list[int]], list[dict[str, float]]], global_batch: int, size: int, rounds: int = 2
) -> tuple[list[int], list[float], list[dict[str, float]]]:
    """Batch shares from timed steps, refined where each rank will run.

    Round 1 times every rank at an equal share; each further round times every rank at the share the previous round
    gave it and splits again by the speeds measured there. A step has a fixed cost besides its per-sample cost, so a
    slow rank's samples/s measured at 16 samples overstates its speed at 8: timed at one size only, the shares leave
    too much work on the slow rank (measured with ``python -m benchmarks.heterogeneous --rounds 3``, resnet50
    width 16, one rank 3x slow: one timing round gave shares 24/8 and 1.22x over plain data parallelism, two
    rounds 27/5 and 1.54x; the ideal is 2x).

    Args:
        time_at: ``batches -> one {"samples_per_s", "step_s", ...} per rank`` for the given per-rank batches (in
            training each rank times its own share and the results are gathered: a collective).
        global_batch: samples per step, all ranks together.
        size: number of ranks.
        rounds: timing rounds (>= 1); it stops early when the shares no longer change.

    Returns:
        ``(shares, speeds, timings)``: the shares to train with, the speeds they come from, the last round's timings.
    """
    batches = shares([1.0] * size, global_batch)
    for _ in range(max(1, rounds)):
        timings = time_at(batches)
        speeds = [float(t["samples_per_s"]) for t in timings]
        new = shares(speeds, global_batch)
        if new == batches:
            break
        batches = new
    return new, speeds, timings


def weighted_average(grads_per_rank: Sequence[Sequence[np.ndarray]], counts: Sequence[float]) -> list[np.ndarray]:
    """``sum_r(grads_r * n_r) / sum_r(n_r)`` per variable: the large-batch gradient from per-rank mean gradients.

    Args:
        grads_per_rank: for each rank, its list of gradient arrays (same shapes on every rank).
        counts: samples each rank's loss averaged over (its share of the batch).
    """
    n = np.asarray(list(counts), dtype=np.float64)
    if len(n) != len(grads_per_rank) or n.sum() <= 0 or n.min() < 0:
        raise ValueError(
            f"counts {list(counts)} must give one non-negative count per rank "
            f"({len(grads_per_rank)} ranks), not all zero"
        )
    return [
        sum(np.asarray(g[i], dtype=np.float64) * w for g, w in zip(grads_per_rank, n)) / n.sum()
        for i in range(len(grads_per_rank[0]))
    ]


def allreduce_weighted(grads: Sequence[Any], count: Any, hvd: Any, name: str = "weighted_grads") -> list[Any]:
    """The Horovod form of :func:`weighted_average`, on this rank's ``grads`` (tensors) and ``count`` (scalar).

    One grouped allreduce (op Sum) of ``[g * count for g in grads] + [count]``, then a division by the summed
    count. Call inside the training step on every rank (a collective).
    """
    import tensorflow as tf

    n = tf.cast(count, tf.float32)
    summed = hvd.grouped_allreduce(
        [g * tf.cast(n, g.dtype) for g in grads] + [tf.reshape(n, [1])], op=hvd.Sum, name=name
    )  # Horovod: sum of count-weighted gradients
    total = tf.maximum(summed[-1][0], 1e-12)
    return [g / tf.cast(total, g.dtype) for g in summed[:-1]]


def proportional_shard(indices: np.ndarray, counts: Sequence[int], rank: int, seed: int = 0) -> np.ndarray:
    """Rank ``rank``'s part of ``indices`` when rank r gets ``counts[r]`` of them (same ``seed`` on every rank).

    The indices are shuffled with ``seed`` and cut into consecutive runs of ``counts[r]``, so each rank holds a
    random, disjoint sample of the split in proportion to its share; returned sorted (cheaper store reads).
    """
    if sum(counts) != len(indices):
        raise ValueError(f"counts {list(counts)} sum to {sum(counts)}, not to the {len(indices)} indices to split")
    perm = np.random.default_rng(seed).permutation(np.asarray(indices))
    start = int(sum(counts[:rank]))
    return np.sort(perm[start : start + int(counts[rank])])


def samples_per_second(
    step: Callable[[], Any], batch: int, steps: int, factor: float | None = None
) -> dict[str, float]:
    """Calibrate this rank: one untimed ``step()`` (tracing), then ``steps`` timed ones, throttled like training.

    The speed is ``batch`` over the *median* step time, so a burst of load from other processes on a shared
    machine during one or two of the timed steps does not skew the shares.

    Args:
        step: runs one forward and backward pass of ``batch`` samples and returns once it is computed (no
            collective: ranks calibrate independently).

    Returns:
        ``{"samples_per_s", "step_s", "steps", "batch"}`` (step_s: median seconds per timed step).
    """
    step()
    times = []
    for _ in range(steps):
        ts = time.perf_counter()
        step()
        throttle(time.perf_counter() - ts, factor)
        times.append(time.perf_counter() - ts)
    median = max(float(np.median(times)), 1e-9)
    return {"samples_per_s": batch / median, "step_s": median, "steps": float(steps), "batch": float(batch)}


# ---- the scheme ---------------------------------------------------------------------------------------------------
def calibrated_plan(t: Any) -> Any:
    """The heterogeneous plan of :class:`core.training.loop.RankTrainer` ``t``: batch shares by speed (given or
    calibrated on every rank), a random train share in proportion, steps of the whole split's global batches."""
    import tensorflow as tf

    cfg, rank, size = t.cfg, t.rank, t.size
    global_batch = cfg.batch_size * size
    batch_shares, speeds, calibration = None, None, None
    if cfg.worker_speeds:
        speeds = [float(s) for s in cfg.worker_speeds]
    else:
        xs_c, y_c = _loop._load_split(t.store, t.meta, "train", t.train_all[: cfg.batch_size], cfg.label_fraction)
        saved = [v.numpy() for v in t.model.non_trainable_variables]  # calibration must not move BN statistics

        def time_at(batches: list[int]) -> list[dict[str, float]]:
            reps = np.resize(np.arange(len(y_c)), batches[rank])
            xb_c, yb_c = t.inputs([x[reps] for x in xs_c]), tf.constant(y_c[reps])
            mine = samples_per_second(
                lambda: float(t.compute_grads(xb_c, yb_c)[0]), batches[rank], cfg.calibration_steps, t.slow
            )
            return t.hvd.allgather_object({"rank": rank, **mine}, name="calibration")  # Horovod: all timings

        batch_shares, speeds, calibration = calibrated_shares(time_at, global_batch, size)
        for v, a in zip(t.model.non_trainable_variables, saved):
            v.assign(a)
    batch_shares = batch_shares or shares(speeds, global_batch)
    mine = proportional_shard(t.train_all, shares(batch_shares, t.n_train), rank, cfg.seed)
    return _loop.BatchPlan(
        batch_shares[rank],
        mine,
        math.ceil(t.n_train / global_batch),
        speeds=speeds,
        shares=batch_shares,
        calibration=calibration,
        given=bool(cfg.worker_speeds),
    )


def _check(model: str, num_workers: int, worker_speeds: Sequence[float] | None) -> None:
    if num_workers < 2:
        raise ValueError(
            "scheme 'heterogeneous' balances work between workers of different speed; it needs "
            "num_workers >= 2 (use 'single' for one worker)"
        )
    if worker_speeds is not None and (len(worker_speeds) != num_workers or min(worker_speeds) <= 0):
        raise ValueError(
            f"worker_speeds {list(worker_speeds)} must give one positive speed per worker ({num_workers} workers)"
        )


def _allreduce_weighted(values: Sequence[Any], weight: Any, hvd: Any, name: str) -> list[Any]:
    return allreduce_weighted(values, weight, hvd, name="weighted_grads" if name == "grads" else name)


SCHEME = register_scheme(
    SchemeSpec(
        name="heterogeneous",
        description="Horovod ranks with batch shares by measured speed, gradients weighted by "
        "sample count (balanced-gradient data parallelism)",
        rank_fn=_loop.train_rank,
        uses_horovod=True,
        check=_check,
        plan=calibrated_plan,
        reduction=Reduction(_allreduce_weighted, sends_weight=True),
        options=("worker_speeds", "calibration_steps"),
        order=20,
    )
)
