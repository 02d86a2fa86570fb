"""The app on a cluster the user started (WORKBENCH_SCHEDULER set): no local cluster is started, every page works
against the external one, and the Cluster and launch pages run the per-worker pre-flight on it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.app.conftest import app_test, pixel_box_wgs84
from tests.clusters import REPO, UserCluster, base_env, free_port

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

PAGES = ("launch", "runs", "live", "review", "cluster", "scenes")


@pytest.fixture(scope="module")
def external(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UserCluster]:
    """A stock scheduler and 2 stock workers (engine on PYTHONPATH), started outside the repository."""
    with UserCluster(tmp_path_factory.mktemp("outside")) as cluster:
        cluster.dask_worker("w", nworkers=2)
        cluster.client(2).close()
        yield cluster


def _texts(elements: Any) -> str:
    return "\n".join(e.value for e in elements)


def test_every_page_works_against_the_external_cluster(
    home: Path, tiny_scene: Any, external: UserCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_SCHEDULER", external.address)
    for page in PAGES:
        at = app_test(page, timeout=120).run()
        assert not at.exception, (page, at.exception)
    assert not (home / "cluster.json").exists(), "no local cluster was started"
    at = app_test("cluster", timeout=120).run()
    assert external.address in _texts(at.markdown) and "(remote)" in _texts(at.markdown)
    at.selectbox(key="cluster_scene").set_value("tiny")
    at.button(key="cluster_check").click().run(timeout=300)
    assert "Every worker can run the job" in _texts(at.success), _texts(at.error)
    table = at.dataframe[-1].value
    assert sorted(table["role"]) == ["scheduler", "worker", "worker"]
    assert table[table["role"] == "worker"]["engine importable"].all()
    assert table[table["role"] == "worker"]["files visible"].all() and table["gloo"].dropna().all()
    assert "without the engine's per-worker thread caps" in _texts(at.warning)  # stock `dask worker`


def test_launch_form_runs_the_cluster_preflight(
    home: Path, tiny_scene: Any, external: UserCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_SCHEDULER", external.address)
    at = app_test("launch", timeout=300)
    at.session_state["launch_aoi"] = pixel_box_wgs84(0, 0, 64, 64)
    at.session_state["launch_aoi_scene"] = "tiny"
    at.run()
    at.button(key="launch_check").click().run()
    assert not at.error, _texts(at.error)
    assert "Pre-flight check passed" in _texts(at.success)


def test_app_with_an_external_scheduler_starts_no_local_cluster(home: Path, external: UserCluster) -> None:
    port = free_port()
    env = {**base_env(True), "WORKBENCH_HOME": str(home), "WORKBENCH_SCHEDULER": external.address}
    app = subprocess.Popen(
        [sys.executable, "-m", "jobs", "app", "--port", str(port), "--no-samples"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert app.poll() is None and time.monotonic() < deadline, "the app did not come up"
                time.sleep(1)
        children = [p.cmdline() for p in psutil.Process(app.pid).children(recursive=True)]
        assert not any("cluster" in argv and "serve" in argv for argv in children), children
        assert not (home / "cluster.json").exists()
    finally:
        os.killpg(app.pid, signal.SIGTERM)
        out = app.communicate(timeout=30)[0].decode()
    assert "local Dask cluster" not in out, out


def test_cluster_check_from_the_cli(
    home: Path,
    tiny_scene: Any,
    external: UserCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from jobs.cli import main

    monkeypatch.setenv("WORKBENCH_SCHEDULER", external.address)
    config = tmp_path / "tile.json"
    config.write_text('{"kind": "tile", "scene": "tiny"}')
    assert main(["cluster", "check", "--config", str(config)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"scheduler {external.address}" in out and "pre-flight passed for" in out
    assert sum(line.startswith("tcp://") for line in out.splitlines()) == 3  # 2 workers and the scheduler
