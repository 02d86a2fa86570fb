"""``python -m jobs``: register scenes, tile, train, predict, evaluate and inspect runs without a browser.

Every job the GUI launches can be launched here from the same JSON config (``python -m jobs run CONFIG.json``),
so it runs on HPC with no browser. An existing Dask cluster is used when ``--scheduler`` or
``$WORKBENCH_SCHEDULER`` gives its address; otherwise a local cluster of worker processes starts for the job.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from core.configs import load_json_file
from core.errors import ConfigError, WorkbenchError
from core.settings import get_settings

log = logging.getLogger("jobs")


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    head = "  ".join(c.ljust(widths[c]) for c in columns)
    body = ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join([head, "  ".join("-" * widths[c] for c in columns), *body])


# ---- scenes ------------------------------------------------------------------------------------------------------
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
    print(_table(rows, ["id", "name", "georef", "modalities", "dates", "classes"]))
    return 0


def cmd_scenes_show(args: argparse.Namespace) -> int:
    from db.scenes import SceneStore

    _print_json(SceneStore(get_settings().db_url).get(args.scene).to_dict())
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
    _print_json(paths)
    return 0


# ---- jobs --------------------------------------------------------------------------------------------------------
def _run_config(config: Any, args: argparse.Namespace, parent_run_id: int | None = None) -> int:
    from jobs.kinds import get_kind, scene_id_of
    from jobs.runner import execute

    kind = get_kind(config.kind)
    config = _checked(config, dry_run=getattr(args, "dry_run", False))
    if config is None:
        return 0
    run_id = execute(config, kind.executor, scene_id=scene_id_of(config), parent_run_id=parent_run_id)
    from db.runs import RunTracker

    row = RunTracker().get(run_id)
    print(f"run {run_id} ({config.kind}) {row.status}")
    summary = {k: (row.metrics or {}).get(k) for k in SUMMARY_KEYS if (row.metrics or {}).get(k) is not None}
    if config.kind == "tile" and row.metrics:
        summary = {k: row.metrics[k] for k in ("counts", "skipped_nodata") if k in row.metrics}
    for key, value in summary.items():
        print(f"  {key:>18}: {value:.4f}" if isinstance(value, float) else f"  {key:>18}: {value}")
    for key, value in (row.artifacts or {}).items():
        print(f"  {key:>18}: {value}")
    print(f"all metrics: python -m jobs runs show {run_id}")
    return 0


def _checked(config: Any, dry_run: bool) -> Any:
    """Pre-flight of a pipeline or baseline (the launch form's checks): prints what it found and returns the
    config as it will run (derived sizes and split stated), or None for a dry run. Other kinds pass unchanged.

    Raises:
        ConfigError: pre-flight found errors (no run is created).
    """
    from jobs.census_report import format_census_table
    from jobs.pipeline import PipelineJobConfig
    from jobs.preflight import preflight

    is_launch = isinstance(config, PipelineJobConfig) or getattr(config, "tile_job", None) is not None
    if not is_launch:
        if dry_run:
            print(f"{config.kind} config is valid:\n{config.model_dump_json(indent=2)}")
            return None
        return config
    from db.scenes import SceneStore

    scene = SceneStore(get_settings().db_url).get(config.scene)
    report = preflight(config, scene, _cluster_size())
    for check in report.checks:
        if check.level != "error":
            print(f"{check.level}: {check.message}")
    if report.census is not None and (dry_run or not report.ok):
        print(f"what each split gets:\n{format_census_table(report.census, scene)}")
    if not report.ok:
        raise ConfigError("pre-flight refused the job:\n" + "\n".join(f"- {e}" for e in report.errors))
    if dry_run:
        print(f"the job as it would run:\n{report.config.model_dump_json(indent=2)}")  # type: ignore[union-attr]
        return None
    return report.config


def _cluster_size() -> int | None:
    """Workers of the cluster a job would use now (the scheduler's, or the running local cluster's); None when
    none is reachable (the local cluster starts with the job, of the configured size)."""
    from jobs import local_cluster

    address = get_settings().scheduler_address or (local_cluster.running_cluster() or {}).get("scheduler")
    if address is None:
        return get_settings().local_workers
    from distributed import Client

    from core.distributed.cluster import live_workers

    try:
        with Client(address, timeout=5) as client:
            return len(live_workers(client))
    except OSError:
        return None


SUMMARY_KEYS = (
    "oa",
    "kappa",
    "miou",
    "macro_f1",
    "micro_f1",
    "best_val_accuracy",
    "samples_per_s",
    "train_seconds",
    "inference_seconds",
)


def _apply_overrides(data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "scheduler", None):
        data.setdefault("cluster", {})["scheduler_address"] = args.scheduler
    return data


def cmd_run(args: argparse.Namespace) -> int:
    from jobs.kinds import parse_config

    data = load_json_file(args.config)
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {args.config!r} holds a JSON {type(data).__name__}, not an object; a job "
            'config is {"kind": ..., ...}'
        )
    if args.kind:
        data["kind"] = args.kind
    if getattr(args, "resume", None) is not None:
        data["resume_from"] = args.resume
    config = parse_config(_apply_overrides(data, args))
    return _run_config(config, args)


def cmd_tile(args: argparse.Namespace) -> int:
    from jobs.kinds import parse_config

    if args.config:
        data = load_json_file(args.config)
    else:
        if not args.scene:
            raise SystemExit("tile needs --config FILE or --scene NAME")
        data = {
            "scene": args.scene,
            "mode": args.mode,
            "tiling": {"tile_size": args.tile_size, "stride": args.stride},
            "sampling": {"patch_size": args.patch_size, "per_class": args.per_class},
        }
        if args.aoi:
            aoi = load_json_file(args.aoi, "AOI")
            data["aoi"] = {"geometry": aoi, "crs": args.aoi_crs}
        if args.split_date:
            data["split"] = {"method": "date", "test_date": args.split_date}
        if args.workers:
            data["cluster"] = {"n_workers": args.workers}
    config = parse_config(_apply_overrides({**data, "kind": "tile"}, args))
    return _run_config(config, args)


def cmd_runs_list(args: argparse.Namespace) -> int:
    from db.runs import RunTracker

    rows = []
    for r in RunTracker().list(kind=args.kind, status=args.status, limit=args.limit):
        took = (r.finished_at - r.started_at).total_seconds() if r.finished_at and r.started_at else None
        rows.append(
            {
                "id": r.id,
                "kind": r.kind,
                "scene": (r.config or {}).get("scene", ""),
                "status": r.status,
                "phase": r.phase or "",
                "progress": f"{r.progress_done}/{r.progress_total}",
                "created": r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                "seconds": f"{took:.1f}" if took is not None else "",
            }
        )
    print(_table(rows, ["id", "kind", "scene", "status", "phase", "progress", "created", "seconds"]))
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    from db.runs import RunTracker

    tracker = RunTracker()
    tracker.reap_dead_runs()
    r = tracker.get(args.run_id)
    out = {
        c: getattr(r, c)
        for c in (
            "id",
            "kind",
            "status",
            "phase",
            "progress_done",
            "progress_total",
            "created_at",
            "started_at",
            "finished_at",
            "host",
            "pid",
            "error",
            "config",
            "metrics",
            "artifacts",
            "cluster",
        )
    }
    if args.events:
        out["events"] = [
            {"ts": e.ts, "kind": e.kind, "phase": e.phase, "epoch": e.epoch, "step": e.step, "data": e.data}
            for e in tracker.events(args.run_id)
        ]
    _print_json(out)
    return 0


def cmd_runs_rerun(args: argparse.Namespace) -> int:
    from db.runs import RunTracker
    from jobs.kinds import parse_config, stored_config

    row = RunTracker().get(args.run_id)
    data = stored_config(row)
    if getattr(args, "resume", False):
        if row.kind not in ("train", "predict"):
            raise ConfigError(f"run {row.id} is a {row.kind} run; --resume continues train and predict runs only")
        data["resume_from"] = row.id
    config = parse_config(_apply_overrides(data, args), kind=row.kind)
    return _run_config(config, args, parent_run_id=row.id)


def cmd_runs_cancel(args: argparse.Namespace) -> int:
    from db.runs import RunTracker

    RunTracker().request_cancel(args.run_id)
    print(f"asked run {args.run_id} to stop; its driver stops the job on the cluster within seconds")
    return 0


def cmd_runs_exec(args: argparse.Namespace) -> int:
    """Execute an existing pending run from its stored config (used by detached launches)."""
    from db.runs import RunTracker
    from jobs.kinds import get_kind, parse_config, scene_id_of, stored_config
    from jobs.runner import execute

    row = RunTracker().get(args.run_id)
    config = parse_config(stored_config(row), kind=row.kind)
    execute(config, get_kind(row.kind).executor, scene_id=scene_id_of(config), run_id=row.id)
    return 0


def cmd_schemes(args: argparse.Namespace) -> int:
    """Print the parallelism schemes a train or pipeline config may name (the scheme registry)."""
    from core.training.schemes import get_scheme, list_schemes

    for name in list_schemes():
        spec = get_scheme(name)
        print(f"{name:<16} {'horovod' if spec.uses_horovod else 'single ':<8} {spec.description}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """The registered models: name, task, the modality it reads, size parameters with defaults and ranges."""
    from core.models import get_model, list_models
    from core.tasks import get_task

    if args.task is not None:
        get_task(args.task)  # ConfigError naming the registered tasks
    specs = [get_model(m) for m in list_models(args.task)]
    if args.json:
        _print_json(
            [
                {
                    "name": s.name,
                    "task": s.task,
                    "modality": s.modality,
                    "branches": list(s.branches),
                    "recipe": s.recipe.name if s.recipe else None,
                    "description": s.description,
                    "params": [
                        {"name": p.name, "label": p.label, "default": p.default, "low": p.low, "high": p.high}
                        for p in s.params
                    ],
                }
                for s in specs
            ]
        )
        return 0
    rows = [
        {
            "model": s.name,
            "task": s.task,
            "modality": s.modality or "all",
            "params": ", ".join(f"{p.name}={p.default!r} [{p.low:g}..{p.high:g}]" for p in s.params) or "-",
            "description": s.description,
        }
        for s in specs
    ]
    print(_table(rows, ["model", "task", "modality", "params", "description"]))
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    from jobs import local_cluster

    if args.cluster_command == "check":
        return cmd_cluster_check(args)
    if args.cluster_command == "plan":
        return cmd_cluster_plan(args)
    if args.cluster_command == "serve":
        local_cluster.serve(args.workers)
    elif args.cluster_command == "start":
        _print_json(local_cluster.ensure_local_cluster(n_workers=args.workers))
    elif args.cluster_command == "status":
        state = local_cluster.running_cluster()
        print(json.dumps(state, indent=2) if state else "no local cluster is running")
    else:
        print("stopped" if local_cluster.stop_local_cluster() else "no local cluster was running")
    return 0


def cmd_cluster_check(args: argparse.Namespace) -> int:
    """Pre-flight of the cluster (for a job config, or in general): one row per worker, then the problems."""
    from core.configs import ClusterConfig
    from core.distributed.cluster import connect
    from core.distributed.preflight import check_cluster
    from jobs.cluster_check import job_needs
    from jobs.kinds import parse_config

    config = parse_config(Path(args.config)) if args.config else None
    cluster = getattr(config, "cluster", None) or ClusterConfig(n_workers=args.workers)
    with connect(cluster) as handle:
        report = check_cluster(handle.client, job_needs(config))
    rows = report.rows()
    print(f"scheduler {report.scheduler}, dashboard {report.dashboard}, checked in {report.seconds:.1f} s")
    print(_table(rows, list(rows[0]) if rows else []))
    for warning in report.warnings:
        print(f"warning: {warning}")
    if not report.ok:
        print(report.message(), file=sys.stderr)
        return 2
    print("pre-flight passed" + (f" for {args.config}" if args.config else ""))
    return 0


def cmd_cluster_plan(args: argparse.Namespace) -> int:
    """Print the batch script one worker job would be submitted with (nothing is submitted)."""
    from core.configs import ClusterConfig
    from core.distributed.hpc import hpc_config, jobqueue
    from jobs.kinds import parse_config

    if args.config:
        cluster = getattr(parse_config(Path(args.config)), "cluster", None) or ClusterConfig()
        hpc, source = cluster.hpc_settings(), f"the cluster.hpc section of {args.config}"
    else:
        path = args.hpc or os.environ.get("WORKBENCH_HPC_CONFIG")
        if not path:
            raise ConfigError(
                "cluster plan needs --config JOB.json (with a cluster.hpc section), --hpc HPC.json "
                "or $WORKBENCH_HPC_CONFIG"
            )
        hpc, source = hpc_config(load_json_file(path, "HPC cluster settings")), path
    if hpc is None:
        raise ConfigError(f"{args.config} has no cluster.hpc section: add one (see docs/CLUSTERS.md) or pass --hpc")
    print(
        f"# {hpc.n_jobs} job(s) x {hpc.processes} worker process(es) of {hpc.threads_per_process} thread(s), "
        f"from {source}; the scheduler runs in the submitting process (its address replaces <scheduler>)"
    )
    print(jobqueue().job_script(hpc))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from jobs.worker import exec_worker

    exec_worker(args.scheduler_address, args.nworkers, args.nthreads, args.memory_limit, args.host, args.passthrough)
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    """Start the local cluster (if no scheduler is given) and the Streamlit app on localhost."""
    import subprocess

    from core.data.samples import register_samples
    from core.settings import REPO_ROOT, shared_data_dir
    from db.scenes import SceneStore
    from jobs import local_cluster

    settings = get_settings()
    store = SceneStore(settings.db_url)
    if not store.list() and shared_data_dir().exists() and not args.no_samples:
        # first start of the embedded default: give the user the sample scenes to work with
        names = [s.name for s in register_samples(None, store, settings.home)]
        print(f"registered the sample scenes of {shared_data_dir()}: {', '.join(names)}")
    env = dict(os.environ)
    if not env.get("WORKBENCH_SCHEDULER"):
        state = local_cluster.ensure_local_cluster()
        print(f"local Dask cluster: {state['scheduler']} (dashboard {state['dashboard']})")
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(REPO_ROOT / "app" / "server.py"),
        "--server.address",
        args.address,
        "--server.port",
        str(args.port),
        "--server.headless",
        "true",
        "--server.enableStaticServing",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
    ]
    print(f"Land-Cover Workbench on http://{args.address}:{args.port}")
    return subprocess.call(cmd, env=env, cwd=REPO_ROOT)


def _scene_parsers(sub: Any) -> None:
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


def cmd_analysis(args: argparse.Namespace) -> int:
    """``sample``, ``assess``, ``vectorize``, ``export-onnx``: a config from the flags, run as a tracked job."""
    from jobs.kinds import parse_config

    keys = {
        "sample": ("prediction_run", "per_class", "target_se", "min_per_class", "seed"),
        "assess": ("prediction_run", "sample_run", "labels", "class_field", "id_field", "label_date"),
        "vectorize": ("prediction_run", "min_mapping_unit", "mmu_unit", "simplify"),
        "export_onnx": ("model_run", "tile_size", "overlap"),
    }[args.kind]
    data = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    if args.kind == "assess" and args.scene_labels:
        data["reference"] = "scene_labels"
    if args.kind == "assess" and args.label_raster:
        data.update(reference="label_raster", labels=args.label_raster)
    return _run_config(parse_config({**data, "kind": args.kind}), args)


def _analysis_parsers(sub: Any) -> None:
    """What analysts do with a map or a model: reference sample, assessment, polygons, ONNX."""
    smp = sub.add_parser("sample", help="draw a stratified reference sample from a prediction run's map")
    smp.add_argument("prediction_run", type=int)
    size = smp.add_mutually_exclusive_group(required=True)
    size.add_argument("--per-class", type=int, help="points per map class")
    size.add_argument("--target-se", type=float, help="target standard error of overall accuracy (e.g. 0.01)")
    smp.add_argument("--min-per-class", type=int, help="with --target-se: at least this many per class (50)")
    smp.add_argument("--seed", type=int)
    smp.set_defaults(func=cmd_analysis, kind="sample")
    asm = sub.add_parser("assess", help="accuracy and error-adjusted areas of a prediction run from its sample")
    asm.add_argument("prediction_run", type=int)
    asm.add_argument("sample_run", type=int)
    ref = asm.add_mutually_exclusive_group(required=True)
    ref.add_argument("--labels", help="interpreted sample: CSV or GeoPackage with the sample ids and a class")
    ref.add_argument("--scene-labels", action="store_true", help="read the scene's label raster at the points")
    ref.add_argument("--label-raster", help="read this label raster (on the map's grid) at the points")
    asm.add_argument("--class-field", help="the reference class column (ref_class)")
    asm.add_argument("--id-field", help="the sample id column (id)")
    asm.add_argument("--label-date", help="with --scene-labels: the labels of this date (default: the map's)")
    asm.set_defaults(func=cmd_analysis, kind="assess")
    vec = sub.add_parser("vectorize", help="a prediction run's map as polygons (GeoPackage and GeoJSON)")
    vec.add_argument("prediction_run", type=int)
    vec.add_argument("--mmu", dest="min_mapping_unit", type=float, help="minimum mapping unit (0: keep all)")
    vec.add_argument("--mmu-unit", choices=["px", "ha"])
    vec.add_argument("--simplify", type=float, help="tolerance in map units (0: none)")
    vec.set_defaults(func=cmd_analysis, kind="vectorize")
    onx = sub.add_parser("export-onnx", help="a train or pipeline run's model as ONNX for QGIS Deepness")
    onx.add_argument("model_run", type=int)
    onx.add_argument("--tile-size", type=int, help="tile side in px (default: chosen so Deepness' map is ours)")
    onx.add_argument("--overlap", type=int, help="context px per tile side (default: the receptive-field radius)")
    onx.set_defaults(func=cmd_analysis, kind="export_onnx")


def _job_parsers(sub: Any) -> None:
    tile = sub.add_parser("tile", help="tile an AOI of a scene into a sample store on the cluster")
    tile.add_argument("--config", help="JSON TileJobConfig (overrides the flags)")
    tile.add_argument("--scene")
    tile.add_argument("--aoi", help="GeoJSON file of a polygon (EPSG:4326 unless --aoi-crs)")
    tile.add_argument("--aoi-crs", default="EPSG:4326")
    tile.add_argument("--mode", choices=["tiles", "patches"], default="tiles")
    tile.add_argument("--tile-size", type=int, default=64)
    tile.add_argument("--stride", type=int)
    tile.add_argument("--patch-size", type=int, default=25)
    tile.add_argument("--per-class", type=int)
    tile.add_argument("--split-date", help="hold out this acquisition date for testing (date split)")
    tile.add_argument("--workers", type=int, help="worker processes of the local cluster")
    tile.set_defaults(func=cmd_tile)
    for name in ("train", "predict", "evaluate"):
        jp = sub.add_parser(name, help=f"{name} from a JSON config")
        jp.add_argument("config")
        jp.add_argument("--dry-run", action="store_true", help="validate only")
        if name == "train":
            jp.add_argument("--resume", type=int, metavar="RUN_ID", help="resume from that run's last checkpoint")
        if name == "predict":
            jp.add_argument(
                "--resume",
                type=int,
                metavar="RUN_ID",
                help="finish that predict run's output (it died or was cancelled): only missing windows",
            )
        jp.set_defaults(func=cmd_run, kind=name)
    run = sub.add_parser("run", help='run any job from its JSON config (its "kind" says which)')
    run.add_argument("config")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="pre-flight only: the checks, the samples each split gets, the config as it would run",
    )
    run.set_defaults(func=cmd_run, kind=None)
    models = sub.add_parser("models", help="list the models a train or pipeline config may name")
    models.add_argument("--task", help="only the models of this task (dense, patch, multilabel, ...)")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(func=cmd_models)


def _run_parsers(sub: Any) -> None:
    runs = sub.add_parser("runs", help="list, show, re-run and cancel runs").add_subparsers(
        dest="runs_command", required=True
    )
    rl = runs.add_parser("list")
    rl.add_argument("--kind")
    rl.add_argument("--status")
    rl.add_argument("--limit", type=int, default=50)
    rl.set_defaults(func=cmd_runs_list)
    rs = runs.add_parser("show")
    rs.add_argument("run_id", type=int)
    rs.add_argument("--events", action="store_true")
    rs.set_defaults(func=cmd_runs_show)
    rr = runs.add_parser("rerun", help="run again from the stored config")
    rr.add_argument("run_id", type=int)
    rr.add_argument(
        "--resume",
        action="store_true",
        help="continue that run (train: from its last checkpoint; predict: only its missing windows)",
    )
    rr.set_defaults(func=cmd_runs_rerun)
    rc = runs.add_parser("cancel")
    rc.add_argument("run_id", type=int)
    rc.set_defaults(func=cmd_runs_cancel)
    rx = runs.add_parser("exec", help=argparse.SUPPRESS)
    rx.add_argument("run_id", type=int)
    rx.set_defaults(func=cmd_runs_exec)
    sub.add_parser("schemes", help="list the parallelism schemes (scheme of a train config)").set_defaults(
        func=cmd_schemes
    )


def _service_parsers(sub: Any) -> None:
    cl = sub.add_parser(
        "cluster",
        help="the embedded local Dask cluster (start, status, stop, serve); check: "
        "pre-flight of the cluster in use (--config: for that job); plan: the "
        "batch script of an HPC cluster (--config JOB.json or --hpc HPC.json)",
    )
    cl.add_argument("cluster_command", choices=["start", "status", "stop", "serve", "check", "plan"])
    cl.add_argument("--hpc", help="plan: a JSON file of HPC cluster settings (default $WORKBENCH_HPC_CONFIG)")
    cl.add_argument("--workers", type=int)
    cl.add_argument("--config", help="check: a JSON job config whose needs (ranks, scene files, Horovod) to check")
    cl.set_defaults(func=cmd_cluster)
    wk = sub.add_parser(
        "worker",
        help="start Dask workers set up for the engine (thread caps, the engine on the "
        "path, one rank per process); options after -- go to `dask worker`",
    )
    wk.add_argument("scheduler_address", help="tcp://HOST:PORT of the Dask scheduler")
    wk.add_argument("--nworkers", type=int, default=1, help="worker processes (one Horovod rank each)")
    wk.add_argument("--nthreads", type=int, default=1, help="threads per worker process (and its thread caps)")
    wk.add_argument("--memory-limit", default="auto", help="memory per worker process (e.g. 4GiB; auto: share)")
    wk.add_argument("--host", help="the address the workers, nannies and dashboards listen on")
    wk.set_defaults(func=cmd_worker)
    app = sub.add_parser("app", help="start the Streamlit workbench (and the local cluster)")
    app.add_argument("--address", default=os.environ.get("WORKBENCH_ADDRESS", "127.0.0.1"))
    app.add_argument("--port", type=int, default=int(os.environ.get("WORKBENCH_PORT", "8501")))
    app.add_argument(
        "--no-samples", action="store_true", help="do not register ../shared/data's sample scenes on first start"
    )
    app.set_defaults(func=cmd_app)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jobs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument(
        "--scheduler",
        default=os.environ.get("WORKBENCH_SCHEDULER"),
        help="address of an existing Dask scheduler (default: $WORKBENCH_SCHEDULER, else a local cluster)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_scene_parsers, _analysis_parsers, _job_parsers, _run_parsers, _service_parsers):
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = argv[argv.index("--") + 1 :] if "--" in argv else []  # `worker ... -- DASK WORKER OPTIONS`
    parser = build_parser()
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if passthrough and args.command != "worker":
        parser.error(f"options after -- ({' '.join(passthrough)}) are only taken by `worker`")
    args.passthrough = passthrough
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    import distributed  # noqa: F401 - importing it configures its loggers, which we then quiet

    for noisy in ("distributed", "tornado", "bokeh", "rasterio", "fiona", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.scheduler:
        os.environ["WORKBENCH_SCHEDULER"] = args.scheduler
    try:
        return int(args.func(args) or 0)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        print(f"error: invalid {exc.title}:\n" + "\n".join(lines), file=sys.stderr)
        return 2
    except (ValueError, OSError, LookupError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the user gets a message, the traceback goes to a file
        print(
            f"error: {type(exc).__name__}: {exc}\n(an unexpected error: the traceback is in "
            f"{_log_traceback(exc)}; please report it)",
            file=sys.stderr,
        )
        return 1


def _log_traceback(exc: BaseException) -> Path:
    """Append ``exc``'s traceback to ``<home>/cli-errors.log``; returns the file."""
    import traceback

    path = get_settings().home / "cli-errors.log"
    with open(path, "a") as fh:
        fh.write("".join(traceback.format_exception(exc)) + "\n")
    return path
