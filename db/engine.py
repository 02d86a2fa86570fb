"""Database engine and schema management.

SQLite (the embedded default) is opened in WAL mode with a busy timeout so the app, the CLI and job threads can
read while a job writes. Any other SQLAlchemy URL works (PostgreSQL on a shared server, for instance).
The schema is created, or upgraded in place, by :func:`init_db`; never by hand.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, insert, inspect, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import Base, SchemaVersion

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2


def _config_versions(conn: Connection) -> None:
    """1 -> 2: runs record the schema version their config was stored at; older rows hold version 1."""
    conn.execute(text("ALTER TABLE runs ADD COLUMN config_version INTEGER NOT NULL DEFAULT 1"))


# Upgrades from version N to N+1, applied in order by init_db. Each receives a connection inside a transaction.
MIGRATIONS: dict[int, Callable[..., None]] = {1: _config_versions}

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def get_engine(url: str | None = None) -> Engine:
    """A process-wide engine for ``url`` (default: settings), with the schema created or upgraded."""
    if url is None:
        from core.settings import get_settings

        url = get_settings().db_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            kwargs: dict[str, Any] = (
                {"connect_args": {"timeout": 30, "check_same_thread": False}}
                if url.startswith("sqlite")
                # a server's connections can be dropped (restart, idle timeout): test each one before use
                else {"pool_pre_ping": True}
            )
            engine = create_engine(url, **kwargs)
            if url.startswith("sqlite"):
                event.listen(engine, "connect", _sqlite_pragmas)
            init_db(engine)
            _engines[url] = engine
    return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests, forked processes)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


# pg_advisory_xact_lock key held while the schema is created or upgraded ("WBSC").
SCHEMA_LOCK_KEY = 0x57425343


def _lock_schema(conn: Connection) -> None:
    """Begin the schema transaction holding the database's schema lock, so that processes starting together on a
    fresh database (several jobs launched at once) create it once instead of racing (on PostgreSQL the loser got
    ``duplicate key value violates unique constraint "pg_type_typname_nsp_index"``)."""
    name = conn.dialect.name
    if name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
    elif name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, waited for with the busy timeout
    # other backends: a plain transaction (a concurrent first use may fail once; retrying then succeeds)


def _schema_is_current(engine: Engine) -> bool:
    """Every table exists and the recorded version is this code's (checked without taking the schema lock)."""
    with engine.connect() as conn:
        if not set(Base.metadata.tables) <= set(inspect(conn).get_table_names()):
            return False
        return conn.scalar(select(SchemaVersion.version).order_by(SchemaVersion.id).limit(1)) == SCHEMA_VERSION


def init_db(engine: Engine) -> int:
    """Create missing tables and apply pending migrations; returns the schema version now in place.

    Runs in one transaction that holds the schema lock (see :func:`_lock_schema`); on SQLite and PostgreSQL DDL is
    transactional, so a failed migration leaves the database as it was.

    Raises:
        RuntimeError: the database is at a version this code has no migration from.
    """
    if _schema_is_current(engine):  # the common case: no lock, so processes starting together do not queue
        return SCHEMA_VERSION
    with engine.connect() as conn:
        _lock_schema(conn)
        existing = set(inspect(conn).get_table_names())
        Base.metadata.create_all(conn)
        version = conn.scalar(select(SchemaVersion.version).order_by(SchemaVersion.id).limit(1))
        if version is None:
            # A fresh database, or one made before versioning: tables were just created at the current version.
            conn.execute(insert(SchemaVersion).values(id=1, version=SCHEMA_VERSION))
            version = SCHEMA_VERSION
        else:
            start = version
            while version < SCHEMA_VERSION:
                if version not in MIGRATIONS:
                    raise RuntimeError(
                        f"the database at {engine.url!r} has schema version {version} but this code "
                        f"(version {SCHEMA_VERSION}) has no migration from it (known: "
                        f"{sorted(MIGRATIONS)}); add MIGRATIONS[{version}] in db/engine.py"
                    )
                log.info("upgrading database schema %d -> %d", version, version + 1)
                MIGRATIONS[version](conn)
                version += 1
            if version != start:
                conn.execute(update(SchemaVersion).values(version=version))
        conn.commit()
    if "runs" not in existing:
        log.info("created database schema version %d at %r", SCHEMA_VERSION, engine.url)
    return version


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)
