"""``run``, ``tile``, ``train``, ``predict``, ``evaluate``: launch a job from its JSON config (or the tile flags).

Every verb that launches a job comes through :func:`run_config`: a dry run shows :func:`jobs.preflight.check`'s
report and the config as it would run; a real run hands the config to the runner, whose pre-flight (the same check,
with every worker probed) is shown the same way before the job starts.
"""

from __future__ import annotations

import argparse
from typing import Any

from core.configs import (
    AOIConfig,
    ClusterConfig,
    SamplingConfig,
    SplitConfig,
    TileJobConfig,
    TilingConfig,
    load_json_file,
)
from core.errors import ConfigError
from core.settings import get_settings
from jobs.cli.flags import field_flag, given

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
"""The metrics a finished run prints (all of them: ``runs show ID``)."""


def show_report(report: Any, dry_run: bool = False) -> None:
    """Print a pre-flight report: its findings (errors come as the refusal), and the census table when it is a dry
    run or the job is refused."""
    from jobs.census_report import format_census_table

    for line in report.lines(errors=False):
        print(line)
    if report.census is not None and report.scene is not None and (dry_run or not report.ok):
        print(f"what each split gets:\n{format_census_table(report.census, report.scene)}")


def run_config(config: Any, args: argparse.Namespace, parent_run_id: int | None = None) -> int:
    """Pre-flight ``config`` and, unless ``--dry-run``, run it as a tracked run; print its outcome.

    Raises:
        ConfigError / ClusterError: pre-flight refused the job (no run is created).
    """
    from jobs.kinds import get_kind, scene_id_of
    from jobs.runner import execute

    kind = get_kind(config.kind)
    if getattr(args, "dry_run", False):
        return _dry_run(config)
    run_id = execute(config, kind.executor, scene_id=scene_id_of(config), parent_run_id=parent_run_id, show=show_report)
    _print_outcome(run_id, config.kind)
    return 0


def _dry_run(config: Any) -> int:
    from jobs.preflight import check

    report = check(config, cluster=current_cluster() if "cluster" in type(config).model_fields else None)
    show_report(report, dry_run=True)
    report.raise_if_refused()
    print(f"the job as it would run:\n{report.config.model_dump_json(indent=2)}")
    return 0


def _print_outcome(run_id: int, kind: str) -> None:
    from db.runs import RunTracker

    row = RunTracker().get(run_id)
    print(f"run {run_id} ({kind}) {row.status}")
    metrics = row.metrics or {}
    summary = {k: metrics[k] for k in SUMMARY_KEYS if metrics.get(k) is not None}
    if kind == "tile" and metrics:
        summary = {k: metrics[k] for k in ("counts", "skipped_nodata") if k in metrics}
    for key, value in summary.items():
        print(f"  {key:>18}: {value:.4f}" if isinstance(value, float) else f"  {key:>18}: {value}")
    for key, value in (row.artifacts or {}).items():
        print(f"  {key:>18}: {value}")
    print(f"all metrics: python -m jobs runs show {run_id}")


def current_cluster() -> Any:
    """The cluster a job would use now (:class:`jobs.preflight.ClusterFacts`): the scheduler's workers, or the
    running local cluster's; the configured local size when none runs (it starts with the job); unknown workers
    when the scheduler cannot be reached."""
    from jobs import local_cluster
    from jobs.preflight import ClusterFacts

    address = get_settings().scheduler_address or (local_cluster.running_cluster() or {}).get("scheduler")
    if address is None:
        return ClusterFacts(get_settings().local_workers)
    from distributed import Client

    try:
        with Client(address, timeout=5) as client:
            return ClusterFacts.of(client)
    except OSError:
        return ClusterFacts()


def apply_overrides(data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """``data`` with the global flags that set config fields (``--scheduler``: ``cluster.scheduler_address``)."""
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
    config = parse_config(apply_overrides(data, args))
    return run_config(config, args)


def _tile_data(args: argparse.Namespace) -> dict[str, Any]:
    """A :class:`TileJobConfig` from the tile flags: only what was given, the config's defaults for the rest."""
    if not args.scene:
        raise SystemExit("tile needs --config FILE or --scene NAME")
    data: dict[str, Any] = {"scene": args.scene, **given(args, "mode")}
    sections = {
        "tiling": given(args, "tile_size", "stride"),
        "sampling": given(args, "patch_size", "per_class"),
        "split": {"method": "date", "test_date": args.test_date} if args.test_date else {},
        "cluster": given(args, "n_workers"),
    }
    data.update({k: v for k, v in sections.items() if v})
    if args.aoi:
        data["aoi"] = {"geometry": load_json_file(args.aoi, "AOI"), **given(args, "crs")}
    return data


def cmd_tile(args: argparse.Namespace) -> int:
    from jobs.kinds import parse_config

    data = load_json_file(args.config) if args.config else _tile_data(args)
    config = parse_config(apply_overrides({**data, "kind": "tile"}, args))
    return run_config(config, args)


def _tile_parser(sub: Any) -> None:
    tile = sub.add_parser("tile", help="tile an AOI of a scene into a sample store on the cluster")
    tile.add_argument("--config", help="JSON TileJobConfig (overrides the flags)")
    tile.add_argument("--scene")
    tile.add_argument("--aoi", help="GeoJSON file of a polygon (in --aoi-crs)")
    field_flag(tile, "--aoi-crs", AOIConfig, "crs", help="CRS of the --aoi coordinates")
    field_flag(tile, "--mode", TileJobConfig, "mode", help="tiles (dense models) or patches (per-pixel models)")
    field_flag(tile, "--tile-size", TilingConfig, "tile_size", help="tile side, px")
    field_flag(tile, "--stride", TilingConfig, "stride")
    field_flag(tile, "--patch-size", SamplingConfig, "patch_size", help="patch side, px (odd)")
    field_flag(tile, "--per-class", SamplingConfig, "per_class")
    field_flag(tile, "--split-date", SplitConfig, "test_date", help="hold out this acquisition date for testing")
    field_flag(tile, "--workers", ClusterConfig, "n_workers", help="worker processes of the local cluster")
    tile.add_argument("--dry-run", action="store_true", help="pre-flight only: the config as it would run")
    tile.set_defaults(func=cmd_tile)


def add_parsers(sub: Any) -> None:
    """The verbs that launch a job from a config."""
    _tile_parser(sub)
    resume_help = {
        "train": "resume from that run's last checkpoint",
        "predict": "finish that predict run's output (it died or was cancelled): only missing windows",
    }
    for name in ("train", "predict", "evaluate"):
        jp = sub.add_parser(name, help=f"{name} from a JSON config")
        jp.add_argument("config")
        jp.add_argument("--dry-run", action="store_true", help="pre-flight only: the config as it would run")
        if name in resume_help:
            jp.add_argument("--resume", type=int, metavar="RUN_ID", help=resume_help[name])
        jp.set_defaults(func=cmd_run, kind=name)
    run = sub.add_parser("run", help='run any job from its JSON config (its "kind" says which)')
    run.add_argument("config")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="pre-flight only: the checks, the samples each split gets, the config as it would run",
    )
    run.set_defaults(func=cmd_run, kind=None)
