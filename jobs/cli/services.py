"""``cluster`` (start, status, stop, serve, check, plan), ``worker`` and ``app``: the services jobs run on."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from core.configs import load_json_file
from core.errors import ConfigError
from core.settings import get_settings
from jobs.cli.output import print_json, table


def cmd_cluster(args: argparse.Namespace) -> int:
    from jobs import local_cluster

    if args.cluster_command == "check":
        return cmd_cluster_check(args)
    if args.cluster_command == "plan":
        return cmd_cluster_plan(args)
    if args.cluster_command == "serve":
        local_cluster.serve(args.workers)
    elif args.cluster_command == "start":
        print_json(local_cluster.ensure_local_cluster(n_workers=args.workers))
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
    print(table(rows, list(rows[0]) if rows else []))
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


def add_parsers(sub: Any) -> None:
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
