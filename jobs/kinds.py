"""The job-kind registry: kind name -> (config class, executor). The CLI and the GUI both dispatch through here.

Each kind module registers its kinds with :func:`register_kind` when imported; :data:`KIND_MODULES` names them, and
:func:`list_kinds` / :func:`get_kind` import them (an import error propagates: no kind is dropped silently).
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from core.configs import load_json_file, upgrade_config
from core.errors import ConfigError
from db.scenes import SceneStore
from jobs.runner import Executor

KIND_MODULES = ("jobs.engine_kinds", "jobs.assess", "jobs.exports")
"""The modules that register job kinds (imported by :func:`list_kinds`)."""


@dataclass(frozen=True)
class JobKind:
    """One kind of job: its config class, the executor the runner calls, and a line of help."""

    name: str
    config_class: type[BaseModel]
    executor: Executor
    help: str


_KINDS: dict[str, JobKind] = {}


def register_kind(kind: JobKind) -> JobKind:
    """Add ``kind`` to the registry; returns it.

    Raises:
        ValueError: another kind of the same name is registered.
    """
    known = _KINDS.get(kind.name)
    if known is not None and known != kind:
        raise ValueError(
            f"job kind {kind.name!r} is registered twice ({known.executor.__module__} and "
            f"{kind.executor.__module__}); give the new kind another name"
        )
    _KINDS[kind.name] = kind
    return kind


def list_kinds() -> dict[str, JobKind]:
    """Every registered job kind by name (imports :data:`KIND_MODULES` first)."""
    for module in KIND_MODULES:
        importlib.import_module(module)
    return dict(_KINDS)


def get_kind(name: str) -> JobKind:
    """The job kind ``name``.

    Raises:
        ConfigError: no such kind (the message lists the known ones).
    """
    known = list_kinds()
    if name not in known:
        raise ConfigError(f"job kind {name!r} is unknown; expected one of {sorted(known)}")
    return known[name]


def parse_config(data: dict[str, Any] | str | Path, kind: str | None = None) -> BaseModel:
    """Validate a job config (dict, JSON text or JSON file path) into its config class, with a clear error."""
    source = "config"
    if isinstance(data, Path) or (isinstance(data, str) and not data.lstrip().startswith("{")):
        source = f"config file {str(data)!r}"
        data = load_json_file(data)
    elif isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"the config is not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f'{source} holds a JSON {type(data).__name__}, not an object; a job config is {{"kind": ..., ...}}'
        )
    kind = kind or data.get("kind")
    all_kinds = list_kinds()
    if kind not in all_kinds:
        raise ConfigError(f'{source} has kind {kind!r}; expected one of {sorted(all_kinds)} (set "kind")')
    try:
        return all_kinds[kind].config_class.model_validate({**data, "kind": kind})
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"{source} is not a valid {kind} config:\n" + "\n".join(lines)) from exc


def scene_id_of(config: BaseModel, db_url: str | None = None) -> int | None:
    name = getattr(config, "scene", None)
    if not name:
        return None
    return SceneStore(db_url).get(name).id


def stored_config(row: Any) -> dict[str, Any]:
    """The config of a stored run (a ``db.models.RunRow``) as today's config class reads it: upgraded from the schema
    version it was stored at (:func:`core.configs.upgrade_config`)."""
    get_kind(row.kind)  # imports the kind modules, which register their config versions
    return upgrade_config(row.kind, dict(row.config or {}), row.config_version)
