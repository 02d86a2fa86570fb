"""Run Horovod ranks inside Dask worker processes over gloo (no mpirun, no horovodrun).

The recipe is the one horovod.ray uses (see STACK.md): the driver starts Horovod's HTTP rendezvous server, builds
the host plan with ``get_host_assignments``, and submits one task per rank, pinned to one worker process. Each task
sets the ``HOROVOD_*`` environment of its slot, calls ``hvd.init()``, runs the user function and ``hvd.shutdown()``
in a ``finally``. The driver watches all rank futures together: on the first error it collects the other ranks
(which fail within seconds once the failing rank has shut Horovod down), ends the worker processes of ranks that do
not stop (a rank stuck outside Horovod cannot be interrupted from outside its process; the nanny starts a fresh
worker and the launcher waits for it), stops the rendezvous server and raises :class:`JobFailedError` naming the
failing rank and its traceback. Cancellation and timeouts end the rank processes the same way.

A rank function may call :func:`mark_first_step` after its first training step and :func:`rank_info` to learn
its worker; :func:`run_horovod` returns the per-rank results with the startup overhead measured.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from distributed import Client, Future, wait
from distributed.client import FuturesCancelledError

from core.distributed.recycling import end_workers, refresh_workers
from core.errors import ClusterError, JobCancelledError, JobFailedError, SchedulerLostError, WorkerLostError

log = logging.getLogger(__name__)

GLOO_TIMEOUT_SECONDS = 60
"""Default ``HOROVOD_GLOO_TIMEOUT_SECONDS`` (rendezvous and collectives): how long a rank waits for its peers."""
STOP_GRACE_SECONDS = 10.0
"""After the first failure, how long the other ranks get to stop on their own before their workers are restarted."""
POLL_SECONDS = 0.25
SCHEDULER_LOST_SECONDS = 5.0
"""How long the driver tolerates a lost connection to the scheduler (the client reconnects meanwhile) before failing."""

# Secondary failures: what the surviving ranks raise once a peer has shut Horovod down.
_SECONDARY = (
    "Horovod has been shut down",
    "HorovodInternalError",
    "Horovod is not initialized",
    "Gloo",
    "Connection closed by peer",
    "Connection reset by peer",
    "Broken pipe",
    "Timed out",
)

# Per-process state of the rank running in this worker (one rank per worker process).
_RANK: dict[str, Any] = {}


@dataclass(frozen=True)
class StartupOverhead:
    """Seconds from the driver's launch to the slowest rank reaching each point (one clock; see note).

    ``launch_to_task`` is the Dask scheduling delay, ``launch_to_rendezvous`` includes ``hvd.init()`` (imports and
    gloo rendezvous), ``launch_to_first_step`` includes building the model and the first training step (``None``
    when the function never called :func:`mark_first_step`). Rank-side times come from each worker's clock, so on
    several hosts the figures include their clock skew.
    """

    launch_to_task: float
    launch_to_rendezvous: float
    launch_to_first_step: float | None

    def as_dict(self) -> dict[str, float | None]:
        return {
            "launch_to_task_s": self.launch_to_task,
            "launch_to_rendezvous_s": self.launch_to_rendezvous,
            "launch_to_first_step_s": self.launch_to_first_step,
        }


class RankResults(list):  # type: ignore[type-arg]
    """The value each rank's function returned, in rank order, plus the job's startup overhead and wall time."""

    startup: StartupOverhead
    wall_s: float
    workers: list[str]
    first_step_at: float | None  # set by the caller that knows when it launched (core.training.job)


class RankFailure(RuntimeError):
    """Raised inside a rank task; carries the rank, its worker and the formatted traceback to the driver."""

    def __init__(self, rank: int, worker: str, error: str, tb: str) -> None:
        super().__init__(f"rank {rank} on worker {worker} failed: {error}")
        self.rank, self.worker, self.error, self.tb = rank, worker, error, tb

    def __reduce__(self) -> tuple[Any, ...]:
        return (RankFailure, (self.rank, self.worker, self.error, self.tb))


@dataclass
class _Slot:
    rank: int
    worker: str
    env: dict[str, str] = field(default_factory=dict)


# ---- rank side -----------------------------------------------------------------------------------------------
def mark_first_step() -> None:
    """Record (once per job) that this rank finished its first training step; feeds the startup overhead."""
    _RANK.setdefault("t_first_step", time.time())


def rank_info() -> dict[str, Any]:
    """``{"rank", "size", "worker", "hostname"}`` of the rank running in this process (empty outside a job)."""
    return {k: _RANK[k] for k in ("rank", "size", "worker", "hostname") if k in _RANK}


def _iface_for(ip: str) -> str:
    """Name of the network interface that carries ``ip`` (``lo`` for loopback addresses)."""
    import psutil

    if ip.startswith("127.") or ip in ("localhost", "::1"):
        return "lo"
    for name, addrs in psutil.net_if_addrs().items():
        if any(a.address == ip for a in addrs):
            return name
    raise ClusterError(
        f"no network interface of {socket.gethostname()} carries the worker address {ip}; "
        "start the worker with --host/--interface set to a routable interface"
    )


def _run_rank(
    fn: Callable[..., Any], slot_env: dict[str, str], use_horovod: bool, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The Dask task of one rank: set the environment, init Horovod, run ``fn``, shut Horovod down."""
    from distributed import get_worker

    t_task = time.time()
    worker = get_worker().address
    rank = int(slot_env.get("HOROVOD_RANK", 0))
    _RANK.clear()
    _RANK.update(rank=rank, size=int(slot_env.get("HOROVOD_SIZE", 1)), worker=worker, hostname=socket.gethostname())
    hvd = None
    try:
        if use_horovod:
            host = urlparse(worker).hostname or "127.0.0.1"
            slot_env = {**slot_env, "HOROVOD_GLOO_IFACE": _iface_for(host)}  # Horovod: the interface of this worker
        os.environ.update(slot_env)
        if use_horovod:
            hvd = importlib.import_module("horovod.tensorflow")  # after the environment is set

            hvd.init()  # Horovod: gloo rendezvous with the driver's server
        t_init = time.time()
        result = fn(*args, **kwargs)
        return {
            "result": result,
            "rank": rank,
            "worker": worker,
            "t_task": t_task,
            "t_init": t_init,
            "t_first_step": _RANK.get("t_first_step"),
            "t_end": time.time(),
        }
    except BaseException as exc:  # noqa: BLE001 - forwarded to the driver with its traceback
        raise RankFailure(rank, worker, f"{type(exc).__name__}: {exc}", traceback.format_exc()) from None
    finally:
        if hvd is not None:
            try:
                hvd.shutdown()  # Horovod: lets the peers' pending collectives fail fast instead of hanging
            except Exception:  # noqa: BLE001
                log.exception("hvd.shutdown() failed on rank %d", rank)


# ---- driver side -----------------------------------------------------------------------------------------------
def _workers(client: Client) -> dict[str, dict[str, Any]]:
    """The scheduler's live workers (see :func:`core.distributed.cluster.live_workers`: never the client's cache)."""
    from core.distributed.cluster import live_workers

    try:
        return live_workers(client)
    except OSError as exc:  # Dask: CommClosedError once the client gave up reconnecting
        raise SchedulerLostError(_scheduler_lost_text(client, f"asking it for its workers failed: {exc}")) from exc


def _scheduler_lost_text(client: Client, what: str) -> str:
    address = client.scheduler.address if client.scheduler else "(unknown address)"
    return (
        f"lost the connection to the Dask scheduler {address}: {what}. The scheduler process or its host went "
        "away; start the cluster again (the embedded local cluster starts on the next launch) and re-run"
    )


def _pick_workers(client: Client, num_ranks: int) -> list[str]:
    """``num_ranks`` idle worker addresses (grouped by host), or ClusterError saying what is missing."""
    if num_ranks < 1:
        raise ClusterError(f"num_ranks={num_ranks}: ask for at least 1 rank")
    workers = _workers(client)
    if len(workers) < num_ranks:
        raise ClusterError(
            f"asked for {num_ranks} ranks but the cluster has {len(workers)} workers; Horovod needs one worker "
            f"process per rank, all running at once: start the cluster with at least {num_ranks} worker processes "
            f"(ClusterConfig.n_workers / dask worker --nworkers) or ask for at most {len(workers)} ranks"
        )
    idle = _idle(client, workers)
    if refresh_workers(client, workers):
        workers = _workers(client)
        idle = _idle(client, workers)
    if len(idle) < num_ranks:
        busy = sorted(set(workers) - set(idle))
        raise ClusterError(
            f"asked for {num_ranks} ranks but only {len(idle)} of the cluster's {len(workers)} workers are idle "
            f"(the others run tasks or are paused for memory: {busy}); wait for those jobs to finish or add workers"
        )
    return idle[:num_ranks]


def _idle(client: Client, workers: dict[str, dict[str, Any]]) -> list[str]:
    """Workers running no task and not paused (Dask pauses a worker at 80 % of its memory limit), by host."""
    busy = {w for w, keys in client.processing().items() if keys}
    free = (w for w, info in workers.items() if w not in busy and info.get("status", "running") == "running")
    return sorted(free, key=lambda a: (workers[a].get("host") or "", a))


def _plan(
    client: Client, addresses: Sequence[str], rendezvous: tuple[str, int], gloo_timeout: int
) -> tuple[list[_Slot], Any]:
    """Host plan for one rank per worker: the Horovod slots (with env) in rank order, and the plan itself.

    Host names come from the workers themselves; each rank's gloo interface is set on its worker (from the worker's
    address, :func:`_run_rank`); every rank reaches the rendezvous at ``rendezvous`` (address, port).
    """
    from horovod.runner.common.util.hosts import get_host_assignments, parse_hosts

    hostnames: dict[str, str] = client.run(socket.gethostname, workers=list(addresses))
    by_host: dict[str, list[str]] = {}
    for addr in addresses:
        by_host.setdefault(hostnames[addr], []).append(addr)
    plan = get_host_assignments(parse_hosts(",".join(f"{h}:{len(a)}" for h, a in by_host.items())), len(addresses))
    next_worker = {h: iter(a) for h, a in by_host.items()}
    slots = []
    for s in plan:
        addr = next(next_worker[s.hostname])
        env = {
            "HOROVOD_RANK": str(s.rank),
            "HOROVOD_SIZE": str(s.size),
            "HOROVOD_LOCAL_RANK": str(s.local_rank),
            "HOROVOD_LOCAL_SIZE": str(s.local_size),
            "HOROVOD_CROSS_RANK": str(s.cross_rank),
            "HOROVOD_CROSS_SIZE": str(s.cross_size),
            "HOROVOD_HOSTNAME": s.hostname,  # must equal the plan's host name, or rendezvous never completes
            "HOROVOD_GLOO_RENDEZVOUS_ADDR": rendezvous[0],
            "HOROVOD_GLOO_RENDEZVOUS_PORT": str(rendezvous[1]),
            "HOROVOD_CONTROLLER": "gloo",
            "HOROVOD_CPU_OPERATIONS": "gloo",
            "HOROVOD_GLOO_TIMEOUT_SECONDS": str(gloo_timeout),
        }
        slots.append(_Slot(s.rank, addr, env))
    return slots, plan


def _wait_some(futures: list[Future], timeout: float) -> None:
    """Block until one of the pending futures completes or ``timeout`` s pass (the statuses tell which)."""
    pending = [f for f in futures if f.status == "pending"]
    if not pending:
        return
    try:
        wait(pending, timeout=timeout, return_when="FIRST_COMPLETED")
    except (TimeoutError, FuturesCancelledError):
        pass


def _error_text(fut: Future) -> tuple[str, str]:
    exc = fut.exception()
    if isinstance(exc, RankFailure):
        return f"{exc.error} (on worker {exc.worker})", exc.tb
    return f"{type(exc).__name__}: {exc}", "".join(traceback.format_exception(exc))


def _stop(client: Client, futures: list[Future], slots: list[_Slot], grace: float) -> list[_Slot]:
    """Give running ranks ``grace`` s to end; end the worker processes of those that do not (nannies restart them).

    Returns the slots whose rank is still pending on a worker that is gone (died or lost contact): those ranks were
    lost with their worker, not stopped by the launcher.
    """
    deadline = time.monotonic() + grace
    while any(f.status == "pending" for f in futures) and time.monotonic() < deadline:
        _wait_some(futures, min(POLL_SECONDS, max(deadline - time.monotonic(), 0.01)))
    pending = [s for f, s in zip(futures, slots) if f.status == "pending"]
    alive = set(_workers(client))
    stuck = [s.worker for s in pending if s.worker in alive]
    if stuck:
        log.warning(
            "killing %d worker process(es) whose Horovod rank did not stop (their nannies restart them): %s",
            len(stuck),
            stuck,
        )
        end_workers(client, stuck, expected=len(alive))
    return [s for s in pending if s.worker not in alive]


def _check_scheduler(client: Client, since: list[float]) -> None:
    """Raise :class:`SchedulerLostError` once the client has been without its scheduler for
    ``SCHEDULER_LOST_SECONDS`` (``since`` holds when the loss was first seen; emptied when it is back)."""
    if client.status == "running":
        since.clear()
        return
    since[:1] = since[:1] or [time.monotonic()]
    if time.monotonic() - since[0] >= SCHEDULER_LOST_SECONDS:
        raise SchedulerLostError(
            _scheduler_lost_text(
                client, f"no connection for {SCHEDULER_LOST_SECONDS:.0f} s (client status {client.status!r})"
            )
        )


def _launch(
    client: Client,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    num_ranks: int,
    env: dict[str, str] | None,
    cancelled: Callable[[], bool] | None,
    timeout: float | None,
    use_horovod: bool,
    gloo_timeout: int,
    grace: float,
) -> RankResults:
    kwargs = kwargs or {}
    t0 = time.time()
    addresses = _pick_workers(client, num_ranks)
    server: Any = None
    if use_horovod:
        from core.distributed.hosts import start_rendezvous

        # Horovod: the rendezvous listens on the one driver address the workers reach (no authentication)
        server, address, port = start_rendezvous(addresses)
        slots, plan = _plan(client, addresses, (address, port), gloo_timeout)
        server.init(plan)
    else:
        slots = [_Slot(0, addresses[0])]
    log.info("launching %d rank(s) on %s", len(slots), [s.worker for s in slots])
    futures = [
        client.submit(
            _run_rank,
            fn,
            {**(env or {}), **s.env},
            use_horovod,
            tuple(args),
            kwargs,
            workers=[s.worker],
            allow_other_workers=False,
            retries=0,
            pure=False,
            key=f"rank-{s.rank}-{os.getpid()}-{time.monotonic_ns()}",
        )
        for s in slots
    ]
    lost_since: list[float] = []
    try:
        while True:
            _wait_some(futures, POLL_SECONDS)
            _check_scheduler(client, lost_since)
            if lost_since:
                continue
            if all(f.status == "finished" for f in futures):
                break
            failed = [f for f in futures if f.status in ("error", "cancelled")]
            alive = set(_workers(client))
            lost = [s for f, s in zip(futures, slots) if f.status == "pending" and s.worker not in alive]
            if failed or lost:
                lost = _stop(client, futures, slots, 0 if lost else grace) or lost
                raise _failure(futures, slots, lost)
            if cancelled is not None and cancelled():
                _stop(client, futures, slots, 0)
                raise JobCancelledError(f"the job was cancelled; its {len(slots)} rank(s) were stopped")
            if timeout is not None and time.time() - t0 > timeout:
                _stop(client, futures, slots, 0)
                raise JobFailedError(
                    f"the job did not finish within timeout={timeout} s; its ranks were stopped "
                    "(raise the timeout or train fewer epochs)"
                )
        rank_out = client.gather(futures)
    finally:
        client.cancel(futures, force=True)  # Dask: release the rank tasks (no-op for finished ones)
        if server is not None:
            server.stop()
    return _results(rank_out, slots, t0)


def _results(rank_out: list[dict[str, Any]], slots: list[_Slot], t0: float) -> RankResults:
    """The ranks' results in rank order, with the job's start-up overhead and wall time (from ``t0``)."""
    out = RankResults(r["result"] for r in rank_out)
    first = [r["t_first_step"] for r in rank_out]
    out.startup = StartupOverhead(
        launch_to_task=max(r["t_task"] for r in rank_out) - t0,
        launch_to_rendezvous=max(r["t_init"] for r in rank_out) - t0,
        launch_to_first_step=(max(first) - t0) if all(first) else None,
    )
    out.wall_s = time.time() - t0
    out.workers = [s.worker for s in slots]
    log.info("%d rank(s) finished in %.1f s; startup %s", len(slots), out.wall_s, out.startup)
    return out


def _failure(futures: list[Future], slots: list[_Slot], lost: list[_Slot]) -> JobFailedError:
    """The primary failure: a rank's own error (not a consequence of another's), else a lost worker.

    A lost worker whose peers only failed because it went (``_SECONDARY`` errors) gives :class:`WorkerLostError`,
    which a training job may recover from; a rank that failed on its own gives :class:`JobFailedError`.
    """
    errors = [(s, *_error_text(f)) for f, s in zip(futures, slots) if f.status == "error"]
    primary = next((e for e in errors if not any(m in e[1] for m in _SECONDARY)), None)
    if lost and primary is None:
        s = lost[0]
        return WorkerLostError(
            f"the worker {s.worker} running rank {s.rank} died or lost contact (killed, out of memory or crashed); "
            "the other ranks were stopped. Check the worker's log and memory limit, then re-run",
            s.rank,
            s.worker,
        )
    if not errors:
        return JobFailedError(
            "the job's rank futures were cancelled by someone else (client closed or cluster restarted)"
        )
    s, text, tb = primary or errors[0]
    others = "; ".join(f"rank {o.rank}: {t.splitlines()[0][:200]}" for o, t, _ in errors if o is not s)
    return JobFailedError(
        f"rank {s.rank} of {len(slots)} failed: {text}\n"
        + (f"(then {others})\n" if others else "")
        + f"--- traceback of rank {s.rank} ---\n{tb}"
    )


def run_horovod(
    client: Client,
    fn: Callable[..., Any],
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    num_ranks: int = 2,
    env: dict[str, str] | None = None,
    cancelled: Callable[[], bool] | None = None,
    timeout: float | None = None,
    gloo_timeout: int = GLOO_TIMEOUT_SECONDS,
    grace: float = STOP_GRACE_SECONDS,
) -> RankResults:
    """Run ``fn(*args, **kwargs)`` as ``num_ranks`` Horovod ranks, one per idle Dask worker process.

    Horovod is initialised before ``fn`` runs (``fn`` just imports ``horovod.tensorflow`` and uses ``hvd.rank()``,
    ``hvd.size()`` and collectives) and shut down after it, also when it raises.

    Args:
        client: a client of a cluster with at least ``num_ranks`` idle worker processes.
        fn: a picklable function (module level); its return value must be picklable.
        env: extra environment variables set in each rank process before Horovod and ``fn`` start.
        cancelled: polled by the driver about 4 times a second; when it returns True the ranks are stopped (their
            workers restarted) and :class:`JobCancelledError` is raised.
        timeout: seconds for the whole job; past it the ranks are stopped and :class:`JobFailedError` raised.
        gloo_timeout: ``HOROVOD_GLOO_TIMEOUT_SECONDS`` for rendezvous and collectives.
        grace: seconds the other ranks get to stop on their own after the first failure.

    Returns:
        :class:`RankResults`: ``fn``'s return value per rank (rank order), with ``.startup``
        (:class:`StartupOverhead`), ``.wall_s`` and ``.workers`` (worker address per rank).

    Raises:
        ClusterError: fewer (idle) workers than ranks.
        JobFailedError: a rank raised; the message holds that rank's error and traceback.
        WorkerLostError: a rank's worker died or lost contact and no rank failed on its own (a JobFailedError).
        SchedulerLostError: the connection to the scheduler was lost for ``SCHEDULER_LOST_SECONDS``.
        JobCancelledError: ``cancelled()`` became true.
    """
    return _launch(client, fn, args, kwargs, num_ranks, env, cancelled, timeout, True, gloo_timeout, grace)


def run_single(
    client: Client,
    fn: Callable[..., Any],
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    cancelled: Callable[[], bool] | None = None,
    timeout: float | None = None,
) -> RankResults:
    """Run ``fn`` on one idle worker without Horovod (the ``single`` scheme); same contract as :func:`run_horovod`."""
    return _launch(client, fn, args, kwargs, 1, env, cancelled, timeout, False, GLOO_TIMEOUT_SECONDS, 0.0)


def allreduce_probe(value: float) -> dict[str, Any]:
    """A rank function for checks: ``hvd.allreduce`` of ``value * (rank + 1)`` (sum) and the rank's identity."""
    import horovod.tensorflow as hvd
    import tensorflow as tf

    total = hvd.allreduce(tf.constant([value * (hvd.rank() + 1)], tf.float64), op=hvd.Sum)
    return {"rank": hvd.rank(), "size": hvd.size(), "sum": float(total.numpy()[0]), **rank_info()}
