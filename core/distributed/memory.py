"""Worker memory between jobs: long-lived workers that ran many jobs are restarted before the next one.

TensorFlow keeps ~70 MB of every finished job's graphs and heap in a long-lived worker process (measured on the
launch matrix; ``tf.keras.backend.clear_session`` and ``malloc_trim`` do not give it back), so a worker that ran a
few dozen jobs reaches Dask's pause threshold (80 % of its memory limit) and the next job's tasks wait on it for
ever. :func:`refresh_workers` restarts such workers through their nannies before a job places work on them.
"""

from __future__ import annotations

import logging
from typing import Any

from distributed import Client

from core.distributed.cluster import live_workers

log = logging.getLogger(__name__)

REFRESH_MEMORY_FRACTION = 0.5
"""An idle worker above this share of its memory limit is restarted."""
RESTART_SECONDS = 120


def refresh_workers(client: Client, workers: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Restart the workers that run no task, hold no task's data, have a nanny and whose process uses more than
    :data:`REFRESH_MEMORY_FRACTION` of its memory limit; returns their (old) addresses.

    ``workers``: the scheduler's live workers when the caller has them (default: asked now).
    """
    workers = live_workers(client) if workers is None else workers
    busy = {w for w, keys in client.processing().items() if keys}
    heavy = [a for a, info in workers.items() if a not in busy and _heavy(info)]
    if heavy:
        log.warning(
            "restarting worker(s) %s before the job: their memory is above %.0f %% of the limit (held by earlier jobs)",
            heavy,
            100 * REFRESH_MEMORY_FRACTION,
        )
        client.restart_workers(heavy, timeout=RESTART_SECONDS)
    return heavy


def _heavy(info: dict[str, Any]) -> bool:
    metrics, limit = info.get("metrics", {}), info.get("memory_limit")
    return bool(
        info.get("nanny")
        and limit
        and not metrics.get("managed_bytes")
        and metrics.get("memory", 0) > REFRESH_MEMORY_FRACTION * limit
    )
