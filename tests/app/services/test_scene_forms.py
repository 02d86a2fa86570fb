"""Paths typed in the GUI are confined to the data roots; classes typed as text are parsed with clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.services.scene_forms import confine, parse_classes
from core.errors import ConfigError, PathNotAllowedError


def test_confine_accepts_paths_inside_and_refuses_escapes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    assert confine(str(root / "a" / "x.tif"), [root]) == (root / "a" / "x.tif").resolve()
    with pytest.raises(PathNotAllowedError, match=r"is outside the data roots"):
        confine(str(root / ".." / "x.tif"), [root])
    os.symlink("/etc", root / "link")
    with pytest.raises(PathNotAllowedError, match=r"resolved to '/etc/passwd'"):
        confine(str(root / "link" / "passwd"), [root])
    with pytest.raises(PathNotAllowedError, match="empty path"):
        confine("  ", [root])
    with pytest.raises(PermissionError):  # also a builtin PermissionError
        confine("/etc/passwd", [root])


def test_parse_classes_lines_and_json() -> None:
    assert parse_classes("1,forest,#228b22\n\n2, water") == [
        {"id": 1, "name": "forest", "color": "#228b22"},
        {"id": 2, "name": "water"},
    ]
    assert parse_classes('[{"id": 3, "name": "x"}]') == [{"id": 3, "name": "x"}]
    assert parse_classes("") == []
    with pytest.raises(ConfigError, match="class line 'forest' is not 'id,name'"):
        parse_classes("forest")
