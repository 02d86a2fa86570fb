"""Automatic recovery of training after a worker process is killed (real SIGKILL of real Dask worker processes).

The first test kills the worker that runs rank 1 in the session's 2-worker LocalCluster; its nanny starts a fresh
worker and the job restarts both ranks from the last checkpoint. The second starts its own scheduler and two
``dask worker`` processes (each with its own nanny process) and kills rank 1's worker *and* its nanny, so the worker
never comes back: the data-parallel job goes on with one rank. Outcomes are asserted, not timings (the machine is
shared); the measured recovery time (kill to the relaunched ranks' first step) is printed.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.training.config import TrainJobConfig
from tests.core.training.test_loop import make_store

REPO = Path(__file__).resolve().parents[3]
needs_horovod = pytest.mark.skipif(importlib.util.find_spec("horovod") is None, reason="horovod is not installed")
pytestmark = [needs_horovod, pytest.mark.cluster, pytest.mark.horovod]

STEPS = 30  # steps per epoch: 120 train samples, 2 ranks x batch 2


def _config(store: Path, **kw: Any) -> TrainJobConfig:
    base: dict[str, Any] = dict(
        scene="tiny",
        store=str(store),
        model="unet",
        model_params={"width": 2, "depth": 2},
        scheme="data_parallel",
        num_workers=2,
        epochs=3,
        batch_size=2,
        log_every=1,
        augment=False,
    )
    return TrainJobConfig(**{**base, **kw})


def _train_in_thread(
    config: TrainJobConfig, client: Any, db_url: str, store: Path
) -> tuple[threading.Thread, dict[str, Any]]:
    from tests.runs import train_run

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["tracker"], box["run_id"], box["out"] = train_run(config, client, db_url, store)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def _kill_rank_1_in_epoch_2(
    client: Any,
    db_url: str,
    nanny_of: dict[str, Any] | None = None,
    timeout: float = 300,
    box: dict[str, Any] | None = None,
) -> tuple[str, float]:
    """Once rank 0 reported a step of epoch 2, SIGKILL the worker process that runs rank 1 (with ``nanny_of``:
    its nanny process first, so nothing restarts it); returns the worker's address and when it was killed."""
    from db.runs import RunTracker

    tracker = RunTracker(db_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = tracker.list(kind="train")
        if runs and any(e.epoch == 2 for e in tracker.events(runs[0].id, kind="step")):
            rank1 = [w.worker for w in tracker.worker_stats(runs[0].id) if w.rank == 1][0]
            pid = client.run(os.getpid, workers=[rank1])[rank1]  # Dask: the worker's process id
            if nanny_of is not None:
                nanny_of[rank1].send_signal(signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)
            return rank1, time.time()
        if box is not None and "error" in box:
            raise AssertionError(f"training failed before the kill: {box['error']}")
        time.sleep(0.1)
    raise AssertionError(f"training did not reach epoch 2 within {timeout} s")


def _check_recovered(box: dict[str, Any], killed_at: float, ranks_after: int) -> dict[str, Any]:
    assert "error" not in box, box.get("error")
    tracker, run_id, out = box["tracker"], box["run_id"], box["out"]
    row = tracker.get(run_id)
    assert row.status == "succeeded"
    m = row.metrics
    assert [h["epoch"] for h in m["history"]] == [1, 2, 3] and m["epochs_run"] == [1, 2, 3]
    assert len(m["restarts"]) == 1 and m["num_ranks"] == ranks_after
    restart = m["restarts"][0]
    assert restart["rank"] == 1 and restart["ranks_after"] == ranks_after and restart["from_epoch"] in (1, 2)
    events = tracker.events(run_id, kind="restart")
    assert len(events) == 1 and events[0].data["ranks_before"] == 2
    from app.services.live import live_status

    shown = live_status(tracker, run_id).restarts
    assert list(shown["restart"]) == [1] and list(shown["ranks_after"]) == [ranks_after]
    print(
        f"\nrecovery: kill -> detected {restart['detected_at'] - killed_at:.1f} s, "
        f"waited {restart['waited_s']:.1f} s, "
        f"kill -> first step of the relaunch {restart['first_step_at'] - killed_at:.1f} s "
        f"(from epoch {restart['from_epoch']}, {ranks_after} rank(s))"
    )
    return out


@pytest.mark.usefixtures("home")
def test_killed_worker_is_replaced_and_training_resumes_from_the_last_checkpoint(
    cluster_client: Any, db_url: str, tmp_path: Path
) -> None:
    store = make_store(tmp_path / "s.zarr", counts={"train": 120, "val": 4, "test": 2})
    thread, box = _train_in_thread(_config(store), cluster_client, db_url, store)
    worker, killed_at = _kill_rank_1_in_epoch_2(cluster_client, db_url, box=box)
    thread.join(600)
    assert not thread.is_alive(), "training did not finish within 600 s of the kill"
    out = _check_recovered(box, killed_at, ranks_after=2)
    ranks = out["ranks"]
    assert [r["optimizer_iterations"] for r in ranks] == [3 * STEPS] * 2  # Adam's steps continued, none repeated
    assert out["metrics"]["weights_identical"] and worker not in [r["worker"] for r in ranks]


# ---- a cluster of separate processes whose worker can be kept from coming back ---------------------------------
def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    from core.distributed.cluster import worker_env

    env = {**os.environ, **worker_env(1), "PYTHONPATH": str(REPO)}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[tuple[Any, list[subprocess.Popen[bytes]]]]:
    """A scheduler and two ``dask worker`` commands (nanny processes), each nanny with one worker process."""
    from distributed import Client

    scheduler_file = tmp_path / "scheduler.json"
    procs = [
        _spawn(
            [
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                ":0",
                "--scheduler-file",
                str(scheduler_file),
            ],
            tmp_path / "sched.log",
        )
    ]
    deadline = time.monotonic() + 120
    while not scheduler_file.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    for i in range(2):
        procs.append(
            _spawn(
                [
                    "distributed.cli.dask_worker",
                    "--scheduler-file",
                    str(scheduler_file),
                    "--nthreads",
                    "1",
                    "--nworkers",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--memory-limit",
                    "4GiB",
                ],
                tmp_path / f"worker-{i}.log",
            )
        )
    client = Client(scheduler_file=str(scheduler_file), timeout=60)
    try:
        client.wait_for_workers(2, timeout=180)
        yield client, procs
    finally:
        client.close()
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(30)


@pytest.mark.usefixtures("home")
def test_worker_that_never_comes_back_leaves_data_parallel_training_on_one_rank(
    own_cluster: Any, db_url: str, tmp_path: Path
) -> None:
    client, procs = own_cluster
    store = make_store(tmp_path / "s.zarr", counts={"train": 120, "val": 4, "test": 2})
    nanny_of = {a: p for p in procs[1:] for a, pid in client.run(os.getppid).items() if pid == p.pid}
    assert len(nanny_of) == 2, "each worker process's parent must be one of the dask worker commands"
    thread, box = _train_in_thread(_config(store, restart_wait_s=15), client, db_url, store)
    worker, killed_at = _kill_rank_1_in_epoch_2(client, db_url, nanny_of, box=box)
    thread.join(600)
    assert not thread.is_alive(), "training did not finish within 600 s of the kill"
    out = _check_recovered(box, killed_at, ranks_after=1)
    restart = out["metrics"]["restarts"][0]
    assert restart["shrunk"] and restart["waited_s"] >= 15 and worker not in client.run(os.getpid)
    r0 = out["ranks"][0]
    assert r0["size"] == 1 and r0["steps_per_epoch"] == 2 * STEPS  # the whole train split on the one rank
    lrs = [h["lr"] for h in out["metrics"]["history"]]
    assert lrs[0] > 1.5e-3 and lrs[-1] == pytest.approx(1e-3)  # scaled by 2 ranks, then by the 1 rank left
