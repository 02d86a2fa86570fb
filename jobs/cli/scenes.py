"""``scenes`` (register, register-samples, list, show, remove) and ``convert``: the scene catalogue."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

from core.configs import load_json_file
from core.settings import get_settings
from jobs.cli.output import print_json, table


def cmd_scenes_register(args: argparse.Namespace) -> int:
    from core.data.catalog import SceneSpec, register_scene
    from db.scenes import SceneStore

    settings = get_settings()
    if args.stac:
        from core.export.stac_in import register_stac

        scene = register_stac(args.stac, SceneStore(settings.db_url), settings.home, name=args.name)
        print(f"registered scene {scene.name!r} (id {scene.id}) from {args.stac}")
        return 0
    if args.spec:
        spec = SceneSpec.from_json_file(Path(args.spec))
    else:
        if not args.name or not args.image:
            raise SystemExit("scenes register needs --spec FILE, or --name and at least one --image")
        classes = load_json_file(args.classes, "classes") if args.classes else []
        spec = SceneSpec.model_validate(
            {
                "name": args.name,
                "georeferenced": not args.not_georeferenced,
                "classes": classes,
                "label_field": args.label_field,
                "acquisitions": [
                    {
                        "date": args.date,
                        "files": {args.modality: [str(Path(p).resolve()) for p in args.image]},
                        "labels": str(Path(args.labels).resolve()) if args.labels else None,
                        "label_vector": str(Path(args.label_vector).resolve()) if args.label_vector else None,
                    }
                ],
            }
        )
    scene = register_scene(spec, SceneStore(settings.db_url), settings.home)
    print(
        f"registered scene {scene.name!r} (id {scene.id}): "
        + ", ".join(f"{m.name} {m.width}x{m.height}x{m.band_count}" for m in scene.modalities)
        + f", {len(scene.acquisitions)} acquisition(s), {len(scene.classes)} classes"
    )
    return 0


def cmd_scenes_samples(args: argparse.Namespace) -> int:
    from core.data.samples import register_samples
    from db.scenes import SceneStore

    settings = get_settings()
    data_dir = Path(args.data_dir) if args.data_dir else None
    scenes = register_samples(data_dir, SceneStore(settings.db_url), settings.home, only=args.only or None)
    for s in scenes:
        print(f"registered {s.name} (id {s.id})")
    if not scenes:
        print("all sample scenes were already registered")
    return 0


def cmd_scenes_list(args: argparse.Namespace) -> int:
    from db.scenes import SceneStore

    scenes = SceneStore(get_settings().db_url).list()
    rows = [
        {
            "id": s.id,
            "name": s.name,
            "georef": "yes" if s.georeferenced else "no",
            "modalities": ", ".join(f"{m.name}:{m.width}x{m.height}x{m.band_count}" for m in s.modalities),
            "dates": len(s.acquisitions),
            "classes": len(s.classes),
        }
        for s in scenes
    ]
    print(table(rows, ["id", "name", "georef", "modalities", "dates", "classes"]))
    return 0


def cmd_scenes_show(args: argparse.Namespace) -> int:
    from db.scenes import SceneStore

    print_json(SceneStore(get_settings().db_url).get(args.scene).to_dict())
    return 0


def cmd_scenes_remove(args: argparse.Namespace) -> int:
    from db.scenes import SceneStore

    runs: Literal["refuse", "keep", "delete"] = "keep" if args.keep_runs else "delete" if args.with_runs else "refuse"
    n = SceneStore(get_settings().db_url).remove(args.scene, runs=runs)
    what = {"keep": f"; its {n} run(s) kept, detached from it", "delete": f" with its {n} run(s)"}.get(runs, "")
    print(f"removed scene {args.scene!r}{what} (its files were not touched)")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from core.data import convert

    out = Path(args.out)
    if args.what == "slovenia":
        paths = convert.slovenia_to_geotiff(Path(args.src), out)
    else:
        paths = convert.houston_to_geotiff(Path(args.src), out)
    print_json(paths)
    return 0


def add_parsers(sub: Any) -> None:
    """The ``scenes`` subcommands and ``convert``."""
    scenes = sub.add_parser("scenes", help="register, list, show and remove scenes").add_subparsers(
        dest="scenes_command", required=True
    )
    reg = scenes.add_parser("register", help="register a scene from raster files (or --spec JSON)")
    reg.add_argument("--spec", help="JSON scene spec (several modalities / dates / vector labels)")
    reg.add_argument("--stac", help="a local STAC Item or Collection JSON (assets by eo:bands, labels asset)")
    reg.add_argument("--name")
    reg.add_argument("--image", action="append", help="raster file; repeat to stack single-band files in order")
    reg.add_argument("--modality", default="image")
    reg.add_argument("--date")
    reg.add_argument("--labels", help="label raster (class ids, 0 = unlabelled)")
    reg.add_argument("--label-vector", help="polygons with a class field, rasterised onto the scene grid")
    reg.add_argument("--label-field", default="class")
    reg.add_argument("--classes", help='JSON file: [{"id": 1, "name": "forest", "color": "#228b22"}, ...]')
    reg.add_argument("--not-georeferenced", action="store_true", help="the files have no CRS (pixel coordinates)")
    reg.set_defaults(func=cmd_scenes_register)
    smp = scenes.add_parser("register-samples", help="register every sample scene of ../shared/data")
    smp.add_argument("--data-dir")
    smp.add_argument("--only", nargs="*")
    smp.set_defaults(func=cmd_scenes_samples)
    scenes.add_parser("list").set_defaults(func=cmd_scenes_list)
    sh = scenes.add_parser("show")
    sh.add_argument("scene")
    sh.set_defaults(func=cmd_scenes_show)
    rm = scenes.add_parser("remove")
    rm.add_argument("scene")
    keep = rm.add_mutually_exclusive_group()
    keep.add_argument("--keep-runs", action="store_true", help="keep the scene's runs, detached from it")
    keep.add_argument("--with-runs", action="store_true", help="remove the scene's runs too")
    rm.set_defaults(func=cmd_scenes_remove)
    conv = sub.add_parser("convert", help="convert sample data that is not GeoTIFF (slovenia npy, houston mat)")
    conv.add_argument("what", choices=["slovenia", "houston"])
    conv.add_argument("src", help="slovenia: the slovenia_s2 folder; houston: houston_dataset.mat")
    conv.add_argument("out", help="output folder for the GeoTIFFs")
    conv.set_defaults(func=cmd_convert)
