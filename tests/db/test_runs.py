import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import inspect, text

from core.errors import RunNotFoundError
from db.engine import SCHEMA_VERSION, get_engine
from db.models import utcnow
from db.runs import RunTracker


def test_schema_is_created_and_versioned(db_url, db_backend):
    engine = get_engine(db_url)
    with engine.connect() as c:
        assert c.execute(text("SELECT version FROM schema_version")).scalar() == SCHEMA_VERSION
        if db_backend == "sqlite":
            assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert engine.dialect.name == db_backend
    assert {
        "schema_version",
        "scenes",
        "scene_modalities",
        "scene_classes",
        "scene_files",
        "runs",
        "run_events",
        "worker_stats",
    } <= set(inspect(engine).get_table_names())


def test_run_lifecycle_records_progress_events_and_metrics(db_url):
    t = RunTracker(db_url)
    run_id = t.create("tile", {"kind": "tile", "scene": "x"})
    assert t.get(run_id).status == "pending"
    t.start(run_id, cluster={"n_workers": 2})
    t.progress(run_id, "tiling", 3, 10)
    t.event(run_id, "epoch", phase="training", epoch=1, loss=0.5)
    t.worker_stat(run_id, "tcp://w1", rank=0, bytes_sent=10, bytes_recv=20, cpu_percent=50.0)
    t.succeed(run_id, metrics={"oa": 0.9}, artifacts={"store": "/tmp/s.zarr"})
    row = t.get(run_id)
    assert (row.status, row.phase, row.progress_done, row.progress_total) == ("succeeded", "done", 3, 10)
    assert row.metrics == {"oa": 0.9} and row.artifacts == {"store": "/tmp/s.zarr"}
    assert row.cluster == {"n_workers": 2} and row.finished_at >= row.started_at
    assert [e.kind for e in t.events(run_id)] == ["progress", "epoch"]
    assert t.events(run_id, kind="epoch")[0].data == {"loss": 0.5}
    assert t.worker_stats(run_id)[0].bytes_recv == 20


def test_run_whose_driver_died_is_marked_failed(db_url):
    t = RunTracker(db_url)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    run_id = t.create("train", {"kind": "train"})
    t.start(run_id)
    from sqlalchemy import update

    from db.engine import session_factory
    from db.models import RunRow

    with session_factory(db_url).begin() as s:  # pretend the dead process drove it
        s.execute(update(RunRow).where(RunRow.id == run_id).values(pid=proc.pid))
    assert run_id in [r.id for r in t.list(status="failed")]
    row = t.get(run_id)
    assert row.status == "failed" and f"pid {proc.pid}" in row.error and "died" in row.error


def test_run_without_heartbeat_is_marked_failed_but_live_one_is_not(db_url):
    t = RunTracker(db_url)
    live = t.create("tile", {})
    t.start(live)
    stale = t.create("tile", {})
    t.start(stale)
    from sqlalchemy import update

    from db.engine import session_factory
    from db.models import RunRow

    with session_factory(db_url).begin() as s:
        s.execute(
            update(RunRow)
            .where(RunRow.id == stale)
            .values(host="elsewhere", heartbeat_at=utcnow() - timedelta(minutes=5))
        )
    assert t.reap_dead_runs() == [stale]
    assert t.get(live).status == "running"
    assert "no heartbeat" in t.get(stale).error


def test_unknown_run_error_says_how_to_list(db_url):
    with pytest.raises(RunNotFoundError, match=r"run 999 does not exist; list runs with"):
        RunTracker(db_url).get(999)


def test_cancel_request_is_visible_to_the_driver(db_url):
    t = RunTracker(db_url)
    run_id = t.create("train", {})
    assert not t.cancel_requested(run_id)
    t.request_cancel(run_id)
    assert t.cancel_requested(run_id)


def test_old_schema_is_upgraded_by_code(db_url, monkeypatch):
    from sqlalchemy import create_engine

    from db import engine as engine_mod

    applied = []
    engine = create_engine(db_url)
    engine_mod.init_db(engine)
    monkeypatch.setattr(engine_mod, "SCHEMA_VERSION", engine_mod.SCHEMA_VERSION + 1)
    monkeypatch.setitem(
        engine_mod.MIGRATIONS,
        engine_mod.SCHEMA_VERSION - 1,
        lambda conn: (conn.execute(text("ALTER TABLE runs ADD COLUMN note TEXT")), applied.append(1)),
    )
    assert engine_mod.init_db(engine) == engine_mod.SCHEMA_VERSION
    with engine.connect() as c:
        assert "note" in [col["name"] for col in inspect(c).get_columns("runs")]
        assert c.execute(text("SELECT version FROM schema_version")).scalar() == engine_mod.SCHEMA_VERSION
    assert applied == [1]
    assert engine_mod.init_db(engine) == engine_mod.SCHEMA_VERSION and applied == [1]  # idempotent
    engine.dispose()
