"""A job's own local cluster: workers import TensorFlow as they start, and closing ends them at once."""

from __future__ import annotations

import sys
import time
from typing import Any

import psutil
import pytest

from core.configs import ClusterConfig
from core.distributed.cluster import PRELOADED, connect

pytestmark = pytest.mark.cluster


def _imported() -> list[str]:
    return [name for name in PRELOADED if name in sys.modules]


def _use_keras() -> float:
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    return float(np.asarray(model(np.ones((1, 4), "float32"))).shape[-1])


def test_job_cluster_preloads_tensorflow_and_ends_its_workers_on_close(monkeypatch: Any) -> None:
    monkeypatch.delenv("WORKBENCH_SCHEDULER", raising=False)
    handle = connect(ClusterConfig(n_workers=1))
    try:
        client = handle.client
        deadline = time.monotonic() + 240  # the preload thread imports keras while the worker serves
        while client.run(_imported) != {a: list(PRELOADED) for a in client.run(_imported)}:
            assert time.monotonic() < deadline, "the worker never imported the preloaded modules"
            time.sleep(0.5)
        assert client.submit(_use_keras, pure=False).result() == 2.0  # TensorFlow runs in the worker
        pids = list(client.run(lambda: __import__("os").getpid()).values())
        assert len(pids) == 1
    finally:
        handle.close()
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
