"""A training job: validate a :class:`TrainJobConfig`, launch its scheme's ranks on the cluster, summarise them.

The driver side of training. The scheme (:func:`core.training.schemes.get_scheme`) names the rank function and
whether its ranks are Horovod ranks (:func:`core.distributed.launcher.run_horovod`) or one plain worker
(:func:`~core.distributed.launcher.run_single`). The ranks report events, progress and per-rank statistics through
a :class:`core.distributed.events.Sink` the caller provides; the job returns the run's metrics and artifacts, and
the caller records them (and owns the run's status). A rank whose worker dies or loses contact does not end the
job: it is relaunched from the run's last checkpoint, up to ``max_restarts`` times (:mod:`core.training.recovery`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distributed import Client

from core.distributed.events import EventForwarder, Sink, reporting
from core.distributed.launcher import RankResults, run_horovod, run_single
from core.errors import ClusterError, ConfigError, WorkerLostError
from core.models import get_model
from core.models.bundle import load_meta
from core.settings import get_settings
from core.tiling.store import TileStore
from core.training.checkpoints import STATE_FILE
from core.training.config import TrainJobConfig
from core.training.recovery import Recovery
from core.training.schemes import SchemeSpec, get_scheme

log = logging.getLogger(__name__)

RANK_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1"}


def validate(config: TrainJobConfig, client: Client, store_path: str | Path) -> TileStore:
    """Check that the job can run as configured before any rank starts; returns the opened store.

    Raises:
        ConfigError: missing store, store of the wrong mode for the model, fewer train samples than ranks.
        ClusterError: the cluster has fewer workers than ``config.num_workers``.
    """
    path = Path(store_path)
    if not path.exists():
        raise ConfigError(f"tile store {str(path)!r} does not exist; run the tile job first or fix the store path")
    store = TileStore(path)
    info = store.info
    spec = get_model(config.model)
    if info.mode != spec.store_mode:
        raise ConfigError(
            f"model {config.model!r} trains on a store of {spec.store_mode!r} but {path} holds "
            f"{info.mode!r}; tile with mode={spec.store_mode!r} or choose another model"
        )
    n_train = len(store.valid_indices("train"))
    if n_train < config.num_workers:
        raise ConfigError(
            f"the train split of {path} has {n_train} samples but num_workers={config.num_workers}: "
            "every rank needs at least one; use fewer workers or a larger area of interest"
        )
    from core.distributed.cluster import live_workers

    n_workers = len(live_workers(client))
    if n_workers < config.num_workers:
        raise ClusterError(
            f"asked for {config.num_workers} ranks but the cluster has {n_workers} workers; start "
            f"the cluster with at least {config.num_workers} worker processes or set num_workers <= "
            f"{n_workers}"
        )
    return store


def _resume_dir(config: TrainJobConfig, runs_dir: Path) -> Path | None:
    if config.resume_from is None:
        return None
    d = runs_dir / f"run-{config.resume_from:05d}" / "checkpoints" / "last"
    if not (d / "model.keras").exists():
        raise ConfigError(
            f"resume_from={config.resume_from}: no checkpoint at {d}; the run must be a train run that "
            "finished at least one epoch"
        )
    if load_meta(d).model != config.model:
        raise ConfigError(
            f"resume_from={config.resume_from} trained {load_meta(d).model!r}, not {config.model!r}; "
            "resume with the same model"
        )
    return d


def run_train_job(
    config: TrainJobConfig,
    client: Client,
    store_path: str | Path | None = None,
    *,
    run_id: int | None = None,
    run_dir: Path | None = None,
    sink: Sink | None = None,
    cancelled: Callable[[], bool] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Train ``config.model`` on a tile store with ``config.scheme``.

    Args:
        config: the job (its ``store`` is used when ``store_path`` is None).
        client: Dask client; the scheme needs ``config.num_workers`` idle worker processes.
        run_id: the run that trains (recorded in the bundle's meta; names the default ``run_dir``).
        run_dir: artefact folder (default ``<home>/runs/run-NNNNN``).
        sink: receives the ranks' events, progress and per-rank statistics (None: not reported).
        cancelled: polled while training; True stops the ranks.
        timeout: seconds before the job is stopped and failed.

    Returns:
        ``{"metrics", "artifacts", "ranks"}`` (``ranks``: each rank's summary from the scheme's rank function).

    Raises:
        ConfigError, ClusterError: invalid job (before any rank starts).
        JobFailedError: a rank failed (with its error), or a lost worker could not be recovered from
            (``max_restarts`` used, too few workers came back); JobCancelledError: ``cancelled()`` became true.
    """
    settings = get_settings()
    if run_dir is None:
        if run_id is None:
            raise ConfigError("run_train_job needs run_dir or run_id (the folder the checkpoints go to)")
        run_dir = settings.run_dir(run_id)
    path = store_path or config.store
    if path is None:
        raise ConfigError("no tile store given: pass store_path or set config.store (run the tile job first)")
    validate(config, client, path)
    resume = _resume_dir(config, settings.runs_dir)
    scheme = get_scheme(config.scheme)
    recovery = Recovery(config, client, scheme, Path(run_dir), sink, cancelled)
    num_ranks, resume_dir, t_start = config.num_workers, resume, time.monotonic()
    while True:
        kwargs = {
            "config": config.model_copy(update={"num_workers": num_ranks}).model_dump(mode="json"),
            "store_path": str(path),
            "run_dir": str(run_dir),
            "run_id": run_id,
            "resume_dir": str(resume_dir) if resume_dir else None,
            "scheme": scheme,
        }
        left = None if timeout is None else max(timeout - (time.monotonic() - t_start), 1.0)
        try:
            results = _launch(client, scheme, kwargs, num_ranks, sink, cancelled, left)
        except WorkerLostError as exc:
            num_ranks, resume_dir = recovery.restart(exc, num_ranks, resume_dir)
            continue
        recovery.stepped(results.first_step_at)
        return _summarise(Path(run_dir), results, recovery.records, _start_epoch(resume))


def _launch(
    client: Client,
    scheme: SchemeSpec,
    kwargs: dict[str, Any],
    num_ranks: int,
    sink: Sink | None,
    cancelled: Callable[[], bool] | None,
    timeout: float | None,
) -> RankResults:
    """One launch of the scheme's ranks; ``results.first_step_at``: when the slowest rank's first step ended."""
    t_launch = time.time()
    with EventForwarder(client, sink, num_ranks) as events:
        args = (scheme.rank_fn, events.reporter)  # Dask: the spec travels by reference to its module
        if scheme.uses_horovod:
            results = run_horovod(
                client,
                reporting,
                args=args,
                kwargs=kwargs,
                num_ranks=num_ranks,
                env=RANK_ENV,
                cancelled=cancelled,
                timeout=timeout,
            )
        else:
            results = run_single(
                client, reporting, args=args, kwargs=kwargs, env=RANK_ENV, cancelled=cancelled, timeout=timeout
            )
    first = results.startup.launch_to_first_step
    results.first_step_at = None if first is None else t_launch + first
    return results


def _start_epoch(resume: Path | None) -> int:
    """The first epoch the job trains: 1, or the epoch after the checkpoint it resumes."""
    if resume is None:
        return 1
    return int(json.loads((resume / STATE_FILE).read_text())["epoch"]) + 1


def _summarise(run_dir: Path, results: RankResults, restarts: list[dict[str, Any]], start_epoch: int) -> dict[str, Any]:
    """The run's metrics (final and per-epoch, throughput, startup, per-rank figures, restarts) and artifacts.

    After restarts the epochs run are those of the whole job (from ``start_epoch``), not only the last launch's.
    """
    r0 = results[0]
    last = r0["history"][-1] if r0["history"] else {}
    rates = [r["samples_per_s"] for r in results]
    epochs_run = (
        [int(h["epoch"]) for h in r0["history"] if int(h["epoch"]) >= start_epoch] if restarts else r0["epochs_run"]
    )
    metrics = {
        "final": last,
        "history": r0["history"],
        "best_val": r0["best_val"],
        "best_epoch": r0["best_epoch"],
        "epochs_run": epochs_run,
        "start_epoch": start_epoch,
        "stopped_early": r0["stopped_early"],
        # the step plan (core.training.budget) and what the loop drew on: class weights, random window side
        **{k: r0.get(k) for k in ("planned_steps", "steps_run", "step_budget", "class_weights", "window")},
        "restarts": restarts,
        "num_ranks": len(results),
        "samples_per_s": sum(x for x in rates if x) if all(rates) else None,
        "samples_per_s_per_rank": rates,
        "startup": results.startup.as_dict(),
        "wall_s": results.wall_s,
        "weights_identical": len({r["checksum"] for r in results}) == 1,
        "checksums": [r["checksum"] for r in results],
        # per-rank batch, steady-state step and compute seconds, traffic (core.training.loop / core.training.telemetry)
        "batch_per_rank": [r.get("batch") for r in results],
        "step_s_per_rank": [r.get("step_s") for r in results],
        "compute_s_per_rank": [r.get("compute_s") for r in results],
        "traffic_per_rank": [
            {k: (r.get("telemetry") or {}).get(k) for k in ("bytes_sent", "bytes_recv", "by_op")} for r in results
        ],
    }
    if r0.get("shares"):  # heterogeneous: speeds (calibrated or given) and the batch shares they gave
        metrics["heterogeneous"] = {"speeds": r0["speeds"], "shares": r0["shares"], "calibration": r0["calibration"]}
    artifacts = {
        "model": str(run_dir / "model"),
        "checkpoint": str(run_dir / "checkpoints" / "last"),
        "checkpoints": str(run_dir / "checkpoints"),
    }
    log.info("training finished: %s", {k: metrics[k] for k in ("final", "samples_per_s", "startup")})
    return {"metrics": metrics, "artifacts": artifacts, "ranks": list(results)}
