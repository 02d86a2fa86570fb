"""Replacing worker processes: ending stuck ones, and recycling those that earlier jobs left heavy.

A worker process is ended as a crash ends it (``os._exit``); its nanny then always starts a fresh one. Dask's
graceful ``client.restart_workers`` can race with the worker's own close and retire the nanny for good
(dask/distributed#7312; measured here: the second of two restarts of a 2-worker LocalCluster lost both workers).

TensorFlow keeps ~70 MB of every finished job's graphs and heap in a long-lived worker process (measured on the
launch matrix; ``tf.keras.backend.clear_session`` and ``malloc_trim`` do not give it back), so a worker that ran a
few dozen jobs reaches Dask's pause threshold (80 % of its memory limit) and the next job's tasks wait on it for
ever. :func:`refresh_workers` replaces such workers before a job places work on them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from distributed import Client

from core.distributed.cluster import live_workers

log = logging.getLogger(__name__)

REFRESH_MEMORY_FRACTION = 0.5
"""An idle worker above this share of its memory limit is replaced."""
REPLACE_SECONDS = 120.0


def _exit_process_soon() -> None:
    """End this worker process in 0.2 s (after answering the driver); its nanny starts a fresh one."""
    # a thread blocked in a collective cannot be interrupted from Python: ending the process is the only stop
    threading.Timer(0.2, os._exit, args=(70,)).start()


def end_workers(client: Client, addresses: list[str], expected: int, timeout: float = REPLACE_SECONDS) -> bool:
    """End the worker processes at ``addresses`` and wait until the cluster has ``expected`` workers again, none
    of them at those addresses; False (logged) when it has not after ``timeout`` s."""
    try:
        client.run(_exit_process_soon, workers=addresses)
    except Exception:  # noqa: BLE001 - the worker may already be gone
        log.exception("could not reach workers %s to end them", addresses)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = live_workers(client)
        if not set(addresses) & set(workers) and len(workers) >= expected:
            return True
        time.sleep(0.5)
    log.error(
        "after ending workers %s the cluster has %d of %d workers after %.0f s; restart the cluster if "
        "jobs keep failing",
        addresses,
        len(live_workers(client)),
        expected,
        timeout,
    )
    return False


def refresh_workers(client: Client, workers: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Replace the workers that run no task, hold no task's data, have a nanny and whose process uses more than
    :data:`REFRESH_MEMORY_FRACTION` of its memory limit; returns their (old) addresses.

    ``workers``: the scheduler's live workers when the caller has them (default: asked now).
    """
    workers = live_workers(client) if workers is None else workers
    busy = {w for w, keys in client.processing().items() if keys}
    heavy = [a for a, info in workers.items() if a not in busy and _heavy(info)]
    if heavy:
        log.warning(
            "replacing worker(s) %s before the job: their memory is above %.0f %% of the limit (held by earlier jobs)",
            heavy,
            100 * REFRESH_MEMORY_FRACTION,
        )
        end_workers(client, heavy, expected=len(workers))
    return heavy


def _heavy(info: dict[str, Any]) -> bool:
    metrics, limit = info.get("metrics", {}), info.get("memory_limit")
    return bool(
        info.get("nanny")
        and limit
        and not metrics.get("managed_bytes")
        and metrics.get("memory", 0) > REFRESH_MEMORY_FRACTION * limit
    )
