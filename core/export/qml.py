"""QGIS layer styles (``.qml``) written beside class-map and confidence COGs.

QGIS loads ``<name>.qml`` automatically when ``<name>.tif`` is added to a project (drag and drop included), so a
class map opens with its legend: a *paletted* renderer with one entry per class (value = class id, colour and
class name as label) and nodata 0 fully transparent. Confidence rasters (uint8 percent 0-100, nodata 255) get a
*single-band pseudo-colour* renderer, red (0 %) -> yellow (50 %) -> green (100 %), with 255 transparent.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.export.classes import as_classes

log = logging.getLogger(__name__)

CLASS_NODATA = 0
CONFIDENCE_NODATA = 255
CONFIDENCE_RAMP = ((0, "#d7191c", "0 %"), (50, "#ffffbf", "50 %"), (100, "#1a9641", "100 %"))
"""(value in percent, colour, label) stops of the confidence pseudo-colour ramp."""


def _root() -> tuple[ET.Element, ET.Element]:
    root = ET.Element("qgis", version="3.28.0", styleCategories="AllStyleCategories")
    pipe = ET.SubElement(root, "pipe")
    return root, pipe


def _transparent(renderer: ET.Element, value: int) -> None:
    transp = ET.SubElement(renderer, "rasterTransparency")
    lst = ET.SubElement(transp, "singleValuePixelList")
    ET.SubElement(lst, "pixelListEntry", min=str(value), max=str(value), percentTransparent="100")


def _finish(root: ET.Element, pipe: ET.Element, path: Path) -> Path:
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(pipe, "huesaturation", saturation="0", grayscaleMode="0", colorizeOn="0")
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    ET.SubElement(root, "blendMode").text = "0"
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n")
        ET.ElementTree(root).write(f, encoding="utf-8", xml_declaration=False)
    log.info("wrote QGIS style %s", path)
    return path


def write_class_qml(path: str | Path, classes: Sequence[Any]) -> Path:
    """Write a paletted QGIS style for a class map.

    Args:
        path: the ``.qml`` file to write (QGIS picks it up when it sits beside ``<same name>.tif``).
        classes: ``[{"id", "name", "color"}]`` (as :func:`core.data.cog.read_classes` returns) or ``ClassInfo``s.

    Returns:
        ``path`` as a Path. Raises :class:`core.export.errors.ExportError` for malformed classes.
    """
    root, pipe = _root()
    r = ET.SubElement(pipe, "rasterrenderer", type="paletted", band="1", opacity="1", alphaBand="-1", nodataColor="")
    _transparent(r, CLASS_NODATA)
    palette = ET.SubElement(r, "colorPalette")
    for c in as_classes(classes):
        ET.SubElement(palette, "paletteEntry", value=str(c.id), color=c.color, alpha="255", label=c.name)
    return _finish(root, pipe, Path(path))


def write_confidence_qml(path: str | Path) -> Path:
    """Write a pseudo-colour QGIS style for a confidence raster (uint8 percent 0-100, nodata 255)."""
    root, pipe = _root()
    r = ET.SubElement(
        pipe,
        "rasterrenderer",
        type="singlebandpseudocolor",
        band="1",
        opacity="1",
        alphaBand="-1",
        classificationMin="0",
        classificationMax="100",
        nodataColor="",
    )
    _transparent(r, CONFIDENCE_NODATA)
    shader = ET.SubElement(
        ET.SubElement(r, "rastershader"),
        "colorrampshader",
        colorRampType="INTERPOLATED",
        classificationMode="1",
        clip="1",
        minimumValue="0",
        maximumValue="100",
    )
    for value, color, label in CONFIDENCE_RAMP:
        ET.SubElement(shader, "item", value=str(value), color=color, alpha="255", label=label)
    return _finish(root, pipe, Path(path))


def style_outputs(
    cog_path: str | Path, classes: Sequence[Any] | None = None, confidence_path: str | Path | None = None
) -> list[Path]:
    """Write ``<name>.qml`` beside a class-map COG (and beside its confidence COG when given).

    Args:
        cog_path: the class-map COG.
        classes: its classes; ``None`` reads them from the COG's ``CLASSES`` tag (:func:`core.data.cog.read_classes`).
        confidence_path: the confidence COG, or ``None``.

    Returns:
        The ``.qml`` files written.
    """
    from core.data.cog import read_classes

    cog = Path(cog_path)
    written = [write_class_qml(cog.with_suffix(".qml"), classes if classes is not None else read_classes(cog))]
    if confidence_path is not None:
        written.append(write_confidence_qml(Path(confidence_path).with_suffix(".qml")))
    return written
