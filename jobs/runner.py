"""Running a job: one function owns a run's whole life, whichever job kind it is and whoever launched it.

``execute(config)`` connects to the cluster and runs its pre-flight, then creates the run row (or takes an existing
pending one), heartbeats,
reports progress, and leaves the run ``succeeded``, ``failed`` (with the error) or ``cancelled``. The CLI and the
GUI both come through here, so a run launched from either is tracked the same way.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from core.distributed.cluster import ClusterHandle, connect, describe
from core.errors import JobCancelledError
from core.settings import Settings, get_settings
from db.runs import Heartbeat, RunTracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackerSink:
    """The :class:`core.distributed.events.Sink` of a run: the engine's reports as rows of run ``run_id``."""

    tracker: RunTracker
    run_id: int

    def progress(self, phase: str, done: int, total: int, **data: Any) -> None:
        self.tracker.progress(self.run_id, phase, done, total, **data)

    def event(self, kind: str, **data: Any) -> None:
        self.tracker.event(self.run_id, kind, **data)

    def worker_stat(self, worker: str, **data: Any) -> None:
        self.tracker.worker_stat(self.run_id, worker, **data)


@dataclass
class JobContext:
    """What a job executor gets: its run id, tracker, Dask client and settings, plus progress/cancel helpers."""

    run_id: int
    tracker: RunTracker
    client: Any  # distributed.Client
    settings: Settings
    db_url: str
    _last_cancel_check: float = 0.0
    _cancelled: bool = False
    _last_progress: dict[str, float] = field(default_factory=dict)

    def progress(self, phase: str, done: int, total: int, **data: Any) -> None:
        """Record progress; throttled to ~2 writes/s per phase except for the final update."""
        now = time.monotonic()
        if done < total and now - self._last_progress.get(phase, 0.0) < 0.5:
            return
        self._last_progress[phase] = now
        self.tracker.progress(self.run_id, phase, done, total, **data)
        log.info("run %d %s: %d/%d", self.run_id, phase, done, total)

    @property
    def sink(self) -> TrackerSink:
        """Where the engine's ranks report this run's events, progress and per-worker statistics."""
        return TrackerSink(self.tracker, self.run_id)

    def cancelled(self) -> bool:
        """True once a user asked to cancel this run (polled at most once a second)."""
        now = time.monotonic()
        if not self._cancelled and now - self._last_cancel_check > 1.0:
            self._last_cancel_check = now
            self._cancelled = self.tracker.cancel_requested(self.run_id)
        return self._cancelled

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise JobCancelledError(f"run {self.run_id} was cancelled")


Executor = Callable[[BaseModel, JobContext], dict[str, Any]]


def _cluster_for(config: BaseModel, client: Any, db_url: str) -> tuple[Any, ClusterHandle | None, dict[str, Any]]:
    """The job's client (connected here unless given; None for jobs without a ``cluster`` section) once the cluster
    pre-flight passed, the handle to close, and the pre-flight's summary for the run row.

    Raises:
        ClusterError: the cluster cannot be reached or cannot run the job (every problem named); nothing is left
            connected.
    """
    from jobs.cluster_check import check_job

    handle = None
    t0 = time.monotonic()
    if client is None and "cluster" in type(config).model_fields:  # jobs without one run on the driver
        handle = connect(config.cluster)  # type: ignore[attr-defined]
        client = handle.client
    connect_s = time.monotonic() - t0
    if client is None:
        return None, None, {}
    try:
        report = check_job(client, config, db_url)  # Dask: every worker, before the run row starts
    except BaseException:
        if handle is not None:
            handle.close()
        raise
    return client, handle, {"seconds": round(report.seconds, 2), "warnings": report.warnings,
                            "connect_s": round(connect_s, 2)}


def execute(config: BaseModel, executor: Executor, *, scene_id: int | None = None, run_id: int | None = None,
            db_url: str | None = None, client: Any = None, parent_run_id: int | None = None) -> int:
    """Run ``executor(config, ctx)`` as a tracked run; returns the run id.

    A config with a ``cluster`` section runs on that cluster (connected here unless ``client`` is given) after the
    cluster pre-flight (:func:`jobs.cluster_check.check_job`) passed; a refused job creates no run row (an existing
    pending ``run_id`` is marked failed with the pre-flight's message). One without (e.g. ``assess``) runs in this
    process with ``ctx.client`` None.
    The executor returns ``{"metrics": {...}, "artifacts": {...}}`` (both optional). Exceptions mark the run
    failed (its message stored) and propagate; JobCancelledError marks it cancelled.
    """
    settings = get_settings()
    db_url = db_url or settings.db_url
    tracker = RunTracker(db_url)
    kind = getattr(config, "kind", type(config).__name__)
    try:
        client, handle, preflight = _cluster_for(config, client, db_url)
    except BaseException as exc:
        if run_id is not None:  # a pending run launched detached must not stay pending
            tracker.fail(run_id, f"{type(exc).__name__}: {exc}")
        raise
    if run_id is None:
        run_id = tracker.create(kind, config.model_dump(mode="json"), scene_id=scene_id, parent_run_id=parent_run_id)
    with Heartbeat(tracker, run_id):
        try:
            tracker.start(run_id, cluster={**describe(client), "preflight": preflight} if client is not None else None)
            ctx = JobContext(run_id=run_id, tracker=tracker, client=client, settings=settings, db_url=db_url)
            result = executor(config, ctx) or {}
            tracker.succeed(run_id, metrics=result.get("metrics"), artifacts=result.get("artifacts"))
            log.info("run %d (%s) succeeded", run_id, kind)
        except JobCancelledError as exc:
            tracker.cancel(run_id, str(exc))
            log.warning("run %d cancelled", run_id)
            raise
        except BaseException as exc:
            message = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, (ValueError, LookupError, OSError)) or log.isEnabledFor(logging.DEBUG):
                message += "\n\n" + "".join(traceback.format_exception(exc))[-4000:]
            tracker.fail(run_id, message)
            raise
        finally:
            if handle is not None:
                handle.close()
    return run_id
