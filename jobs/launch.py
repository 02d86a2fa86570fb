"""Launching jobs detached from the caller (the GUI): the job outlives the page and the app that started it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

from pydantic import BaseModel

from core.settings import REPO_ROOT, get_settings
from db.runs import RunTracker
from jobs.kinds import scene_id_of

log = logging.getLogger(__name__)


def launch_detached(config: BaseModel, scheduler_address: str | None = None, db_url: str | None = None) -> int:
    """Create a pending run for ``config`` and start ``python -m jobs runs exec RUN_ID`` in its own session.

    Returns the run id at once; the run's state lives in the database. The driver log is ``<run dir>/driver.log``.
    """
    settings = get_settings()
    db_url = db_url or settings.db_url
    tracker = RunTracker(db_url)
    kind: str = config.kind  # type: ignore[attr-defined]  # every job config class has its kind (jobs.kinds)
    run_id = tracker.create(kind, config.model_dump(mode="json"), scene_id=scene_id_of(config, db_url))
    env = {**os.environ, "WORKBENCH_HOME": str(settings.home), "WORKBENCH_DB_URL": db_url}
    if scheduler_address:
        env["WORKBENCH_SCHEDULER"] = scheduler_address
    log_path = settings.run_dir(run_id) / "driver.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobs", "runs", "exec", str(run_id)],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    from sqlalchemy import update

    from db.engine import session_factory
    from db.models import RunRow

    with session_factory(db_url).begin() as s:  # the driver owns the run from now on
        s.execute(update(RunRow).where(RunRow.id == run_id).values(pid=proc.pid))
    tracker.set_artifacts(run_id, {"driver_log": str(log_path)})
    log.info("launched run %d (%s) as pid %d", run_id, kind, proc.pid)
    return run_id


def cancel_run(run_id: int, db_url: str | None = None, grace: float = 20.0) -> None:
    """Ask the run's driver to stop; if it has not stopped after ``grace`` seconds, terminate it."""
    tracker = RunTracker(db_url)
    tracker.request_cancel(run_id)
    row = tracker.get(run_id)
    if row.status not in ("pending", "running") or row.pid is None:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if tracker.get(run_id).status not in ("pending", "running"):
            return
        time.sleep(0.5)
    try:
        os.killpg(row.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    if tracker.get(run_id).status in ("pending", "running"):
        tracker.cancel(run_id, "cancelled by the user (driver terminated)")
