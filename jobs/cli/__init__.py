"""``python -m jobs``: register scenes, tile, train, predict, evaluate and inspect runs without a browser.

Every job the GUI launches can be launched here from the same JSON config (``python -m jobs run CONFIG.json``),
so it runs on HPC with no browser. An existing Dask cluster is used when ``--scheduler`` or
``$WORKBENCH_SCHEDULER`` gives its address; otherwise a local cluster of worker processes starts for the job.

One module per verb group: :mod:`~jobs.cli.scenes` (scenes, convert), :mod:`~jobs.cli.launch` (run, tile, train,
predict, evaluate), :mod:`~jobs.cli.analysis` (sample, assess, vectorize, export-onnx), :mod:`~jobs.cli.runs`
(runs), :mod:`~jobs.cli.registries` (models, schemes), :mod:`~jobs.cli.services` (cluster, worker, app); flags that
set config fields come from the config classes (:mod:`~jobs.cli.flags`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from core.errors import WorkbenchError
from core.settings import get_settings
from jobs.cli import analysis, launch, registries, runs, scenes, services

log = logging.getLogger("jobs")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jobs",
        description=(__doc__ or "").split("\n\nOne module per verb group")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument(
        "--scheduler",
        default=os.environ.get("WORKBENCH_SCHEDULER"),
        help="address of an existing Dask scheduler (default: $WORKBENCH_SCHEDULER, else a local cluster)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for group in (scenes, analysis, launch, registries, runs, services):
        group.add_parsers(sub)
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
