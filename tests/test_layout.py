"""The shape of the code: which packages may import which, core/'s layer order, no import cycles, and functions that
fit a screen."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = REPO / "docs" / "ARCHITECTURE.md"
PACKAGES = ("core", "jobs", "db", "app")
MAX_FUNCTION_LINES = 80


def _modules(package: str) -> dict[str, Path]:
    out = {}
    for path in sorted((REPO / package).rglob("*.py")):
        if "static" in path.parts:
            continue
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, module: str) -> set[str]:
    """Absolute module names ``path`` imports (at any depth: function-level imports count too)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = module.split(".")[: -node.level] if not path.name == "__init__.py" else module.split(".")
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{a.name}" for a in node.names)
    return found


ALL = {name: path for pkg in PACKAGES for name, path in _modules(pkg).items()}


def _graph(package: str) -> dict[str, set[str]]:
    mods = _modules(package)
    return {m: {i for i in _imports(p, m) if i in mods and i != m} for m, p in mods.items()}


@pytest.mark.parametrize("forbidden", ["db", "jobs", "app", "streamlit"])
def test_core_imports_no_outer_layer(forbidden: str) -> None:
    bad = sorted(
        f"{m} imports {i}"
        for m, p in _modules("core").items()
        for i in _imports(p, m)
        if i == forbidden or i.startswith(forbidden + ".")
    )
    assert not bad, "core/ must not import the outer layers:\n" + "\n".join(bad)


def test_db_imports_no_jobs_or_app() -> None:
    bad = sorted(
        f"{m} imports {i}"
        for m, p in _modules("db").items()
        for i in _imports(p, m)
        if i.split(".")[0] in ("jobs", "app", "streamlit")
    )
    assert not bad, "\n".join(bad)


def declared_layers(text: str) -> list[tuple[str, ...]]:
    """core/'s layer order as docs/ARCHITECTURE.md writes it (the block after ``<!-- core-layers``), bottom first:
    one tuple of units (subpackages or top-level modules of core/) per line."""
    block = text[text.index("<!-- core-layers") :].split("```")[1]
    return [tuple(line.split()) for line in block.splitlines() if line.strip()]


def _unit(module: str) -> str | None:
    """The layer unit of a dotted module name: ``core.tiling.job`` -> ``tiling``; None outside core/ sub-units."""
    parts = module.split(".")
    return parts[1] if parts[0] == "core" and len(parts) > 1 else None


def layer_violations(imports: dict[str, set[str]], layers: list[tuple[str, ...]]) -> list[str]:
    """Every import of ``imports`` (module -> names it imports) that does not go to a lower layer, once per module
    and imported unit."""
    rank = {unit: i for i, tier in enumerate(layers) for unit in tier}
    bad: dict[tuple[str, str], str] = {}
    for module, names in imports.items():
        src = _unit(module)
        for name in sorted(names, key=len):
            dst = _unit(name)
            if src is None or dst is None or dst == src or (module, dst) in bad:
                continue
            if src not in rank or dst not in rank:
                bad[module, dst] = f"{module} imports {name}: core/{dst if dst not in rank else src} is in no layer"
            elif rank[dst] >= rank[src]:
                bad[module, dst] = f"{module} imports {name}: core/{dst} is not below core/{src}"
    return [bad[k] for k in sorted(bad)]


def _core_imports() -> dict[str, set[str]]:
    return {m: _imports(p, m) for m, p in _modules("core").items()}


def test_core_units_follow_the_declared_layers() -> None:
    layers = declared_layers(ARCHITECTURE.read_text())
    declared = [unit for tier in layers for unit in tier]
    present = {p.stem if p.is_file() else p.name for p in (REPO / "core").iterdir() if p.name != "__init__.py"}
    present = {u for u in present if (REPO / "core" / u).is_dir() or (REPO / "core" / f"{u}.py").is_file()}
    assert len(declared) == len(set(declared)), f"a unit is declared twice: {declared}"
    assert set(declared) == present - {"__pycache__"}, (
        "docs/ARCHITECTURE.md's core-layers block must name every subpackage and top-level module of core/ once: "
        f"missing {sorted(present - set(declared) - {'__pycache__'})}, stale {sorted(set(declared) - present)}"
    )
    bad = layer_violations(_core_imports(), layers)
    assert not bad, "imports against core/'s layer order (docs/ARCHITECTURE.md):\n" + "\n".join(bad)


def test_the_layer_check_catches_a_planted_upward_import(tmp_path: Path) -> None:
    """A function-level import from the bottom layer (geo) up to training is reported, and only it."""
    planted = tmp_path / "windows.py"
    planted.write_text("def pick():\n    from core.training.loop import RankLoop\n\n    return RankLoop\n")
    imports = _core_imports()
    imports["core.geo.windows"] |= _imports(planted, "core.geo.windows")
    bad = layer_violations(imports, declared_layers(ARCHITECTURE.read_text()))
    assert bad == ["core.geo.windows imports core.training.loop: core/training is not below core/geo"]


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among modules (package __init__ modules included), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package: str) -> None:
    graph = _graph(package)
    # a package's __init__ re-exporting its own modules is not a cycle of ideas: drop edges parent -> child
    graph = {m: {n for n in deps if not n.startswith(m + ".")} for m, deps in graph.items()}
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("package", ["core", "jobs", "db", "app"])
def test_functions_fit_on_a_screen(package: str) -> None:
    long = []
    for path in _modules(package).values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}() is {size} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps):\n" + "\n".join(long)
