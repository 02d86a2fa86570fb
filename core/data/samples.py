"""Registration presets for the sample scenes of ``../shared/data`` (one preset per folder).

Class names come from each folder's SOURCE.md. Slovenia (numpy arrays) and Houston (a MATLAB file) are first
converted to GeoTIFFs under ``<home>/converted/<folder>/`` by :mod:`core.data.convert`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.data.catalog import SceneSpec, register_scene
from core.data.convert import houston_to_geotiff, slovenia_to_geotiff
from core.data.scene import Scene
from core.errors import ConfigError

log = logging.getLogger(__name__)

STRZEGOM_DATES = ("20210619", "20220619", "20220719", "20221012", "20230209", "20230301")
NORTH_CAROLINA_BANDS = (10, 20, 30, 40, 50, 70)

STRZEGOM_CLASSES = [
    (1, "conifer forest", "#0b5d1e"),
    (2, "mixed forest", "#3f9b3a"),
    (3, "urban", "#d7301f"),
    (4, "crops (pre-harvest / early spring)", "#e6c35c"),
    (5, "bare soil", "#a6761d"),
    (6, "permanent grassland", "#b8e186"),
    (7, "roads", "#5a5a5a"),
    (8, "water", "#2b8cbe"),
    (9, "crops in vegetation stage", "#9acd32"),
    (10, "quarries / open pits", "#c994c7"),
]
NORTH_CAROLINA_CLASSES = [
    (1, "developed", "#d7301f"),
    (2, "agriculture", "#e6c35c"),
    (3, "herbaceous", "#b8e186"),
    (4, "shrubland", "#8c6d31"),
    (5, "forest", "#1b7837"),
    (6, "water", "#2b8cbe"),
    (7, "sediment", "#d9d9d9"),
]
CHIAPAS_CLASSES = [
    (1, "forest", "#1b7837"),
    (2, "water", "#2b8cbe"),
    (3, "herbaceous", "#b8e186"),
    (4, "barren", "#a6761d"),
    (5, "urban/built", "#d7301f"),
]
SLOVENIA_CLASSES = [
    (1, "cultivated land", "#e6c35c"),
    (2, "forest", "#1b7837"),
    (3, "grassland", "#b8e186"),
    (4, "shrubland", "#8c6d31"),
    (8, "artificial surface", "#d7301f"),
]
# SOURCE.md gives no class names for the Houston crop; colours are the source repository's 'houston' colour map.
HOUSTON_COLORS = [
    "#800000",
    "#aa6e28",
    "#808000",
    "#008080",
    "#000080",
    "#e6194b",
    "#f58230",
    "#ffe119",
    "#d2f53c",
    "#3cb44b",
    "#46f0f0",
    "#0082c8",
]
HOUSTON_CLASSES = [(i, f"houston class {i}", c) for i, c in enumerate(HOUSTON_COLORS, start=1)]


def _classes(rows: list[tuple[int, str, str]]) -> list[dict[str, Any]]:
    return [{"id": i, "name": n, "color": c} for i, n, c in rows]


def _strzegom(d: Path, home: Path) -> list[SceneSpec]:
    return [
        SceneSpec(
            name="strzegom",
            description="Sentinel-2 L2A, Strzegom (PL) quarries, 6 dates 2021-2023, 10 bands, 10 m",
            classes=_classes(STRZEGOM_CLASSES),
            acquisitions=[
                {
                    "date": f"{t[:4]}-{t[4:6]}-{t[6:]}",
                    "files": {"s2": [str(d / f"image_{t}.tif")]},
                    "labels": str(d / f"labels_{t}.tif"),
                }
                for t in STRZEGOM_DATES
            ],
        )
    ]


def _north_carolina(d: Path, home: Path) -> list[SceneSpec]:
    files = {"landsat": [str(d / f"lsat7_2000_{b}.tif") for b in NORTH_CAROLINA_BANDS]}
    desc = "Landsat 7 ETM+ 2000, bands 1,2,3,4,5,7 stacked from one file per band, 28.5 m, NC state plane"
    return [
        SceneSpec(
            name="north_carolina",
            description=desc + "; labels: strata.tif (full coverage)",
            classes=_classes(NORTH_CAROLINA_CLASSES),
            acquisitions=[{"date": "2000", "files": files, "labels": str(d / "strata.tif")}],
        ),
        SceneSpec(
            name="north_carolina_polygons",
            description=desc + "; labels: training polygons rasterised",
            classes=_classes(NORTH_CAROLINA_CLASSES),
            label_field="id",
            acquisitions=[{"date": "2000", "files": files, "label_vector": str(d / "landsat96_polygons.shp")}],
        ),
    ]


def _chiapas(d: Path, home: Path) -> list[SceneSpec]:
    stacks = {"1999-11-18": "LE70220491999322EDC01_stack.tif", "2002-04-16": "LE70220492002106EDC00_stack.tif"}
    return [
        SceneSpec(
            name="chiapas_landsat",
            description="Landsat 7 ETM+ surface reflectance, Chiapas (MX), 1999 and 2002, 30 m",
            classes=_classes(CHIAPAS_CLASSES),
            acquisitions=[
                {"date": t, "files": {"landsat": [str(d / f)]}, "labels": str(d / "training_labels.tif")}
                for t, f in stacks.items()
            ],
        )
    ]


def _slovenia(d: Path, home: Path) -> list[SceneSpec]:
    conv = slovenia_to_geotiff(d, home / "converted" / "slovenia_s2")
    return [
        SceneSpec(
            name="slovenia_s2",
            description="Sentinel-2 L1C, Slovenia, 5 dates (t1..t5; dates not given by the source), "
            "13 bands, 10 m; converted from eo-learn numpy arrays",
            classes=_classes(SLOVENIA_CLASSES),
            acquisitions=[
                {"date": f"t{k + 1}", "files": {"s2": [p]}, "labels": conv["labels"]}
                for k, p in enumerate(conv["images"])
            ],
        )
    ]


def _houston(d: Path, home: Path) -> list[SceneSpec]:
    conv = houston_to_geotiff(d / "houston_dataset.mat", home / "converted" / "houston_crop")
    return [
        SceneSpec(
            name="houston_crop",
            description="University of Houston campus crop: CASI hyperspectral (48 bands) at 1/4 "
            "the resolution of the RGB; not georeferenced (RGB pixel coordinates)",
            georeferenced=False,
            classes=_classes(HOUSTON_CLASSES),
            label_modality="rgb",
            acquisitions=[
                {"date": None, "files": {"rgb": [conv["rgb"]], "hsi": [conv["hsi"]]}, "labels": conv["labels"]}
            ],
        )
    ]


def _landsat_rgb(d: Path, home: Path) -> list[SceneSpec]:
    return [
        SceneSpec(
            name="landsat_rgb",
            description="Landsat 7 RGB, Bahamas (rasterio's test image), 300 m, no labels",
            acquisitions=[{"date": None, "files": {"rgb": [str(d / "RGB.byte.tif")]}}],
        )
    ]


PRESETS: dict[str, tuple[tuple[str, ...], Callable[[Path, Path], list[SceneSpec]]]] = {
    "strzegom": (("strzegom",), _strzegom),
    "north_carolina": (("north_carolina", "north_carolina_polygons"), _north_carolina),
    "chiapas_landsat": (("chiapas_landsat",), _chiapas),
    "slovenia_s2": (("slovenia_s2",), _slovenia),
    "houston_crop": (("houston_crop",), _houston),
    "landsat_rgb": (("landsat_rgb",), _landsat_rgb),
}
"""Folder of ``../shared/data`` -> (names of the scenes it registers, spec builder(folder, home))."""


def sample_specs(folder: str, data_dir: str | Path, home: str | Path) -> list[SceneSpec]:
    """The registration specs of one sample folder (converting its files first where needed)."""
    if folder not in PRESETS:
        raise ConfigError(f"no sample preset for {folder!r}; known folders: {sorted(PRESETS)}")
    return PRESETS[folder][1](Path(data_dir) / folder, Path(home))


def register_samples(
    data_dir: str | Path | None, store: Any, home: str | Path, only: list[str] | None = None
) -> list[Scene]:
    """Register the sample scenes of ``data_dir`` (``../shared/data``) that are not registered yet.

    Args:
        data_dir: folder holding the sample folders (``None``: :func:`core.settings.shared_data_dir`).
        store: a :class:`db.scenes.SceneStore`.
        home: workbench home; converted files go to ``<home>/converted/``, rasterised labels to ``<home>/labels/``.
        only: folder names (keys of :data:`PRESETS`) or scene names (e.g. ``north_carolina_polygons``) to register;
            default all.

    Returns:
        The scenes registered by this call, in preset order (already registered names are skipped).

    Raises:
        ConfigError: a name in ``only`` is neither a sample folder nor a sample scene.
        Registry errors (RasterError, GridMismatchError, LabelError, ...) if a sample file is broken.
    """
    if data_dir is None:
        from core.settings import shared_data_dir

        data_dir = shared_data_dir()
    scene_names = {n: folder for folder, (names, _) in PRESETS.items() for n in names}
    wanted = set(scene_names) if only is None else set()
    for item in only or []:
        if item in PRESETS:
            wanted.update(PRESETS[item][0])
        elif item in scene_names:
            wanted.add(item)
        else:
            raise ConfigError(
                f"no sample preset for {item!r}; known folders: {sorted(PRESETS)} (scenes: {sorted(scene_names)})"
            )
    existing = {s.name for s in store.list()}
    registered: list[Scene] = []
    for folder, (names, _) in PRESETS.items():
        todo = [n for n in names if n in wanted and n not in existing]
        if not todo:
            continue
        for spec in sample_specs(folder, data_dir, home):
            if spec.name in todo:
                registered.append(register_scene(spec, store, Path(home)))
    if not registered:
        log.info("sample scenes %s already registered", sorted(wanted))
    return registered
