"""Class lists as the exporters take them: ``[{"id", "name", "color"}]`` from any of the project's forms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.export.errors import ExportError


@dataclass(frozen=True)
class ExportClass:
    """One class of a class map: ``id`` is the pixel value (1..255), ``color`` is ``"#rrggbb"``."""

    id: int
    name: str
    color: str


def as_classes(classes: Sequence[Any]) -> tuple[ExportClass, ...]:
    """Normalise classes given as dicts (``core.data.cog.read_classes``), ``ClassInfo`` objects or ``ExportClass``.

    Raises:
        ExportError: an entry lacks ``id``/``name``/``color``, an id is outside 1..255 or repeats.
    """
    out: list[ExportClass] = []
    for c in classes:
        get = c.get if isinstance(c, Mapping) else (lambda k, _c=c: getattr(_c, k, None))
        cid, name, color = get("id"), get("name"), get("color")
        if cid is None or name is None or not isinstance(color, str) or len(color) != 7 or color[0] != "#":
            raise ExportError(
                f"class {c!r} is not {{id, name, color='#rrggbb'}}; give every class an id, a name "
                "and a colour (core.data.cog.read_classes(cog_path) returns them from a class map)"
            )
        if not 1 <= int(cid) <= 255:
            raise ExportError(f"class id {cid} of {name!r} is outside 1..255 (0 is nodata in class maps)")
        out.append(ExportClass(int(cid), str(name), color.lower()))
    ids = [c.id for c in out]
    if len(set(ids)) != len(ids):
        raise ExportError(f"class ids {ids} repeat; each class needs its own id")
    return tuple(sorted(out, key=lambda c: c.id))
