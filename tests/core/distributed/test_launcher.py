"""Horovod ranks in real Dask worker processes (the session's 2-worker LocalCluster), over gloo."""

from __future__ import annotations

import socket
import sys
import time

import cloudpickle
import pytest

pytest.importorskip("horovod.tensorflow")

from core.distributed.hosts import route_address  # noqa: E402
from core.distributed.launcher import (  # noqa: E402
    _iface_for,
    allreduce_probe,
    run_horovod,
    run_single,
)
from core.errors import ClusterError, JobCancelledError, JobFailedError  # noqa: E402

# Rank functions of this module travel by value: the workers need not import the test package.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def fail_on_rank(bad_rank: int) -> str:
    """Rank ``bad_rank`` raises after one collective; the others block in the next collective."""
    import horovod.tensorflow as hvd
    import tensorflow as tf

    hvd.allreduce(tf.constant([1.0]), name="first")
    if hvd.rank() == bad_rank:
        raise ValueError(f"bad input on rank {hvd.rank()}")
    hvd.allreduce(tf.constant([2.0]), name="second")  # never completes for the peers
    time.sleep(120)
    return "unreachable"


def sleep_outside_collective(seconds: float) -> str:
    """Rank 1 fails at once; rank 0 is busy outside Horovod and does not notice: its worker must be restarted."""
    import horovod.tensorflow as hvd

    if hvd.rank() == 1:
        raise RuntimeError("rank 1 gives up")
    time.sleep(seconds)
    return "slept"


def test_gloo_interface_is_the_one_carrying_the_worker_address() -> None:
    import psutil

    assert _iface_for("127.0.0.1") == "lo" and route_address("127.0.0.1") == "127.0.0.1"
    mine = [
        (name, a.address)
        for name, addrs in psutil.net_if_addrs().items()
        for a in addrs
        if a.family == socket.AF_INET and not a.address.startswith("127.")
    ]
    for name, ip in mine:
        assert _iface_for(ip) == name
        assert route_address(ip) == ip  # the driver reaches its own address directly
    with pytest.raises(ClusterError, match="no network interface of .* carries the worker address 203.0.113.7"):
        _iface_for("203.0.113.7")


@pytest.mark.cluster
@pytest.mark.horovod
def test_allreduce_across_two_ranks(cluster_client) -> None:  # type: ignore[no-untyped-def]
    results = run_horovod(cluster_client, allreduce_probe, args=(1.5,), num_ranks=2, env=ENV)
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["size"] == 2 for r in results)
    assert all(r["sum"] == pytest.approx(1.5 * 1 + 1.5 * 2) for r in results)
    assert len(set(results.workers)) == 2  # one worker process per rank
    assert 0 <= results.startup.launch_to_task <= results.startup.launch_to_rendezvous <= results.wall_s


@pytest.mark.cluster
@pytest.mark.horovod
def test_more_ranks_than_workers_is_refused(cluster_client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ClusterError, match="asked for 3 ranks but the cluster has 2 workers; .*at least 3 worker"):
        run_horovod(cluster_client, allreduce_probe, args=(1.0,), num_ranks=3)


@pytest.mark.cluster
@pytest.mark.horovod
def test_failing_rank_stops_the_others_and_the_next_job_runs(cluster_client) -> None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    with pytest.raises(JobFailedError, match="rank 1 of 2 failed: .*ValueError: bad input on rank 1") as info:
        run_horovod(cluster_client, fail_on_rank, args=(1,), num_ranks=2, env=ENV)
    assert time.monotonic() - t0 < 30  # the blocked rank 0 did not wait for its 120 s sleep nor the gloo timeout
    assert "traceback of rank 1" in str(info.value) and "fail_on_rank" in str(info.value)
    results = run_horovod(cluster_client, allreduce_probe, args=(2.0,), num_ranks=2, env=ENV)
    assert [r["sum"] for r in results] == [6.0, 6.0]


@pytest.mark.cluster
@pytest.mark.horovod
def test_rank_that_ignores_the_failure_has_its_worker_restarted(cluster_client) -> None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    with pytest.raises(JobFailedError, match="rank 1 of 2 failed: .*rank 1 gives up"):
        run_horovod(cluster_client, sleep_outside_collective, args=(300,), num_ranks=2, env=ENV, grace=2)
    assert time.monotonic() - t0 < 90
    assert len(cluster_client.scheduler_info(n_workers=-1)["workers"]) == 2
    results = run_horovod(cluster_client, allreduce_probe, args=(1.0,), num_ranks=2, env=ENV)
    assert [r["sum"] for r in results] == [3.0, 3.0]


@pytest.mark.cluster
def test_cancellation_stops_the_ranks(cluster_client) -> None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    with pytest.raises(JobCancelledError, match="cancelled"):
        run_single(cluster_client, time.sleep, args=(300,), cancelled=lambda: time.monotonic() - t0 > 1.0)
    assert time.monotonic() - t0 < 90
    assert run_single(cluster_client, sum, args=([1, 2, 3],)) == [6]


@pytest.mark.cluster
def test_timeout_stops_the_job(cluster_client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(JobFailedError, match=r"did not finish within timeout=1.0 s"):
        run_single(cluster_client, time.sleep, args=(300,), timeout=1.0)
    assert run_single(cluster_client, max, args=([4, 7],)) == [7]


def test_rendezvous_server_listens_on_the_workers_route_only() -> None:
    import psutil

    from core.distributed.hosts import start_rendezvous

    server, address, port = start_rendezvous(["tcp://127.0.0.1:1234"])
    assert address == "127.0.0.1"
    try:
        listening = [
            c.laddr
            for c in psutil.Process().net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        ]
        assert [a.ip for a in listening] == ["127.0.0.1"]
    finally:
        server.stop()
