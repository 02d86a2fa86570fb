"""A training job: validate a :class:`TrainJobConfig`, launch its ranks on the cluster, record the run.

The driver side of training. The ranks run :func:`core.training.loop.train_rank` through
:mod:`core.distributed.launcher` (``data_parallel`` and ``heterogeneous``: Horovod ranks; ``single``: one worker, no
Horovod). The run row gets the cluster description, startup overhead, throughput, per-rank step times and traffic,
final metrics and the paths of the checkpoint and final model bundle; a failure marks the run failed with the
failing rank's error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distributed import Client

from core.distributed.cluster import describe
from core.configs import TrainJobConfig
from core.errors import ClusterError, ConfigError, JobCancelledError, WorkbenchError
from core.distributed.launcher import RankResults, run_horovod, run_single
from core.models.bundle import load_meta
from core.models import MODELS
from core.settings import get_settings
from core.tiling.store import TileStore
from core.training.loop import train_rank
from db.runs import Heartbeat, RunTracker

log = logging.getLogger(__name__)

RANK_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1"}
CANCEL_POLL_SECONDS = 1.0


def _tracker_url(tracker: RunTracker) -> str:
    """The SQLAlchemy URL ``tracker`` writes to (ranks open their own connection to it)."""
    return tracker.url


def _cancel_poller(tracker: RunTracker, run_id: int) -> Callable[[], bool]:
    """A ``cancelled()`` for the launcher that asks the database at most once per second."""
    last = [0.0, False]

    def cancelled() -> bool:
        if time.monotonic() - last[0] >= CANCEL_POLL_SECONDS:
            last[0], last[1] = time.monotonic(), tracker.cancel_requested(run_id)
        return bool(last[1])

    return cancelled


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
    spec = MODELS[config.model]
    if info.mode != spec.store_mode:
        raise ConfigError(f"model {config.model!r} trains on a store of {spec.store_mode!r} but {path} holds "
                          f"{info.mode!r}; tile with mode={spec.store_mode!r} or choose another model")
    n_train = len(store.valid_indices("train"))
    if n_train < config.num_workers:
        raise ConfigError(f"the train split of {path} has {n_train} samples but num_workers={config.num_workers}: "
                          "every rank needs at least one; use fewer workers or a larger area of interest")
    from core.distributed.cluster import live_workers

    n_workers = len(live_workers(client))
    if n_workers < config.num_workers:
        raise ClusterError(f"asked for {config.num_workers} ranks but the cluster has {n_workers} workers; start "
                           f"the cluster with at least {config.num_workers} worker processes or set num_workers <= "
                           f"{n_workers}")
    return store


def _resume_dir(config: TrainJobConfig, runs_dir: Path) -> Path | None:
    if config.resume_from is None:
        return None
    d = runs_dir / f"run-{config.resume_from:05d}" / "checkpoints" / "last"
    if not (d / "model.keras").exists():
        raise ConfigError(f"resume_from={config.resume_from}: no checkpoint at {d}; the run must be a train run that "
                          "finished at least one epoch")
    if load_meta(d).model != config.model:
        raise ConfigError(f"resume_from={config.resume_from} trained {load_meta(d).model!r}, not {config.model!r}; "
                          "resume with the same model")
    return d


def run_train_job(config: TrainJobConfig, client: Client, tracker: RunTracker, run_id: int,
                  store_path: str | Path | None = None, *, db_url: str | None = None, run_dir: Path | None = None,
                  cancelled: Callable[[], bool] | None = None, timeout: float | None = None,
                  finalize: bool = True) -> dict[str, Any]:
    """Train ``config.model`` on a tile store and record everything on run ``run_id``.

    Args:
        config: the job (its ``store`` is used when ``store_path`` is None).
        client: Dask client; ``data_parallel`` needs ``config.num_workers`` idle worker processes.
        tracker, run_id: the run to record (created by the caller, pending).
        db_url: database the ranks write events to (default: the tracker's).
        run_dir: artefact folder (default ``<home>/runs/run-NNNNN``).
        cancelled: polled while training (default: the run's ``cancel_requested`` flag).
        timeout: seconds before the job is stopped and failed.
        finalize: mark the run started / succeeded / failed here. False when the caller owns the run's status
            (jobs.runner, or a pipeline with more phases after training): metrics and artifacts are still stored.

    Returns:
        ``{"run_id", "metrics", "artifacts", "ranks"}`` (``ranks``: each rank's summary from
        :func:`core.training.loop.train_rank`).

    Raises:
        ConfigError, ClusterError: invalid job (the run is marked failed).
        JobFailedError: a rank failed (run marked failed with its error); JobCancelledError (run cancelled).
    """
    settings = get_settings()
    run_dir = run_dir or settings.run_dir(run_id)
    db_url = db_url or _tracker_url(tracker)
    try:
        path = store_path or config.store
        if path is None:
            raise ConfigError("no tile store given: pass store_path or set config.store (run the tile job first)")
        validate(config, client, path)
        resume = _resume_dir(config, settings.runs_dir)
        if finalize:
            tracker.start(run_id, cluster=describe(client))
        kwargs = {"config": config.model_dump(mode="json"), "store_path": str(path), "run_dir": str(run_dir),
                  "run_id": run_id, "db_url": db_url, "resume_dir": str(resume) if resume else None}
        poll = cancelled or _cancel_poller(tracker, run_id)
        with Heartbeat(tracker, run_id):
            if config.scheme == "single":
                results: RankResults = run_single(client, train_rank, kwargs=kwargs, env=RANK_ENV, cancelled=poll,
                                                  timeout=timeout)
            elif config.scheme == "model_parallel":  # RGB branch, HSI branch, fusion: core.training.schemes.model_parallel
                from core.training.schemes.model_parallel import mp_train_rank

                results = run_horovod(client, mp_train_rank, kwargs=kwargs, num_ranks=config.num_workers,
                                      env=RANK_ENV, cancelled=poll, timeout=timeout)
            else:
                results = run_horovod(client, train_rank, kwargs=kwargs, num_ranks=config.num_workers, env=RANK_ENV,
                                      cancelled=poll, timeout=timeout)
    except JobCancelledError as exc:
        if finalize:
            tracker.cancel(run_id, str(exc))
        raise
    except WorkbenchError as exc:
        if finalize:
            tracker.fail(run_id, str(exc))
        raise
    return _record(tracker, run_id, run_dir, results, finalize)


def _record(tracker: RunTracker, run_id: int, run_dir: Path, results: RankResults,
            finalize: bool = True) -> dict[str, Any]:
    r0 = results[0]
    last = r0["history"][-1] if r0["history"] else {}
    rates = [r["samples_per_s"] for r in results]
    metrics = {
        "final": last, "history": r0["history"], "best_val": r0["best_val"], "best_epoch": r0["best_epoch"],
        "epochs_run": r0["epochs_run"], "start_epoch": r0["start_epoch"], "stopped_early": r0["stopped_early"],
        "num_ranks": len(results), "samples_per_s": sum(x for x in rates if x) if all(rates) else None,
        "samples_per_s_per_rank": rates, "startup": results.startup.as_dict(), "wall_s": results.wall_s,
        "weights_identical": len({r["checksum"] for r in results}) == 1, "checksums": [r["checksum"] for r in results],
        # per-rank batch, steady-state step and compute seconds, traffic (core.training.loop / core.training.telemetry)
        "batch_per_rank": [r.get("batch") for r in results], "step_s_per_rank": [r.get("step_s") for r in results],
        "compute_s_per_rank": [r.get("compute_s") for r in results],
        "traffic_per_rank": [{k: (r.get("telemetry") or {}).get(k) for k in ("bytes_sent", "bytes_recv", "by_op")}
                             for r in results],
    }
    if r0.get("shares"):  # heterogeneous: speeds (calibrated or given) and the batch shares they gave
        metrics["heterogeneous"] = {"speeds": r0["speeds"], "shares": r0["shares"], "calibration": r0["calibration"]}
    artifacts = {"model": str(run_dir / "model"), "checkpoint": str(run_dir / "checkpoints" / "last"),
                 "checkpoints": str(run_dir / "checkpoints")}
    if finalize:
        tracker.succeed(run_id, metrics=metrics, artifacts=artifacts)
    else:
        tracker.set_metrics(run_id, {"training": metrics})
        tracker.set_artifacts(run_id, artifacts)
    log.info("train run %d finished: %s", run_id, {k: metrics[k] for k in ("final", "samples_per_s", "startup")})
    return {"run_id": run_id, "metrics": metrics, "artifacts": artifacts, "ranks": list(results)}
