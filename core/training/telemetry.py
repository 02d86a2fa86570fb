"""Per-rank telemetry of distributed jobs: traffic, CPU and memory, recorded over time in ``worker_stats``.

Traffic is counted exactly from the tensors a rank sends and receives through each collective, using the
collective's algorithm (gloo's ring allreduce moves ``2 (N-1)/N`` of the buffer out of and into every rank), plus,
where available, the host's network counters (``psutil.net_io_counters``: machine-wide, so on a one-machine cluster
they include every process's loopback traffic; recorded as context, not as the rank's own figure).
CPU is this process's utilisation (percent of one core) and memory its peak RSS, sampled by a background thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil


def nbytes(tensors: Any) -> int:
    """Bytes held by a tensor, array, or (nested) list/tuple/dict of them."""
    if tensors is None:
        return 0
    if isinstance(tensors, dict):
        return sum(nbytes(t) for t in tensors.values())
    if isinstance(tensors, (list, tuple)):
        return sum(nbytes(t) for t in tensors)
    if hasattr(tensors, "nbytes"):
        return int(tensors.nbytes)
    shape = getattr(tensors, "shape", None)
    dtype = getattr(tensors, "dtype", None)
    if shape is not None and dtype is not None:
        size = getattr(dtype, "size", None) or np.dtype(getattr(dtype, "as_numpy_dtype", np.float32)).itemsize
        return int(np.prod([int(d) for d in shape])) * int(size)
    return 0


@dataclass
class Telemetry:
    """Counters of one rank. Thread-safe; call :meth:`start` once and :meth:`stop` at the end."""

    rank: int
    size: int
    worker: str = ""
    sample_every: float = 0.5
    bytes_sent: int = 0
    bytes_recv: int = 0
    by_op: dict[str, list[int]] = field(default_factory=dict)  # op -> [sent, received]
    peak_rss: int = 0
    _cpu_samples: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _t0: float = 0.0
    _cpu0: float = 0.0
    _net0: tuple[int, int] = (0, 0)

    # ---- traffic -----------------------------------------------------------------------------------------------
    def add(self, op: str, sent: int, recv: int) -> None:
        with self._lock:
            self.bytes_sent += int(sent)
            self.bytes_recv += int(recv)
            s, r = self.by_op.get(op, [0, 0])
            self.by_op[op] = [s + int(sent), r + int(recv)]

    def allreduce(self, tensors: Any, op: str = "allreduce") -> None:
        """A ring allreduce of ``tensors``: each rank sends and receives ``2 (N-1)/N`` of their bytes."""
        if self.size > 1:
            b = nbytes(tensors) * 2 * (self.size - 1) // self.size
            self.add(op, b, b)

    def broadcast(self, tensors: Any, root: int = 0, op: str = "broadcast") -> None:
        """A broadcast from ``root`` (counted as the root sending to each other rank directly)."""
        if self.size > 1:
            b = nbytes(tensors)
            self.add(op, b * (self.size - 1) if self.rank == root else 0, 0 if self.rank == root else b)

    def send(self, tensors: Any, op: str = "send") -> None:
        self.add(op, nbytes(tensors), 0)

    def recv(self, tensors: Any, op: str = "recv") -> None:
        self.add(op, 0, nbytes(tensors))

    # ---- CPU / memory ------------------------------------------------------------------------------------------
    def start(self) -> Telemetry:
        self._proc = psutil.Process()
        self._t0 = time.monotonic()
        times = self._proc.cpu_times()
        self._cpu0 = times.user + times.system
        self._net0 = _net()
        self.peak_rss = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._loop, name=f"telemetry-rank-{self.rank}", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        proc = self._proc
        proc.cpu_percent(None)
        while not self._stop.wait(self.sample_every):
            try:
                self._cpu_samples.append(proc.cpu_percent(None))
                self.peak_rss = max(self.peak_rss, proc.memory_info().rss)
            except psutil.Error:
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def snapshot(self) -> dict[str, Any]:
        """Cumulative figures since :meth:`start` (JSON-able)."""
        times = self._proc.cpu_times()
        wall = max(time.monotonic() - self._t0, 1e-9)
        net = _net()
        with self._lock:
            return {
                "rank": self.rank,
                "worker": self.worker,
                "seconds": wall,
                "bytes_sent": self.bytes_sent,
                "bytes_recv": self.bytes_recv,
                "by_op": {k: list(v) for k, v in self.by_op.items()},
                "cpu_percent": 100.0 * (times.user + times.system - self._cpu0) / wall,
                "cpu_samples": list(self._cpu_samples[-120:]),
                "peak_mem_bytes": int(max(self.peak_rss, self._proc.memory_info().rss)),
                "host_net_bytes_sent": net[0] - self._net0[0],
                "host_net_bytes_recv": net[1] - self._net0[1],
            }

    def record(self, sink: Any, phase: str, samples: int | None = None, **extra: Any) -> None:
        """Report the current snapshot as one ``worker_stats`` row to ``sink`` (a
        :class:`core.distributed.events.Sink` or Reporter; call per epoch / at the end)."""
        snap = self.snapshot()
        sink.worker_stat(
            self.worker or f"rank-{self.rank}",
            rank=self.rank,
            phase=phase,
            bytes_sent=snap["bytes_sent"],
            bytes_recv=snap["bytes_recv"],
            cpu_percent=snap["cpu_percent"],
            peak_mem_bytes=snap["peak_mem_bytes"],
            samples=samples,
            **{
                k: v
                for k, v in snap.items()
                if k not in ("bytes_sent", "bytes_recv", "cpu_percent", "peak_mem_bytes", "rank", "worker")
            },
            **extra,
        )


def _net() -> tuple[int, int]:
    try:
        c = psutil.net_io_counters()
        return int(c.bytes_sent), int(c.bytes_recv)
    except (OSError, AttributeError):
        return 0, 0
