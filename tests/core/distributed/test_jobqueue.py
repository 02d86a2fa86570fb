"""HPC clusters through dask-jobqueue: the job script, config validation, and 2 worker jobs on a real SLURM.

The SLURM test runs against the one-node cluster of tests/servers.py (munged + slurmctld + slurmd on 127.0.0.1).
Its workers import this checkout: the job prologue puts it on PYTHONPATH, as a user's prologue must (or activate
an environment where the workbench is installed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.distributed.jobqueue import CLUSTER_CLASSES, HPCClusterConfig, job_script, make_cluster, worker_identity
from core.errors import ConfigError
from core.hpc_config import BATCH_SYSTEMS

REPO = Path(__file__).resolve().parents[3]


def _listening(pids: list[int]) -> set[tuple[str, int]]:
    """TCP addresses the processes (and, for workers, their nannies) listen on."""
    import psutil

    procs = {psutil.Process(p) for p in pids}
    procs |= {p.parent() for p in list(procs) if p.parent() is not None and p.pid != os.getpid()}
    return {
        (c.laddr.ip, c.laddr.port)
        for p in procs
        for c in p.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    }


def _cfg(**kw: object) -> HPCClusterConfig:
    base: dict[str, object] = dict(
        system="slurm",
        queue="gpu-long",
        account="proj42",
        walltime="02:30:00",
        cores=4,
        memory="8GiB",
        processes=2,
        n_jobs=3,
        job_directives=("--gres=gpu:1", "#SBATCH --constraint=avx2"),
        job_script_prologue=("source /opt/wb/.venv/bin/activate",),
    )
    base.update(kw)
    return HPCClusterConfig(**base)  # type: ignore[arg-type]


def test_slurm_job_script_holds_partition_walltime_cores_memory_and_directives():
    script = job_script(_cfg(), scheduler_address="tcp://10.0.0.1:8786")
    lines = script.splitlines()
    for expected in (
        "#SBATCH -p gpu-long",
        "#SBATCH -A proj42",
        "#SBATCH -t 02:30:00",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=8G",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --constraint=avx2",
        "#SBATCH -J workbench-worker",
        "source /opt/wb/.venv/bin/activate",
        "export OMP_NUM_THREADS=2",
    ):
        assert expected in lines, f"{expected!r} missing from:\n{script}"
    worker = next(line for line in lines if "distributed.cli.dask_worker" in line)
    assert worker.startswith(f"{sys.executable} -m distributed.cli.dask_worker tcp://10.0.0.1:8786")
    assert "--nthreads 2" in worker and "--nworkers 2" in worker and "--memory-limit 4.00GiB" in worker
    # the environment is activated before the worker starts
    assert lines.index("source /opt/wb/.venv/bin/activate") < lines.index(worker)


def test_pbs_job_script_uses_the_pbs_class_from_the_registry():
    assert set(CLUSTER_CLASSES) == set(BATCH_SYSTEMS) == {"slurm", "pbs"}
    script = job_script(_cfg(system="pbs", job_directives=("-l place=scatter",)))
    assert "#PBS -q gpu-long" in script and "#PBS -A proj42" in script and "#PBS -l walltime=02:30:00" in script
    assert "#PBS -l select=1:ncpus=4:mem=8192MB" in script and "#PBS -l place=scatter" in script


def test_config_round_trips_and_rejects_bad_values_with_the_fix():
    cfg = _cfg()
    assert HPCClusterConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["job_directives"] == ["--gres=gpu:1", "#SBATCH --constraint=avx2"]
    assert (cfg.threads_per_process, cfg.n_workers) == (2, 6)
    with pytest.raises(ConfigError, match=r"system 'lsf' is not supported; expected one of \['pbs', 'slurm'\]"):
        _cfg(system="lsf")
    with pytest.raises(ConfigError, match=r"cores \(3\) must be a multiple of processes \(2\)"):
        _cfg(cores=3)
    with pytest.raises(ConfigError, match=r"walltime '2h' is not HH:MM:SS") as info:
        _cfg(walltime="2h", memory="lots")
    assert "memory 'lots' is not a size" in str(info.value)  # every problem at once
    with pytest.raises(ConfigError, match=r"unknown HPC cluster setting\(s\) \['partition'\]; known settings"):
        HPCClusterConfig.from_dict({"partition": "debug"})
    with pytest.raises(ConfigError, match="job_directives must be a list of strings"):
        _cfg(job_directives="--gres=gpu:1")


@pytest.mark.cluster
@pytest.mark.slow
def test_two_worker_jobs_on_a_real_slurm_run_tasks_and_leave_the_queue_empty(slurm_cluster, tmp_path, capsys):
    from dask.distributed import Client

    cfg = HPCClusterConfig(
        system="slurm",
        queue=slurm_cluster.partition,
        walltime="00:10:00",
        cores=1,
        memory="1GiB",
        processes=1,
        n_jobs=2,
        python=sys.executable,
        interface="lo",
        host="127.0.0.1",
        log_directory=str(tmp_path / "logs"),
        job_script_prologue=(f"export PYTHONPATH={REPO}",),
        death_timeout=30,
        worker_extra_args=("--dashboard-address", "127.0.0.1:0"),
    )
    t0 = time.monotonic()
    cluster = make_cluster(cfg)
    try:
        with Client(cluster) as client:
            try:
                client.wait_for_workers(2, timeout=120)
            except TimeoutError:
                logs = "\n".join(p.read_text()[-2000:] for p in sorted((tmp_path / "logs").glob("*")))
                pytest.fail(f"2 SLURM workers not up in 120 s; squeue: {slurm_cluster.run('squeue')}\n{logs}")
            ready = time.monotonic() - t0
            jobs = slurm_cluster.job_ids()
            assert len(jobs) == 2, jobs
            workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
            assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
            futures = [
                client.submit(worker_identity, workers=[w], pure=False, allow_other_workers=False) for w in workers
            ]
            ids = client.gather(futures)
            assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
            listening = _listening([i["pid"] for i in ids]) | _listening([os.getpid()])
            assert listening and {ip for ip, _ in listening} == {"127.0.0.1"}, listening  # loopback only
    finally:
        cluster.close()
    assert [i["worker"] for i in ids] == workers  # one task ran on each worker
    assert len({i["pid"] for i in ids}) == 2 and {i["slurm_job_id"] for i in ids} == set(jobs)
    assert {i["hostname"] for i in ids} == {slurm_cluster.node}
    assert slurm_cluster.wait_empty(30) == []  # closing the cluster cancelled both jobs
    assert subprocess.run(["squeue", "-h"], capture_output=True, text=True, env=slurm_cluster.env).stdout == ""
    with capsys.disabled():
        print(f"\nSLURM: 2 worker jobs submitted -> 2 workers ready in {ready:.1f} s")
