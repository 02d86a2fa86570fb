"""Classes typed as text are parsed with clear errors (typed paths: tests/app/services/test_paths.py)."""

from __future__ import annotations

import pytest

from app.services.scene_forms import parse_classes
from core.errors import ConfigError


def test_parse_classes_lines_and_json() -> None:
    assert parse_classes("1,forest,#228b22\n\n2, water") == [
        {"id": 1, "name": "forest", "color": "#228b22"},
        {"id": 2, "name": "water"},
    ]
    assert parse_classes('[{"id": 3, "name": "x"}]') == [{"id": 3, "name": "x"}]
    assert parse_classes("") == []
    with pytest.raises(ConfigError, match="class line 'forest' is not 'id,name'"):
        parse_classes("forest")
