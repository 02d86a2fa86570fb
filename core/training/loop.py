"""The per-rank training function of the data-parallel schemes: a custom Keras 3 loop, in named phases.

:func:`train_rank` runs inside a Dask worker (started by :mod:`core.distributed.launcher`, which has already called
``hvd.init()`` when the scheme uses Horovod). It reads its own share of a tile store (:mod:`core.tiling.store`),
normalises bands with the store's train-split statistics, and trains with the task's loss (:func:`_loss`) plus the
model's L2 losses. The scheme (:mod:`core.training.schemes`) says how the ranks' gradients are combined
(:class:`core.training.schemes.api.Reduction`) and how the global batch is split between them (its ``plan``:
:func:`equal_shards`, or the heterogeneous scheme's calibrated shares). :class:`RankTrainer` runs the phases; they
read like the single-process loop plus the lines marked ``# Horovod:``:

- initial weights (and optimizer state on resume) are broadcast from rank 0 (:mod:`core.training.rank_state`); the
  dropout layers' seed states are not: each rank is reseeded from ``seed + rank`` and draws its own masks;
- gradients are combined by the scheme's reduction before ``apply_gradients`` (Keras 3 breaks
  ``hvd.DistributedGradientTape``);
- batch-norm moving statistics (non-trainable, updated from each rank's own batches) are combined the same way at
  the end of every epoch, so checkpoints and the final weights are identical on every rank;
- the learning rate is scaled by the number of ranks after a linear warm-up, then decays in steps
  (:mod:`core.training.schedule`);
- epoch metrics are summed across ranks, per-rank loss, samples/s, step times and traffic are gathered;
- rank 0 alone writes checkpoints (:mod:`core.training.checkpoints`) and reports step / epoch events, progress and
  per-rank statistics (:class:`core.distributed.events.Reporter`); with ``ema_decay`` checkpoints hold the running
  average of the weights (:mod:`core.training.weight_average`), which validation uses too.

Every rank runs the same number of steps per epoch (set by the smallest shard), or the collectives would deadlock.
Each step is two compiled functions, the local forward/backward pass and the collective + update, so the compute
time of every rank is measured on its own (and, for demonstrations, stretched by
:func:`core.training.throttle.throttle`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.distributed.events import Reporter
from core.distributed.launcher import mark_first_step, rank_info
from core.errors import ConfigError, LabelError
from core.models import get_model
from core.models.bundle import ModelMeta
from core.sampling.augment import random_windows, window_side
from core.tasks import get_task
from core.tasks.dense import class_weights
from core.tasks.multilabel import mixup
from core.tiling.store import StoreInfo, TileStore
from core.training.budget import StepPlan, plan_steps
from core.training.checkpoints import copy_dir, restore_checkpoint, save_checkpoint
from core.training.config import TrainJobConfig
from core.training.rank_state import broadcast_from_root, reseed
from core.training.schedule import base_learning_rate, learning_rate, make_optimizer
from core.training.schemes.api import SchemeSpec, get_scheme
from core.training.telemetry import Telemetry
from core.training.throttle import slowdown, throttle
from core.training.weight_average import WeightAverage
from core.writable import writes_to

log = logging.getLogger(__name__)

__all__ = [
    "BatchPlan",
    "RankTrainer",
    "base_learning_rate",
    "equal_shards",
    "learning_rate",
    "meta_for",
    "train_rank",
    "weights_checksum",
]


# ---- pure helpers ------------------------------------------------------------------------------------------------
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
        raise ConfigError(
            f"the tile store has no band statistics for modalities {missing}; training normalises "
            "with the train split's statistics: re-run the tile job that made the store"
        )
    classes = sorted(info.classes, key=lambda c: int(c["id"]))
    task = get_task(get_model(config.model).task)
    return ModelMeta(
        model=config.model,
        task=task.name,
        modalities=tuple(info.modalities),
        sample_size=dict(info.sample_size),
        class_ids=tuple(int(c["id"]) for c in classes),
        class_names=tuple(str(c["name"]) for c in classes),
        class_colors=tuple(str(c["color"]) for c in classes),
        band_stats=dict(info.band_stats),
        scene=config.scene,
        train_run_id=run_id,
        extra={
            "model_params": dict(config.model_params),
            "scheme": config.scheme,
            **(task.meta_extra(config) if task.meta_extra else {}),
        },
    )


def _load_split(
    store: TileStore, meta: ModelMeta, split: str, indices: np.ndarray, fraction: float = 0.05
) -> tuple[list[np.ndarray], np.ndarray]:
    """Normalised inputs (one float32 array per modality) and targets.

    Targets: labels as output indices (-1 = unlabelled) for ``dense`` / ``patch`` models; for ``multilabel``
    models (N, K + 1) float32: the multi-hot targets of :func:`core.tasks.multilabel.targets` (classes covering at least
    ``fraction`` of a tile's labelled pixels) and, last, a sample weight (0 for a tile with no labelled pixel).
    """
    task = get_task(meta.task)
    if len(indices) == 0:
        return [], task.targets(np.zeros((0,), np.uint8), np.zeros(0, np.int32), meta.class_ids, fraction)
    xs, y = store.read(split, np.sort(indices))
    lut = np.full(256, -2, dtype=np.int32)
    lut[0] = -1
    lut[list(meta.class_ids)] = np.arange(len(meta.class_ids), dtype=np.int32)
    y_idx = lut[y.astype(np.int64)]
    if (y_idx == -2).any():
        bad = sorted(set(np.unique(y[y_idx == -2]).tolist()))
        raise LabelError(
            f"label values {bad} in the {split} split of {store.path} are not classes of the store "
            f"(ids {list(meta.class_ids)}, 0 = unlabelled); re-run the tile job with the scene's classes"
        )
    x_out = [meta.normalise(m, xs[m]) for m in meta.modalities]
    return x_out, task.targets(y, y_idx, meta.class_ids, fraction)


# ---- the phases ---------------------------------------------------------------------------------------------------
def _configure_tf(threads: int) -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TensorFlow already initialised in this worker process by an earlier job: keeps its setting
    return tf


def _worker_row(reporter: Reporter, r: dict[str, Any], epoch: int) -> None:
    """One ``worker_stats`` row of rank ``r``'s epoch: its telemetry snapshot (as Telemetry.record reports it)."""
    snap = dict(r["telemetry"])
    reporter.worker_stat(
        str(r.get("worker") or f"rank-{r['rank']}"),
        rank=r["rank"],
        phase="training",
        bytes_sent=snap.pop("bytes_sent"),
        bytes_recv=snap.pop("bytes_recv"),
        cpu_percent=snap.pop("cpu_percent"),
        peak_mem_bytes=snap.pop("peak_mem_bytes"),
        samples=int(r["samples"]),
        epoch=epoch,
        samples_per_s=r["samples_per_s"],
        epoch_s=r["epoch_s"],
        batch=r["batch"],
        compute_s=r["compute_s"],
        step_s=r["step_s"],
        **{k: v for k, v in snap.items() if k not in ("rank", "worker")},
    )


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """How a rank takes part in every step: its batch, its samples of the train split and the steps per epoch.

    ``speeds`` / ``shares`` / ``calibration``: the heterogeneous scheme's measured or given speeds, the batch
    shares of all ranks and the calibration timings (None for equal shards); ``given``: speeds came from the config.
    """

    local_batch: int
    indices: np.ndarray
    steps: int
    speeds: list[float] | None = None
    shares: list[int] | None = None
    calibration: list[dict[str, float]] | None = None
    given: bool = False


def equal_shards(t: RankTrainer) -> BatchPlan:
    """The default plan: ``config.batch_size`` per rank, ``TileStore.shard`` of the train split."""
    return BatchPlan(t.cfg.batch_size, t.store.shard("train", t.rank, t.size), math.ceil(t.per_rank / t.cfg.batch_size))


def train_rank(
    config: dict[str, Any],
    store_path: str,
    run_dir: str,
    run_id: int | None = None,
    resume_dir: str | None = None,
    *,
    scheme: SchemeSpec | None = None,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Train one rank; returns its summary (identical ``checksum`` on every rank of a data-parallel job).

    Args:
        config: a :class:`TrainJobConfig` as JSON-able dict.
        store_path: the tile store to read (each rank reads the share its scheme's ``plan`` gives it).
        run_dir: the run's artefact folder; rank 0 writes ``checkpoints/epoch-NNN``, ``checkpoints/last`` and the
            best model bundle ``model`` there.
        run_id: the run that trains the model (recorded in the bundle's meta).
        resume_dir: a checkpoint folder (``.../checkpoints/last``) to continue from, at its epoch + 1.
        scheme: the resolved scheme (sent by the driver; default: the registry's ``config["scheme"]``).
        reporter: where rank 0 reports step / epoch events, progress and per-rank statistics (default: nowhere).
    """
    cfg = TrainJobConfig.model_validate(config)
    spec = scheme or get_scheme(cfg.scheme)
    _configure_tf(cfg.cluster.threads_per_worker)
    hvd: Any = None
    if spec.uses_horovod:
        hvd = importlib.import_module("horovod.tensorflow")  # Horovod: initialised by the launcher
    rank, size = (hvd.rank(), hvd.size()) if hvd else (0, 1)  # Horovod: this rank's identity
    telemetry = Telemetry(rank, size, worker=str(rank_info().get("worker", ""))).start()
    try:
        trainer = RankTrainer(cfg, spec, hvd, rank, size, telemetry, reporter or Reporter(), store_path, run_id)
        return trainer.run(Path(run_dir), Path(resume_dir) if resume_dir else None)
    finally:
        telemetry.stop()


class RankTrainer:
    """One rank's training job, phase by phase: data, model and steps (here), plan, restore, epochs, summary.

    Attributes a scheme's ``plan(trainer)`` may read: ``cfg``, ``rank``, ``size``, ``hvd``, ``store``, ``meta``,
    ``train_all`` (valid train indices), ``n_train``, ``per_rank``, ``slow`` (slowdown factor), ``model``,
    ``compute_grads(x, y)`` (a compiled forward / backward pass) and ``inputs(arrays)``.
    """

    def __init__(
        self,
        cfg: TrainJobConfig,
        scheme: SchemeSpec,
        hvd: Any,
        rank: int,
        size: int,
        telemetry: Telemetry,
        reporter: Reporter,
        store_path: str,
        run_id: int | None,
    ) -> None:
        import keras

        self.cfg, self.scheme, self.hvd, self.rank, self.size = cfg, scheme, hvd, rank, size
        self.telemetry, self.reporter = telemetry, reporter
        self.reduction = scheme.reduction if hvd else None
        keras.utils.set_random_seed(cfg.seed + rank)
        self.rng = np.random.default_rng(cfg.seed + rank)
        self.slow = slowdown()
        self._open_store(store_path, run_id)
        self._build()

    # ---- setup ---------------------------------------------------------------------------------------------------
    def _open_store(self, store_path: str, run_id: int | None) -> None:
        cfg = self.cfg
        self.store = TileStore(store_path)
        info = self.store.info
        self.model_spec = get_model(cfg.model)
        mode = self.model_spec.store_mode
        if info.mode != mode:
            raise ConfigError(
                f"model {cfg.model!r} trains on a store of {mode!r} but {store_path} holds "
                f"{info.mode!r}: tile with mode={mode!r} or pick another model"
            )
        self.meta = meta_for(cfg, info, run_id)
        self.train_all = self.store.valid_indices("train")
        self.n_train = len(self.train_all)
        self.per_rank = self.n_train // self.size  # the smallest shard sets the step count, equal on every rank
        if self.per_rank == 0:
            raise ConfigError(
                f"the train split of {store_path} has {self.n_train} samples, fewer than the "
                f"{self.size} ranks; use fewer workers or a larger area of interest"
            )
        self.task = self.model_spec.task
        self.weights = None
        if cfg.class_weights and get_task(self.task).class_weighted:
            counts = info.class_counts.get("train") or {}
            self.weights = class_weights([int(counts.get(str(c), 0)) for c in self.meta.class_ids])

    def _build(self) -> None:
        import tensorflow as tf

        store, meta = self.store, self.meta
        shapes = {m: tuple(int(d) for d in store.array("train", f"x_{m}").shape[1:]) for m in meta.modalities}
        k = len(meta.class_ids)
        self.model = model = self.model_spec.builder(
            next(iter(shapes.values())) if len(shapes) == 1 else shapes, k, **self.cfg.model_params
        )
        self.optimizer = optimizer = make_optimizer(self.cfg)
        optimizer.build(model.trainable_variables)
        task = get_task(self.task)
        loss_fn = task.make_loss(k) if self.weights is None else task.make_loss(k, self.weights)
        reduction, hvd = self.reduction, self.hvd
        self.window: int | None = None  # random training windows: dense models that take any tile size
        self.align = self.model_spec.context_for(self.cfg.model_params).align
        if self.cfg.random_windows and task.random_windows and len(shapes) == 1:
            (shape,) = shapes.values()
            if model.inputs[0].shape[1] is None and shape[0] == shape[1]:
                self.window = window_side(shape[0], self.align)

        @tf.function
        def compute_grads(x: Any, y: Any) -> tuple[Any, Any, Any, Any]:
            with tf.GradientTape() as tape:
                data_loss, denom, stats = loss_fn(y, model(x, training=True))
                penalties = model.losses  # the builders' L2 terms (none for unet / patch_cnn)
                loss = data_loss + (tf.add_n(penalties) if penalties else 0.0)
            return loss, denom, stats, tape.gradient(loss, model.trainable_variables)

        @tf.function
        def apply_grads(grads: list[Any], denom: Any) -> None:
            if reduction:  # Horovod: the scheme combines the ranks' gradients
                grads = reduction.reduce(grads, denom, hvd, "grads")
            optimizer.apply_gradients(zip(grads, model.trainable_variables))

        @tf.function
        def eval_step(x: Any, y: Any) -> tuple[Any, Any, Any]:
            data_loss, denom, stats = loss_fn(y, model(x, training=False))
            return data_loss * denom, denom, stats

        self.compute_grads, self.apply_grads, self.eval_step = compute_grads, apply_grads, eval_step

    @staticmethod
    def inputs(arrs: list[np.ndarray]) -> Any:
        return arrs[0] if len(arrs) == 1 else arrs

    def _plan(self) -> BatchPlan:
        """The scheme's plan with its steps per epoch (validation round) from :func:`plan_steps`."""
        plan = (self.scheme.plan or equal_shards)(self)
        global_batch = sum(plan.shares) if plan.shares else plan.local_batch * self.size
        self.steps: StepPlan = plan_steps(self.cfg, self.n_train, global_batch, plan.steps)
        return dataclasses.replace(plan, steps=self.steps.steps_per_epoch)

    def _restore(self, resume_dir: Path | None) -> dict[str, Any]:
        """Loop state (rank 0's checkpoint on resume), weights broadcast from rank 0, per-rank dropout seeds."""
        state: dict[str, Any] = {
            "epoch": 0,
            "global_step": 0,
            "best_val": None,
            "best_epoch": None,
            "bad_epochs": 0,
            "history": [],
        }
        self.average = WeightAverage(self.model, self.cfg.ema_decay) if self.cfg.ema_decay > 0 else None
        if resume_dir and self.rank == 0:
            state = restore_checkpoint(resume_dir, self.model, self.optimizer)
            if self.average:
                self.average.restore(resume_dir)  # the bundle holds the average, raw_weights.npz the raw weights
        if self.hvd:
            state = self.hvd.broadcast_object(state, 0, name="resume_state")  # Horovod: rank 0's loop state
            # Horovod: rank 0's weights (and their average), not its dropout seeds
            broadcast_from_root(
                self.model, self.optimizer, self.hvd, self.telemetry, self.average.variables if self.average else ()
            )
        reseed(self.model, self.cfg.seed, self.rank, int(state["global_step"]))  # each rank its own dropout masks
        return state

    # ---- the run -------------------------------------------------------------------------------------------------
    def run(self, run_dir: Path, resume_dir: Path | None) -> dict[str, Any]:
        """Plan, restore, train round by round until the planned epochs or early stopping; returns the summary."""
        cfg, store = self.cfg, self.store
        self.plan = plan = self._plan()
        log.info("rank %d: speeds %s -> batch shares %s", self.rank, plan.speeds, plan.shares)
        self.xs_train, self.y_train = _load_split(store, self.meta, "train", plan.indices, cfg.label_fraction)
        self.xs_val, self.y_val = _load_split(
            store, self.meta, "val", store.shard("val", self.rank, self.size), cfg.label_fraction
        )
        self.state = state = self._restore(resume_dir)
        if self.rank == 0 and plan.shares:
            self.reporter.event(
                "calibration",
                phase="training",
                speeds=plan.speeds,
                shares=plan.shares,
                calibration=plan.calibration,
                given=plan.given,
            )
        self.start_epoch, self.global_step = int(state["epoch"]) + 1, int(state["global_step"])
        self.first_step, self.samples_done, self.t_steady, self.samples_steady = self.global_step, 0, 0.0, 0
        self.steady_steps: list[tuple[float, float]] = []  # (compute s, step s) of every step after the first
        self.epochs_run: list[int] = []
        stopped_early = False
        for epoch in range(self.start_epoch, self.steps.epochs + 1):
            if self._epoch(epoch, run_dir):
                stopped_early = True
                break
        return self._summary(stopped_early)

    def _epoch(self, epoch: int, run_dir: Path) -> bool:
        """Train, validate, keep and report one epoch; True when early stopping ends the run."""
        train = self._train_epoch(epoch)
        self._sync_statistics()
        if self.average:
            self.average.swap()  # validation, early stopping and the checkpoint use the averaged weights
        metrics, improved = self._validate(epoch, train)
        self.epochs_run.append(epoch)
        ranks = self._gather_epoch_stats(train)
        if self.rank == 0:  # Horovod: rank 0 alone writes checkpoints and reports
            self._save(epoch, run_dir, improved)
            self._report_epoch(epoch, metrics, ranks)
        if self.average:
            self.average.swap()  # back to the raw weights
        log.info("rank %d epoch %d: %s", self.rank, epoch, metrics)
        return self.state["bad_epochs"] >= self.steps.patience

    def _batch(self, perm: np.ndarray, step: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Step ``step``'s batch of this rank's samples (permuted), augmented as the config asks."""
        cfg, rng, b = self.cfg, self.rng, self.plan.local_batch
        idx = np.sort(perm[(step * b + np.arange(b)) % len(self.y_train)])
        xb, yb = [x[idx] for x in self.xs_train], self.y_train[idx]
        task = get_task(self.task)
        if cfg.augment:
            xb, yb = task.augment(xb, yb, rng)
        if self.window is not None:  # a random window inside each tile: new samples at every step
            xb, yb, _ = random_windows(xb, yb, self.window, self.align, rng)
        if task.mixup and cfg.mixup_alpha > 0:
            xb, yb, _ = mixup(xb, yb, cfg.mixup_alpha, rng)
        return xb, yb

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        """The epoch's steps; returns this rank's sums (loss, stats, compute and step seconds, wall time)."""
        import tensorflow as tf

        cfg, plan = self.cfg, self.plan
        perm = self.rng.permutation(len(self.y_train))
        out: dict[str, Any] = {"loss": 0.0, "stats": None, "compute_s": 0.0, "step_s": 0.0}
        t_epoch = time.perf_counter()
        self._window = (time.perf_counter(), 0)
        for step in range(plan.steps):
            xb, yb = self._batch(perm, step)
            self.optimizer.learning_rate = learning_rate(
                cfg, self.size, self.global_step, plan.steps, self.steps.total_steps
            )
            t0 = time.perf_counter()
            loss, denom, stats, grads = self.compute_grads(self.inputs(xb), tf.constant(yb))
            loss_v = float(loss)
            throttle(time.perf_counter() - t0, self.slow)  # a deliberately slow worker (demos only)
            t_compute = time.perf_counter() - t0
            self.apply_grads(grads, denom)
            if self.average:
                self.average.update(self.global_step)
            sends_weight = self.reduction is not None and self.reduction.sends_weight
            self.telemetry.allreduce([*grads, *([denom] if sends_weight else [])])
            dt = time.perf_counter() - t0
            out["compute_s"] += t_compute
            out["step_s"] += dt
            out["loss"] += loss_v
            out["stats"] = stats.numpy().astype(np.float64) + (0 if out["stats"] is None else out["stats"])
            self._count_step(t_compute, dt)
            if self.global_step % cfg.log_every == 0:
                self._report_step(epoch, loss_v, t_compute, dt)
        out["epoch_s"] = time.perf_counter() - t_epoch
        return out

    def _count_step(self, t_compute: float, dt: float) -> None:
        b = self.plan.local_batch
        if self.global_step == self.first_step:
            mark_first_step()  # the first step includes tracing: kept out of the steady-state rate
        else:
            self.t_steady += dt
            self.steady_steps.append((t_compute, dt))
            self.samples_steady += b
        self.samples_done += b
        self._window = (self._window[0], self._window[1] + b)
        self.global_step += 1

    def _report_step(self, epoch: int, loss: float, t_compute: float, dt: float) -> None:
        """Every rank's loss and rate since the last report, gathered; rank 0 reports them."""
        now = time.perf_counter()
        t_window, samples_window = self._window
        mine = {
            "rank": self.rank,
            "loss": loss,
            "samples_per_s": samples_window / max(now - t_window, 1e-9),
            "compute_s": t_compute,
            "step_s": dt,
            "batch": self.plan.local_batch,
        }
        ranks = self.hvd.allgather_object(mine, name="step_stats") if self.hvd else [mine]  # Horovod: gather
        self._window = (now, 0)
        if self.rank == 0:
            self.reporter.event(
                "step",
                phase="training",
                epoch=epoch,
                step=self.global_step,
                ranks=ranks,
                loss=float(np.mean([r["loss"] for r in ranks])),
                samples_per_s=float(sum(r["samples_per_s"] for r in ranks)),
            )

    def _global_sum(self, values: list[float]) -> np.ndarray:
        import tensorflow as tf

        if self.hvd:  # Horovod: sum over ranks
            arr = tf.constant(values, tf.float64)
            self.telemetry.allreduce(arr, op="allreduce_metrics")
            return np.asarray(self.hvd.allreduce(arr, op=self.hvd.Sum, name="metrics").numpy())
        return np.asarray(values, dtype=np.float64)

    def _sync_statistics(self) -> None:
        """Combine the float non-trainable weights (batch-norm moving mean / variance) over the ranks."""
        import tensorflow as tf

        stats_vars = [v for v in self.model.non_trainable_weights if "float" in str(v.dtype)]
        if self.reduction is None or not stats_vars:
            return
        values = [tf.convert_to_tensor(v) for v in stats_vars]
        self.telemetry.allreduce(values, op="allreduce_bn_stats")
        # Horovod: as the gradients (weighted by batch share for the heterogeneous scheme)
        values = self.reduction.reduce(values, float(self.plan.local_batch), self.hvd, "bn_stats")
        for v, a in zip(stats_vars, values):
            v.assign(a)

    def _validate(self, epoch: int, train: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Epoch metrics (train sums and validation over all ranks) and early-stopping state; returns (metrics,
        improved)."""
        import tensorflow as tf

        cfg, steps, b, state = self.cfg, self.plan.steps, self.plan.local_batch, self.state
        # ranks' mean losses weighted by their batch (equal batches: the plain mean over ranks)
        totals = self._global_sum([train["loss"] / steps * b, float(b), *train["stats"]])
        vsum = None
        for i in range(0, len(self.y_val), cfg.batch_size):
            sl = slice(i, i + cfg.batch_size)
            v_loss, v_denom, v_stats = self.eval_step(
                self.inputs([x[sl] for x in self.xs_val]), tf.constant(self.y_val[sl])
            )
            row = np.concatenate([[float(v_loss), float(v_denom)], v_stats.numpy().astype(np.float64)])
            vsum = row if vsum is None else vsum + row
        vtot = self._global_sum(list(vsum if vsum is not None else np.zeros(2 + len(train["stats"]))))
        has_val = vtot[1] > 0
        val_loss = float(vtot[0] / vtot[1]) if has_val else None
        metrics = {
            "epoch": epoch,
            "loss": float(totals[0] / totals[1]),
            "accuracy": float(totals[2] / max(totals[3], 1.0)),
            "val_loss": val_loss,
            "val_accuracy": float(vtot[2] / max(vtot[3], 1.0)) if has_val else None,
            "lr": float(learning_rate(cfg, self.size, self.global_step - 1, steps, self.steps.total_steps)),
            "epoch_s": train["epoch_s"],
        }
        epoch_scores = get_task(self.task).epoch_scores
        if epoch_scores is not None:
            metrics.update(epoch_scores("", totals[2:], self.meta.class_ids))
            if has_val:
                metrics.update(epoch_scores("val_", vtot[2:], self.meta.class_ids))
        state["history"].append(metrics)
        # Early stopping and the kept model follow the validation loss. Without validation samples (a date split
        # holding out only a test date) every epoch runs and the last is kept, as Keras' EarlyStopping does.
        improved = val_loss is None or state["best_val"] is None or val_loss < state["best_val"] - 1e-7
        if self.steps.budget and epoch <= cfg.warmup_epochs:
            # a budget-sized job's warm-up rounds are kept but never the best: their weights come before the rate
            # peaks, and on a shifted validation split (houston_crop) the loss rises as the model learns
            state["best_epoch"], state["bad_epochs"] = epoch, 0
            state["epoch"], state["global_step"] = epoch, self.global_step
            return metrics, True
        if improved:
            state["best_val"], state["best_epoch"], state["bad_epochs"] = val_loss, epoch, 0
        else:
            state["bad_epochs"] += 1
        state["epoch"], state["global_step"] = epoch, self.global_step
        return metrics, improved

    def _gather_epoch_stats(self, train: dict[str, Any]) -> list[dict[str, Any]]:
        steps, b = self.plan.steps, self.plan.local_batch
        mine = {
            "rank": self.rank,
            **rank_info(),
            "samples": self.samples_done,
            "epoch_s": train["epoch_s"],
            "batch": b,
            "samples_per_s": steps * b / max(train["epoch_s"], 1e-9),
            "compute_s": train["compute_s"] / steps,
            "step_s": train["step_s"] / steps,
            "telemetry": self.telemetry.snapshot(),
        }
        return self.hvd.allgather_object(mine, name="epoch_stats") if self.hvd else [mine]  # Horovod: gather

    def _save(self, epoch: int, run_dir: Path, improved: bool) -> None:
        """Rank 0: the epoch's checkpoint, ``checkpoints/last`` and (when it improved) the ``model`` bundle."""
        ckpt_dir = run_dir / "checkpoints"
        epoch_meta = dataclasses.replace(self.meta, epoch=epoch)
        with writes_to(ckpt_dir, "the training checkpoint"):  # a full or read-only disk, said with path and fix
            here = save_checkpoint(ckpt_dir / f"epoch-{epoch:03d}", self.model, self.optimizer, epoch_meta, self.state)
            if self.average:
                self.average.save_raw(here)
            copy_dir(here, ckpt_dir / "last")
            if improved:
                copy_dir(here, run_dir / "model")

    def _report_epoch(self, epoch: int, metrics: dict[str, Any], ranks: list[dict[str, Any]]) -> None:
        """Rank 0: the epoch event, the training progress and one worker row per rank."""
        keys = ("rank", "batch", "compute_s", "step_s", "samples_per_s")
        self.reporter.event(
            "epoch",
            phase="training",
            epoch=epoch,
            ranks=[{k: r[k] for k in keys} for r in ranks],
            **{k: v for k, v in metrics.items() if k != "epoch"},
        )
        self.reporter.progress("training", epoch, self.steps.epochs, loss=metrics["loss"], val_loss=metrics["val_loss"])
        for r in ranks:
            _worker_row(self.reporter, r, epoch)

    def _summary(self, stopped_early: bool) -> dict[str, Any]:
        state, plan, steady = self.state, self.plan, self.steady_steps
        return {
            "rank": self.rank,
            "size": self.size,
            "checksum": weights_checksum(self.model),
            "start_epoch": self.start_epoch,
            "epochs_run": self.epochs_run,
            "last_epoch": int(state["epoch"]),
            "stopped_early": stopped_early,
            "history": state["history"],
            "best_val": state["best_val"],
            "best_epoch": state["best_epoch"],
            "steps_per_epoch": plan.steps,
            "planned_steps": self.steps.total_steps,
            "steps_run": self.global_step,
            "step_budget": self.steps.budget,
            "class_weights": None if self.weights is None else [float(w) for w in self.weights],
            "window": self.window,
            "samples": self.samples_done,
            "task": self.task,
            "samples_per_s": self.samples_steady / self.t_steady if self.t_steady > 0 else None,
            "batch": plan.local_batch,
            "speeds": plan.speeds,
            "shares": plan.shares,
            "calibration": plan.calibration,
            # medians over the steady steps: robust to bursts of load from other processes on a shared machine
            "step_s": float(np.median([s for _, s in steady])) if steady else None,
            "compute_s": float(np.median([c for c, _ in steady])) if steady else None,
            "slowdown": self.slow,
            "telemetry": self.telemetry.snapshot(),
            "optimizer_iterations": int(self.optimizer.iterations.numpy()),
            **rank_info(),
        }
