"""What a Dask worker (or the scheduler) reports about itself before a job: engine, files, Horovod, network.

Package versions come from Dask's own ``client.get_versions``. A worker that cannot import the engine cannot run a
function defined in it either, so this module imports only the standard library at module level and travels *by
value* (:func:`register_by_value`: cloudpickle ships its code, and that of :mod:`core.data.digest`, with every call).
:func:`probe` is a coroutine: ``client.run`` awaits it on the worker's event loop, and it runs the slow part
(importing TensorFlow and Horovod) in a thread, so the worker keeps answering heartbeats.

The probe takes and returns only builtins (dicts, lists, strings): anything of the engine in its arguments would have
to be imported on the worker to unpickle them.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import os
import socket
import sys
from pathlib import Path
from typing import Any

from core.data.digest import readable_change

PACKAGES: dict[str, tuple[str, ...]] = {
    "dask": ("dask",),
    "distributed": ("distributed",),
    "cloudpickle": ("cloudpickle",),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel"),
    "horovod": ("horovod",),
    "numpy": ("numpy",),
    "rasterio": ("rasterio",),
}
"""The packages whose versions must match the client's: name -> the distributions that provide it (asked through
Dask's own ``client.get_versions``)."""
ENGINE_MODULES = ("core.configs", "core.data.rasters", "core.distributed.launcher")
"""Modules of the engine a worker imports to prove it can run the engine's tasks (and their dependencies)."""
ENGINE_DIST = "landcover-workbench"
THREAD_VARS = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def register_by_value() -> None:
    """Make cloudpickle ship this module and :mod:`core.data.digest` by value (idempotent)."""
    import cloudpickle

    from core.data import digest

    for module in (sys.modules[__name__], digest):
        if module.__name__ not in cloudpickle.list_registry_pickle_by_value():
            cloudpickle.register_pickle_by_value(module)


def source_digest(root: str | Path) -> str:
    """sha256 (first 16 hex digits) over the relative paths and bytes of every ``*.py`` file under ``root``."""
    h = hashlib.sha256()
    base = Path(root)
    for path in sorted(base.rglob("*.py")):
        h.update(str(path.relative_to(base)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def engine_status() -> dict[str, Any]:
    """Whether this process can import the engine; where from, and the digest of its source if so."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        for name in ENGINE_MODULES:
            importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - reported to the client, which names the worker and the fix
        return {"importable": False, "error": f"{type(exc).__name__}: {exc}", "sys_path": sys.path[:8]}
    root = Path(sys.modules["core"].__file__ or "").parent
    try:
        dist = version(ENGINE_DIST)
    except PackageNotFoundError:
        dist = None
    return {"importable": True, "location": str(root), "source_digest": source_digest(root), "version": dist}


def horovod_status() -> dict[str, Any]:
    """Whether ``horovod.tensorflow`` imports here and was built with gloo (imports TensorFlow: seconds)."""
    try:
        import horovod.tensorflow as hvd
    except Exception as exc:  # noqa: BLE001 - reported to the client
        return {"importable": False, "gloo": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"importable": True, "gloo": bool(hvd.gloo_built()), "error": None}


def interface_of(ip: str) -> str | None:
    """Name of the network interface that carries ``ip`` here (``lo`` for loopback), or None."""
    import psutil  # a dependency of distributed: present wherever a worker runs

    if ip.startswith("127.") or ip in ("localhost", "::1"):
        return "lo"
    return next((name for name, addrs in psutil.net_if_addrs().items() if any(a.address == ip for a in addrs)), None)


def hostname_error() -> str | None:
    """Why this host's own name does not resolve (gloo then falls back to it and crashes the process), or None."""
    name = socket.gethostname()
    try:
        socket.getaddrinfo(name, None)
    except OSError as exc:
        return f"{name!r} does not resolve ({type(exc).__name__}: {exc})"
    return None


def _reach(host: str, port: int, timeout: float = 5.0) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def path_error(path: str) -> str | None:
    """Why this process cannot read the file or folder ``path`` (missing, not readable), or None."""
    p = Path(path)
    if not p.exists():
        return "missing"
    if not os.access(p, os.R_OK | (os.X_OK if p.is_dir() else 0)):
        return f"not readable by uid {os.getuid()}"
    return None


def _shared(spec: dict[str, Any]) -> list[str]:
    """Problems with the folders the client shares with the workers (token readable, stores folder writable)."""
    problems = []
    for token in spec.get("tokens", []):
        try:
            if Path(token["path"]).read_text() != token["content"]:
                problems.append(f"{token['folder']} is another folder here (the client's check file differs)")
        except OSError as exc:
            problems.append(
                f"{token['folder']} is not the client's folder here ({type(exc).__name__}: {exc.strerror or exc})"
            )
    for folder in spec.get("writable", []):
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            probe_file = Path(folder) / f".probe-{socket.gethostname()}-{os.getpid()}"
            probe_file.write_bytes(b"")
            probe_file.unlink()
        except OSError as exc:
            problems.append(f"{folder} is not writable here ({type(exc).__name__}: {exc.strerror or exc})")
    return problems


def report(spec: dict[str, Any], address: str | None = None) -> dict[str, Any]:
    """Everything the client checks about this process, for the job described by ``spec``.

    ``spec`` keys: ``files`` (fingerprints as dicts: path, size, mtime_ns, digest), ``paths`` (files or folders
    to read), ``horovod`` (bool),
    ``reach`` (``[host, port]`` of a driver socket to connect to, or None), ``tokens`` and ``writable`` (shared
    folders, see :func:`_shared`).
    """
    ip = (address or "").rsplit("://", 1)[-1].rsplit(":", 1)[0] or None
    files = {
        f["path"]: readable_change(f["path"], f["size"], f["mtime_ns"], f["digest"]) for f in spec.get("files", [])
    }
    reach = spec.get("reach")
    return {
        "address": address,
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "uid": os.getuid(),
        "executable": sys.executable,
        "cwd": os.getcwd(),
        "engine": engine_status(),
        "files": {p: why for p, why in files.items() if why},
        "n_files": len(files),
        "paths": {p: why for p in spec.get("paths", []) if (why := path_error(p))},
        "horovod": horovod_status() if spec.get("horovod") else None,
        "interface": interface_of(ip) if ip else None,
        "hostname_error": hostname_error(),
        "reach_error": _reach(reach[0], int(reach[1])) if reach else None,
        "shared": _shared(spec),
        "threads_env": {k: os.environ.get(k) for k in THREAD_VARS},
    }


async def probe(spec: dict[str, Any], dask_worker: Any = None) -> dict[str, Any]:
    """``client.run`` entry point: :func:`report` in a thread, so the worker's event loop stays responsive."""
    address = getattr(dask_worker, "address", None)
    return await asyncio.get_running_loop().run_in_executor(None, report, spec, address)


async def probe_scheduler(spec: dict[str, Any], dask_scheduler: Any = None) -> dict[str, Any]:
    """``client.run_on_scheduler`` entry point: the scheduler must unpickle the engine's task graphs too."""
    address = getattr(dask_scheduler, "address", None)
    return await asyncio.get_running_loop().run_in_executor(None, report, {"files": []}, address)
