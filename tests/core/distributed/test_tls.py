"""TLS on the cluster: a self-signed CA and certificate made with the ``openssl`` CLI, the embedded cluster started
with them (``jobs cluster serve`` in its own process) and a real 1-rank Horovod training run over ``tls://``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from core.configs import ClusterConfig
from core.training.config import TrainJobConfig
from tests.core.training.test_loop import make_store


@pytest.fixture
def tls_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """CA, certificate and key for 127.0.0.1 / localhost, exported as WORKBENCH_TLS_CA / _CERT / _KEY."""
    d = tmp_path / "tls"
    d.mkdir()
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=workbench-test-ca",
    )
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=localhost")
    openssl(
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "node.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )
    files = {
        "WORKBENCH_TLS_CA": d / "ca.pem",
        "WORKBENCH_TLS_CERT": d / "node.pem",
        "WORKBENCH_TLS_KEY": d / "node.key",
    }
    for name, path in files.items():
        monkeypatch.setenv(name, str(path))
    return files


def test_partial_tls_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.distributed.cluster import connect, security
    from core.errors import ConfigError

    monkeypatch.setenv("WORKBENCH_TLS_CA", "/nowhere/ca.pem")
    monkeypatch.delenv("WORKBENCH_TLS_CERT", raising=False)
    monkeypatch.delenv("WORKBENCH_TLS_KEY", raising=False)
    with pytest.raises(ConfigError, match="WORKBENCH_TLS_CERT, WORKBENCH_TLS_KEY is not set"):
        security()
    monkeypatch.delenv("WORKBENCH_TLS_CA")
    with pytest.raises(ConfigError, match="uses TLS: set WORKBENCH_TLS_CA"):
        connect(ClusterConfig(scheduler_address="tls://127.0.0.1:8786"))


@pytest.mark.cluster
@pytest.mark.horovod
@pytest.mark.skipif(importlib.util.find_spec("horovod") is None, reason="horovod is not installed")
@pytest.mark.shared_data
def test_embedded_cluster_over_tls_trains_a_run(
    tls_files: dict[str, Path], home: Path, db_url: str, tmp_path: Path, shared_data: Path
) -> None:
    from distributed import Client

    from db.runs import RunTracker
    from jobs import local_cluster

    state = local_cluster.ensure_local_cluster(n_workers=1, timeout=180)
    try:
        assert state["scheduler"].startswith("tls://127.0.0.1:")
        with pytest.raises((OSError, TimeoutError)):  # a client without certificates is not let in
            Client(state["scheduler"].replace("tls://", "tcp://"), timeout=5)
        store = make_store(tmp_path / "s.zarr")
        from core.data.samples import register_samples
        from db.scenes import SceneStore

        register_samples(shared_data, SceneStore(db_url), home, only=["strzegom"])  # the run names its scene
        config = TrainJobConfig(
            scene="strzegom",
            store=str(store),
            model="unet",
            model_params={"width": 2, "depth": 2},
            scheme="data_parallel",
            num_workers=1,
            epochs=1,
            batch_size=2,
            cluster=ClusterConfig(scheduler_address=state["scheduler"]),
        )
        cfg = tmp_path / "train.json"
        cfg.write_text(config.model_dump_json())
        # the CLI in its own process, as a user runs it (and free of this session's other clusters)
        done = subprocess.run(
            [sys.executable, "-m", "jobs", "run", str(cfg)],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_DB_URL": db_url},
        )
        assert done.returncode == 0, done.stderr[-3000:]
        row = RunTracker(db_url).list(kind="train")[0]
        assert row.status == "succeeded" and row.cluster["scheduler"] == state["scheduler"]
        assert all(w["address"].startswith("tls://") for w in row.cluster["workers"])
    finally:
        assert local_cluster.stop_local_cluster()
        psutil.Process(int(state["pid"])).wait(timeout=60)
