"""Registering a scene from paths a user typed in the browser, confined to the data roots and run folders
(:mod:`app.services.paths`: resolved, and refused with :class:`core.errors.PathNotAllowedError` before a file is
opened when outside them).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from app.services.paths import allowed_roots, confine
from core.data.scene import Scene
from core.errors import ConfigError
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)


def parse_classes(text: str) -> list[dict[str, Any]]:
    """Classes typed as JSON (``[{"id": 1, "name": "forest", "color": "#228b22"}]``) or one ``id,name[,#colour]``
    per line; empty text gives no classes.

    Raises:
        ConfigError: a line or the JSON cannot be read, quoting it.
    """
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f'classes JSON is not valid ({exc}); expected [{{"id": 1, "name": ...}}]') from exc
        return list(data)
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2 or not parts[0].isdigit():
            raise ConfigError(f"class line {line!r} is not 'id,name' or 'id,name,#rrggbb' (e.g. '1,forest,#228b22')")
        out.append({"id": int(parts[0]), "name": parts[1], **({"color": parts[2]} if len(parts) > 2 else {})})
    return out


def register_from_form(
    name: str,
    images: str,
    labels: str = "",
    classes: str = "",
    modality: str = "image",
    date: str = "",
    georeferenced: bool = True,
    description: str = "",
    settings: Settings | None = None,
) -> Scene:
    """Register one acquisition typed in the Scenes page: ``images`` one path per line (bands stacked in order),
    optional ``labels`` raster path, classes as in :func:`parse_classes`.

    Raises:
        PathNotAllowedError: a path outside the data roots. ConfigError: invalid form values. Registry errors
        (RasterError, GridMismatchError, LabelError, SceneExistsError) unchanged.
    """
    from core.data.catalog import SceneSpec, register_scene
    from db.scenes import SceneStore

    settings = settings or get_settings()
    roots = allowed_roots(settings)
    paths = [str(confine(p, roots)) for p in images.splitlines() if p.strip()]
    if not paths:
        raise ConfigError("no image file was given; type one raster path per line")
    label_path = str(confine(labels, roots)) if labels.strip() else None
    try:
        spec = SceneSpec.model_validate(
            {
                "name": name.strip(),
                "description": description,
                "georeferenced": georeferenced,
                "classes": parse_classes(classes),
                "acquisitions": [
                    {"date": date.strip() or None, "files": {modality.strip() or "image": paths}, "labels": label_path}
                ],
            }
        )
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("the scene cannot be registered:\n" + "\n".join(f"- {x}" for x in lines)) from exc
    return register_scene(spec, SceneStore(settings.db_url), settings.home)


def register_samples(only: Sequence[str] | None = None, settings: Settings | None = None) -> list[Scene]:
    """Register the sample scenes of ``../shared/data`` (all, or ``only`` those names) not yet registered."""
    from core.data.samples import register_samples as _register
    from core.settings import shared_data_dir
    from db.scenes import SceneStore

    settings = settings or get_settings()
    return list(
        _register(shared_data_dir(), SceneStore(settings.db_url), settings.home, only=list(only) if only else None)
    )


def sample_names() -> list[str]:
    """The sample folders that :func:`register_samples` knows (empty if the presets are unavailable)."""
    try:
        from core.data.samples import PRESETS
    except ImportError:
        return []
    return sorted(PRESETS)
