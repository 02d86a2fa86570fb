"""Output on a read-only or full file system: real tmpfs mounts (tests run as root, so chmod would not stop them).

The read-only folder fails the run in the pre-check, before any work; the full one (2 MiB) fails a real tiling job
on the session's 2-worker cluster when its workers hit ENOSPC. Both runs are failed with a message naming the path
and the fix, and a file already stored in the folder is untouched.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.configs import TileJobConfig, TilingConfig
from core.errors import DiskFullError, OutputNotWritableError


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for the test (skipped where mounting is not permitted), unmounted afterwards."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(
            f"mounting a tmpfs is not permitted here ({done.stderr.strip()}); the test needs root or "
            "CAP_SYS_ADMIN to make a real read-only / full file system"
        )
    try:
        (mnt / "keep.txt").write_text("stored before the run")
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def _tile(config: TileJobConfig, ctx: Any) -> dict[str, Any]:
    from core.tiling.job import run_tile_job
    from tests.conftest import SHARED_DATA
    from tests.core.tiling.test_job import strzegom_scene

    run_tile_job(config, strzegom_scene(SHARED_DATA), ctx.client, Path(str(config.output)))
    return {}


@pytest.mark.cluster
@pytest.mark.shared_data
def test_read_only_output_folder_fails_the_run_before_it_starts(
    small_tmpfs: Path, home: Path, db_url: str, cluster_client: Any, shared_data: Path
) -> None:
    from core.data.samples import register_samples
    from db.runs import RunTracker
    from db.scenes import SceneStore
    from jobs.runner import execute

    register_samples(shared_data, SceneStore(db_url), home, only=["strzegom"])  # the cluster pre-flight reads it
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    config = TileJobConfig(scene="strzegom", output=str(small_tmpfs / "out" / "s.zarr"))
    with pytest.raises(OutputNotWritableError, match=r"Read-only file system .*write permission"):
        execute(config, lambda c, ctx: pytest.fail("the job started"), db_url=db_url, client=cluster_client)
    row = RunTracker(db_url).list()[0]
    assert row.status == "failed" and str(small_tmpfs / "out") in row.error and "Traceback" not in row.error
    assert (small_tmpfs / "keep.txt").read_text() == "stored before the run"


@pytest.mark.cluster
@pytest.mark.shared_data
def test_full_disk_fails_the_tiling_run_with_the_path_and_keeps_what_was_stored(
    small_tmpfs: Path, home: Path, db_url: str, cluster_client: Any, shared_data: Path
) -> None:
    from core.data.samples import register_samples
    from db.runs import RunTracker
    from db.scenes import SceneStore
    from jobs.runner import execute

    register_samples(shared_data, SceneStore(db_url), home, only=["strzegom"])  # the cluster pre-flight reads it
    config = TileJobConfig(
        scene="strzegom", mode="tiles", tiling=TilingConfig(tile_size=64), output=str(small_tmpfs / "s.zarr")
    )
    with pytest.raises(Exception) as info:
        execute(config, _tile, db_url=db_url, client=cluster_client)
    row = RunTracker(db_url).list()[0]
    print(f"\nfull disk: {type(info.value).__name__}; stored error: {row.error.splitlines()[0][:300]}")
    assert row.status == "failed" and row.error.startswith("DiskFullError: cannot write the output at ")
    assert str(small_tmpfs) in row.error.splitlines()[0] and "Free space" in row.error
    assert (small_tmpfs / "keep.txt").read_text() == "stored before the run"
    assert issubclass(DiskFullError, OSError) and issubclass(OutputNotWritableError, PermissionError)
