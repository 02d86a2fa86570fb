"""Run tracking: create runs, record progress, events and per-worker statistics, finish or fail them.

A run's status is kept truthful: the process that drives a run records its host and pid and heartbeats while it
works; :func:`reap_dead_runs` (called whenever runs are listed) marks runs whose driver died as failed.
"""

from __future__ import annotations

import builtins
import logging
import os
import socket
import threading
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.configs import config_version
from core.errors import RunNotFoundError
from db.engine import session_factory
from db.models import RunEventRow, RunRow, WorkerStatRow, utcnow

log = logging.getLogger(__name__)

ACTIVE = ("pending", "running")
FINAL = ("succeeded", "failed", "cancelled")
HEARTBEAT_SECONDS = 5.0
STALE_AFTER = timedelta(seconds=90)


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` of this host runs (a zombie counts as dead; unknown: alive, so no run is reaped
    on a guess)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


class RunTracker:
    """Writes one database's run rows. Cheap to build; thread-safe (one session per call)."""

    def __init__(self, db_url: str | None = None) -> None:
        self._sessions = session_factory(db_url)
        self.url: str = self._sessions.kw["bind"].url.render_as_string(hide_password=False)

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def create(
        self, kind: str, config: dict[str, Any], scene_id: int | None = None, parent_run_id: int | None = None
    ) -> int:
        """Insert a pending run owned by this process; returns its id. ``config`` is stored with today's schema version
        of its kind (:func:`core.configs.config_version`)."""
        with self._sessions.begin() as s:
            row = RunRow(
                kind=kind,
                config=config,
                config_version=config_version(kind),
                scene_id=scene_id,
                parent_run_id=parent_run_id,
                status="pending",
                host=socket.gethostname(),
                pid=os.getpid(),
                heartbeat_at=utcnow(),
            )
            s.add(row)
            s.flush()
            return row.id

    def start(self, run_id: int, cluster: dict[str, Any] | None = None) -> None:
        self._update(
            run_id,
            status="running",
            started_at=utcnow(),
            heartbeat_at=utcnow(),
            host=socket.gethostname(),
            pid=os.getpid(),
            cluster=cluster,
        )

    def heartbeat(self, run_id: int) -> None:
        self._update(run_id, heartbeat_at=utcnow())

    def progress(self, run_id: int, phase: str, done: int, total: int, **data: Any) -> None:
        """Record progress of a phase (tiling, training, inference, evaluation) and heartbeat."""
        with self._sessions.begin() as s:
            s.execute(
                update(RunRow)
                .where(RunRow.id == run_id)
                .values(phase=phase, progress_done=done, progress_total=total, heartbeat_at=utcnow())
            )
            s.add(RunEventRow(run_id=run_id, kind="progress", phase=phase, data={"done": done, "total": total, **data}))

    def event(
        self,
        run_id: int,
        kind: str,
        phase: str | None = None,
        epoch: int | None = None,
        step: int | None = None,
        **data: Any,
    ) -> None:
        with self._sessions.begin() as s:
            s.add(RunEventRow(run_id=run_id, kind=kind, phase=phase, epoch=epoch, step=step, data=data))
            s.execute(update(RunRow).where(RunRow.id == run_id).values(heartbeat_at=utcnow()))

    def worker_stat(
        self,
        run_id: int,
        worker: str,
        rank: int | None = None,
        phase: str | None = None,
        bytes_sent: int = 0,
        bytes_recv: int = 0,
        cpu_percent: float | None = None,
        peak_mem_bytes: int | None = None,
        samples: int | None = None,
        **data: Any,
    ) -> None:
        with self._sessions.begin() as s:
            s.add(
                WorkerStatRow(
                    run_id=run_id,
                    worker=worker,
                    rank=rank,
                    phase=phase,
                    bytes_sent=bytes_sent,
                    bytes_recv=bytes_recv,
                    cpu_percent=cpu_percent,
                    peak_mem_bytes=peak_mem_bytes,
                    samples=samples,
                    data=data,
                )
            )

    def set_metrics(self, run_id: int, metrics: dict[str, Any]) -> None:
        """Merge ``metrics`` into the run's metrics."""
        with self._sessions.begin() as s:
            row = self._get(s, run_id)
            row.metrics = {**(row.metrics or {}), **metrics}

    def set_artifacts(self, run_id: int, artifacts: dict[str, Any]) -> None:
        """Merge ``artifacts`` (name -> path) into the run's artifacts."""
        with self._sessions.begin() as s:
            row = self._get(s, run_id)
            row.artifacts = {**(row.artifacts or {}), **artifacts}

    def succeed(
        self, run_id: int, metrics: dict[str, Any] | None = None, artifacts: dict[str, Any] | None = None
    ) -> None:
        with self._sessions.begin() as s:
            row = self._get(s, run_id)
            if metrics:
                row.metrics = {**(row.metrics or {}), **metrics}
            if artifacts:
                row.artifacts = {**(row.artifacts or {}), **artifacts}
            row.status, row.finished_at, row.phase = "succeeded", utcnow(), "done"

    def fail(self, run_id: int, error: str) -> None:
        self._update(run_id, status="failed", finished_at=utcnow(), error=error)

    def cancel(self, run_id: int, reason: str = "cancelled by the user") -> None:
        self._update(run_id, status="cancelled", finished_at=utcnow(), error=reason)

    def request_cancel(self, run_id: int) -> None:
        """Ask the process driving the run to stop it (it polls :meth:`cancel_requested`)."""
        self._update(run_id, cancel_requested=True)

    def cancel_requested(self, run_id: int) -> bool:
        with self._sessions() as s:
            return bool(s.scalar(select(RunRow.cancel_requested).where(RunRow.id == run_id)))

    # ---- reading ---------------------------------------------------------------------------------------------
    def get(self, run_id: int) -> RunRow:
        with self._sessions() as s:
            return self._get(s, run_id)

    def list(self, kind: str | None = None, status: str | None = None, limit: int = 500) -> list[RunRow]:
        self.reap_dead_runs()
        with self._sessions() as s:
            q = select(RunRow).order_by(RunRow.id.desc()).limit(limit)
            if kind:
                q = q.where(RunRow.kind == kind)
            if status:
                q = q.where(RunRow.status == status)
            return list(s.scalars(q))

    def events(self, run_id: int, kind: str | None = None, after_id: int = 0) -> builtins.list[RunEventRow]:
        with self._sessions() as s:
            q = select(RunEventRow).where(RunEventRow.run_id == run_id, RunEventRow.id > after_id)
            if kind:
                q = q.where(RunEventRow.kind == kind)
            return list(s.scalars(q.order_by(RunEventRow.id)))

    def worker_stats(self, run_id: int) -> builtins.list[WorkerStatRow]:
        with self._sessions() as s:
            return list(
                s.scalars(select(WorkerStatRow).where(WorkerStatRow.run_id == run_id).order_by(WorkerStatRow.id))
            )

    def reap_dead_runs(self, now: datetime | None = None) -> builtins.list[int]:  # `list` is a method here
        """Mark active runs whose driving process is gone as failed; returns their ids.

        A run is dead when its driver ran on this host and its pid no longer exists, or when it has not
        heartbeated for ``STALE_AFTER`` (driver on another host, or hung).
        """
        now = now or utcnow()
        host = socket.gethostname()
        dead: list[tuple[int, str]] = []
        with self._sessions() as s:
            for row in s.scalars(select(RunRow).where(RunRow.status.in_(ACTIVE))):
                if row.host == host and row.pid is not None and not pid_alive(row.pid):
                    dead.append((row.id, f"the process driving this run (pid {row.pid} on {row.host}) died"))
                elif row.heartbeat_at is not None and now - row.heartbeat_at > STALE_AFTER:
                    age = int((now - row.heartbeat_at).total_seconds())
                    dead.append(
                        (
                            row.id,
                            f"no heartbeat from the driving process (pid {row.pid} on {row.host}) "
                            f"for {age} s; it is presumed dead",
                        )
                    )
        for run_id, why in dead:
            with self._sessions.begin() as s:
                # Only flip runs that are still active: the driver may have finished meanwhile.
                s.execute(
                    update(RunRow)
                    .where(RunRow.id == run_id, RunRow.status.in_(ACTIVE))
                    .values(status="failed", finished_at=now, error=why)
                )
            log.warning("run %d marked failed: %s", run_id, why)
        return [r for r, _ in dead]

    # ---- helpers ---------------------------------------------------------------------------------------------
    def _get(self, s: Session, run_id: int) -> RunRow:
        row = s.get(RunRow, run_id)
        if row is None:
            raise RunNotFoundError(f"run {run_id} does not exist; list runs with `python -m jobs runs list`")
        return row

    def _update(self, run_id: int, **values: Any) -> None:
        with self._sessions.begin() as s:
            self._get(s, run_id)
            s.execute(update(RunRow).where(RunRow.id == run_id).values(**values))


class Heartbeat:
    """Context manager that heartbeats a run from a daemon thread while the driver works."""

    def __init__(self, tracker: RunTracker, run_id: int, every: float = HEARTBEAT_SECONDS) -> None:
        self._tracker, self._run_id, self._every = tracker, run_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-run-{run_id}", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._tracker.heartbeat(self._run_id)
            except Exception:  # noqa: BLE001 - a missed heartbeat must never kill the job
                log.exception("heartbeat for run %d failed", self._run_id)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
