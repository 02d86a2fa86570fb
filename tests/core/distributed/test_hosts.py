"""Horovod across hosts, simulated on this machine: worker processes in their own UTS namespaces (host names nodea
and nodeb) listening on 127.0.0.2 and 127.0.0.3, started with ``workbench worker``; the rendezvous bound to the one
driver address the workers reach."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from core.distributed import hosts
from core.distributed.launcher import mark_first_step, run_horovod
from core.distributed.preflight import JobNeeds, check_cluster
from core.errors import ClusterError
from tests.clusters import UserCluster, in_host

cloudpickle.register_pickle_by_value(sys.modules[__name__])

STARTUP_LOG = Path(__file__).resolve().parents[3] / "benchmarks" / "out" / "startup.jsonl"


def train_data_parallel(steps: int) -> dict[str, Any]:
    """A small data-parallel training: weights broadcast from rank 0, gradients averaged over the ranks."""
    import os

    import horovod.tensorflow as hvd
    import numpy as np
    import tensorflow as tf

    tf.keras.utils.set_random_seed(100 + hvd.rank())  # different initial weights per rank until the broadcast
    model = tf.keras.Sequential(
        [tf.keras.Input((4,)), tf.keras.layers.Dense(8, activation="relu"), tf.keras.layers.Dense(2)]
    )
    for i, v in enumerate(model.variables):  # Horovod: Keras 3 variables, see STACK.md
        v.assign(hvd.broadcast(tf.convert_to_tensor(v), 0, name=f"init_{i}"))
    opt = tf.keras.optimizers.SGD(0.1)
    rng = np.random.default_rng(hvd.rank())  # each rank its own shard of data
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for step in range(steps):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = hvd.grouped_allreduce(tape.gradient(loss, model.trainable_variables), op=hvd.Average)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        if step == 0:
            mark_first_step()
    return {
        "rank": hvd.rank(),
        "size": hvd.size(),
        "local_rank": hvd.local_rank(),
        "local_size": hvd.local_size(),
        "cross_rank": hvd.cross_rank(),
        "cross_size": hvd.cross_size(),
        "hostname": socket.gethostname(),
        "horovod_hostname": os.environ["HOROVOD_HOSTNAME"],
        "iface": os.environ["HOROVOD_GLOO_IFACE"],
        "rendezvous": os.environ["HOROVOD_GLOO_RENDEZVOUS_ADDR"],
        "weights": np.concatenate([v.numpy().ravel() for v in model.variables]).tolist(),
    }


def test_rendezvous_listens_on_the_driver_address_only() -> None:
    pytest.importorskip("horovod.runner.http.http_server")
    server, address, port = hosts.start_rendezvous(["tcp://127.0.0.2:4000", "tcp://127.0.0.3:4000"])
    try:
        assert address == "127.0.0.1"
        socket.create_connection((address, port), timeout=5).close()
        with pytest.raises(ConnectionRefusedError):  # Horovod's own start() would answer here too
            socket.create_connection(("127.0.0.2", port), timeout=5)
    finally:
        server.stop()  # type: ignore[attr-defined]


def test_driver_address_and_port_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert hosts.driver_address(["tcp://127.0.0.5:1"]) == "127.0.0.1"
    monkeypatch.setenv(hosts.ADDR_ENV, "127.0.0.9")
    assert hosts.driver_address(["tcp://127.0.0.5:1"]) == "127.0.0.9"
    monkeypatch.setenv(hosts.PORT_ENV, "http")
    with pytest.raises(ClusterError, match="WORKBENCH_RENDEZVOUS_PORT='http' is not a TCP port"):
        hosts.rendezvous_port()


def _check_ranks(out: list[dict[str, Any]], per_host: int) -> None:
    assert [r["rank"] for r in out] == list(range(2 * per_host))
    assert {r["cross_size"] for r in out} == {2} and {r["local_size"] for r in out} == {per_host}
    assert sorted(r["hostname"] for r in out) == sorted(["nodea", "nodeb"] * per_host)
    assert all(r["hostname"] == r["horovod_hostname"] and r["iface"] == "lo" for r in out)
    assert {r["rendezvous"] for r in out} == {"127.0.0.1"}
    assert all(r["weights"] == out[0]["weights"] for r in out), "every rank ends with rank 0's weights"


@pytest.mark.cluster
@pytest.mark.horovod
@pytest.mark.slow
def test_two_simulated_hosts_train_data_parallel(tmp_path: Path) -> None:
    with UserCluster(tmp_path / "outside") as cluster:
        cluster.workbench_worker("nodea", host="127.0.0.2", wrap=lambda c: in_host("nodea", c, "127.0.0.2", tmp_path))
        cluster.workbench_worker("nodeb", host="127.0.0.3", wrap=lambda c: in_host("nodeb", c, "127.0.0.3", tmp_path))
        with cluster.client(2) as client:
            report = check_cluster(client, JobNeeds(ranks=2, horovod=True))
            assert report.ok, report.message()
            assert not report.warnings, "workbench worker sets the thread caps"
            assert {r["hostname"] for r in report.workers.values() if r["role"] == "worker"} == {"nodea", "nodeb"}
            one = run_horovod(client, train_data_parallel, (20,), num_ranks=2, timeout=600)
            _check_ranks(list(one), per_host=1)
            for name, host, ip in (("nodea2", "nodea", "127.0.0.2"), ("nodeb2", "nodeb", "127.0.0.3")):
                cluster.workbench_worker(name, host=ip, wrap=lambda c, h=host, i=ip: in_host(h, c, i, tmp_path))
            cluster.wait_for(client, 4, time.monotonic() + 240)
            two = run_horovod(client, train_data_parallel, (20,), num_ranks=4, timeout=600)
            _check_ranks(list(two), per_host=2)
    STARTUP_LOG.parent.mkdir(parents=True, exist_ok=True)
    with STARTUP_LOG.open("a") as fh:
        for name, res in (
            ("two simulated hosts, 2x1 ranks (small model)", one),
            ("two simulated hosts, 2x2 ranks (small model)", two),
        ):
            fh.write(
                json.dumps({"cluster": name, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **res.startup.as_dict()}) + "\n"
            )
