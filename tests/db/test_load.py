"""The run database under load, on SQLite and on a real PostgreSQL server (see tests/db/conftest.py).

8 job processes (forked from a forkserver that imported the workbench once: separate processes with their own
connections, started fast; the benchmark spawns fresh interpreters) write progress events through RunTracker while a reader process polls
like the Live page; nothing may be lost and no "database is locked" may reach a job or the reader. The full-size
figures (8 x 1000 events) come from ``python -m benchmarks.db_load``.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from benchmarks.db_load import mp_context, run_load
from db.engine import SCHEMA_VERSION, session_factory
from db.models import RunRow, SchemaVersion

pytestmark = pytest.mark.slow

WRITERS = 8
EVENTS = 150


def test_8_jobs_writing_while_the_live_page_polls_lose_nothing(db_url, db_backend):
    r = run_load(
        db_url, db_backend, writers=WRITERS, events=EVENTS, poll_interval=0.25, timeout=120, start_method="forkserver"
    )
    print(r.summary())
    assert r.other_errors == []
    assert (r.lock_errors, r.reader_lock_errors) == (0, 0)
    assert (r.events_written, r.events_in_db, r.lost_events, r.duplicate_events) == (
        WRITERS * EVENTS,
        WRITERS * EVENTS,
        0,
        0,
    )
    assert r.runs_succeeded == WRITERS
    assert r.reader_polls >= 2 and r.reader_regressions == 0  # the reader saw the runs progress, never go back
    assert r.write_worst_ms < 30_000  # below the busy timeout: no writer ever gave up


def _first_use(url: str, go, results) -> None:  # type: ignore[no-untyped-def]
    from db.runs import RunTracker

    go.wait()
    try:
        results.put(("ok", RunTracker(url).create("loadtest", {})))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(("error", repr(exc)[:500]))


def test_8_jobs_starting_together_on_a_fresh_database_create_the_schema_once(db_url):
    ctx = mp_context("forkserver")
    go, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_first_use, args=(db_url, go, results), daemon=True) for _ in range(WRITERS)]
    for p in procs:
        p.start()
    go.set()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert [kind for kind, _ in outcomes] == ["ok"] * WRITERS, [e for kind, e in outcomes if kind != "ok"]
    assert sorted(run_id for _, run_id in outcomes) == list(range(1, WRITERS + 1))
    with session_factory(db_url)() as s:
        assert s.scalar(select(func.count()).select_from(RunRow)) == WRITERS
        assert [(v.id, v.version) for v in s.scalars(select(SchemaVersion))] == [(1, SCHEMA_VERSION)]
