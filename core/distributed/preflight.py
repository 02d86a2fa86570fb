"""Cluster pre-flight: can this cluster run this job, checked on every worker before the job starts.

:func:`check_cluster` asks every worker (and the scheduler) through :mod:`core.distributed.probes`, which travels by
value so it also runs where the engine cannot be imported, and Dask's own ``client.get_versions(check=True)`` for
the package versions. It checks that every worker

- imports the engine, the same source as the client (the scheduler too: it unpickles the engine's task graphs),
- has the client's versions of dask, distributed, cloudpickle, tensorflow, horovod, numpy, rasterio and python,
- reads the scene's files as they were at registration (same paths, size, mtime, digest),
- shares the client's workbench folder (tile stores and checkpoints are written there),
- for Horovod jobs: imports ``horovod.tensorflow`` built with gloo, and reaches the driver's rendezvous address,

and that enough workers are free for the job's ranks. Each failed check is one :class:`Problem` naming the
worker(s), what differs and the fix; :meth:`ClusterReport.raise_for_problems` turns them into one
:class:`ClusterError` before any run row is started.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.distributed import probes
from core.errors import ClusterError

log = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 180.0
"""How long one worker may take to answer (importing TensorFlow on a busy machine takes tens of seconds)."""
INSTALL_HINT = (
    "install the package on every worker (`pip install -e REPO` or the same wheel) or start the workers "
    "with PYTHONPATH=REPO; `workbench worker SCHEDULER` sets this up"
)


@dataclass(frozen=True)
class JobNeeds:
    """What a job needs from the cluster.

    Attributes:
        ranks: worker processes that must be free at once (one Horovod rank, or one single-worker job, each).
        horovod: the job runs Horovod ranks (gloo and the rendezvous are checked).
        files: fingerprints of the files every worker reads, as dicts (path, size, mtime_ns, digest).
        scene: the scene the files belong to (for messages).
        paths: other files or folders every worker reads (a tile store, a model bundle), at the client's paths.
        shared_folder: a folder of the client every worker must see and write (the workbench home), or None.
    """

    ranks: int = 1
    horovod: bool = False
    files: tuple[dict[str, Any], ...] = ()
    scene: str | None = None
    paths: tuple[str, ...] = ()
    shared_folder: str | None = None


@dataclass(frozen=True)
class Problem:
    """One failed check: ``check`` (engine, versions, files, shared, horovod, network, workers, probe), the
    workers it concerns and the message (what is wrong, what was expected, how to fix it)."""

    check: str
    workers: tuple[str, ...]
    message: str


@dataclass
class ClusterReport:
    """Per-worker reports (address -> probe dict, versions included), the problems found and Dask's notes."""

    scheduler: str | None
    dashboard: str | None
    client_versions: dict[str, str | None]
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def message(self) -> str:
        head = f"cluster pre-flight failed ({len(self.problems)} problem(s)) on scheduler {self.scheduler}:"
        return "\n".join([head, *(f"- {p.message}" for p in self.problems)])

    def raise_for_problems(self) -> None:
        """Raise :class:`ClusterError` listing every problem (nothing when the cluster can run the job)."""
        if self.problems:
            raise ClusterError(self.message())

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per worker for tables: host, threads, memory, versions, engine, files, gloo."""
        return [_row(addr, rep) for addr, rep in sorted(self.workers.items())]


def _row(address: str, rep: dict[str, Any]) -> dict[str, Any]:
    engine, hvd, versions = rep.get("engine") or {}, rep.get("horovod"), rep.get("versions") or {}
    return {
        "worker": address,
        "role": rep.get("role", "worker"),
        "host": rep.get("hostname"),
        "threads": rep.get("nthreads"),
        "memory (GiB)": round(rep["memory_limit"] / 2**30, 2) if rep.get("memory_limit") else None,
        **{k: versions.get(k) for k in probes.PACKAGES if k != "cloudpickle"},
        "python": versions.get("python"),
        "engine importable": engine.get("importable") if not rep.get("error") else None,
        "engine": engine.get("location") or engine.get("error") or rep.get("error"),
        "files visible": (not rep.get("files")) if rep.get("n_files") else None,
        "gloo": hvd.get("gloo") if hvd else None,
    }


def _names(workers: Iterable[str], reports: dict[str, dict[str, Any]]) -> str:
    out = []
    for w in sorted(workers):
        rep = reports.get(w) or {}
        role = "the scheduler " if rep.get("role") == "scheduler" else "worker "
        out.append(role + (f"{w} (host {rep['hostname']})" if rep.get("hostname") else w))
    return ", ".join(out)


def _group(items: Iterable[tuple[str, Any]]) -> dict[Any, list[str]]:
    groups: dict[Any, list[str]] = {}
    for worker, key in items:
        groups.setdefault(key, []).append(worker)
    return groups


# ---- the checks (each returns its problems) ----------------------------------------------------------------------
def _version_key(name: str, value: str | None) -> str | None:
    """What must match: major.minor for python (Dask reports ``3.11.9.final.0``), the full version otherwise."""
    if name == "python" and value:
        return ".".join(value.split(".")[:2])
    return value


SCHEDULER_PACKAGES = ("dask", "distributed", "cloudpickle", "python")


def _check_versions(client_versions: dict[str, str | None], reports: dict[str, dict[str, Any]]) -> list[Problem]:
    problems = []
    for name in (*probes.PACKAGES, "python"):
        want = _version_key(name, client_versions.get(name))
        differ = []
        for addr, rep in reports.items():
            if rep.get("versions") is None or (rep.get("role") == "scheduler" and name not in SCHEDULER_PACKAGES):
                continue
            have = _version_key(name, rep["versions"].get(name))
            if have != want:
                differ.append((addr, have))
        for have, ws in _group(differ).items():
            what = "do not have it installed" if have is None else f"have {have}"
            problems.append(
                Problem(
                    "versions",
                    tuple(ws),
                    (
                        f"{name}: the client has {want} but {_names(ws, reports)} {what}; install {name}=={want} there "
                        "(the workers and the scheduler need the client's versions of "
                        f"{', '.join(probes.PACKAGES)} and python)"
                    ),
                )
            )
    return problems


def _check_engine(client_engine: dict[str, Any], reports: dict[str, dict[str, Any]], repo: str) -> list[Problem]:
    problems = []
    broken = [
        (a, r["engine"]["error"]) for a, r in reports.items() if r.get("engine") and not r["engine"]["importable"]
    ]
    for error, ws in _group(broken).items():
        first = reports[ws[0]]
        problems.append(
            Problem(
                "engine",
                tuple(ws),
                (
                    f"{_names(ws, reports)} cannot import the engine ({error}; python {first.get('executable')}, "
                    "working "
                    f"directory {first.get('cwd')}): {INSTALL_HINT.replace('REPO', repo)}"
                ),
            )
        )
    want = client_engine.get("source_digest")
    other = [
        (a, (r["engine"]["source_digest"], r["engine"]["location"]))
        for a, r in reports.items()
        if (r.get("engine") or {}).get("importable") and r["engine"]["source_digest"] != want
    ]
    for (digest, location), ws in _group(other).items():
        problems.append(
            Problem(
                "engine",
                tuple(ws),
                (
                    f"{_names(ws, reports)} import another version of the engine (from {location}, source digest "
                    f"{digest}) "
                    f"than the client (from {client_engine.get('location')}, digest {want}): install the same version "
                    "of the "
                    "package on every worker and restart the workers"
                ),
            )
        )
    return problems


def _check_files(needs: JobNeeds, reports: dict[str, dict[str, Any]]) -> list[Problem]:
    bad = [(a, tuple(sorted(r["files"].items()))) for a, r in reports.items() if r.get("files")]
    problems = []
    for missing, ws in _group(bad).items():
        listing = "; ".join(f"{path} ({why})" for path, why in missing)
        problems.append(
            Problem(
                "files",
                tuple(ws),
                (
                    f"{_names(ws, reports)} cannot read {len(missing)} of the {len(needs.files)} file(s) of scene "
                    f"{needs.scene!r} as registered: {listing}. Every worker must see the scene's files at the "
                    "client's "
                    "paths, unchanged and readable by the worker's user (a shared filesystem mounted at the same place)"
                ),
            )
        )
    return problems


def _check_paths(reports: dict[str, dict[str, Any]]) -> list[Problem]:
    bad = [(a, tuple(sorted(r["paths"].items()))) for a, r in reports.items() if r.get("paths")]
    return [
        Problem(
            "files",
            tuple(ws),
            (
                f"{_names(ws, reports)} cannot read {'; '.join(f'{p} ({why})' for p, why in missing)}, which the job "
                "reads: "
                "put it on a filesystem every worker mounts at the client's path"
            ),
        )
        for missing, ws in _group(bad).items()
    ]


def _check_shared(needs: JobNeeds, reports: dict[str, dict[str, Any]]) -> list[Problem]:
    bad = [(a, tuple(r["shared"])) for a, r in reports.items() if r.get("shared")]
    return [
        Problem(
            "shared",
            tuple(ws),
            (
                f"{_names(ws, reports)}: {'; '.join(why)}. The workbench folder (WORKBENCH_HOME={needs.shared_folder}) "
                "must "
                "be one shared folder at the same path on every worker, writable by the workers' user: tile stores and "
                "checkpoints are written there"
            ),
        )
        for why, ws in _group(bad).items()
    ]


def _check_horovod(reports: dict[str, dict[str, Any]]) -> list[Problem]:
    hint = (
        "HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 pip install --no-build-isolation "
        "horovod==0.28.1 after TensorFlow (see requirements-horovod.txt)"
    )
    hvd = {a: r["horovod"] for a, r in reports.items() if r.get("horovod")}
    problems = [
        Problem(
            "horovod",
            tuple(ws),
            f"{_names(ws, reports)} cannot import horovod.tensorflow ({err}): install Horovod there: {hint}",
        )
        for err, ws in _group((a, h["error"]) for a, h in hvd.items() if not h["importable"]).items()
    ]
    no_gloo = [a for a, h in hvd.items() if h["importable"] and not h["gloo"]]
    if no_gloo:
        problems.append(
            Problem(
                "horovod",
                tuple(no_gloo),
                (
                    f"{_names(no_gloo, reports)} have Horovod built without gloo, which the engine's ranks use (there "
                    "is no "
                    f"mpirun): reinstall it with {hint}"
                ),
            )
        )
    return problems


def _check_network(reports: dict[str, dict[str, Any]], reach: tuple[str, int] | None) -> list[Problem]:
    no_iface = [a for a, r in reports.items() if r.get("role") == "worker" and "interface" in r and not r["interface"]]
    problems = []
    if no_iface:
        problems.append(
            Problem(
                "network",
                tuple(no_iface),
                (
                    f"{_names(no_iface, reports)} listen on an address that no network interface of their host "
                    "carries, so "
                    "Horovod cannot pick the gloo interface: start them with --host set to an address of the host"
                ),
            )
        )
    unnamed = [a for a, r in reports.items() if r.get("hostname_error")]
    if unnamed:
        problems.append(
            Problem(
                "network",
                tuple(unnamed),
                (
                    f"{_names(unnamed, reports)}: the host name {reports[unnamed[0]]['hostname_error']}; Horovod's "
                    "gloo "
                    "resolves it while a rank starts and the worker process crashes (segmentation fault) when it "
                    "cannot: "
                    "add the host name to /etc/hosts or DNS on that host"
                ),
            )
        )
    unreachable = [(a, r["reach_error"]) for a, r in reports.items() if r.get("reach_error")]
    for error, ws in _group(unreachable).items():
        problems.append(
            Problem(
                "network",
                tuple(ws),
                (
                    f"{_names(ws, reports)} cannot reach the driver at {reach[0] if reach else '?'}:"
                    f"{reach[1] if reach else '?'} ({error}), where the Horovod rendezvous listens while a job starts: "
                    "allow TCP from the workers to the driver, or set WORKBENCH_RENDEZVOUS_ADDR to a driver address "
                    "they "
                    "reach (and WORKBENCH_RENDEZVOUS_PORT to a port the firewall opens)"
                ),
            )
        )
    return problems


def _check_capacity(needs: JobNeeds, workers: dict[str, dict[str, Any]], busy: set[str]) -> list[Problem]:
    if len(workers) < needs.ranks:
        return [
            Problem(
                "workers",
                tuple(sorted(workers)),
                (
                    f"the job needs {needs.ranks} worker processes at once (one per rank) but the cluster has "
                    f"{len(workers)}: start more (`workbench worker SCHEDULER --nworkers {needs.ranks}`) or ask for at "
                    "most "
                    f"{len(workers)} ranks"
                ),
            )
        ]
    idle = [w for w in workers if w not in busy]
    if len(idle) < needs.ranks:
        return [
            Problem(
                "workers",
                tuple(sorted(busy)),
                (
                    f"the job needs {needs.ranks} free worker processes but only {len(idle)} of {len(workers)} are "
                    "free "
                    f"(busy: {', '.join(sorted(busy))}): wait for the running jobs to finish or add workers"
                ),
            )
        ]
    return []


def _check_answers(reports: dict[str, dict[str, Any]]) -> list[Problem]:
    return [
        Problem(
            "probe",
            (a,),
            f"{_names([a], reports)} did not answer the pre-flight probe ({r['error']}): "
            "check the worker's log and restart it",
        )
        for a, r in sorted(reports.items())
        if r.get("error")
    ]


def _warnings(reports: dict[str, dict[str, Any]]) -> list[str]:
    uncapped = [
        a
        for a, r in reports.items()
        if r.get("role") == "worker" and "threads_env" in r and not r["threads_env"].get("TF_NUM_INTRAOP_THREADS")
    ]
    if not uncapped:
        return []
    return [
        f"{_names(uncapped, reports)} run without the engine's per-worker thread caps (TF_NUM_INTRAOP_THREADS "
        "unset; Dask's nanny caps only OpenMP and BLAS): TensorFlow in each may use every core of its host; "
        "start workers with `workbench worker SCHEDULER` to cap them"
    ]


# ---- asking the cluster ------------------------------------------------------------------------------------------
def _merge_dists(packages: dict[str, str | None] | None) -> dict[str, str | None] | None:
    """Dask's per-distribution versions -> one version per :data:`probes.PACKAGES` name (and python)."""
    if packages is None:
        return None
    out = {"python": packages.get("python")}
    for name, dists in probes.PACKAGES.items():
        out[name] = next((packages[d] for d in dists if packages.get(d)), None)
    return out


def _dask_versions(client: Any) -> tuple[dict[str, Any], list[str]]:
    """``client.get_versions(check=True)`` for :data:`probes.PACKAGES`; Dask's mismatch warning becomes a note."""
    dists = sorted({d for ds in probes.PACKAGES.values() for d in ds})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        versions = client.get_versions(check=True, packages=dists)  # Dask: its own version check
    notes = [f"Dask's version check: {w.message}" for w in caught if "Mismatched versions" in str(w.message)]
    return versions, notes


async def _probe_all(client: Any, addresses: Sequence[str], spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Every worker's probe answer (a dict) or the exception it raised / a TimeoutError, probed concurrently."""

    async def one(address: str) -> tuple[str, Any]:
        try:
            out = await asyncio.wait_for(client._run(probes.probe, spec, workers=[address], on_error="return"), timeout)
            return address, out.get(address, KeyError(f"{address} left the cluster"))
        except TimeoutError:
            return address, TimeoutError(f"no answer within {timeout:.0f} s")
        except Exception as exc:  # noqa: BLE001 - reported per worker
            return address, exc

    scheduler = client._run_on_scheduler(probes.probe_scheduler, spec)
    answers = await asyncio.gather(
        *(one(a) for a in addresses), asyncio.wait_for(scheduler, timeout), return_exceptions=True
    )
    out: dict[str, Any] = {}
    for pair in answers[:-1]:  # one() catches its own errors: every item is an (address, answer) pair
        address, answer = pair  # type: ignore[misc]
        out[address] = answer
    out["scheduler"] = answers[-1]
    return out


def _as_report(answer: Any, role: str, info: dict[str, Any], versions: dict[str, Any] | None) -> dict[str, Any]:
    rep = dict(answer) if isinstance(answer, dict) else {"error": f"{type(answer).__name__}: {answer}"}
    rep.update(
        role=role,
        nthreads=info.get("nthreads"),
        memory_limit=info.get("memory_limit"),
        versions=_merge_dists((versions or {}).get("packages")),
    )
    rep.setdefault("hostname", info.get("host"))
    return rep


class _Listener:
    """A driver socket on the rendezvous address: the probes connect to it as the ranks will to the rendezvous."""

    def __init__(self, worker_addresses: Sequence[str]) -> None:
        from core.distributed import hosts

        self.address = hosts.driver_address(worker_addresses)
        self.sock = socket.create_server((self.address, hosts.rendezvous_port()), backlog=256)
        self.port = int(self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()


def _token(folder: str | None) -> tuple[Path | None, list[dict[str, str]]]:
    if not folder:
        return None, []
    content = secrets.token_hex(16)
    path = Path(folder) / f".preflight-{content[:8]}"
    path.write_text(content)
    return path, [{"path": str(path), "content": content, "folder": folder}]


def _ask(
    client: Any, workers: dict[str, dict[str, Any]], needs: JobNeeds, timeout: float, problems: list[Problem]
) -> tuple[dict[str, Any], tuple[str, int] | None]:
    """Probe answers of every worker and the scheduler for ``needs``, and the driver address they were to reach."""
    listener = None
    if needs.horovod and workers:
        try:
            listener = _Listener(list(workers))
        except (ClusterError, OSError) as exc:
            problems.append(Problem("network", (), f"the driver cannot open the Horovod rendezvous address: {exc}"))
    token_path, tokens = _token(needs.shared_folder)
    spec = {
        "files": list(needs.files),
        "paths": list(needs.paths),
        "horovod": needs.horovod,
        "tokens": tokens,
        "writable": [needs.shared_folder] if needs.shared_folder else [],
        "reach": [listener.address, listener.port] if listener else None,
    }
    try:
        # Dask: the probes time out one by one; the bound on the whole call keeps a stuck connection from hanging
        answers = client.sync(_probe_all, client, list(workers), spec, timeout, callback_timeout=3 * timeout + 30)
    finally:
        if listener is not None:
            listener.close()
        if token_path is not None:
            token_path.unlink(missing_ok=True)
    return answers, (listener.address, listener.port) if listener else None


def check_cluster(client: Any, needs: JobNeeds, timeout: float = PROBE_TIMEOUT_SECONDS) -> ClusterReport:
    """Check that the cluster of ``client`` can run a job with ``needs``, on every worker and the scheduler.

    Nothing is started on the cluster; the probes only import, stat and read. Problems are collected, not raised:
    call :meth:`ClusterReport.raise_for_problems` to refuse the job.
    """
    from core.distributed.cluster import live_workers
    from core.settings import REPO_ROOT

    t0 = time.monotonic()
    probes.register_by_value()
    workers = live_workers(client)
    busy = {w for w, keys in client.processing().items() if keys}
    versions, notes = _dask_versions(client)
    problems: list[Problem] = []
    answers, reach = _ask(client, workers, needs, timeout, problems)
    reports = {a: _as_report(answers.get(a), "worker", workers[a], versions["workers"].get(a)) for a in workers}
    scheduler = client.scheduler.address if client.scheduler else "scheduler"
    reports[scheduler] = _as_report(answers.get("scheduler"), "scheduler", {}, versions.get("scheduler"))
    client_engine = probes.engine_status()
    client_versions = _merge_dists(versions["client"]["packages"]) or {}
    problems += _check_answers(reports) + _check_engine(client_engine, reports, str(REPO_ROOT))
    problems += _check_versions(client_versions, reports) + _check_capacity(needs, workers, busy)
    worker_reports = {a: r for a, r in reports.items() if r["role"] == "worker"}
    problems += _check_files(needs, worker_reports) + _check_paths(worker_reports)
    problems += _check_shared(needs, worker_reports)
    if needs.horovod:
        problems += _check_horovod(worker_reports) + _check_network(worker_reports, reach)
    report = ClusterReport(
        scheduler=scheduler,
        dashboard=client.dashboard_link,
        client_versions=client_versions,
        workers=reports,
        problems=problems,
        warnings=notes + _warnings(reports),
        seconds=time.monotonic() - t0,
    )
    log.info(
        "cluster pre-flight on %s: %d worker(s), %d problem(s), %.1f s",
        scheduler,
        len(workers),
        len(problems),
        report.seconds,
    )
    return report
