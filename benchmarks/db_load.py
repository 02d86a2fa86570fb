"""The run-tracking database under load: concurrent jobs writing progress while the app's Live page polls.

``--writers`` job processes (default 8; spawned, as real jobs are separate processes) each create their own run
with :class:`db.runs.RunTracker` and write ``--events`` progress events (default 1000; alternately
:meth:`~db.runs.RunTracker.progress` and :meth:`~db.runs.RunTracker.event` ``step``, one database transaction each)
as fast as they can, all starting together. Meanwhile a reader process polls like the Live page
(``app/views/live.py``): ``tracker.list(limit=100)``, :func:`app.services.live.active_run_ids` and
:func:`app.services.live.live_status` of every active run, every ``--poll-interval`` s (0.5 s: 8 browser tabs watching one
run each at the page's 2 s refresh, times 4).

Prints, per backend: events/s (all writers together, first event to last), write latency p50 / p99 / worst,
reader polls/s and worst poll, lost events (written by a job but not in the database afterwards, or duplicated),
"database is locked" errors (surfaced to the job or the reader) and other errors. Figures also go to
``benchmarks/out/db_load.json``.

Backends: ``sqlite`` (a fresh file, the embedded default) and ``postgresql`` (a real server started in a temp folder
by :class:`tests.servers.PostgresServer`, or ``--pg-url`` to use an existing, empty database).

Usage: ``python -m benchmarks.db_load [--writers 8] [--events 1000] [--backend sqlite postgresql]``
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import queue
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

OUT = Path(__file__).resolve().parent / "out"


def is_lock_error(exc: BaseException) -> bool:
    """True for SQLite's "database is locked"/"database table is locked" and PostgreSQL lock timeouts/deadlocks."""
    text = str(exc).lower()
    return (
        "database is locked" in text
        or "table is locked" in text
        or "deadlock detected" in text
        or "lock timeout" in text
    )


@dataclass
class LoadResult:
    """Figures of one load run (times in seconds unless named ``_ms``)."""

    backend: str
    writers: int
    events_per_writer: int
    events_written: int
    events_in_db: int
    lost_events: int
    duplicate_events: int
    lock_errors: int
    other_errors: list[str]
    seconds: float
    events_per_s: float
    write_p50_ms: float
    write_p99_ms: float
    write_worst_ms: float
    reader_polls: int
    reader_polls_per_s: float
    reader_worst_poll_ms: float
    reader_lock_errors: int
    reader_regressions: int
    runs_succeeded: int
    per_writer_events_per_s: list[float] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.backend:>10}: {self.writers} writers x {self.events_per_writer} events: "
            f"{self.events_per_s:,.0f} events/s in {self.seconds:.1f} s; write latency p50 "
            f"{self.write_p50_ms:.1f} ms, p99 {self.write_p99_ms:.1f} ms, worst {self.write_worst_ms:.0f} ms; "
            f"reader {self.reader_polls_per_s:.2f} polls/s (worst {self.reader_worst_poll_ms:.0f} ms); "
            f"lost {self.lost_events}, duplicated {self.duplicate_events}, "
            f"'database is locked' {self.lock_errors + self.reader_lock_errors}, "
            f"other errors {len(self.other_errors)}"
        )


def _writer(url: str, index: int, n_events: int, go: Any, results: Any) -> None:
    """One job process: its own run, ``n_events`` progress/step events, then ``succeed``."""
    from sqlalchemy.exc import DBAPIError

    from db.runs import RunTracker

    tracker = RunTracker(url)
    run_id = tracker.create("loadtest", {"kind": "loadtest", "writer": index})
    tracker.start(run_id)
    results.put(("ready", index, run_id))
    go.wait()
    latencies: list[float] = []
    lock_errors, errors, written = 0, [], 0
    start = time.time()
    for i in range(n_events):
        t = time.perf_counter()
        try:
            if i % 2 == 0:
                tracker.progress(run_id, "training", i + 1, n_events, seq=i)
            else:
                tracker.event(
                    run_id,
                    "step",
                    phase="training",
                    epoch=0,
                    step=i,
                    seq=i,
                    ranks=[{"rank": 0, "loss": 1.0 / (i + 1), "samples_per_s": 100.0}],
                )
            written += 1
        except DBAPIError as exc:
            if is_lock_error(exc):
                lock_errors += 1
            else:
                errors.append(f"writer {index} event {i}: {exc!r}"[:400])
        latencies.append(time.perf_counter() - t)
    end = time.time()
    tracker.succeed(run_id, metrics={"events": written})
    results.put(
        (
            "done",
            index,
            {
                "run_id": run_id,
                "latencies": latencies,
                "lock_errors": lock_errors,
                "errors": errors,
                "written": written,
                "start": start,
                "end": end,
            },
        )
    )


def _reader(url: str, interval: float, stop: Any, results: Any) -> None:
    """The Live page: list runs, find active ones, build each one's live status; checks nothing goes backwards."""
    from sqlalchemy.exc import DBAPIError

    from app.services.live import active_run_ids, live_status
    from db.runs import RunTracker

    tracker = RunTracker(url)
    polls, lock_errors, regressions = 0, 0, 0
    errors: list[str] = []
    worst = 0.0
    seen: dict[int, tuple[int, int]] = {}  # run -> (progress done, step rows) last seen
    start = time.perf_counter()
    first = True
    while first or not stop.is_set():
        t = time.perf_counter()
        try:
            tracker.list(limit=100)
            for run_id in active_run_ids(tracker):
                s = live_status(tracker, run_id)
                now = (s.done, len(s.steps))
                before = seen.get(run_id, (0, 0))
                if now[0] < before[0] or now[1] < before[1]:
                    regressions += 1
                seen[run_id] = now
            polls += 1
        except DBAPIError as exc:
            if is_lock_error(exc):
                lock_errors += 1
            else:
                errors.append(f"reader: {exc!r}"[:400])
        worst = max(worst, time.perf_counter() - t)
        if first:  # imports done and one poll answered: the jobs may start
            results.put(("reader-ready", -1, None))
            first = False
        stop.wait(max(0.0, interval - (time.perf_counter() - t)))
    results.put(
        (
            "reader",
            -1,
            {
                "polls": polls,
                "seconds": time.perf_counter() - start,
                "worst": worst,
                "lock_errors": lock_errors,
                "regressions": regressions,
                "errors": errors,
            },
        )
    )


def mp_context(method: str = "spawn") -> BaseContext:
    """The multiprocessing context for the job processes.

    ``spawn`` (the benchmark's default) starts each job as a fresh interpreter, as real jobs are. ``forkserver``
    (the tests) forks each from a server that imported SQLAlchemy and the workbench once: still separate processes
    with their own connections, but they start in milliseconds instead of seconds on a busy 2-core machine.
    """
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["sqlalchemy", "db.runs", "app.services.live"])
    return ctx


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_load(
    url: str,
    backend: str,
    writers: int = 8,
    events: int = 1000,
    poll_interval: float = 0.5,
    timeout: float = 600.0,
    start_method: str = "spawn",
) -> LoadResult:
    """Run the load against ``url`` (schema created first, as the app does) and count what reached the database.

    ``start_method``: how the job processes start (see :func:`mp_context`).

    Raises:
        RuntimeError: a process crashed or the run exceeded ``timeout`` s.
    """
    from sqlalchemy import func, select

    from db.engine import dispose_engines, session_factory
    from db.models import RunEventRow, RunRow

    session_factory(url)  # create the schema before the jobs start, as the app or the CLI does
    dispose_engines()
    ctx = mp_context(start_method)
    results = ctx.Queue()
    go, stop = ctx.Event(), ctx.Event()
    procs = [
        ctx.Process(target=_writer, args=(url, i, events, go, results), name=f"writer-{i}", daemon=True)
        for i in range(writers)
    ]
    reader = ctx.Process(target=_reader, args=(url, poll_interval, stop, results), name="reader", daemon=True)
    t_start = time.monotonic()
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout

    def collect(kind: str, n: int) -> dict[int, Any]:
        got: dict[int, Any] = {}
        while len(got) < n:
            try:
                k, index, payload = results.get(timeout=1.0)
            except queue.Empty as empty:
                dead = [p.name for p in procs + [reader] if p.exitcode not in (None, 0)]
                if dead or time.monotonic() > deadline:
                    stop.set()
                    raise RuntimeError(
                        f"load run failed: crashed {dead}, waiting for {kind} of "
                        f"{n - len(got)} processes (timeout {timeout:.0f} s)"
                    ) from empty
                continue
            if k == kind:
                got[index] = payload
        return got

    try:
        run_ids = collect("ready", writers)
        reader.start()
        collect("reader-ready", 1)  # the reader is polling before the jobs start writing
        log.info("%d writers and the reader ready after %.1f s", writers, time.monotonic() - t_start)
        go.set()
        done = collect("done", writers)
        log.info("writers done after %.1f s", time.monotonic() - t_start)
        stop.set()
        rstats = collect("reader", 1)[-1]
    finally:
        stop.set()
        go.set()
        for p in procs + [reader]:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()

    sessions = session_factory(url)
    lost = dup = in_db = succeeded = 0
    with sessions() as s:
        for index, run_id in run_ids.items():
            rows = s.execute(select(RunEventRow.data).where(RunEventRow.run_id == run_id)).scalars().all()
            seqs = [int(d["seq"]) for d in rows if "seq" in d]
            in_db += len(seqs)
            dup += len(seqs) - len(set(seqs))
            lost += len(set(range(done[index]["written"])) - set(seqs)) + (events - done[index]["written"])
        succeeded = (
            s.scalar(
                select(func.count())
                .select_from(RunRow)
                .where(RunRow.id.in_(list(run_ids.values())), RunRow.status == "succeeded")
            )
            or 0
        )
    dispose_engines()
    latencies = [x for d in done.values() for x in d["latencies"]]
    t0 = min(d["start"] for d in done.values())
    t1 = max(d["end"] for d in done.values())
    written = sum(d["written"] for d in done.values())
    return LoadResult(
        backend=backend,
        writers=writers,
        events_per_writer=events,
        events_written=written,
        events_in_db=in_db,
        lost_events=lost,
        duplicate_events=dup,
        lock_errors=sum(d["lock_errors"] for d in done.values()),
        other_errors=[e for d in done.values() for e in d["errors"]] + rstats["errors"],
        seconds=t1 - t0,
        events_per_s=written / (t1 - t0),
        write_p50_ms=1e3 * statistics.median(latencies),
        write_p99_ms=1e3 * _percentile(latencies, 0.99),
        write_worst_ms=1e3 * max(latencies),
        reader_polls=rstats["polls"],
        reader_polls_per_s=rstats["polls"] / rstats["seconds"],
        reader_worst_poll_ms=1e3 * rstats["worst"],
        reader_lock_errors=rstats["lock_errors"],
        reader_regressions=rstats["regressions"],
        runs_succeeded=succeeded,
        per_writer_events_per_s=[round(d["written"] / (d["end"] - d["start"]), 1) for d in done.values()],
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--writers", type=int, default=8)
    p.add_argument("--events", type=int, default=1000, help="events per writer")
    p.add_argument("--poll-interval", type=float, default=0.5, help="seconds between the reader's polls")
    p.add_argument("--backend", nargs="+", choices=("sqlite", "postgresql"), default=["sqlite", "postgresql"])
    p.add_argument("--pg-url", help="an existing, empty PostgreSQL database (default: start a server in /tmp)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    out: list[dict[str, Any]] = []
    for backend in args.backend:
        server = None
        with tempfile.TemporaryDirectory(prefix="wb-dbload-") as tmp:
            if backend == "sqlite":
                url = f"sqlite:///{tmp}/load.db"
            elif args.pg_url:
                url = args.pg_url
            else:
                from tests.servers import PostgresServer

                reason = PostgresServer.unavailable()
                if reason:
                    print(f"{backend:>10}: skipped: {reason}")
                    continue
                server = PostgresServer.start()
                url = server.url(server.create_database("load"))
            try:
                result = run_load(url, backend, args.writers, args.events, args.poll_interval)
            finally:
                if server is not None:
                    server.stop()
        print(result.summary(), flush=True)
        for e in result.other_errors[:5]:
            print(f"{'':>12}{e}")
        out.append(asdict(result))
    OUT.mkdir(exist_ok=True)
    (OUT / "db_load.json").write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
