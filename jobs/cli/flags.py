"""Flags that set config fields: their type, choices, default and help come from the config class.

A flag made by :func:`field_flag` leaves its field out when it is not given (``None``), so the config class's own
default applies and the class validates what is given (:func:`jobs.kinds.parse_config`); the help states that
default, read from the class, so the CLI and the configs never disagree.
"""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel


def _literal_choices(annotation: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is Literal:
            return typing.get_args(arg)
    return None


def _scalar_type(annotation: Any) -> type:
    """``int`` for ``int | None`` and friends; the first of int, float, str the annotation allows."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for wanted in (int, float, str):
        if wanted in options:
            return wanted
    return str


def field_default(model: type[BaseModel], field: str) -> Any:
    """The default of ``model.field`` (its default factory called)."""
    return model.model_fields[field].get_default(call_default_factory=True)


def field_flag(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    model: type[BaseModel],
    field: str,
    *,
    dest: str | None = None,
    help: str | None = None,
) -> argparse.Action:
    """Add ``flag`` setting ``model.field``: type and choices from the field's annotation, help with its default.

    Raises:
        KeyError: ``model`` has no field ``field`` (a programming error: the flag names a field that is gone).
    """
    info = model.model_fields[field]
    choices = _literal_choices(info.annotation)
    text = help or info.description or field.replace("_", " ")
    return parser.add_argument(
        flag,
        dest=dest or field,
        metavar=flag.lstrip("-").upper().replace("-", "_") if not choices else None,
        type=type(choices[0]) if choices else _scalar_type(info.annotation),
        choices=choices,
        default=None,
        help=f"{text} (default: {field_default(model, field)!r}, {model.__name__}.{field})",
    )


def given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The fields among ``names`` that were given on the command line (flags left out are not set)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
