"""Reports from ranks reach the driver's sink in order, all of them before the job returns."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from core.distributed.events import EventForwarder, Reporter, plain, reporting

N_EVENTS = 300


class ListSink:
    def __init__(self) -> None:
        self.records: list[tuple[str, Any, dict[str, Any], float]] = []

    def progress(self, phase: str, done: int, total: int, **data: Any) -> None:
        self.records.append(("progress", (phase, done, total), data, time.time()))

    def event(self, kind: str, **data: Any) -> None:
        self.records.append(("event", kind, data, time.time()))

    def worker_stat(self, worker: str, **data: Any) -> None:
        self.records.append(("worker_stat", worker, data, time.time()))


def chatty_rank(rank: int, reporter: Reporter) -> int:
    """A rank that reports N_EVENTS step events as fast as it can, then its progress and one worker row."""
    for i in range(N_EVENTS):
        reporter.event("step", rank=rank, step=i, sent=time.time(), loss=np.float32(0.5))
    reporter.progress("training", 1, 1, rank=rank, loss=np.float64(0.25))
    reporter.worker_stat(f"rank-{rank}", rank=rank, by_op={"grads": (1, 2)})
    return rank


def test_plain_makes_numpy_and_tuples_msgpack_able() -> None:
    assert plain({"a": np.float32(1.5), "b": (np.int64(2), [np.arange(2)]), 3: float("nan")}) == {
        "a": 1.5,
        "b": [2, [[0, 1]]],
        "3": None,
    }


def test_a_reporter_without_topic_reports_nothing() -> None:
    Reporter().event("step", step=1)  # outside a worker: would fail if it tried to send


@pytest.mark.cluster
def test_every_record_of_every_rank_arrives_in_order_before_close_returns(cluster_client: Any) -> None:
    workers = sorted(cluster_client.scheduler_info(n_workers=-1)["workers"])[:2]
    sink = ListSink()
    t0 = time.time()
    with EventForwarder(cluster_client, sink, ranks=2) as events:
        futures = [
            cluster_client.submit(reporting, chatty_rank, events.reporter, r, workers=[w], pure=False)
            for r, w in enumerate(workers)
        ]
        assert sorted(cluster_client.gather(futures)) == [0, 1]
    closed = time.time()
    for rank in (0, 1):
        mine = [r for r in sink.records if r[2].get("rank") == rank]
        steps = [r[2]["step"] for r in mine if r[0] == "event"]
        assert steps == list(range(N_EVENTS))  # all of them, in the order sent
        assert [r[0] for r in mine][-2:] == ["progress", "worker_stat"]
    assert sum(r[0] == "progress" for r in sink.records) == 2
    assert {r[1] for r in sink.records if r[0] == "worker_stat"} == {"rank-0", "rank-1"}
    assert sink.records[0][2]["loss"] == 0.5
    latency = [r[3] - r[2]["sent"] for r in sink.records if r[0] == "event"]
    print(
        f"{len(latency)} events, median latency {np.median(latency) * 1e3:.1f} ms, max {max(latency) * 1e3:.1f} "
        f"ms, job + close {closed - t0:.2f} s"
    )
