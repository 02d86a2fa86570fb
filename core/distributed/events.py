"""Progress, events and per-worker statistics from ranks to the driver, through Dask's structured events.

The engine never writes to the database. A rank reports through a :class:`Reporter`, which logs each record as a
Dask event on the job's own topic (``get_worker().log_event``); on the driver an :class:`EventForwarder`
subscribes to the topic and hands every record, in the order the rank sent it, to a :class:`Sink` that the caller
provides (the jobs layer writes them to the run's rows). Each rank ends with a ``done`` marker (its last record),
and :meth:`EventForwarder.close` waits for all of them, so every record a rank sent has reached the sink before the
job returns.

Records of one rank arrive in order: a worker sends its events and its task results through one batched stream
to the scheduler, which forwards the events to the subscribed client as it handles them.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

DONE_WAIT_SECONDS = 30.0
"""How long :meth:`EventForwarder.close` waits for the ranks' ``done`` markers after a job returned."""


class Sink(Protocol):
    """Where a job's reports go (the jobs layer implements it on a run's database rows)."""

    def progress(self, phase: str, done: int, total: int, **data: Any) -> None:
        """``done`` of ``total`` units of ``phase`` (e.g. epochs of training)."""

    def event(self, kind: str, **data: Any) -> None:
        """One event of ``kind`` (``step``, ``epoch``, ``calibration``, ...) with its data."""

    def worker_stat(self, worker: str, **data: Any) -> None:
        """One row of per-worker statistics (rank, traffic, CPU, memory, samples, ...)."""


def plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as Python numbers and lists, tuples as lists (msgpack-able)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalar or array
        return plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else value
    return value


@dataclass(frozen=True)
class Reporter:
    """A rank's side of the channel: picklable, built by the driver (:attr:`EventForwarder.reporter`).

    ``topic`` None reports nothing (a rank run without a sink).
    """

    topic: str | None = None

    def progress(self, phase: str, done: int, total: int, **data: Any) -> None:
        self._send({"method": "progress", "phase": phase, "done": done, "total": total, "data": data})

    def event(self, kind: str, **data: Any) -> None:
        self._send({"method": "event", "kind": kind, "data": data})

    def worker_stat(self, worker: str, **data: Any) -> None:
        self._send({"method": "worker_stat", "name": worker, "data": data})  # Dask sets "worker" itself

    def done(self) -> None:
        """This rank's last record."""
        self._send({"method": "done"})

    def _send(self, record: dict[str, Any]) -> None:
        if self.topic is None:
            return
        from distributed import get_worker

        get_worker().log_event(self.topic, plain(record))  # Dask: to the scheduler, then the subscribed driver


def reporting(fn: Callable[..., Any], reporter: Reporter, *args: Any, **kwargs: Any) -> Any:
    """Rank function wrapper: ``fn(*args, reporter=reporter, **kwargs)``, then the rank's ``done`` marker."""
    try:
        return fn(*args, reporter=reporter, **kwargs)
    finally:
        reporter.done()


class EventForwarder:
    """The driver's side: subscribes to a fresh topic and forwards its records to ``sink`` on its own thread.

    Use as a context manager around the launch; ``ranks`` is the number of ``done`` markers to wait for.
    """

    def __init__(self, client: Any, sink: Sink | None, ranks: int) -> None:
        self.client, self.sink, self.ranks = client, sink, ranks
        self.topic = f"workbench-{uuid.uuid4().hex}" if sink is not None else None
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._done = 0
        self._all_done = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="event-forwarder", daemon=True)

    @property
    def reporter(self) -> Reporter:
        return Reporter(self.topic)

    def __enter__(self) -> EventForwarder:
        if self.topic is not None:
            self.client.subscribe_topic(self.topic, self._handle)  # Dask: sent before the rank tasks are submitted
            self._thread.start()
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # the job failed: keep what arrived, and the job's own error (also when the client is gone)
            self.close(wait=False)
        except Exception:  # noqa: BLE001 - logged; the job's error propagates instead
            log.exception("recording the failed job's reports failed")

    def _handle(self, event: tuple[float, dict[str, Any]]) -> None:
        self._queue.put(event[1])  # on the client's event loop: only queue it

    def _drain(self) -> None:
        while (record := self._queue.get()) is not None:
            try:
                self._forward(record)
            except BaseException as exc:  # noqa: BLE001 - raised on the driver by close()
                log.exception("forwarding a %s record failed", record.get("method"))
                self._error = self._error or exc

    def _forward(self, record: dict[str, Any]) -> None:
        method, data = record["method"], record.get("data") or {}
        assert self.sink is not None
        if method == "done":
            self._done += 1
            if self._done >= self.ranks:
                self._all_done.set()
        elif method == "progress":
            self.sink.progress(record["phase"], record["done"], record["total"], **data)
        elif method == "event":
            self.sink.event(record["kind"], **data)
        elif method == "worker_stat":
            self.sink.worker_stat(record["name"], **data)
        else:
            raise ValueError(f"unknown report record {method!r}")

    def close(self, wait: bool = True, timeout: float = DONE_WAIT_SECONDS) -> None:
        """Stop forwarding; with ``wait``, first wait until every rank's ``done`` marker came through.

        Raises:
            RuntimeError: a rank's records did not all arrive within ``timeout`` s, or the sink failed.
        """
        if self.topic is None:
            return
        t0 = time.monotonic()
        arrived = self._all_done.wait(timeout) if wait else True
        self.client.unsubscribe_topic(self.topic)
        self._queue.put(None)
        self._thread.join(max(timeout - (time.monotonic() - t0), 1.0))
        if self._error is not None:
            raise RuntimeError(f"recording the job's reports failed: {self._error}") from self._error
        if not arrived:
            raise RuntimeError(
                f"only {self._done} of {self.ranks} ranks' reports reached the driver within "
                f"{timeout:.0f} s after the job ended; the run's events are incomplete"
            )
