"""Importing the dask-jobqueue layer (:mod:`core.distributed.jobqueue`) only where a batch-system cluster is used.

``dask_jobqueue.runner`` installs a SIGINT handler (``sys.exit``) when it is imported: in the main thread that
replaces the caller's Ctrl-C handling, and in any other thread (a Dask worker's task, a Streamlit script) the import
fails with ``ValueError: signal only works in main thread``. :func:`jobqueue` imports it with the caller's SIGINT
handler kept, and from other threads with ``signal.signal`` held off for the duration of the import.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import ModuleType
from typing import Any

from core.hpc_config import HPCClusterConfig

_LOCK = threading.Lock()


def jobqueue() -> ModuleType:
    """:mod:`core.distributed.jobqueue` (and dask_jobqueue), imported without dask_jobqueue's SIGINT side effect."""
    if "core.distributed.jobqueue" in sys.modules:
        return sys.modules["core.distributed.jobqueue"]
    with _LOCK:
        previous = signal.getsignal(signal.SIGINT)
        real = signal.signal

        def keep(signalnum: Any, handler: Any) -> Any:
            return previous

        signal.signal = keep  # type: ignore[assignment]
        try:
            import core.distributed.jobqueue as module
        finally:
            signal.signal = real
        return module


def hpc_config(data: dict[str, Any]) -> HPCClusterConfig:
    """``HPCClusterConfig.from_dict(data)``: unknown keys and bad values raise ConfigError naming them (the schema
    needs no dask-jobqueue)."""
    return HPCClusterConfig.from_dict(data)
