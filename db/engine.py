"""Database engine and schema management.

SQLite (the embedded default) is opened in WAL mode with a busy timeout so the app, the CLI and job threads can
read while a job writes. Any other SQLAlchemy URL works (PostgreSQL on a shared server, for instance).
The schema is created, or upgraded in place, by :func:`init_db`; never by hand.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine, create_engine, event, inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from db.models import Base, SchemaVersion

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

# Upgrades from version N to N+1, applied in order by init_db. Each receives a connection inside a transaction.
MIGRATIONS: dict[int, Callable[..., None]] = {}

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
            kwargs = {"connect_args": {"timeout": 30, "check_same_thread": False}} if url.startswith("sqlite") else {}
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


def init_db(engine: Engine) -> int:
    """Create missing tables and apply pending migrations; returns the schema version now in place."""
    existing = set(inspect(engine).get_table_names())
    Base.metadata.create_all(engine)
    with Session(engine) as s, s.begin():
        row = s.scalar(select(SchemaVersion))
        if row is None:
            # A fresh database, or one made before versioning: tables were just created at the current version.
            s.add(SchemaVersion(id=1, version=SCHEMA_VERSION))
            return SCHEMA_VERSION
        version = row.version
        while version < SCHEMA_VERSION:
            log.info("upgrading database schema %d -> %d", version, version + 1)
            MIGRATIONS[version](s.connection())
            version += 1
        row.version = version
    if "runs" not in existing:
        log.info("created database schema version %d at %s", SCHEMA_VERSION, engine.url)
    return version


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)


def check_connection(engine: Engine) -> None:
    with engine.connect() as c:
        c.execute(text("SELECT 1"))
