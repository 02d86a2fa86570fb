"""Workers that earlier jobs left heavy are replaced before the next job; a worker holding data is not."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from distributed import Client, LocalCluster

from core.distributed.cluster import live_workers, local_cluster
from core.distributed.recycling import REFRESH_MEMORY_FRACTION, end_workers, refresh_workers

pytestmark = pytest.mark.cluster

LIMIT = 1 << 30
_KEPT: list[Any] = []


def _leak(nbytes: int) -> int:
    """What a finished job leaves behind in a worker process: memory no task result accounts for."""
    _KEPT.append(np.ones(nbytes, np.uint8))
    return len(_KEPT)


def _kept() -> int:
    return len(_KEPT)


def _memory(client: Client, address: str) -> int:
    return int(live_workers(client)[address]["metrics"]["memory"])


def _wait_memory_above(client: Client, nbytes: float, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not all(w["metrics"]["memory"] > nbytes for w in live_workers(client).values()):
        assert time.monotonic() < deadline, "the workers' memory never reached the leak"
        time.sleep(0.5)


def test_heavy_idle_worker_is_replaced_and_one_holding_data_is_not() -> None:
    """Three rounds in a row (Dask's graceful restart lost both workers of such a cluster on its second round)."""
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=LIMIT, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        a, b = sorted(live_workers(client))
        assert refresh_workers(client) == []  # fresh workers are light
        leak = int(0.6 * LIMIT)
        held = client.submit(np.ones, leak, np.uint8, workers=[b], pure=False)  # b holds a result someone uses
        held.result()
        for _ in range(3):
            client.submit(_leak, leak, workers=[a], pure=False).result()
            _wait_memory_above(client, REFRESH_MEMORY_FRACTION * LIMIT)
            assert refresh_workers(client) == [a]
            workers = live_workers(client)
            assert b in workers and len(workers) == 2
            (a,) = set(workers) - {b}
            assert _memory(client, a) < REFRESH_MEMORY_FRACTION * LIMIT
            assert client.submit(_kept, workers=[a], pure=False).result() == 0  # the leak went with the old process
        assert held.result().nbytes == leak  # b's data survived


def test_local_cluster_keeps_its_workers_through_replacements_in_a_row() -> None:
    """Eight replacements back to back (~3 s each): a plain LocalCluster retired its nannies on the fifth, when a
    worker's name was missing 15 s after an earlier replacement (see core.distributed.cluster.KEEP_NANNIES)."""
    with local_cluster(2, 1, dashboard_address=None, memory_limit=LIMIT) as cluster, Client(cluster) as client:
        names = {w["name"] for w in live_workers(client).values()}
        for _ in range(8):
            assert end_workers(client, sorted(live_workers(client)), expected=2, timeout=60)
        assert {w["name"] for w in live_workers(client).values()} == names
        assert sorted(client.run(lambda: 1).values()) == [1, 1]
