"""The engine on Dask clusters that users start themselves: stock ``dask scheduler`` / ``dask worker`` processes
started from a folder outside the repository, the CLI with WORKBENCH_SCHEDULER set, and the pre-flight that refuses
a job, naming the worker, before any run row exists."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from core.data.samples import register_samples
from db.runs import RunTracker
from db.scenes import SceneStore
from jobs.cli import main
from tests.clusters import UserCluster, in_host, without_folder

pytestmark = [pytest.mark.cluster, pytest.mark.horovod, pytest.mark.shared_data, pytest.mark.slow]

STARTUP_LOG = Path(__file__).resolve().parents[2] / "benchmarks" / "out" / "startup.jsonl"


def pipeline_config(path: Path, scene: str = "chiapas_landsat") -> Path:
    """A small 2-rank patch-CNN pipeline on the chiapas scene."""
    path.write_text(
        json.dumps(
            {
                "kind": "pipeline",
                "scene": scene,
                "model": "patch_cnn",
                "model_params": {"width": 8},
                "scheme": "data_parallel",
                "num_workers": 2,
                "epochs": 1,
                "batch_size": 32,
                "sampling": {"patch_size": 9, "per_class": 30},
                "predict": False,
            }
        )
    )
    return path


def record_startup(where: str, row: Any, **extra: float) -> float:
    """Append the run's start-up times (pre-flight, training launch to first step) to benchmarks/out/startup.jsonl."""
    startup = row.metrics["training"]["startup"]
    STARTUP_LOG.parent.mkdir(parents=True, exist_ok=True)
    with STARTUP_LOG.open("a") as fh:
        fh.write(
            json.dumps(
                {
                    "cluster": where,
                    "run": row.id,
                    "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "preflight_s": row.cluster["preflight"]["seconds"],
                    **extra,
                    **startup,
                }
            )
            + "\n"
        )
    return float(startup["launch_to_first_step_s"])


def test_stock_dask_cluster_runs_the_pipeline_from_the_cli(
    home: Path, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    register_samples(None, SceneStore(db_url), home, only=["chiapas_landsat"])
    with UserCluster(tmp_path / "outside") as cluster:
        cluster.dask_worker("w", nworkers=2)  # the stock worker, engine on PYTHONPATH
        cluster.client(2).close()
        monkeypatch.setenv("WORKBENCH_SCHEDULER", cluster.address)
        t0 = time.monotonic()
        assert main(["run", str(pipeline_config(tmp_path / "p.json"))]) == 0, capsys.readouterr().err
        wall = time.monotonic() - t0
    row = RunTracker(db_url).list()[0]
    assert row.status == "succeeded", row.error
    assert row.cluster["scheduler"] == cluster.address and row.cluster["n_workers"] == 2
    assert row.metrics["training"]["weights_identical"]
    assert record_startup("user-started (stock dask worker)", row, cli_wall_s=wall) > 0


def test_local_cluster_pipeline_start_up(
    home: Path, tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same pipeline on the CLI's own local cluster (no scheduler given): the start-up to compare with."""
    register_samples(None, SceneStore(db_url), home, only=["chiapas_landsat"])
    config = json.loads(pipeline_config(tmp_path / "p.json").read_text())
    (tmp_path / "p.json").write_text(json.dumps({**config, "cluster": {"n_workers": 2}}))
    t0 = time.monotonic()
    assert main(["run", str(tmp_path / "p.json")]) == 0, capsys.readouterr().err
    wall = time.monotonic() - t0
    row = RunTracker(db_url).list()[0]
    assert row.status == "succeeded", row.error
    assert record_startup("local cluster (2 workers)", row, cli_wall_s=wall) > 0


def test_preflight_names_each_worker_that_cannot_run_the_job(
    home: Path,
    tmp_path: Path,
    db_url: str,
    shared_data: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "data"
    shutil.copytree(shared_data / "chiapas_landsat", data / "chiapas_landsat")
    register_samples(data, SceneStore(db_url), home, only=["chiapas_landsat"])
    with UserCluster(tmp_path / "outside") as cluster:
        cluster.dask_worker("good")
        cluster.dask_worker("nocore", engine=False)  # a Python without the workbench, cwd outside the repository
        cluster.dask_worker("blind", wrap=lambda cmd: without_folder(data, cmd))  # the data folder is empty there
        cluster.dask_worker("noname", wrap=lambda cmd: in_host("nodez", cmd))  # a host whose name does not resolve
        with cluster.client(4) as client:
            good, nocore, blind, noname = (
                cluster.worker_named(client, n) for n in ("good", "nocore", "blind", "noname")
            )
        monkeypatch.setenv("WORKBENCH_SCHEDULER", cluster.address)
        t0 = time.monotonic()
        assert main(["run", str(pipeline_config(tmp_path / "p.json"))]) == 2
        seconds = time.monotonic() - t0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("- ")]
    engine = next(line for line in lines if "cannot import the engine" in line)
    files = next(line for line in lines if "cannot read" in line)
    assert nocore in engine and good not in engine and blind not in engine
    assert "No module named 'core'" in engine and "PYTHONPATH=" in engine
    assert blind in files and good not in files and nocore not in files
    assert "training_labels.tif (vanished)" in files and "scene 'chiapas_landsat'" in files
    network = next(line for line in lines if "does not resolve" in line)
    assert noname in network and "'nodez'" in network and "/etc/hosts" in network
    assert all(w not in network for w in (good, nocore, blind))
    assert len(lines) == 3, err
    assert RunTracker(db_url).list() == [], "a refused job leaves no run behind"
    print(f"pre-flight refused the job in {seconds:.1f} s")


def test_pipeline_on_two_simulated_hosts_from_the_cli(
    home: Path, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`workbench worker` on hosts nodea (127.0.0.2) and nodeb (127.0.0.3): one rank on each."""
    register_samples(None, SceneStore(db_url), home, only=["chiapas_landsat"])
    with UserCluster(tmp_path / "outside") as cluster:
        for name, ip in (("nodea", "127.0.0.2"), ("nodeb", "127.0.0.3")):
            cluster.workbench_worker(name, host=ip, wrap=lambda c, n=name, i=ip: in_host(n, c, i, tmp_path))
        cluster.client(2).close()
        monkeypatch.setenv("WORKBENCH_SCHEDULER", cluster.address)
        t0 = time.monotonic()
        assert main(["run", str(pipeline_config(tmp_path / "p.json"))]) == 0, capsys.readouterr().err
        wall = time.monotonic() - t0
    row = RunTracker(db_url).list()[0]
    assert row.status == "succeeded", row.error
    assert sorted(w["address"].rsplit(":", 1)[0] for w in row.cluster["workers"]) == [
        "tcp://127.0.0.2",
        "tcp://127.0.0.3",
    ]
    assert row.metrics["training"]["weights_identical"]
    assert record_startup("two simulated hosts (workbench worker), 2x1", row, cli_wall_s=wall) > 0
