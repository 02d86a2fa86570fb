"""HPC through dask-jobqueue on the real one-node SLURM of tests/servers.py: the job script `cluster plan` prints, a
2-rank pipeline on workers that SLURM started (jobs cancelled afterwards), and the app's cluster as SLURM jobs.

The worker jobs import this checkout: their prologue puts it on PYTHONPATH, as a user's prologue must (or it
activates an environment where the package is installed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from core.data.samples import register_samples
from db.runs import RunTracker
from db.scenes import SceneStore
from jobs.cli import main
from tests.jobs.test_user_cluster import pipeline_config, record_startup

REPO = Path(__file__).resolve().parents[2]


def hpc_settings(partition: str, logs: Path, n_jobs: int = 2) -> dict[str, Any]:
    """One worker process of 1 thread per job, everything on loopback."""
    return {
        "system": "slurm",
        "queue": partition,
        "walltime": "00:20:00",
        "cores": 1,
        "memory": "3GiB",
        "processes": 1,
        "n_jobs": n_jobs,
        "python": sys.executable,
        "interface": "lo",
        "host": "127.0.0.1",
        "log_directory": str(logs),
        "death_timeout": 60,
        "job_script_prologue": [f"export PYTHONPATH={REPO}"],
        "worker_extra_args": ["--dashboard-address", "127.0.0.1:0"],
    }


def test_cluster_plan_prints_the_job_script_of_a_job_config(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = json.loads(pipeline_config(tmp_path / "p.json").read_text())
    config["cluster"] = {"hpc": hpc_settings("gpu", tmp_path / "logs")}
    (tmp_path / "p.json").write_text(json.dumps(config))
    assert main(["cluster", "plan", "--config", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    for line in (
        "#SBATCH -p gpu",
        "#SBATCH -t 00:20:00",
        "#SBATCH --cpus-per-task=1",
        f"export PYTHONPATH={REPO}",
        "export OMP_NUM_THREADS=1",
    ):
        assert line in out.splitlines(), out
    assert "2 job(s) x 1 worker process(es) of 1 thread(s)" in out and "distributed.cli.dask_worker" in out
    (tmp_path / "hpc.json").write_text(json.dumps({"system": "slurm", "partition": "gpu"}))
    assert main(["cluster", "plan", "--hpc", str(tmp_path / "hpc.json")]) == 2
    assert "unknown HPC cluster setting(s) ['partition']" in capsys.readouterr().err


@pytest.mark.cluster
@pytest.mark.horovod
@pytest.mark.shared_data
@pytest.mark.slow
def test_pipeline_on_workers_that_slurm_started(
    home: Path, tmp_path: Path, db_url: str, slurm_cluster: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    register_samples(None, SceneStore(db_url), home, only=["chiapas_landsat"])
    config = json.loads(pipeline_config(tmp_path / "p.json").read_text())
    config["cluster"] = {"hpc": hpc_settings(slurm_cluster.partition, tmp_path / "logs"), "workers_timeout": 300}
    (tmp_path / "p.json").write_text(json.dumps(config))
    t0 = time.monotonic()
    assert main(["run", str(tmp_path / "p.json")]) == 0, capsys.readouterr().err
    wall = time.monotonic() - t0
    row = RunTracker(db_url).list()[0]
    assert row.status == "succeeded", row.error
    assert row.cluster["n_workers"] == 2 and row.metrics["training"]["weights_identical"]
    assert slurm_cluster.wait_empty(60) == [], "the worker jobs are cancelled when the job ends"
    first_step = record_startup(
        "SLURM (2 worker jobs)", row, cli_wall_s=wall, submit_to_workers_s=row.cluster["preflight"]["connect_s"]
    )
    assert first_step > 0


@pytest.mark.cluster
@pytest.mark.slow
def test_the_apps_cluster_as_slurm_jobs(home: Path, tmp_path: Path, slurm_cluster: Any) -> None:
    from distributed import Client

    from jobs.local_cluster import running_cluster, stop_local_cluster

    settings_file = tmp_path / "hpc.json"
    settings_file.write_text(json.dumps(hpc_settings(slurm_cluster.partition, tmp_path / "logs")))
    env = {**os.environ, "WORKBENCH_HPC_CONFIG": str(settings_file), "PYTHONPATH": str(REPO)}
    serve = subprocess.Popen(
        [sys.executable, "-m", "jobs", "cluster", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while (state := running_cluster()) is None:
            assert serve.poll() is None and time.monotonic() < deadline, serve.communicate(timeout=5)[0].decode()
            time.sleep(1)
        assert state["hpc"] == "slurm" and state["n_workers"] == 2
        with Client(state["scheduler"], timeout=30) as client:
            client.wait_for_workers(2, timeout=180)
        assert len(slurm_cluster.job_ids()) == 2
        assert stop_local_cluster()
        serve.wait(60)
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, 9)
            serve.wait(10)
    assert slurm_cluster.wait_empty(60) == [], "stopping the app's cluster cancels its jobs"
