"""Model parallelism of the two-stream CNN on three Horovod ranks: training, gradient check and timed inference.

Rank 0 runs the RGB branch, rank 1 the HSI branch (the store's two modalities: ``rgb`` first when present), rank 2
(:data:`FUSION_RANK`) the fusion and classifier and reads the labels. The split (``baseline`` / ``optimized``) says
which layers each rank holds (:mod:`core.models.two_stream`).

Horovod has no send/recv (STACK.md), so activations move with one ``hvd.alltoall`` with splits: each branch rank
sends its flattened batch activations to the fusion rank (splits ``[0, 0, n]``), the fusion rank sends nothing and
receives both, in rank order. The op runs inside ``tf.GradientTape`` and its gradient is the reverse alltoall, so
the gradients of the activations flow back to the branch ranks. Two details keep the ranks in step:

- every rank takes part in both collectives: the branch ranks differentiate a ``0 * sum(received)`` proxy through
  the op, the fusion rank differentiates with respect to its (empty) send buffer too;
- the reverse alltoall is written out in a ``tf.custom_gradient`` with a fixed name, because Horovod's registered
  gradient names its op after the gradient tensor, which differs between the ranks' graphs (Horovod matches
  collectives across ranks by name).

Each rank applies its own optimizer to its own variables. All ranks draw the same batches and augmentations (same
seed) and call the same collectives in the same order. Telemetry counts the bytes of the tensors each rank sends
and receives per step (ops ``activations`` and ``gradients``), CPU and peak memory; the fusion rank reports
``worker_stats`` rows per epoch for every rank, the epoch / step events, and, after gathering the branch weights,
the bundle of the whole two-stream model (:func:`core.models.bundle.save_bundle`), so a model-parallel run predicts like
any other run. Resuming a model-parallel run is not supported.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.distributed.events import Reporter
from core.distributed.launcher import mark_first_step, rank_info, run_horovod
from core.errors import ConfigError, LabelError
from core.models import get_model, list_models
from core.models.bundle import ModelMeta, load_bundle, save_bundle
from core.models.two_stream import (
    activation_shape,
    build_branch_part,
    build_fusion_part,
    build_two_stream,
    set_weights_by_layer,
    weights_by_layer,
)
from core.sampling.augment import dihedral
from core.tiling.store import TileStore
from core.training.budget import plan_steps
from core.training.checkpoints import copy_dir
from core.training.config import TrainJobConfig
from core.training.loop import _configure_tf, meta_for, weights_checksum
from core.training.schedule import learning_rate, make_optimizer
from core.training.schemes.api import SchemeSpec, register_scheme
from core.training.telemetry import Telemetry, nbytes

log = logging.getLogger(__name__)


def split_models() -> list[str]:
    """The registered models with branches to split over ranks (:attr:`core.models.ModelSpec.branches`)."""
    return [m for m in list_models() if get_model(m).branches]


"""The multi-branch models this scheme splits (one branch per rank)."""
MODEL_PARALLEL_RANKS = 3  # RGB branch, HSI branch, fusion + classifier
FUSION_RANK = 2
"""The rank that runs fusion + classifier, reads the labels, writes bundles and reports."""


def branch_modalities(modalities: Sequence[str]) -> tuple[str, str]:
    """The modalities of rank 0 and rank 1: ``rgb`` first when present, else the store's order."""
    if len(modalities) != 2:
        raise ConfigError(
            f"model parallelism splits the two-stream CNN by modality, but the store holds "
            f"{list(modalities)}; tile the scene with two modalities (e.g. rgb and hsi)"
        )
    a, b = sorted(modalities, key=lambda m: m != "rgb")
    return a, b


class SplitRank:
    """This rank's part of the split two-stream model and the collective steps that connect it to the others.

    Every step is a collective: all ranks call the same method in the same order with batches of the same size
    (branch ranks pass their modality's normalised patches (B, h, w, C), the fusion rank int32 labels (B,) as
    output indices, -1 = unlabelled; for :meth:`predict` any (B,) array).
    """

    def __init__(
        self,
        shapes: Mapping[str, tuple[int, ...]],
        num_classes: int,
        split: str,
        params: dict[str, Any],
        rank: int,
        optimizer: Any = None,
    ) -> None:
        """``shapes``: ``{modality: (h, w, C)}`` in the whole model's input order (the bundle's modalities); the
        branch ranks follow :func:`branch_modalities`, and the fusion part concatenates in the model's order."""
        import horovod.tensorflow as hvd
        import tensorflow as tf

        self.tf, self.hvd, self.rank, self.size = tf, hvd, rank, hvd.size()
        if self.size != MODEL_PARALLEL_RANKS:
            raise ConfigError(f"model parallelism runs on {MODEL_PARALLEL_RANKS} ranks, not {self.size}")
        self.modalities = list(branch_modalities(list(shapes)))  # rank order: what the alltoall delivers
        self.model_order = list(shapes)
        self.role = self.modalities[rank] if rank != FUSION_RANK else "fusion"
        width, blocks = int(params.get("width", 8)), int(params.get("blocks", 3))
        self.act_shapes = [activation_shape(shapes[m], split, width, blocks) for m in self.modalities]
        if self.role == "fusion":
            self.part = build_fusion_part(shapes, num_classes, split, **params)
        else:
            self.part = build_branch_part(self.role, shapes[self.role], split, **params)
        self.optimizer = optimizer
        if optimizer is not None:
            optimizer.build(self.part.trainable_variables)
        self._grads = tf.function(lambda d: self._step(d, "mp.train", apply=False), reduce_retracing=True)
        self._train = tf.function(lambda d: self._step(d, "mp.train", apply=True), reduce_retracing=True)
        self._forward = tf.function(lambda d: self._infer(d, "mp.infer"), reduce_retracing=True)

    # ---- collectives ------------------------------------------------------------------------------------------------
    def _exchange(self, flat: Any, name: str) -> Any:
        """Send ``flat`` (1-D) to the fusion rank; returns what this rank receives (empty on branch ranks)."""
        tf, hvd = self.tf, self.hvd
        splits = tf.one_hot(FUSION_RANK, self.size, dtype=tf.int32) * tf.size(flat)

        @tf.custom_gradient
        def move(x: Any) -> Any:
            out, rsplits = hvd.alltoall(x, splits=splits, name=f"{name}.fwd", ignore_name_scope=True)  # Horovod

            def grad(dy: Any) -> Any:  # Horovod: the reverse alltoall, under a name equal on every rank
                back, _ = hvd.alltoall(dy, splits=rsplits, name=f"{name}.bwd", ignore_name_scope=True)
                return back

            return out, grad

        return move(flat)

    def _nothing(self, data: Any) -> Any:
        """The fusion rank's empty send buffer, derived from the step's input: a constant one would let Grappler
        constant-fold the collective (Horovod ops are not marked stateful), run it once while optimising the graph,
        and replay its result on later calls while the branch ranks wait."""
        return self.tf.cast(self.tf.reshape(data, [-1])[:0], self.tf.float32)

    def _unpack(self, received: Any, batch: Any) -> list[Any]:
        tf = self.tf
        sizes = [batch * int(np.prod(s)) for s in self.act_shapes]
        parts = {
            m: tf.reshape(p, [batch, *s])
            for m, p, s in zip(self.modalities, tf.split(received, sizes), self.act_shapes)
        }
        return [parts[m] for m in self.model_order]  # rank order -> the fusion part's (= whole model's) order

    def _step(self, data: Any, name: str, apply: bool) -> dict[str, Any]:
        tf = self.tf
        variables = self.part.trainable_variables
        if self.role != "fusion":
            with tf.GradientTape() as tape:
                flat = tf.reshape(self.part(data, training=True), [-1])
                received = self._exchange(flat, name)
                proxy = 0.0 * tf.reduce_sum(received)  # Horovod: differentiate through the op, or the peers hang
            grads = tape.gradient(proxy, [flat, *variables])
            out = {"sent": flat, "recv": grads[0]}
        else:
            empty = self._nothing(data)
            with tf.GradientTape() as tape:
                tape.watch(empty)  # Horovod: makes the reverse alltoall run on this rank too
                received = self._exchange(empty, name)
                probs = self.part(self._unpack(received, tf.shape(data)[0]), training=True)
                loss, correct, counted = _masked_loss(tf, data, probs)
            grads = tape.gradient(loss, [received, empty, *variables])
            out = {
                "sent": grads[0],
                "recv": received,
                "loss": loss,
                "correct": correct,
                "counted": counted,
                "empty_grad": grads[1],
            }
            grads = grads[1:]
        if apply:
            self.optimizer.apply_gradients(zip(grads[1:], variables))
        out["grads"] = grads[1:]
        return out

    def _infer(self, data: Any, name: str) -> dict[str, Any]:
        tf = self.tf
        if self.role != "fusion":
            flat = tf.reshape(self.part(data, training=False), [-1])
            return {"sent": flat, "recv": self._exchange(flat, name)}
        empty = self._nothing(data)
        received = self._exchange(empty, name)
        return {
            "sent": empty,
            "recv": received,
            "probs": self.part(self._unpack(received, tf.shape(data)[0]), training=False),
        }

    # ---- public steps ----------------------------------------------------------------------------------------------
    def gradients(self, data: np.ndarray) -> dict[str, Any]:
        """One forward + backward pass (training mode) without an update: ``{"grads": [...], "sent", "recv", ...}``."""
        return self._grads(data)

    def train(self, data: np.ndarray) -> dict[str, Any]:
        """One training step: forward, backward and this rank's optimizer update."""
        return self._train(data)

    def predict(self, data: np.ndarray) -> dict[str, Any]:
        """One forward pass (inference mode); the fusion rank's result holds ``probs`` (B, K)."""
        return self._forward(data)


def _masked_loss(tf: Any, y: Any, probs: Any) -> tuple[Any, Any, Any]:
    import keras

    mask = tf.cast(y >= 0, tf.float32)
    ce = keras.losses.sparse_categorical_crossentropy(tf.maximum(y, 0), probs)
    counted = tf.reduce_sum(mask)
    correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, -1, output_type=tf.int32), y), tf.float32) * mask)
    return tf.reduce_sum(ce * mask) / tf.maximum(counted, 1.0), correct, counted


def _count(tele: Telemetry, out: dict[str, Any]) -> None:
    """Telemetry: the exact bytes this rank sent and received through the step's collectives."""
    fusion = tele.rank == FUSION_RANK
    tele.add("activations", 0 if fusion else nbytes(out["sent"]), nbytes(out["recv"]) if fusion else 0)
    tele.add("gradients", nbytes(out["sent"]) if fusion else 0, 0 if fusion else nbytes(out["recv"]))


def _load(store: TileStore, meta: ModelMeta, split: str, indices: np.ndarray, role: str) -> np.ndarray:
    """What ``role`` needs of samples ``indices`` (any order, repeats allowed): normalised patches or label indices."""
    if len(indices) == 0:
        return np.zeros(0, dtype=np.int32)
    uniq, inverse = np.unique(indices, return_inverse=True)
    if role != "fusion":
        x = np.asarray(store.array(split, f"x_{role}").get_orthogonal_selection((uniq,)))
        return meta.normalise(role, x)[inverse]
    y = np.asarray(store.array(split, "y").get_orthogonal_selection((uniq,)))
    lut = np.full(256, -2, dtype=np.int32)
    lut[0] = -1
    lut[list(meta.class_ids)] = np.arange(len(meta.class_ids), dtype=np.int32)
    y_idx = lut[y.astype(np.int64)]
    if (y_idx == -2).any():
        raise LabelError(
            f"label values {sorted(set(np.unique(y[y_idx == -2]).tolist()))} in the {split} split of "
            f"{store.path} are not classes of the store (ids {list(meta.class_ids)}); re-tile the scene"
        )
    return y_idx[inverse]


def _shapes(store: TileStore, modalities: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    return {m: tuple(int(d) for d in store.array("train", f"x_{m}").shape[1:]) for m in modalities}  # type: ignore


# ---- rank functions -------------------------------------------------------------------------------------------------
def mp_gradients_rank(
    full_weights: dict[str, list[np.ndarray]],
    input_shapes: dict[str, tuple[int, int, int]],
    num_classes: int,
    model_params: dict[str, Any],
    split: str,
    batch: dict[str, np.ndarray],
) -> dict[str, Any]:
    """Rank function for checks: one forward / backward pass of the split model on ``batch``, no update.

    Args:
        full_weights: :func:`weights_by_layer` of a whole two-stream model built with the same parameters.
        input_shapes: ``{modality: (h, w, C)}`` (rank order follows :func:`branch_modalities`).
        batch: ``{modality: (B, h, w, C)}`` normalised patches and ``"y"``: (B,) int32 output indices.

    Returns:
        ``{"rank", "role", "grads": {variable path: array}, "bytes_sent", "bytes_recv", "loss"}`` (loss on the
        fusion rank only, else None).
    """
    tf = _configure_tf(1)
    import horovod.tensorflow as hvd

    rank = hvd.rank()
    worker = SplitRank({m: tuple(s) for m, s in input_shapes.items()}, num_classes, split, model_params, rank)
    set_weights_by_layer(worker.part, full_weights, strict=True)
    tele = Telemetry(rank, hvd.size())
    data = batch["y"].astype(np.int32) if worker.role == "fusion" else batch[worker.role].astype(np.float32)
    out = worker.gradients(tf.constant(data))
    _count(tele, out)
    return {
        "rank": rank,
        "role": worker.role,
        "loss": float(out["loss"]) if "loss" in out else None,
        "grads": {v.path: np.asarray(g) for v, g in zip(worker.part.trainable_variables, out["grads"])},
        "bytes_sent": tele.bytes_sent,
        "bytes_recv": tele.bytes_recv,
    }


def mp_train_rank(
    config: dict[str, Any],
    store_path: str,
    run_dir: str,
    run_id: int | None = None,
    resume_dir: str | None = None,
    *,
    scheme: Any = None,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Train this rank's part of the split two-stream model (run by :func:`run_horovod` with 3 ranks).

    Args: as :func:`core.training.loop.train_rank` (``resume_dir`` must be None). The fusion rank writes
    ``checkpoints/epoch-NNN`` and ``checkpoints/last`` (bundles of the whole model) and ``model`` (best epoch), and
    reports the step / epoch events, progress and every rank's statistics.

    Returns:
        This rank's summary: the keys of :func:`core.training.loop.train_rank`'s summary (``checksum`` is the whole
        assembled model's, equal on every rank; ``samples_per_s`` is this rank's third of the pipeline rate, as every
        sample passes all three ranks) plus ``role``, ``bytes_sent``, ``bytes_recv`` and ``bytes_per_step``.
    """
    cfg = TrainJobConfig.model_validate(config)
    if resume_dir:
        raise ConfigError(
            f"resume_from={cfg.resume_from}: resuming is not supported for scheme 'model_parallel'; start a new run"
        )
    tf = _configure_tf(cfg.cluster.threads_per_worker)
    import horovod.tensorflow as hvd

    trainer = _MPTrainer(cfg, tf, hvd, store_path, run_id, reporter or Reporter())
    try:
        return trainer.run(Path(run_dir))
    finally:
        trainer.tele.stop()


class _MPTrainer:
    """One rank of a model-parallel training job, phase by phase (every phase is a collective)."""

    def __init__(
        self, cfg: TrainJobConfig, tf: Any, hvd: Any, store_path: str, run_id: int | None, reporter: Reporter
    ) -> None:
        import keras

        self.cfg, self.tf, self.hvd, self.reporter = cfg, tf, hvd, reporter
        self.rank, self.size = rank, size = hvd.rank(), hvd.size()  # Horovod: this rank's role follows from its rank
        keras.utils.set_random_seed(cfg.seed + rank)
        self.rng = np.random.default_rng(cfg.seed)  # Horovod: one seed on every rank: the same batches, augmentations
        store = TileStore(store_path)
        if store.info.mode != "patches":
            raise ConfigError(
                f"model {cfg.model!r} trains on a store of 'patches' but {store_path} holds {store.info.mode!r}"
            )
        self.meta = meta = meta_for(cfg, store.info, run_id)
        shapes = _shapes(store, meta.modalities)
        self.worker = SplitRank(
            shapes, len(meta.class_ids), cfg.mp_split, dict(cfg.model_params), rank, make_optimizer(cfg)
        )
        self.role = role = self.worker.role
        self.train_n = len(train_idx := store.valid_indices("train"))
        self.val_n = len(val_idx := store.valid_indices("val"))
        self.train, self.val = _load(store, meta, "train", train_idx, role), _load(store, meta, "val", val_idx, role)
        per_pass = math.ceil(self.train_n / cfg.batch_size)
        self.plan = plan_steps(cfg, self.train_n, cfg.batch_size, per_pass)  # epochs or the step budget
        self.steps = self.plan.steps_per_epoch
        self.tele = Telemetry(rank, size, worker=rank_info().get("worker", "")).start()
        self.writer = rank == FUSION_RANK  # Horovod: the fusion rank holds the metrics, writes bundles, reports
        self.full = build_two_stream(shapes, len(meta.class_ids), **cfg.model_params) if self.writer else None
        self.state: dict[str, Any] = {"best_val": None, "best_epoch": None, "bad_epochs": 0, "history": []}
        self.epochs_run: list[int] = []
        self.global_step, self.t_steady, self.samples_steady = 0, 0.0, 0
        self.checksum = ""

    def run(self, run_dir: Path) -> dict[str, Any]:
        stopped_early = False
        for epoch in range(1, self.plan.epochs + 1):
            if self._epoch(epoch, run_dir):
                stopped_early = True
                break
        self.tele.stop()
        return self._summary(stopped_early)

    def _epoch(self, epoch: int, run_dir: Path) -> bool:
        """Train, validate, assemble, save and report one epoch; True when early stopping ends the run."""
        t_epoch, traffic0 = time.perf_counter(), (self.tele.bytes_sent, self.tele.bytes_recv)
        sums = self._train_epoch(epoch)
        epoch_s = time.perf_counter() - t_epoch
        step_traffic = [
            (self.tele.bytes_sent - traffic0[0]) / self.steps,
            (self.tele.bytes_recv - traffic0[1]) / self.steps,
        ]
        metrics = self._metrics(epoch, sums, self._validate(), epoch_s)
        improved = self._early_stopping(epoch, metrics)
        self._assemble_and_save(epoch, run_dir, improved)
        stats = {
            **self.tele.snapshot(),
            **rank_info(),
            "role": self.role,
            "epoch_s": epoch_s,
            "bytes_per_step_sent": step_traffic[0],
            "bytes_per_step_recv": step_traffic[1],
        }
        self.step_traffic = step_traffic
        per_rank = self.hvd.allgather_object(stats, name="mp.stats")  # Horovod: every rank's telemetry to the writer
        if self.writer:
            self._report_epoch(epoch, metrics, per_rank)
        log.info("rank %d (%s) epoch %d: %s", self.rank, self.role, epoch, metrics)
        return self.state["bad_epochs"] >= self.plan.patience

    def _train_epoch(self, epoch: int) -> np.ndarray:
        """The epoch's steps; returns the fusion rank's (loss, correct, counted) sums (zeros elsewhere)."""
        cfg, tf, bs, role = self.cfg, self.tf, self.cfg.batch_size, self.role
        perm = self.rng.permutation(self.train_n)
        sums = np.zeros(3)
        for step in range(self.steps):
            idx = perm[(step * bs + np.arange(bs)) % self.train_n]
            xs, y = ([], self.train[idx]) if role == "fusion" else ([self.train[idx]], np.zeros(0, np.int32))
            if cfg.augment:  # the same draws on every rank keep the two modalities' patches aligned
                xs, y = dihedral(xs, y, False, self.rng)
            self.worker.optimizer.learning_rate = learning_rate(
                cfg, 1, self.global_step, self.steps, self.plan.total_steps
            )
            t0 = time.perf_counter()
            out = self.worker.train(tf.constant(y if role == "fusion" else xs[0]))
            _count(self.tele, out)
            if role == "fusion":
                sums += (float(out["loss"]), float(out["correct"]), float(out["counted"]))
            if self.global_step == 0:
                mark_first_step()
            else:
                self.t_steady, self.samples_steady = self.t_steady + time.perf_counter() - t0, self.samples_steady + bs
            self.global_step += 1
            if self.writer and self.global_step % cfg.log_every == 0:
                self.reporter.event(
                    "step",
                    phase="training",
                    epoch=epoch,
                    step=self.global_step,
                    loss=float(out["loss"]),
                    samples_per_s=bs / max(time.perf_counter() - t0, 1e-9),
                )
        return sums

    def _validate(self) -> np.ndarray:
        tf, bs = self.tf, self.cfg.batch_size
        vsum = np.zeros(3)
        for b in range(0, self.val_n, bs):
            out = self.worker.predict(tf.constant(self.val[b : b + bs]))
            _count(self.tele, out)
            if self.role == "fusion":
                loss, correct, counted = _masked_loss(tf, tf.constant(self.val[b : b + bs]), out["probs"])
                vsum += (float(loss) * float(counted), float(correct), float(counted))
        return vsum

    def _metrics(self, epoch: int, sums: np.ndarray, vsum: np.ndarray, epoch_s: float) -> dict[str, Any]:
        metrics = None
        if self.role == "fusion":
            metrics = {
                "epoch": epoch,
                "loss": sums[0] / self.steps,
                "accuracy": sums[1] / max(sums[2], 1.0),
                "val_loss": vsum[0] / vsum[2] if vsum[2] else None,
                "val_accuracy": vsum[1] / vsum[2] if vsum[2] else None,
                "lr": float(learning_rate(self.cfg, 1, self.global_step - 1, self.steps, self.plan.total_steps)),
                "epoch_s": epoch_s,
            }
        return self.hvd.broadcast_object(metrics, root_rank=FUSION_RANK, name="mp.metrics")  # Horovod: to all

    def _early_stopping(self, epoch: int, metrics: dict[str, Any]) -> bool:
        state = self.state
        state["history"].append(metrics)
        val_loss = metrics["val_loss"]  # none without validation samples: every epoch runs, the last is kept
        improved = val_loss is None or state["best_val"] is None or val_loss < state["best_val"] - 1e-7
        if improved:
            state.update(best_val=val_loss, best_epoch=epoch, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        self.epochs_run.append(epoch)
        return improved

    def _assemble_and_save(self, epoch: int, run_dir: Path, improved: bool) -> None:
        """Gather the branch parts' weights; the fusion rank assembles the whole model and saves its bundles."""
        mine = weights_by_layer(self.worker.part) if self.role != "fusion" else {}
        parts = self.hvd.allgather_object(mine, name="mp.weights")  # Horovod: every part to every rank
        self.tele.add(
            "checkpoint", nbytes(mine) * (self.size - 1), sum(nbytes(p) for i, p in enumerate(parts) if i != self.rank)
        )
        if self.full is None:
            return
        set_weights_by_layer(
            self.full, {k: v for p in parts for k, v in p.items()} | weights_by_layer(self.worker.part)
        )
        ckpt_dir = run_dir / "checkpoints"
        here = save_bundle(ckpt_dir / f"epoch-{epoch:03d}", self.full, dataclasses.replace(self.meta, epoch=epoch))
        copy_dir(here, ckpt_dir / "last")
        if improved:
            copy_dir(here, run_dir / "model")
        self.checksum = weights_checksum(self.full)

    def _report_epoch(self, epoch: int, metrics: dict[str, Any], per_rank: list[dict[str, Any]]) -> None:
        cfg, rep = self.cfg, self.reporter
        rep.event("epoch", phase="training", epoch=epoch, **{k: v for k, v in metrics.items() if k != "epoch"})
        rep.progress("training", epoch, self.plan.epochs, loss=metrics["loss"], val_loss=metrics["val_loss"])
        for r in per_rank:
            rep.worker_stat(
                str(r.get("worker") or f"rank-{r['rank']}"),
                rank=r["rank"],
                phase="training",
                bytes_sent=r["bytes_sent"],
                bytes_recv=r["bytes_recv"],
                cpu_percent=r["cpu_percent"],
                peak_mem_bytes=r["peak_mem_bytes"],
                samples=self.global_step * cfg.batch_size,
                epoch=epoch,
                role=r["role"],
                scheme=cfg.scheme,
                mp_split=cfg.mp_split,
                batch_size=cfg.batch_size,
                epoch_s=r["epoch_s"],
                bytes_per_step_sent=r["bytes_per_step_sent"],
                bytes_per_step_recv=r["bytes_per_step_recv"],
                by_op=r["by_op"],
                host_net_bytes_sent=r["host_net_bytes_sent"],
                host_net_bytes_recv=r["host_net_bytes_recv"],
            )

    def _summary(self, stopped_early: bool) -> dict[str, Any]:
        checksum = self.hvd.broadcast_object(self.checksum, root_rank=FUSION_RANK, name="mp.checksum")  # Horovod
        rate = self.samples_steady / self.t_steady if self.t_steady > 0 else None
        tele, state, bs = self.tele, self.state, self.cfg.batch_size
        return {
            "rank": self.rank,
            "size": self.size,
            "role": self.role,
            "checksum": checksum,
            "start_epoch": 1,
            "epochs_run": self.epochs_run,
            "last_epoch": self.epochs_run[-1],
            "stopped_early": stopped_early,
            "history": state["history"],
            "best_val": state["best_val"],
            "best_epoch": state["best_epoch"],
            "steps_per_epoch": self.steps,
            "samples": self.global_step * bs,
            "samples_per_s": rate / self.size if rate else None,
            "pipeline_samples_per_s": rate,
            "optimizer_iterations": int(self.worker.optimizer.iterations.numpy()),
            "bytes_sent": tele.bytes_sent,
            "bytes_recv": tele.bytes_recv,
            "bytes_per_step": self.step_traffic,
            "by_op": dict(tele.by_op),
            **rank_info(),
        }


# ---- inference ------------------------------------------------------------------------------------------------------
def _inference_data(
    bundle_dir: str, store_path: str, split: str, n_patches: int
) -> tuple[Any, ModelMeta, TileStore, np.ndarray]:
    model, meta = load_bundle(bundle_dir)
    if meta.model not in split_models():
        raise ConfigError(
            f"bundle {bundle_dir} holds model {meta.model!r}; split inference needs a model with "
            f"branches: {split_models()}"
        )
    store = TileStore(store_path)
    idx = store.valid_indices(split)
    if len(idx) == 0:
        raise ConfigError(f"the {split} split of {store_path} has no samples; pick another split")
    return model, meta, store, np.resize(idx, n_patches)  # cycles through the split to reach n_patches


def mp_predict_rank(
    bundle_dir: str,
    store_path: str,
    split: str = "test",
    n_patches: int = 1000,
    batch_size: int = 100,
    mp_split: str = "baseline",
) -> dict[str, Any]:
    """Rank function: classify ``n_patches`` patches of a store split with the split model; times the forward passes.

    The rank builds its part from the bundle of a whole two-stream model. One warm-up batch (tracing) runs before
    the clock starts; a barrier lines the ranks up. Returns ``{"rank", "role", "seconds", "patches",
    "patches_per_s", "bytes_sent", "bytes_recv", "class_ids"}`` (``class_ids`` (n_patches,) on the fusion rank).
    """
    tf = _configure_tf(1)
    import horovod.tensorflow as hvd

    rank = hvd.rank()
    model, meta, store, idx = _inference_data(bundle_dir, store_path, split, n_patches)
    shapes = {m: tuple(int(d) for d in t.shape[1:]) for m, t in zip(meta.modalities, model.inputs)}
    worker = SplitRank(shapes, len(meta.class_ids), mp_split, dict(meta.extra.get("model_params", {})), rank)
    set_weights_by_layer(worker.part, weights_by_layer(model))
    data = np.zeros(len(idx), np.int32) if worker.role == "fusion" else _load(store, meta, split, idx, worker.role)
    worker.predict(tf.constant(data[:batch_size]))  # warm-up: traces the graph
    hvd.allreduce(tf.zeros(1), name="mp.barrier")  # Horovod: start the clock together
    tele = Telemetry(rank, hvd.size())
    probs, t0 = [], time.perf_counter()
    for b in range(0, len(idx), batch_size):
        out = worker.predict(tf.constant(data[b : b + batch_size]))
        _count(tele, out)
        if "probs" in out:
            probs.append(np.asarray(out["probs"]))
    seconds = time.perf_counter() - t0
    ids = np.asarray(meta.class_ids)[np.argmax(np.concatenate(probs), -1)] if probs else None
    return {
        "rank": rank,
        "role": worker.role,
        "seconds": seconds,
        "patches": len(idx),
        "patches_per_s": len(idx) / seconds,
        "bytes_sent": tele.bytes_sent,
        "bytes_recv": tele.bytes_recv,
        "class_ids": ids,
    }


def dp_predict_rank(
    bundle_dir: str, store_path: str, split: str = "test", n_patches: int = 1000, batch_size: int = 100
) -> dict[str, Any]:
    """Rank function: data-parallel inference for comparison (each rank classifies its share with the whole model)."""
    tf = _configure_tf(1)
    import horovod.tensorflow as hvd

    rank, size = hvd.rank(), hvd.size()
    model, meta, store, idx = _inference_data(bundle_dir, store_path, split, n_patches)
    mine = idx[rank::size]
    xs = [_load(store, meta, split, mine, m) for m in meta.modalities]
    forward = tf.function(lambda *x: model(list(x) if len(x) > 1 else x[0], training=False))
    forward(*[tf.constant(x[:batch_size]) for x in xs])  # warm-up: traces the graph
    hvd.allreduce(tf.zeros(1), name="dp.barrier")  # Horovod: start the clock together
    t0 = time.perf_counter()
    for b in range(0, len(mine), batch_size):
        forward(*[tf.constant(x[b : b + batch_size]) for x in xs]).numpy()
    seconds = time.perf_counter() - t0
    return {
        "rank": rank,
        "role": "data_parallel",
        "seconds": seconds,
        "patches": len(mine),
        "patches_per_s": len(mine) / max(seconds, 1e-9),
        "bytes_sent": 0,
        "bytes_recv": 0,
    }


def time_inference(
    client: Any,
    bundle_dir: str | Path,
    store_path: str | Path,
    scheme: str = "model_parallel",
    mp_split: str = "baseline",
    n_patches: int = 1000,
    batch_size: int = 100,
    split: str = "test",
    num_ranks: int = MODEL_PARALLEL_RANKS,
    timeout: float | None = 600,
) -> dict[str, Any]:
    """Time inference of ``n_patches`` patches on the cluster (the multi-modal paper's Table 4).

    Args:
        scheme: ``"model_parallel"`` (3 ranks, ``mp_split``) or ``"data_parallel"`` (``num_ranks`` ranks, each
            with the whole model and ``n_patches / num_ranks`` patches).

    Returns:
        ``{"scheme", "mp_split", "n_patches", "seconds" (slowest rank, startup excluded), "patches_per_s",
        "wall_s" (with startup), "ranks": [per-rank results]}``.
    """
    kwargs = {
        "bundle_dir": str(bundle_dir),
        "store_path": str(store_path),
        "split": split,
        "n_patches": n_patches,
        "batch_size": batch_size,
    }
    if scheme == "model_parallel":
        results = run_horovod(
            client,
            mp_predict_rank,
            kwargs={**kwargs, "mp_split": mp_split},
            num_ranks=MODEL_PARALLEL_RANKS,
            timeout=timeout,
        )
    elif scheme == "data_parallel":
        results = run_horovod(client, dp_predict_rank, kwargs=kwargs, num_ranks=num_ranks, timeout=timeout)
    else:
        raise ConfigError(f"scheme {scheme!r}: time inference with 'model_parallel' or 'data_parallel'")
    seconds = max(r["seconds"] for r in results)
    return {
        "scheme": scheme,
        "mp_split": mp_split if scheme == "model_parallel" else None,
        "n_patches": n_patches,
        "seconds": seconds,
        "patches_per_s": n_patches / seconds,
        "wall_s": results.wall_s,
        "ranks": list(results),
    }


# ---- the scheme ---------------------------------------------------------------------------------------------------
def _check(model: str, num_workers: int, worker_speeds: Sequence[float] | None) -> None:
    if not get_model(model).branches:
        raise ValueError(
            f"scheme 'model_parallel' splits a multi-branch model across workers, but {model!r} has "
            f"a single branch; use {split_models()} or scheme 'data_parallel'"
        )
    if num_workers != MODEL_PARALLEL_RANKS:
        raise ValueError(
            f"scheme 'model_parallel' runs the RGB branch, the HSI branch and the fusion on "
            f"{MODEL_PARALLEL_RANKS} workers; set num_workers to {MODEL_PARALLEL_RANKS}"
        )


def _check_train(config: Any) -> None:
    if config.ema_decay > 0:
        raise ValueError(
            "ema_decay (weight averaging) is not available for scheme 'model_parallel' (each rank "
            "holds a part of the model); set ema_decay to 0 or use 'data_parallel'"
        )


def _check_scene(scene: str, modalities: Sequence[str]) -> None:
    if len(modalities) != 2:
        raise ValueError(
            f"scheme 'model_parallel' runs one branch per modality (RGB and HSI) but scene {scene!r} "
            f"has {list(modalities)}; use a scene with two modalities or scheme 'data_parallel'"
        )


SCHEME = register_scheme(
    SchemeSpec(
        name="model_parallel",
        description="the two-stream CNN split over 3 Horovod ranks (RGB branch, HSI branch, fusion)",
        rank_fn=mp_train_rank,
        uses_horovod=True,
        check=_check,
        check_train=_check_train,
        check_scene=_check_scene,
        options=("mp_split",),
        weight_averaging=False,
        order=30,
    )
)
