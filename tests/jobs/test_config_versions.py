"""Versioned configs: a stored run records its config's schema version, and ``runs rerun`` upgrades an older one.

The job kind here is a test-only kind (registered for one test with monkeypatch) whose executor writes its config to
a file in this process: a real kind would need a scene and a cluster to show the same thing, the upgrade path
(``jobs.kinds.stored_config`` -> ``core.configs.upgrade_config`` -> ``parse_config``) is the same for every kind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
from sqlalchemy import text

import core.configs as configs
import jobs.kinds as kinds
from core.configs import Frozen, register_config, upgrade_config
from core.errors import ConfigError
from db.engine import dispose_engines, get_engine
from db.runs import RunTracker
from jobs.cli import main
from jobs.kinds import JobKind

KIND = "toy_versioned"


class ToyV1(Frozen):
    """Version 1: the tile side is ``tile_px``."""

    kind: Literal["toy_versioned"] = "toy_versioned"
    out: str
    tile_px: int


class ToyV2(Frozen):
    """Version 2: ``tile_px`` is renamed ``tile_size``."""

    kind: Literal["toy_versioned"] = "toy_versioned"
    out: str
    tile_size: int


def _write(config: Any, ctx: Any) -> dict[str, Any]:
    Path(config.out).write_text(config.model_dump_json())
    return {"metrics": {"fields": sorted(config.model_dump())}}


def _rename_tile_px(data: dict[str, Any], version: int) -> dict[str, Any]:
    assert version == 1
    out = dict(data)
    out["tile_size"] = out.pop("tile_px")
    return out


@pytest.fixture
def toy_kind(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Registers the v1 kind for one test; calling the result bumps it to v2 (both undone after the test)."""
    monkeypatch.setattr(configs, "_VERSIONS", dict(configs._VERSIONS))
    monkeypatch.setitem(kinds._KINDS, KIND, JobKind(KIND, ToyV1, _write, "test-only kind"))

    def bump() -> None:
        monkeypatch.setitem(kinds._KINDS, KIND, JobKind(KIND, ToyV2, _write, "test-only kind"))
        register_config(KIND, 2, upgrader=_rename_tile_px)

    return bump


def _run_v1(tmp_path: Path, name: str) -> int:
    config = tmp_path / f"{name}.json"
    config.write_text(json.dumps({"kind": KIND, "out": str(tmp_path / f"{name}.out.json"), "tile_px": 32}))
    assert main(["run", str(config)]) == 0
    return RunTracker().list(kind=KIND)[0].id


def test_a_stored_run_reruns_after_a_field_is_renamed_in_a_version_bump(home: Path, tmp_path: Path, toy_kind) -> None:  # type: ignore[no-untyped-def]
    first = _run_v1(tmp_path, "first")
    stored = RunTracker().get(first)
    assert stored.config_version == 1 and stored.config["tile_px"] == 32
    toy_kind()  # tile_px is now tile_size, at schema version 2
    with pytest.raises(ConfigError, match="tile_px: Extra inputs are not permitted"):
        kinds.parse_config(dict(stored.config), kind=KIND)  # what a re-run without the upgrade would meet
    assert main(["runs", "rerun", str(first)]) == 0
    again = RunTracker().list(kind=KIND)[0]
    assert again.id != first and again.parent_run_id == first and again.status == "succeeded"
    assert again.config_version == 2 and again.config["tile_size"] == 32 and "tile_px" not in again.config
    assert json.loads((tmp_path / "first.out.json").read_text())["tile_size"] == 32  # the re-run wrote it
    assert again.metrics == {"fields": ["kind", "out", "tile_size"]}


def test_runs_stored_before_versions_load_as_version_1_and_rerun(home: Path, tmp_path: Path, toy_kind) -> None:  # type: ignore[no-untyped-def]
    """A database made before this change (schema 1, no ``config_version`` column) is migrated: its runs read as
    version 1 and re-run, also after a bump."""
    first = _run_v1(tmp_path, "old")
    engine = get_engine()
    with engine.begin() as c:  # back to the schema before versions
        c.execute(text("ALTER TABLE runs DROP COLUMN config_version"))
        c.execute(text("UPDATE schema_version SET version = 1"))
    dispose_engines()
    assert RunTracker().get(first).config_version == 1  # migrated on the next open
    assert main(["runs", "rerun", str(first)]) == 0
    toy_kind()
    assert main(["runs", "rerun", str(first)]) == 0
    latest = RunTracker().list(kind=KIND)[0]
    assert latest.status == "succeeded" and latest.config_version == 2 and latest.config["tile_size"] == 32


def test_a_config_from_a_newer_workbench_is_refused_with_what_to_do() -> None:
    with pytest.raises(ConfigError, match="stored at schema version 3, newer than this workbench's 1: re-run it"):
        upgrade_config("tile", {"scene": "s"}, 3)


def test_a_version_bump_needs_an_upgrader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(configs, "_VERSIONS", dict(configs._VERSIONS))
    with pytest.raises(ValueError, match="a later version needs an upgrader"):
        register_config("tile", 2)
