"""``sample``, ``assess``, ``vectorize``, ``export-onnx``: what analysts do with a map or a model.

Each verb builds its job config from the flags (:mod:`jobs.cli.flags`: the config class gives each flag's type,
choices and default, and validates the values) and runs it as a tracked job.
"""

from __future__ import annotations

import argparse
from typing import Any

from jobs.assess import AssessJobConfig, SampleJobConfig
from jobs.cli.flags import field_flag, given
from jobs.cli.launch import run_config
from jobs.exports import ExportOnnxJobConfig, VectorizeJobConfig

FIELDS = {
    "sample": ("prediction_run", "per_class", "target_se", "min_per_class", "seed"),
    "assess": ("prediction_run", "sample_run", "labels", "class_field", "id_field", "label_date"),
    "vectorize": ("prediction_run", "min_mapping_unit", "mmu_unit", "simplify"),
    "export_onnx": ("model_run", "tile_size", "overlap"),
}
"""The config fields each verb's arguments set."""


def cmd_analysis(args: argparse.Namespace) -> int:
    """A config from the flags, run as a tracked job."""
    from jobs.kinds import parse_config

    data = given(args, *FIELDS[args.kind])
    if args.kind == "assess" and args.scene_labels:
        data["reference"] = "scene_labels"
    if args.kind == "assess" and args.label_raster:
        data.update(reference="label_raster", labels=args.label_raster)
    return run_config(parse_config({**data, "kind": args.kind}), args)


def _sample_parser(sub: Any) -> None:
    smp = sub.add_parser("sample", help="draw a stratified reference sample from a prediction run's map")
    smp.add_argument("prediction_run", type=int)
    size = smp.add_mutually_exclusive_group(required=True)
    size.add_argument("--per-class", type=int, help="points per map class")
    field_flag(size, "--target-se", SampleJobConfig, "target_se", help="target standard error of overall accuracy")
    field_flag(smp, "--min-per-class", SampleJobConfig, "min_per_class", help="with --target-se: at least this many")
    field_flag(smp, "--seed", SampleJobConfig, "seed")
    smp.set_defaults(func=cmd_analysis, kind="sample")


def _assess_parser(sub: Any) -> None:
    asm = sub.add_parser("assess", help="accuracy and error-adjusted areas of a prediction run from its sample")
    asm.add_argument("prediction_run", type=int)
    asm.add_argument("sample_run", type=int)
    ref = asm.add_mutually_exclusive_group(required=True)
    ref.add_argument("--labels", help="interpreted sample: CSV or GeoPackage with the sample ids and a class")
    ref.add_argument("--scene-labels", action="store_true", help="read the scene's label raster at the points")
    ref.add_argument("--label-raster", help="read this label raster (on the map's grid) at the points")
    field_flag(asm, "--class-field", AssessJobConfig, "class_field", help="the reference class column")
    field_flag(asm, "--id-field", AssessJobConfig, "id_field", help="the sample id column")
    field_flag(asm, "--label-date", AssessJobConfig, "label_date", help="with --scene-labels: the labels of this date")
    asm.set_defaults(func=cmd_analysis, kind="assess")


def add_parsers(sub: Any) -> None:
    """The analysts' verbs: reference sample, assessment, polygons, ONNX."""
    _sample_parser(sub)
    _assess_parser(sub)
    vec = sub.add_parser("vectorize", help="a prediction run's map as polygons (GeoPackage and GeoJSON)")
    vec.add_argument("prediction_run", type=int)
    field_flag(vec, "--mmu", VectorizeJobConfig, "min_mapping_unit", help="minimum mapping unit (0: keep all)")
    field_flag(vec, "--mmu-unit", VectorizeJobConfig, "mmu_unit")
    field_flag(vec, "--simplify", VectorizeJobConfig, "simplify", help="tolerance in map units (0: none)")
    vec.set_defaults(func=cmd_analysis, kind="vectorize")
    onx = sub.add_parser("export-onnx", help="a train or pipeline run's model as ONNX for QGIS Deepness")
    onx.add_argument("model_run", type=int)
    field_flag(
        onx, "--tile-size", ExportOnnxJobConfig, "tile_size", help="tile side in px (None: so Deepness' map is ours)"
    )
    field_flag(
        onx,
        "--overlap",
        ExportOnnxJobConfig,
        "overlap",
        help="context px per tile side (None: the receptive-field radius)",
    )
    onx.set_defaults(func=cmd_analysis, kind="export_onnx")
