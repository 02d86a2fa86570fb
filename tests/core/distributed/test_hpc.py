"""dask_jobqueue installs a SIGINT handler when imported (and fails to import outside the main thread): the engine
imports it only for batch-system clusters, through core.distributed.hpc, which keeps the caller's handler."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

PROBE = """
import signal, sys, threading
import core.configs, core.distributed.cluster, jobs.runner
assert "dask_jobqueue" not in sys.modules, "importing the engine must not import dask_jobqueue"
out = {}
def validate():
    from core.configs import ClusterConfig
    out["workers"] = ClusterConfig.model_validate({"hpc": {"queue": "debug", "n_jobs": 2}}).hpc_settings().n_workers
t = threading.Thread(target=validate)
t.start(); t.join()
assert out == {"workers": 2}, out
assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, signal.getsignal(signal.SIGINT)
print("ok")
"""


def test_hpc_settings_validate_in_a_thread_and_keep_the_sigint_handler() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
