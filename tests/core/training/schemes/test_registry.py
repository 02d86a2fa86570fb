"""The scheme registry, and the layering it allows: the engine imports none of db, jobs, app or streamlit."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.training.loop import train_rank
from core.training.schemes import SchemeSpec, get_scheme, list_schemes, register_scheme

REPO = Path(__file__).resolve().parents[4]


def test_the_engines_schemes_are_found_without_a_list() -> None:
    assert list_schemes()[:4] == ("single", "data_parallel", "heterogeneous", "model_parallel")
    assert [get_scheme(n).uses_horovod for n in list_schemes()[:4]] == [False, True, True, True]
    assert get_scheme("heterogeneous").reduction.sends_weight and get_scheme("model_parallel").reduction is None


def test_unknown_and_duplicate_schemes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"scheme 'ring' is unknown; choose one of \['single', 'data_parallel'"):
        get_scheme("ring")
    other = SchemeSpec(name="data_parallel", description="another", rank_fn=train_rank, uses_horovod=True)
    with pytest.raises(ValueError, match="scheme 'data_parallel' is registered twice"):
        register_scheme(other)
    assert register_scheme(get_scheme("single")) is get_scheme("single")  # the same spec again is no conflict


def test_core_imports_none_of_db_jobs_app_or_streamlit() -> None:
    bad = []
    for path in sorted((REPO / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            bad += [
                f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in ("db", "jobs", "app", "streamlit")
            ]
    assert bad == []


def test_the_job_kind_registry_has_no_import_cycle_and_no_silent_fallback() -> None:
    from core.errors import ConfigError
    from jobs.kinds import get_kind, list_kinds

    tree = ast.parse((REPO / "jobs" / "kinds.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    caught = {ast.unparse(h.type) for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler) and h.type}
    assert "jobs.engine_kinds" not in imported and not any("ImportError" in c for c in caught)
    assert set(list_kinds()) == {
        "tile",
        "train",
        "predict",
        "evaluate",
        "baseline",
        "pipeline",
        "sample",
        "assess",
        "vectorize",
        "export_onnx",
    }
    with pytest.raises(ConfigError, match=r"job kind 'bake' is unknown; expected one of \['assess', 'baseline'"):
        get_kind("bake")
