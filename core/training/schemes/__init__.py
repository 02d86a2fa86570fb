"""Parallelism schemes: one module each, registered in :mod:`core.training.schemes.api` (found with pkgutil)."""

from core.training.schemes.api import (
    Reduction,
    SchemeSpec,
    check_combination,
    get_scheme,
    list_schemes,
    register_scheme,
)

__all__ = ["Reduction", "SchemeSpec", "check_combination", "get_scheme", "list_schemes", "register_scheme"]
