"""How the registries find their entries: every module of a package imported once, each registering itself."""

from __future__ import annotations

import importlib
import pkgutil

_DONE: set[str] = set()


def import_package_modules(package: str) -> None:
    """Import every module of ``package`` (a dotted name) once, in name order.

    The package counts as done before its modules are imported, so a module that asks its registry for entries
    while it loads does not start a second round; an import error propagates and the next call tries again.
    """
    if package in _DONE:
        return
    _DONE.add(package)
    try:
        root = importlib.import_module(package)
        for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda m: m.name):
            importlib.import_module(f"{package}.{info.name}")
    except BaseException:
        _DONE.discard(package)
        raise
