"""QGIS styles: parse the written .qml and compare values, colours and labels with the classes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from core.data import cog
from core.export.errors import ExportError
from core.export.qml import style_outputs, write_class_qml

CLASSES = [
    {"id": 1, "name": "forest", "color": "#228B22"},
    {"id": 3, "name": "water", "color": "#0000ff"},
    {"id": 2, "name": "urban", "color": "#ff0000"},
]


def _class_cog(tmp_path: Path) -> Path:
    from affine import Affine

    profile = cog.tiled_profile(64, 64, Affine(10, 0, 500000, 0, -10, 5600000), "EPSG:32633")
    tmp = tmp_path / "map.tmp.tif"
    with cog.open_tiled(tmp, **profile) as dst:
        dst.write(np.tile(np.array([0, 1, 2, 3], np.uint8), (64, 16))[None])
        cog.write_class_metadata(
            dst, [c["id"] for c in CLASSES], [c["name"] for c in CLASSES], [c["color"] for c in CLASSES]
        )
    return cog.finalize_cog(tmp, tmp_path / "map.tif")


def test_class_and_confidence_styles(tmp_path: Path) -> None:
    path = _class_cog(tmp_path)
    written = style_outputs(path, confidence_path=tmp_path / "map_confidence.tif")
    assert written == [tmp_path / "map.qml", tmp_path / "map_confidence.qml"]
    root = ET.parse(written[0]).getroot()
    r = root.find("pipe/rasterrenderer")
    assert r.get("type") == "paletted" and r.get("band") == "1"
    entries = [(e.get("value"), e.get("color"), e.get("label")) for e in r.findall("colorPalette/paletteEntry")]
    assert entries == [("1", "#228b22", "forest"), ("2", "#ff0000", "urban"), ("3", "#0000ff", "water")]
    nodata = r.find("rasterTransparency/singleValuePixelList/pixelListEntry")
    assert (nodata.get("min"), nodata.get("max"), nodata.get("percentTransparent")) == ("0", "0", "100")

    conf = ET.parse(written[1]).getroot().find("pipe/rasterrenderer")
    assert conf.get("type") == "singlebandpseudocolor"
    items = conf.findall("rastershader/colorrampshader/item")
    assert [i.get("value") for i in items] == ["0", "50", "100"]
    assert conf.find("rasterTransparency/singleValuePixelList/pixelListEntry").get("min") == "255"


def test_bad_classes_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="outside 1..255"):
        write_class_qml(tmp_path / "x.qml", [{"id": 0, "name": "nodata", "color": "#000000"}])
    with pytest.raises(ExportError, match="colour"):
        write_class_qml(tmp_path / "x.qml", [{"id": 1, "name": "a"}])
