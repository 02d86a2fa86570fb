"""Every path that reaches the engine from the browser, confined to the data roots and the run folders.

The app runs on a server that may hold other people's files, so a path a user types (a scene's files, an
interpreted sample to assess, any path field of a job config the app launches) is resolved (``~``, ``..`` and
symlinks followed) and must lie inside one of ``Settings.data_roots`` (``$WORKBENCH_DATA_ROOTS``) or the
workbench's own run and store folders; anything else raises :class:`core.errors.PathNotAllowedError` before a
file is opened or a run row is created. Pages launch jobs through :func:`launch`, which checks first.

The CLI is not confined: it runs as its user, with that user's rights.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from core.errors import PathNotAllowedError
from core.settings import Settings, get_settings

PATH_FIELDS: dict[str, tuple[str, ...]] = {
    "tile": ("output",),
    "train": ("store", "tile_job.output"),
    "predict": ("model", "output"),
    "evaluate": ("model", "store", "prediction", "labels"),
    "baseline": ("store", "output", "tile_job.output"),
    "assess": ("labels",),
    "pipeline": ("train_options.store",),
}
"""Config fields (dotted for nested configs and dicts) that name files or folders, per job kind. Kinds not listed
(sample, vectorize, export_onnx) name runs and scenes, never paths."""


def allowed_roots(settings: Settings) -> tuple[Path, ...]:
    """The data roots, then the folders the workbench writes runs and tile stores into."""
    return (*settings.data_roots, settings.runs_dir, settings.stores_dir)


def confine(path: str, roots: Sequence[Path]) -> Path:
    """``path`` resolved, if it lies inside one of ``roots``.

    Raises:
        PathNotAllowedError: the path is empty, or resolved it lies outside every root (the message lists them).
    """
    text = str(path).strip()
    if not text:
        raise PathNotAllowedError("an empty path was given; type the full path of a file under the data roots")
    resolved = Path(text).expanduser().resolve()
    for root in roots:
        if resolved == root.resolve() or resolved.is_relative_to(root.resolve()):
            return resolved
    raise PathNotAllowedError(
        f"path {text!r} (resolved to {str(resolved)!r}) is outside the data roots and run folders "
        f"{[str(r) for r in roots]}; the app opens only files under these folders. Move the file there or add "
        "its folder to WORKBENCH_DATA_ROOTS"
    )


def confine_typed(path: str, settings: Settings | None = None) -> Path:
    """A path typed in a page, confined to :func:`allowed_roots` (see :func:`confine`)."""
    return confine(path, allowed_roots(settings or get_settings()))


def _values(obj: Any, dotted: str) -> Iterator[tuple[str, str]]:
    head, _, rest = dotted.partition(".")
    value = obj.get(head) if isinstance(obj, dict) else getattr(obj, head, None)
    if value is None:
        return
    if rest:
        yield from ((f"{head}.{k}", v) for k, v in _values(value, rest))
    elif isinstance(value, str):
        yield head, value


def config_paths(config: BaseModel) -> list[tuple[str, str]]:
    """``(field, path)`` of every path a job config names (see :data:`PATH_FIELDS`)."""
    fields = PATH_FIELDS.get(str(getattr(config, "kind", "")), ())
    return [pair for f in fields for pair in _values(config, f)]


def check_config(config: BaseModel, settings: Settings | None = None) -> None:
    """Refuse a config that names a path outside the data roots and run folders.

    Raises:
        PathNotAllowedError: naming the field and the path.
    """
    roots = allowed_roots(settings or get_settings())
    for field, value in config_paths(config):
        try:
            confine(value, roots)
        except PathNotAllowedError as exc:
            raise PathNotAllowedError(f"{config.kind} config field {field!r}: {exc}") from exc  # type: ignore[attr-defined]


def launch(config: BaseModel, scheduler_address: str | None, db_url: str) -> int:
    """Check the config's paths, then launch it detached (:func:`jobs.launch.launch_detached`); returns the run id.

    Raises:
        PathNotAllowedError: before any run row exists.
    """
    from jobs import launch as launcher

    check_config(config)
    return launcher.launch_detached(config, scheduler_address, db_url)
