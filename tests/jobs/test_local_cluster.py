"""The embedded local cluster: started in its own process with the size asked for, listening on loopback only."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest


@pytest.mark.cluster
def test_cluster_start_honours_workers_and_binds_loopback(home: Path) -> None:
    from distributed import Client

    from jobs import local_cluster

    state = local_cluster.ensure_local_cluster(n_workers=1)
    try:
        assert json.loads((home / "cluster.json").read_text())["n_workers"] == 1
        with Client(state["scheduler"], timeout=10) as client:
            assert len(client.scheduler_info(n_workers=-1)["workers"]) == 1
        proc = psutil.Process(int(state["pid"]))
        listening = [
            c.laddr
            for p in [proc, *proc.children(recursive=True)]
            for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        ]
        assert len(listening) >= 3  # scheduler, dashboard, the worker (and its nanny)
        assert {a.ip for a in listening} == {"127.0.0.1"}, listening
        assert state["dashboard"].startswith("http://127.0.0.1:")
    finally:
        assert local_cluster.stop_local_cluster()
        psutil.Process(int(state["pid"])).wait(timeout=60)
