"""The per-rank training function: a custom Keras 3 loop, single-process or Horovod data-parallel.

:func:`train_rank` runs inside a Dask worker (started by :mod:`core.distributed.launcher`, which has already called
``hvd.init()`` for the ``data_parallel`` and ``heterogeneous`` schemes). It reads its own shard of a tile store
(:mod:`core.tiling.store`), normalises bands with the store's train-split statistics, and trains with a masked
cross-entropy (label 0 = unlabelled is ignored; ``dense`` and ``patch`` models) or a binary cross-entropy over
multi-hot targets (``multilabel`` models, :mod:`core.tasks.multilabel`) plus the model's L2 losses. It reads like the
single-process loop plus the lines marked ``# Horovod:``:

- initial weights (and optimizer state on resume) are broadcast from rank 0 (:mod:`core.training.rank_state`); the dropout
  layers' seed states are not: each rank is reseeded from ``seed + rank`` and draws its own masks;
- gradients are averaged with ``hvd.grouped_allreduce(grads, op=hvd.Average)`` before ``apply_gradients`` (Keras 3
  breaks ``hvd.DistributedGradientTape``); with ``heterogeneous`` each rank takes a share of the global batch in
  proportion to its calibrated speed and gradients are weighted by sample count (:mod:`core.training.schemes.heterogeneous`);
- batch-norm moving statistics (non-trainable, updated from each rank's own batches) are averaged across ranks at
  the end of every epoch, so checkpoints and the final weights are identical on every rank;
- the learning rate is scaled by the number of ranks after a linear warm-up, then decays in steps;
- epoch metrics are summed across ranks, per-rank loss, samples/s, step times and traffic are gathered;
- rank 0 alone writes checkpoints (:mod:`core.training.checkpoints`) and database rows; with ``ema_decay`` they hold the
  running average of the weights (:mod:`core.training.weight_average`), which validation uses too.

Every rank runs the same number of steps per epoch (set by the smallest shard), or the collectives would deadlock.
Each step is two compiled functions, the local forward/backward pass and the collective + update, so the compute
time of every rank is measured on its own (and, for demonstrations, stretched by :func:`core.training.schemes.heterogeneous.throttle`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.training.schemes import heterogeneous
from core.tasks import multilabel
from core.training.augment import dihedral
from core.training.checkpoints import copy_dir, restore_checkpoint, save_checkpoint
from core.configs import TrainJobConfig
from core.errors import ConfigError, LabelError
from core.distributed.launcher import mark_first_step, rank_info
from core.models.bundle import ModelMeta
from core.models import MODELS
from core.training.rank_state import broadcast_from_root, reseed
from core.training.telemetry import Telemetry
from core.tiling.store import StoreInfo, TileStore
from core.training.weight_average import WeightAverage

log = logging.getLogger(__name__)

HOROVOD_SCHEMES = ("data_parallel", "heterogeneous")
"""Schemes whose ranks train the same model on their own data with Horovod collectives."""


# ---- pure helpers ------------------------------------------------------------------------------------------------
def base_learning_rate(config: TrainJobConfig) -> float:
    """The learning rate of one worker before scaling by the number of ranks.

    ``config.learning_rate``, except for ``resnet50`` when the default rate is kept: then the ResNet recipe's
    ``0.1 * n / 256`` for a per-worker batch of ``n`` (Goyal et al. 2017), which :func:`learning_rate` scales by
    ``k`` ranks to ``0.1 * k * n / 256``. (Asking for exactly the default rate counts as keeping it.)
    """
    default = TrainJobConfig.model_fields["learning_rate"].default
    if config.model == "resnet50" and config.learning_rate == default:
        return 0.1 * config.batch_size / 256
    return config.learning_rate


def learning_rate(config: TrainJobConfig, size: int, step: int, steps_per_epoch: int) -> float:
    """Learning rate at global ``step`` (0-based) for ``size`` ranks.

    Linear warm-up from ``base`` to ``base * size`` over ``warmup_epochs`` epochs (Goyal et al. 2017; ``base`` from
    :func:`base_learning_rate`), then ``* lr_decay_factor`` at each of the ``lr_decay_at`` fractions of
    ``config.epochs`` (the ResNet paper's 30/60/80 of 100 epochs is ``(0.3, 0.6, 0.8)``, scaled to the epochs
    asked: the boundaries are ``round(f * epochs)``), or else every ``lr_decay_epochs`` epochs.
    """
    base = base_learning_rate(config)
    peak = base * size
    warmup_steps = config.warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return base + (peak - base) * step / warmup_steps
    epoch = step // steps_per_epoch
    if config.lr_decay_at:
        passed = sum(epoch >= round(f * config.epochs) for f in config.lr_decay_at)
        return peak * config.lr_decay_factor ** passed
    if config.lr_decay_epochs:
        return peak * config.lr_decay_factor ** (epoch // config.lr_decay_epochs)
    return peak


def weights_checksum(model: Any) -> str:
    """SHA-256 of all of ``model``'s weights (bytes, in order): equal on ranks that hold identical weights."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def meta_for(config: TrainJobConfig, info: StoreInfo, run_id: int | None) -> ModelMeta:
    """The bundle metadata of a model trained on a store with ``info`` (band stats of its train split)."""
    missing = [m for m in info.modalities if m not in info.band_stats]
    if missing:
        raise ConfigError(f"the tile store has no band statistics for modalities {missing}; training normalises "
                          "with the train split's statistics: re-run the tile job that made the store")
    classes = sorted(info.classes, key=lambda c: int(c["id"]))
    return ModelMeta(model=config.model, task=MODELS[config.model].task, modalities=tuple(info.modalities),
                     sample_size=dict(info.sample_size), class_ids=tuple(int(c["id"]) for c in classes),
                     class_names=tuple(str(c["name"]) for c in classes),
                     class_colors=tuple(str(c["color"]) for c in classes), band_stats=dict(info.band_stats),
                     scene=config.scene, train_run_id=run_id,
                     extra={"model_params": dict(config.model_params), "scheme": config.scheme,
                            **({"label_fraction": config.label_fraction}
                               if MODELS[config.model].task == "multilabel" else {})})


def _load_split(store: TileStore, meta: ModelMeta, split: str, indices: np.ndarray, fraction: float = 0.05
                ) -> tuple[list[np.ndarray], np.ndarray]:
    """Normalised inputs (one float32 array per modality) and targets.

    Targets: labels as output indices (-1 = unlabelled) for ``dense`` / ``patch`` models; for ``multilabel``
    models (N, K + 1) float32: the multi-hot targets of :func:`core.tasks.multilabel.targets` (classes covering at least
    ``fraction`` of a tile's labelled pixels) and, last, a sample weight (0 for a tile with no labelled pixel).
    """
    multi = meta.task == "multilabel"
    if len(indices) == 0:
        return [], (np.zeros((0, len(meta.class_ids) + 1), np.float32) if multi else np.zeros(0, dtype=np.int32))
    xs, y = store.read(split, np.sort(indices))
    lut = np.full(256, -2, dtype=np.int32)
    lut[0] = -1
    lut[list(meta.class_ids)] = np.arange(len(meta.class_ids), dtype=np.int32)
    y_idx = lut[y.astype(np.int64)]
    if (y_idx == -2).any():
        bad = sorted(set(np.unique(y[y_idx == -2]).tolist()))
        raise LabelError(f"label values {bad} in the {split} split of {store.path} are not classes of the store "
                         f"(ids {list(meta.class_ids)}, 0 = unlabelled); re-run the tile job with the scene's classes")
    x_out = [meta.normalise(m, xs[m]) for m in meta.modalities]
    if multi:
        weight = (y_idx >= 0).reshape(len(y_idx), -1).any(axis=1).astype(np.float32)
        return x_out, np.concatenate([multilabel.targets(y, meta.class_ids, fraction), weight[:, None]], axis=1)
    return x_out, y_idx


# ---- the rank function ------------------------------------------------------------------------------------------
def _configure_tf(threads: int) -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TensorFlow already initialised in this worker process by an earlier job: keeps its setting
    return tf


def _loss_fn(task: str, num_classes: int) -> Any:
    """``loss(y, probs) -> (data_loss, denom, stats)`` of a task, as TensorFlow ops.

    ``data_loss`` is a mean over ``denom`` items (labelled pixels or centre labels; weighted tiles for multilabel),
    the count heterogeneous averaging weighs a rank's gradient by. ``stats`` is a float vector summed over batches
    and ranks: ``[correct, counted]`` (multilabel: label bits right, label bits scored), then for multilabel the
    (3, K) true-positive / false-positive / false-negative counts, flattened.
    """
    import keras
    import tensorflow as tf

    def masked(y: Any, probs: Any) -> tuple[Any, Any, Any]:
        mask = tf.cast(y >= 0, tf.float32)
        ce = keras.losses.sparse_categorical_crossentropy(tf.maximum(y, 0), probs)
        counted = tf.reduce_sum(mask)
        loss = tf.reduce_sum(ce * mask) / tf.maximum(counted, 1.0)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, -1, output_type=tf.int32), y), tf.float32) * mask)
        return loss, counted, tf.stack([correct, counted])

    def multi(y: Any, probs: Any) -> tuple[Any, Any, Any]:
        t, w = y[:, :num_classes], y[:, num_classes]
        denom = tf.reduce_sum(w)
        loss = tf.reduce_sum(keras.losses.binary_crossentropy(t, probs) * w) / tf.maximum(denom, 1e-6)
        pred, true, wc = probs >= multilabel.THRESHOLD, t >= multilabel.THRESHOLD, w[:, None]

        def weighted(b: Any) -> Any:
            return tf.reduce_sum(tf.cast(b, tf.float32) * wc, axis=0)

        correct = tf.reduce_sum(weighted(tf.equal(pred, true)))
        counts = [weighted(pred & true), weighted(pred & ~true), weighted(~pred & true)]
        return loss, denom, tf.concat([tf.stack([correct, denom * num_classes]), *counts], axis=0)

    return multi if task == "multilabel" else masked


def _epoch_scores(prefix: str, stats: np.ndarray, class_ids: tuple[int, ...]) -> dict[str, Any]:
    """Multi-label figures of summed ``stats`` (see :func:`_loss_fn`) as epoch-metric keys with ``prefix``."""
    m = multilabel.metrics_from_counts(np.asarray(stats[2:]).reshape(3, -1), class_ids)
    out = {f"{prefix}{k}": v for k, v in m.items() if k != "per_class"}
    out[f"{prefix}per_class_f1"] = {cid: c["f1"] for cid, c in m["per_class"].items()}
    return out


def _worker_row(tracker: Any, run_id: int, r: dict[str, Any], epoch: int) -> None:
    """One ``worker_stats`` row of rank ``r``'s epoch: its telemetry snapshot (as Telemetry.record writes it)."""
    snap = dict(r["telemetry"])
    tracker.worker_stat(run_id, str(r.get("worker") or f"rank-{r['rank']}"), rank=r["rank"], phase="training",
                        bytes_sent=snap.pop("bytes_sent"), bytes_recv=snap.pop("bytes_recv"),
                        cpu_percent=snap.pop("cpu_percent"), peak_mem_bytes=snap.pop("peak_mem_bytes"),
                        samples=int(r["samples"]), epoch=epoch, samples_per_s=r["samples_per_s"],
                        epoch_s=r["epoch_s"], batch=r["batch"], compute_s=r["compute_s"], step_s=r["step_s"],
                        **{k: v for k, v in snap.items() if k not in ("rank", "worker")})


def train_rank(config: dict[str, Any], store_path: str, run_dir: str, run_id: int | None = None,
               db_url: str | None = None, resume_dir: str | None = None) -> dict[str, Any]:
    """Train one rank; returns its summary (identical ``checksum`` on every rank of a data-parallel job).

    Args:
        config: a :class:`TrainJobConfig` as JSON-able dict.
        store_path: the tile store to read (each rank reads ``TileStore.shard("train", rank, size)``; with
            ``heterogeneous`` a random share of the train split in proportion to its batch share).
        run_dir: the run's artefact folder; rank 0 writes ``checkpoints/epoch-NNN``, ``checkpoints/last`` and the
            best model bundle ``model`` there.
        run_id, db_url: where rank 0 records epoch / step events and per-rank statistics (skipped when None).
        resume_dir: a checkpoint folder (``.../checkpoints/last``) to continue from, at its epoch + 1.
    """
    cfg = TrainJobConfig.model_validate(config)
    _configure_tf(cfg.cluster.threads_per_worker)
    hvd: Any = None
    if cfg.scheme in HOROVOD_SCHEMES:
        import horovod.tensorflow as hvd  # Horovod: initialised by the launcher
    rank, size = (hvd.rank(), hvd.size()) if hvd else (0, 1)  # Horovod: this rank's identity
    telemetry = Telemetry(rank, size, worker=str(rank_info().get("worker", ""))).start()
    try:
        return _train(cfg, hvd, rank, size, telemetry, store_path, run_dir, run_id, db_url, resume_dir)
    finally:
        telemetry.stop()


def _train(cfg: TrainJobConfig, hvd: Any, rank: int, size: int, telemetry: Telemetry, store_path: str,
           run_dir: str, run_id: int | None, db_url: str | None, resume_dir: str | None) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    hetero = hvd is not None and cfg.scheme == "heterogeneous"
    keras.utils.set_random_seed(cfg.seed + rank)
    rng = np.random.default_rng(cfg.seed + rank)
    slow = heterogeneous.slowdown()
    tracker = None
    if rank == 0 and run_id is not None and db_url:
        from db.runs import RunTracker

        tracker = RunTracker(db_url)

    store = TileStore(store_path)
    info = store.info
    spec = MODELS[cfg.model]
    if info.mode != spec.store_mode:
        raise ConfigError(f"model {cfg.model!r} trains on a store of {spec.store_mode!r} but {store_path} holds "
                          f"{info.mode!r}: tile with mode={spec.store_mode!r} or pick another model")
    meta = meta_for(cfg, info, run_id)
    train_all = store.valid_indices("train")
    n_train = len(train_all)
    per_rank = n_train // size  # the smallest shard sets the step count, equal on every rank
    if per_rank == 0:
        raise ConfigError(f"the train split of {store_path} has {n_train} samples, fewer than the {size} ranks; "
                          "use fewer workers or a larger area of interest")
    dense, multi, k = spec.task == "dense", spec.task == "multilabel", len(meta.class_ids)

    shapes = {m: tuple(int(d) for d in store.array("train", f"x_{m}").shape[1:]) for m in meta.modalities}
    model = spec.builder(next(iter(shapes.values())) if len(shapes) == 1 else shapes, k, **cfg.model_params)
    if cfg.optimizer == "sgd_nesterov":
        optimizer = keras.optimizers.SGD(learning_rate=cfg.learning_rate, momentum=cfg.momentum, nesterov=True)
    else:
        optimizer = keras.optimizers.Adam(learning_rate=cfg.learning_rate)
    optimizer.build(model.trainable_variables)
    loss_fn = _loss_fn(spec.task, k)

    def inputs(arrs: list[np.ndarray]) -> Any:
        return arrs[0] if len(arrs) == 1 else arrs

    @tf.function
    def compute_grads(x: Any, y: Any) -> tuple[Any, Any, Any, Any]:
        with tf.GradientTape() as tape:
            data_loss, denom, stats = loss_fn(y, model(x, training=True))
            penalties = model.losses  # the builders' L2 terms (none for unet / patch_cnn)
            loss = data_loss + (tf.add_n(penalties) if penalties else 0.0)
        return loss, denom, stats, tape.gradient(loss, model.trainable_variables)

    @tf.function
    def apply_grads(grads: list[Any], denom: Any) -> None:
        if hetero:  # Horovod: sum_r(g_r * n_r) / sum_r(n_r), the large batch's gradient
            grads = heterogeneous.allreduce_weighted(grads, denom, hvd)
        elif hvd:
            grads = hvd.grouped_allreduce(grads, op=hvd.Average)  # Horovod: average gradients across ranks
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

    @tf.function
    def eval_step(x: Any, y: Any) -> tuple[Any, Any, Any]:
        data_loss, denom, stats = loss_fn(y, model(x, training=False))
        return data_loss * denom, denom, stats

    # Heterogeneous: each rank's share of the global batch follows its speed (given, or calibrated here).
    local_batch, speeds, batch_shares, calibration = cfg.batch_size, None, None, None
    if hetero:
        if cfg.worker_speeds:
            speeds = [float(s) for s in cfg.worker_speeds]
        else:
            xs_c, y_c = _load_split(store, meta, "train", train_all[: cfg.batch_size], cfg.label_fraction)
            saved = [v.numpy() for v in model.non_trainable_variables]  # calibration must not move BN statistics

            def time_at(batches: list[int]) -> list[dict[str, float]]:
                reps = np.resize(np.arange(len(y_c)), batches[rank])
                xb_c, yb_c = inputs([x[reps] for x in xs_c]), tf.constant(y_c[reps])
                mine = heterogeneous.samples_per_second(lambda: float(compute_grads(xb_c, yb_c)[0]), batches[rank],
                                                        cfg.calibration_steps, slow)
                return hvd.allgather_object({"rank": rank, **mine}, name="calibration")  # Horovod: all timings

            batch_shares, speeds, calibration = heterogeneous.calibrated_shares(time_at, cfg.batch_size * size, size)
            for v, a in zip(model.non_trainable_variables, saved):
                v.assign(a)
        batch_shares = batch_shares or heterogeneous.shares(speeds, cfg.batch_size * size)
        local_batch = batch_shares[rank]
        my_train = heterogeneous.proportional_shard(train_all, heterogeneous.shares(batch_shares, n_train), rank,
                                                    cfg.seed)
        steps = math.ceil(n_train / (cfg.batch_size * size))
        log.info("rank %d: speeds %s -> batch shares %s", rank, speeds, batch_shares)
    else:
        my_train = store.shard("train", rank, size)
        steps = math.ceil(per_rank / cfg.batch_size)
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    xs_train, y_train = _load_split(store, meta, "train", my_train, cfg.label_fraction)
    xs_val, y_val = _load_split(store, meta, "val", store.shard("val", rank, size), cfg.label_fraction)

    state: dict[str, Any] = {"epoch": 0, "global_step": 0, "best_val": None, "best_epoch": None, "bad_epochs": 0,
                             "history": []}
    average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    if resume_dir and rank == 0:
        state = restore_checkpoint(Path(resume_dir), model, optimizer)
        if average:
            average.restore(Path(resume_dir))  # the bundle holds the average, raw_weights.npz the raw weights
    if hvd:
        state = hvd.broadcast_object(state, 0, name="resume_state")  # Horovod: rank 0's loop state
        # Horovod: rank 0's weights (and their average), not its dropout seeds
        broadcast_from_root(model, optimizer, hvd, telemetry, average.variables if average else ())
    reseed(model, cfg.seed, rank, int(state["global_step"]))  # each rank its own dropout masks
    if tracker and hetero:
        tracker.event(run_id, "calibration", phase="training", speeds=speeds, shares=batch_shares,
                      calibration=calibration, given=bool(cfg.worker_speeds))

    def global_sum(values: list[float]) -> np.ndarray:
        if hvd:  # Horovod: sum over ranks
            arr = tf.constant(values, tf.float64)
            telemetry.allreduce(arr, op="allreduce_metrics")
            return np.asarray(hvd.allreduce(arr, op=hvd.Sum, name="metrics").numpy())
        return np.asarray(values, dtype=np.float64)

    def sync_statistics() -> None:
        """Average the float non-trainable weights (batch-norm moving mean / variance) over the ranks."""
        stats_vars = [v for v in model.non_trainable_weights if "float" in str(v.dtype)]
        if not hvd or not stats_vars:
            return
        values = [tf.convert_to_tensor(v) for v in stats_vars]
        telemetry.allreduce(values, op="allreduce_bn_stats")
        if hetero:  # Horovod: weighted by batch share, like the gradients
            values = heterogeneous.allreduce_weighted(values, float(local_batch), hvd, name="bn_stats")
        else:
            values = hvd.grouped_allreduce(values, op=hvd.Average, name="bn_stats")  # Horovod: mean over ranks
        for v, a in zip(stats_vars, values):
            v.assign(a)

    run_dir_p = Path(run_dir)
    ckpt_dir = run_dir_p / "checkpoints"
    start_epoch = int(state["epoch"]) + 1
    global_step = int(state["global_step"])
    n_local = len(y_train)
    first_step = global_step
    epochs_run: list[int] = []
    samples_done, t_steady, samples_steady = 0, 0.0, 0
    steady_steps: list[tuple[float, float]] = []  # (compute s, step s) of every step after the first
    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs + 1):
        perm = rng.permutation(n_local)
        loss_total, stats_sum = 0.0, None
        t_epoch = time.perf_counter()
        t_window, samples_window = time.perf_counter(), 0
        epoch_compute, epoch_step = 0.0, 0.0
        for step in range(steps):
            idx = np.sort(perm[(step * local_batch + np.arange(local_batch)) % n_local])
            xb, yb = [x[idx] for x in xs_train], y_train[idx]
            if cfg.augment:
                xb, yb = (multilabel.augment(xb, rng), yb) if multi else dihedral(xb, yb, dense, rng)
            if multi and cfg.mixup_alpha > 0:
                xb, yb, _ = multilabel.mixup(xb, yb, cfg.mixup_alpha, rng)
            optimizer.learning_rate = learning_rate(cfg, size, global_step, steps)
            t0 = time.perf_counter()
            loss, denom, stats, grads = compute_grads(inputs(xb), tf.constant(yb))
            loss_v = float(loss)
            heterogeneous.throttle(time.perf_counter() - t0, slow)  # a deliberately slow worker (demos only)
            t_compute = time.perf_counter() - t0
            apply_grads(grads, denom)
            if average:
                average.update(global_step)
            telemetry.allreduce([*grads, *([denom] if hetero else [])])
            dt = time.perf_counter() - t0
            epoch_compute, epoch_step = epoch_compute + t_compute, epoch_step + dt
            if global_step == first_step:
                mark_first_step()  # the first step includes tracing: kept out of the steady-state rate
            else:
                t_steady += dt
                steady_steps.append((t_compute, dt))
                samples_steady += local_batch
            loss_total += loss_v
            stats_sum = stats.numpy().astype(np.float64) + (0 if stats_sum is None else stats_sum)
            samples_done += local_batch
            samples_window += local_batch
            global_step += 1
            if global_step % cfg.log_every == 0:
                now = time.perf_counter()
                mine = {"rank": rank, "loss": loss_v, "samples_per_s": samples_window / max(now - t_window, 1e-9),
                        "compute_s": t_compute, "step_s": dt, "batch": local_batch}
                ranks = hvd.allgather_object(mine, name="step_stats") if hvd else [mine]  # Horovod: gather
                t_window, samples_window = now, 0
                if tracker:
                    tracker.event(run_id, "step", phase="training", epoch=epoch, step=global_step, ranks=ranks,
                                  loss=float(np.mean([r["loss"] for r in ranks])),
                                  samples_per_s=float(sum(r["samples_per_s"] for r in ranks)))
        sync_statistics()
        epoch_s = time.perf_counter() - t_epoch
        # ranks' mean losses weighted by their batch (equal batches: the plain mean over ranks)
        totals = global_sum([loss_total / steps * local_batch, float(local_batch), *stats_sum])
        train_loss, train_acc = totals[0] / totals[1], totals[2] / max(totals[3], 1.0)

        if average:
            average.swap()  # validation, early stopping and the checkpoint use the averaged weights
        vsum = None
        for b in range(0, len(y_val), cfg.batch_size):
            sl = slice(b, b + cfg.batch_size)
            v_loss, v_denom, v_stats = eval_step(inputs([x[sl] for x in xs_val]), tf.constant(y_val[sl]))
            row = np.concatenate([[float(v_loss), float(v_denom)], v_stats.numpy().astype(np.float64)])
            vsum = row if vsum is None else vsum + row
        vtot = global_sum(list(vsum if vsum is not None else np.zeros(2 + len(stats_sum))))
        has_val = vtot[1] > 0
        val_loss = float(vtot[0] / vtot[1]) if has_val else None
        val_acc = float(vtot[2] / max(vtot[3], 1.0)) if has_val else None
        metrics = {"epoch": epoch, "loss": float(train_loss), "accuracy": float(train_acc), "val_loss": val_loss,
                   "val_accuracy": val_acc, "lr": float(learning_rate(cfg, size, global_step - 1, steps)),
                   "epoch_s": epoch_s}
        if multi:
            metrics.update(_epoch_scores("", totals[2:], meta.class_ids))
            if has_val:
                metrics.update(_epoch_scores("val_", vtot[2:], meta.class_ids))
        state["history"].append(metrics)
        # Early stopping and the kept model follow the validation loss. Without validation samples (a date split
        # holding out only a test date) every epoch runs and the last is kept, as Keras' EarlyStopping does.
        improved = val_loss is None or state["best_val"] is None or val_loss < state["best_val"] - 1e-7
        if improved:
            state["best_val"], state["best_epoch"], state["bad_epochs"] = val_loss, epoch, 0
        else:
            state["bad_epochs"] += 1
        state["epoch"], state["global_step"] = epoch, global_step
        epochs_run.append(epoch)
        mine = {"rank": rank, **rank_info(), "samples": samples_done, "epoch_s": epoch_s, "batch": local_batch,
                "samples_per_s": steps * local_batch / max(epoch_s, 1e-9), "compute_s": epoch_compute / steps,
                "step_s": epoch_step / steps, "telemetry": telemetry.snapshot()}
        ranks = hvd.allgather_object(mine, name="epoch_stats") if hvd else [mine]  # Horovod: gather
        if rank == 0:  # Horovod: rank 0 alone writes checkpoints and rows
            epoch_meta = dataclasses.replace(meta, epoch=epoch)
            here = save_checkpoint(ckpt_dir / f"epoch-{epoch:03d}", model, optimizer, epoch_meta, state)
            if average:
                average.save_raw(here)
            copy_dir(here, ckpt_dir / "last")
            if improved:
                copy_dir(here, run_dir_p / "model")
            if tracker:
                tracker.event(run_id, "epoch", phase="training", epoch=epoch,
                              ranks=[{k_: r[k_] for k_ in ("rank", "batch", "compute_s", "step_s", "samples_per_s")}
                                     for r in ranks], **{k_: v for k_, v in metrics.items() if k_ != "epoch"})
                tracker.progress(run_id, "training", epoch, cfg.epochs, loss=metrics["loss"], val_loss=val_loss)
                for r in ranks:
                    _worker_row(tracker, run_id, r, epoch)
        if average:
            average.swap()  # back to the raw weights
        log.info("rank %d epoch %d: %s", rank, epoch, metrics)
        if state["bad_epochs"] >= cfg.patience:
            stopped_early = True
            break

    return {
        "rank": rank, "size": size, "checksum": weights_checksum(model), "start_epoch": start_epoch,
        "epochs_run": epochs_run, "last_epoch": int(state["epoch"]), "stopped_early": stopped_early,
        "history": state["history"], "best_val": state["best_val"], "best_epoch": state["best_epoch"],
        "steps_per_epoch": steps, "samples": samples_done, "task": spec.task,
        "samples_per_s": samples_steady / t_steady if t_steady > 0 else None,
        "batch": local_batch, "speeds": speeds, "shares": batch_shares, "calibration": calibration,
        # medians over the steady steps: robust to bursts of load from other processes on a shared machine
        "step_s": float(np.median([s for _, s in steady_steps])) if steady_steps else None,
        "compute_s": float(np.median([c for c, _ in steady_steps])) if steady_steps else None,
        "slowdown": slow, "telemetry": telemetry.snapshot(),
        "optimizer_iterations": int(optimizer.iterations.numpy()), **rank_info(),
    }
