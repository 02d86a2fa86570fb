"""Every test under tests/db runs twice: on the embedded SQLite file and on a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def db_backend(request: pytest.FixtureRequest) -> str:
    """The database backend of this test run: ``sqlite`` or ``postgresql``."""
    return str(request.param)


@pytest.fixture
def db_url(db_backend: str, home: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test's fresh database: the SQLite file in ``home``, or a new database on the session's PostgreSQL
    server (``WORKBENCH_DB_URL`` points at it too, so code that reads the settings uses the same one)."""
    if db_backend == "sqlite":
        return f"sqlite:///{home / 'workbench.db'}"
    url = str(request.getfixturevalue("postgres_url"))
    monkeypatch.setenv("WORKBENCH_DB_URL", url)
    return url
