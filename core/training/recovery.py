"""Automatic recovery of a training job whose rank lost its worker: wait, restart from the last checkpoint.

When the launcher reports :class:`core.errors.WorkerLostError` (a worker process died or lost contact, and no
rank failed on its own input), :class:`Recovery` waits up to ``restart_wait_s`` for enough idle workers (a nanny
starts a fresh worker for a killed one), picks the run's last complete checkpoint (at most one epoch is lost) and
hands back how to relaunch: the ranks then resume from it as ``--resume`` does (learning-rate schedule, optimizer
state, weight average and epoch history continue). When the workers do not come back in time and the scheme is
``shrinkable`` (data_parallel), training goes on with the ranks there are; the loop re-shards the train split and
scales the learning rate by the new number of ranks. Each restart is reported to the sink as a ``restart`` event
and kept in the run's metrics, with the time from detection to the relaunched ranks' first step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed import Client

from core.distributed.events import Sink
from core.errors import JobCancelledError, JobFailedError, WorkerLostError
from core.training.checkpoints import latest_checkpoint
from core.training.config import TrainJobConfig
from core.training.schemes.api import SchemeSpec
from core.training.weight_average import RAW_FILE

log = logging.getLogger(__name__)

WAIT_POLL_SECONDS = 0.5


def idle_workers(client: Client) -> list[str]:
    """Addresses of the live workers that run no task (what a relaunch can place ranks on)."""
    from core.distributed.cluster import live_workers

    busy = {w for w, keys in client.processing().items() if keys}  # Dask: tasks per worker
    return sorted(w for w in live_workers(client) if w not in busy)


def wait_for_workers(client: Client, n: int, timeout: float, cancelled: Callable[[], bool] | None = None) -> int:
    """Wait up to ``timeout`` s until ``n`` workers are idle; returns how many are (``n`` when they came).

    Raises:
        JobCancelledError: ``cancelled()`` became true while waiting.
    """
    deadline = time.monotonic() + timeout
    while True:
        count = len(idle_workers(client))
        if count >= n or time.monotonic() >= deadline:
            return min(count, n)
        if cancelled is not None and cancelled():
            raise JobCancelledError("the job was cancelled while it waited for workers to restart its ranks")
        time.sleep(WAIT_POLL_SECONDS)


@dataclass
class Recovery:
    """The restarts of one training job: decides each relaunch and keeps its record.

    Attributes:
        records: one dict per restart (``restart``, ``reason``, ``rank``, ``worker``, ``detected_at``,
            ``waited_s``, ``ranks_before``, ``ranks_after``, ``from_epoch``, ``checkpoint``, ``shrunk``, and once
            the relaunched ranks stepped, ``first_step_at`` and ``recovery_s``: detection to that first step).
    """

    config: TrainJobConfig
    client: Client
    scheme: SchemeSpec
    run_dir: Path
    sink: Sink | None = None
    cancelled: Callable[[], bool] | None = None
    records: list[dict[str, Any]] = field(default_factory=list)

    def restart(self, exc: WorkerLostError, num_ranks: int, resume: Path | None) -> tuple[int, Path | None]:
        """After ``exc``: wait for workers, choose ranks and checkpoint; returns ``(num_ranks, resume_dir)``.

        Raises:
            JobFailedError: ``max_restarts`` restarts were used, or too few workers came back for a scheme that
                cannot go on with fewer ranks (the message says which and what to do).
        """
        cfg, detected = self.config, time.time()
        if len(self.records) >= cfg.max_restarts:
            raise JobFailedError(
                f"{exc}\n(gave up after {len(self.records)} automatic restart(s): max_restarts="
                f"{cfg.max_restarts}; raise it, or fix the workers and resume with --resume)"
            ) from exc
        log.warning(
            "training lost a worker (%s); waiting up to %.0f s for %d idle workers", exc, cfg.restart_wait_s, num_ranks
        )
        t0 = time.monotonic()
        n = wait_for_workers(self.client, num_ranks, cfg.restart_wait_s, self.cancelled)
        if n < num_ranks and not (self.scheme.shrinkable and n >= 1):
            raise JobFailedError(
                f"{exc}\n(the restart found {n} idle worker(s) of the {num_ranks} needed after waiting "
                f"restart_wait_s={cfg.restart_wait_s:.0f} s; scheme {self.scheme.name!r} cannot go on with fewer "
                "ranks: start more workers and resume with --resume)"
            ) from exc
        found = latest_checkpoint(self.run_dir / "checkpoints", (RAW_FILE,) if cfg.ema_decay > 0 else ())
        record = {
            "restart": len(self.records) + 1,
            "reason": str(exc).splitlines()[0],
            "rank": exc.rank,
            "worker": exc.worker,
            "detected_at": detected,
            "waited_s": time.monotonic() - t0,
            "ranks_before": num_ranks,
            "ranks_after": n,
            "shrunk": n < num_ranks,
            "from_epoch": found[1] if found else None,
            "checkpoint": str(found[0]) if found else None,
        }
        self.records.append(record)
        if self.sink is not None:
            self.sink.event("restart", phase="training", **record)
        log.warning("restart %d: %d rank(s) from %s", record["restart"], n, record["checkpoint"] or "the start")
        return n, found[0] if found else resume

    def stepped(self, first_step_at: float | None) -> None:
        """The relaunch after the last restart made its first training step at ``first_step_at`` (epoch s)."""
        if self.records and first_step_at is not None:
            last = self.records[-1]
            last["first_step_at"], last["recovery_s"] = first_step_at, first_step_at - last["detected_at"]
