"""``runs`` (list, show, rerun, cancel, exec): the tracked runs."""

from __future__ import annotations

import argparse
from typing import Any

from core.errors import ConfigError
from jobs.cli.launch import apply_overrides, run_config
from jobs.cli.output import print_json, table


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
    print(table(rows, ["id", "kind", "scene", "status", "phase", "progress", "created", "seconds"]))
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
    print_json(out)
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
    config = parse_config(apply_overrides(data, args), kind=row.kind)
    return run_config(config, args, parent_run_id=row.id)


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


def add_parsers(sub: Any) -> None:
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
