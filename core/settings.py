"""Where the workbench keeps its files and how it reaches its database and cluster.

Everything can be set by environment variables so the same code runs on a laptop and on HPC:

- ``WORKBENCH_HOME``: project data folder (default ``<repo>/data``): database, tile stores, runs.
- ``WORKBENCH_DB_URL``: any SQLAlchemy URL (default: SQLite file ``$WORKBENCH_HOME/workbench.db``).
- ``WORKBENCH_SCHEDULER``: address of an existing Dask scheduler (default: start a local cluster).
- ``WORKBENCH_DATA_ROOTS``: ``os.pathsep``-separated folders users may register files from (the GUI
  confines typed paths to them; default: ``<repo>/../shared/data`` and ``$WORKBENCH_HOME``).
- ``WORKBENCH_WORKERS``: worker processes of the local cluster (default: number of CPU cores).
- ``WORKBENCH_HPC_CONFIG``: a JSON file of HPC cluster settings (:class:`core.hpc_config.HPCClusterConfig`);
  when set, the app's cluster starts its workers as SLURM / PBS jobs instead of local processes.
- ``WORKBENCH_CLUSTER_HOST``: the address the local cluster's scheduler, workers and dashboard listen on (default
  ``127.0.0.1``: nothing reachable from the network).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Settings:
    """Resolved settings; build with :func:`get_settings`."""

    home: Path
    db_url: str
    scheduler_address: str | None
    data_roots: tuple[Path, ...]
    local_workers: int
    threads_per_worker: int = 1
    cluster_host: str = "127.0.0.1"
    hpc_config: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def stores_dir(self) -> Path:
        """Folder of tile stores (one Zarr store per tiling run)."""
        return self.home / "stores"

    @property
    def runs_dir(self) -> Path:
        """Folder of run artefacts (checkpoints, predictions), one sub-folder per run id."""
        return self.home / "runs"

    def run_dir(self, run_id: int) -> Path:
        """The artefact folder of one run, created on demand."""
        path = self.runs_dir / f"run-{run_id:05d}"
        path.mkdir(parents=True, exist_ok=True)
        return path


def get_settings() -> Settings:
    """Read settings from the environment (cheap; call when needed rather than caching globally)."""
    home = Path(os.environ.get("WORKBENCH_HOME", REPO_ROOT / "data")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    db_url = os.environ.get("WORKBENCH_DB_URL") or f"sqlite:///{home / 'workbench.db'}"
    scheduler = os.environ.get("WORKBENCH_SCHEDULER") or None
    roots_env = os.environ.get("WORKBENCH_DATA_ROOTS")
    if roots_env:
        roots = tuple(Path(p).expanduser().resolve() for p in roots_env.split(os.pathsep) if p)
    else:
        roots = ((REPO_ROOT.parent / "shared" / "data").resolve(), home)
    workers = int(os.environ.get("WORKBENCH_WORKERS", os.cpu_count() or 2))
    return Settings(
        home=home,
        db_url=db_url,
        scheduler_address=scheduler,
        data_roots=roots,
        local_workers=max(1, workers),
        cluster_host=os.environ.get("WORKBENCH_CLUSTER_HOST", "127.0.0.1"),
        hpc_config=Path(os.environ["WORKBENCH_HPC_CONFIG"]).expanduser()
        if os.environ.get("WORKBENCH_HPC_CONFIG")
        else None,
    )


def shared_data_dir() -> Path:
    """The sample data folder beside the project (``../shared/data``)."""
    return (REPO_ROOT.parent / "shared" / "data").resolve()
