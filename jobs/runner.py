"""Running a job: one function owns a run's whole life, whichever job kind it is and whoever launched it.

``execute(config)`` connects to the cluster and runs its pre-flight (:func:`jobs.preflight.check`, the one the
launch form and the CLI show), then creates the run row (or takes an existing
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
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from core.distributed.cluster import ClusterHandle, connect, describe
from core.distributed.preflight import check_cluster
from core.distributed.recycling import refresh_workers
from core.errors import JobCancelledError, SchedulerLostError, WorkbenchError
from core.settings import Settings, get_settings
from core.writable import FULL, NOT_WRITABLE, check_writable, explain_write_error
from db.runs import Heartbeat, RunTracker
from jobs.kinds import Executor
from jobs.preflight import ClusterFacts, PreflightReport, check

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


@dataclass(frozen=True)
class Preflight:
    """What the runner's pre-flight gives the run: the client (None for jobs without a ``cluster`` section), the
    handle to close, the config as it will run and the summary stored in the run's cluster record."""

    client: Any
    handle: ClusterHandle | None
    config: BaseModel
    summary: dict[str, Any]


def _preflight(
    config: BaseModel, client: Any, db_url: str, show: Callable[[PreflightReport], None] | None
) -> Preflight:
    """Connect (unless ``client`` is given; jobs without a ``cluster`` section run on the driver) and run
    :func:`jobs.preflight.check` with the cluster's size and a probe of every worker.

    Raises:
        ConfigError / ClusterError: pre-flight refused the job (every problem named); nothing is left connected.
    """
    handle = None
    t0 = time.monotonic()
    if client is None and "cluster" in type(config).model_fields:  # jobs without one run on the driver
        handle = connect(config.cluster)  # type: ignore[attr-defined]
        client = handle.client
    connect_s = time.monotonic() - t0
    try:
        report = check(
            config,
            cluster=ClusterFacts.of(client) if client is not None else None,
            probe=(lambda needs: check_cluster(client, needs)) if client is not None else None,  # Dask: every worker
            db_url=db_url,
        )
        for line in report.lines(errors=False):
            log.info("pre-flight %s", line)
        if show is not None:
            show(report)
        report.raise_if_refused()
    except BaseException:
        if handle is not None:
            handle.close()
        raise
    summary = {}
    if report.cluster is not None:
        summary = {
            "seconds": round(report.cluster.seconds, 2),
            "warnings": report.cluster.warnings,
            "connect_s": round(connect_s, 2),
        }
    return Preflight(client, handle, report.config, summary)


def _write_cause(exc: BaseException) -> OSError | None:
    """The permission, read-only or disk-full ``OSError`` in ``exc``'s chain of causes (None if there is none)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, WorkbenchError) and isinstance(seen, OSError):
            return None  # already a clear error of its own
        if isinstance(seen, OSError) and seen.errno in (*NOT_WRITABLE, *FULL):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _precheck_outputs(config: BaseModel, settings: Settings, run_id: int) -> None:
    """Fail before the job starts when the run's folder or the config's output folder cannot take a file."""
    try:
        run_dir = settings.run_dir(run_id)
    except OSError as exc:
        raise explain_write_error(exc, settings.runs_dir, "the run's artefacts") from exc
    check_writable(run_dir, "the run's artefacts")
    output = getattr(config, "output", None)
    if output:
        check_writable(Path(output).parent, f"the output {output}")


def _failure_text(exc: BaseException, client: Any, output: str | Path) -> str:
    """The error a failed run stores: the exception (with its traceback unless it is a plain input error), said
    as a lost scheduler when the client lost it (whatever the job was waiting on then failed with), or as a full or
    read-only disk at ``output`` (the job's output or run folder) when a write failed so without naming its file."""
    message = f"{type(exc).__name__}: {exc}"
    cause = _write_cause(exc)
    if cause is not None:  # a write deep inside the job (a worker's task, a library) hit a full or read-only disk
        clear = explain_write_error(cause, cause.filename or output)
        message = f"{type(clear).__name__}: {clear} (the job failed with: {message})"
    status = getattr(client, "status", "running") if client is not None else "running"
    if status != "running" and not isinstance(exc, SchedulerLostError):
        address = client.scheduler.address if client.scheduler else "(unknown address)"
        message = (
            f"SchedulerLostError: lost the connection to the Dask scheduler {address} (client status "
            f"{status!r}): the scheduler process or its host went away; start the cluster again (the embedded "
            f"local cluster starts on the next launch) and re-run. The job then failed with: {message}"
        )
    if not isinstance(exc, (ValueError, LookupError, OSError)) or log.isEnabledFor(logging.DEBUG):
        message += "\n\n" + "".join(traceback.format_exception(exc))[-4000:]
    return message


def execute(
    config: BaseModel,
    executor: Executor,
    *,
    scene_id: int | None = None,
    run_id: int | None = None,
    db_url: str | None = None,
    client: Any = None,
    parent_run_id: int | None = None,
    show: Callable[[PreflightReport], None] | None = None,
) -> int:
    """Run ``executor(config, ctx)`` as a tracked run; returns the run id.

    Pre-flight (:func:`jobs.preflight.check`: the kind's checks, then every worker of the cluster) runs first and
    ``show`` gets its report; a refused job creates no run row (an existing pending ``run_id`` is marked failed with
    the pre-flight's message). The run stores and runs the config as pre-flight stated it (derived tile size and
    split). A config with a ``cluster`` section runs on that cluster (connected here unless ``client`` is given);
    one without (e.g. ``assess``) runs in this process with ``ctx.client`` None.
    The executor returns ``{"metrics": {...}, "artifacts": {...}}`` (both optional). Exceptions mark the run
    failed (its message stored) and propagate; JobCancelledError marks it cancelled.
    """
    settings = get_settings()
    db_url = db_url or settings.db_url
    tracker = RunTracker(db_url)
    kind = getattr(config, "kind", type(config).__name__)
    try:
        flight = _preflight(config, client, db_url, show)
    except BaseException as exc:
        if run_id is not None:  # a pending run launched detached must not stay pending
            tracker.fail(run_id, f"{type(exc).__name__}: {exc}")
        raise
    client, handle, config = flight.client, flight.handle, flight.config
    if run_id is None:
        run_id = tracker.create(kind, config.model_dump(mode="json"), scene_id=scene_id, parent_run_id=parent_run_id)
    with Heartbeat(tracker, run_id):
        try:
            restarted = refresh_workers(client) if client is not None else []
            tracker.start(
                run_id,
                cluster={**describe(client), "preflight": flight.summary, "restarted_workers": restarted}
                if client is not None
                else None,
            )
            _precheck_outputs(config, settings, run_id)
            ctx = JobContext(run_id=run_id, tracker=tracker, client=client, settings=settings, db_url=db_url)
            result = executor(config, ctx) or {}
            tracker.succeed(run_id, metrics=result.get("metrics"), artifacts=result.get("artifacts"))
            log.info("run %d (%s) succeeded", run_id, kind)
        except JobCancelledError as exc:
            tracker.cancel(run_id, str(exc))
            log.warning("run %d cancelled", run_id)
            raise
        except BaseException as exc:
            output = getattr(config, "output", None) or settings.runs_dir / f"run-{run_id:05d}"
            tracker.fail(run_id, _failure_text(exc, client, output))
            raise
        finally:
            if handle is not None:
                handle.close()
    return run_id
