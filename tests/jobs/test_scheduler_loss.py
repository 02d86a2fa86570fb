"""The embedded cluster's process killed (SIGKILL) while a run trains on it: the run fails with the reason.

Real processes throughout: ``jobs cluster serve`` started by :func:`jobs.local_cluster.ensure_local_cluster`, a
2-rank data-parallel training run through :func:`jobs.runner.execute`, and a SIGKILL of the cluster's process.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from core.configs import ClusterConfig
from core.training.config import TrainJobConfig
from tests.core.training.test_loop import make_store

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.horovod,
    pytest.mark.skipif(importlib.util.find_spec("horovod") is None, reason="horovod is not installed"),
]


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.1)


def test_killed_local_cluster_fails_the_run_with_the_reason_and_the_next_launch_starts_one(
    home: Path, db_url: str, tmp_path: Path
) -> None:
    from distributed import Client

    from db.runs import RunTracker
    from jobs import local_cluster
    from jobs.engine_kinds import run_train
    from jobs.runner import execute

    state = local_cluster.ensure_local_cluster(n_workers=2, timeout=180)
    with Client(state["scheduler"], timeout=20) as c:
        worker_pids = list(c.run(os.getpid).values())
    store = make_store(tmp_path / "s.zarr", counts={"train": 120, "val": 4, "test": 2})
    config = TrainJobConfig(
        scene="tiny",
        store=str(store),
        model="unet",
        model_params={"width": 2, "depth": 2},
        scheme="data_parallel",
        num_workers=2,
        epochs=500,
        batch_size=2,
        log_every=1,
        cluster=ClusterConfig(scheduler_address=state["scheduler"]),
    )
    tracker = RunTracker(db_url)
    box: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: box.setdefault("error", _run(execute, config, run_train, db_url)), daemon=True
    )
    thread.start()
    _wait(lambda: (r := tracker.list(kind="train")) and tracker.events(r[0].id, kind="step"), 300, "a training step")
    run_id = tracker.list(kind="train")[0].id
    os.kill(int(state["pid"]), signal.SIGKILL)
    killed = time.monotonic()
    _wait(lambda: tracker.get(run_id).status != "running", 60, "the run leaving 'running'")
    seconds = time.monotonic() - killed
    row = tracker.get(run_id)
    print(f"\nscheduler loss: run {row.status} {seconds:.1f} s after the cluster process was killed")
    assert row.status == "failed" and seconds < 30
    assert "lost the connection to the Dask scheduler" in row.error and state["scheduler"] in row.error
    thread.join(60)
    assert not thread.is_alive() and "SchedulerLost" in type(box["error"]).__name__ + str(box["error"])
    _wait(
        lambda: (
            not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in worker_pids)
        ),
        60,
        "the orphaned worker processes exiting",
    )

    again = local_cluster.ensure_local_cluster(n_workers=2, timeout=180)
    try:
        assert again["pid"] != state["pid"] and again["scheduler"] != state["scheduler"]
        with Client(again["scheduler"], timeout=20) as c:
            assert len(c.scheduler_info(n_workers=-1)["workers"]) == 2
    finally:
        assert local_cluster.stop_local_cluster()
        psutil.Process(int(again["pid"])).wait(timeout=60)


def _run(execute: Any, config: TrainJobConfig, executor: Any, db_url: str) -> BaseException | None:
    try:
        execute(config, executor, db_url=db_url)
    except BaseException as exc:  # noqa: BLE001 - the test looks at it
        return exc
    return None
