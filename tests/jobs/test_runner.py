import numpy as np
import pytest

from core.configs import TileJobConfig
from core.errors import JobCancelledError, SceneNotFoundError
from db.runs import RunTracker
from jobs.runner import execute
from tests.conftest import write_raster

pytestmark = pytest.mark.cluster


@pytest.fixture(autouse=True)
def scene_s(home, tmp_path, db_url):
    """A registered 16x16 scene 's' (the cluster pre-flight reads its files' fingerprints)."""
    from core.data.catalog import SceneSpec, register_scene
    from db.scenes import SceneStore

    img = write_raster(tmp_path / "s.tif", np.arange(3 * 256, dtype="uint16").reshape(3, 16, 16))
    lab = write_raster(tmp_path / "s_labels.tif", np.ones((16, 16), dtype="uint8"))
    spec = SceneSpec.model_validate(
        {
            "name": "s",
            "classes": [{"id": 1, "name": "a", "color": "#228b22"}],
            "acquisitions": [{"date": "20220101", "files": {"s2": [str(img)]}, "labels": str(lab)}],
        }
    )
    return register_scene(spec, SceneStore(db_url), home)


def test_success_records_metrics_artifacts_and_cluster(db_url, cluster_client):
    def executor(config, ctx):
        total = sum(ctx.client.gather(ctx.client.map(lambda x: x * x, range(5))))
        ctx.progress("tiling", 5, 5)
        return {"metrics": {"total": total}, "artifacts": {"store": "/x.zarr"}}

    run_id = execute(TileJobConfig(scene="s"), executor, db_url=db_url, client=cluster_client)
    row = RunTracker(db_url).get(run_id)
    assert row.status == "succeeded" and row.metrics == {"total": 30}
    assert row.config["scene"] == "s" and row.cluster["n_workers"] == 2
    assert (row.progress_done, row.progress_total) == (5, 5)


def test_failure_keeps_the_error_message(db_url, cluster_client):
    def executor(config, ctx):
        raise ValueError("band 3 of /a.tif is all nodata")

    with pytest.raises(ValueError):
        execute(TileJobConfig(scene="s"), executor, db_url=db_url, client=cluster_client)
    row = RunTracker(db_url).list()[0]
    assert row.status == "failed" and row.error.startswith("ValueError: band 3 of /a.tif is all nodata")


def test_cancel_request_stops_the_job_and_marks_it_cancelled(db_url, cluster_client):
    def executor(config, ctx):
        ctx.tracker.request_cancel(ctx.run_id)  # as the GUI would, from another process
        ctx._last_cancel_check = 0.0
        ctx.check_cancelled()
        return {}

    with pytest.raises(JobCancelledError):
        execute(TileJobConfig(scene="s"), executor, db_url=db_url, client=cluster_client)
    assert RunTracker(db_url).list()[0].status == "cancelled"


def test_a_job_the_preflight_refuses_leaves_no_run_and_fails_a_pending_one(db_url, cluster_client):
    def executor(config, ctx):
        raise AssertionError("must not run")

    with pytest.raises(SceneNotFoundError):
        execute(TileJobConfig(scene="nope"), executor, db_url=db_url, client=cluster_client)
    assert RunTracker(db_url).list() == []
    pending = RunTracker(db_url).create("tile", {"kind": "tile", "scene": "nope"})
    with pytest.raises(SceneNotFoundError):
        execute(TileJobConfig(scene="nope"), executor, db_url=db_url, client=cluster_client, run_id=pending)
    row = RunTracker(db_url).get(pending)
    assert row.status == "failed" and "no scene 'nope' is registered" in row.error


def test_the_preflight_summary_is_stored_with_the_run(db_url, cluster_client):
    run_id = execute(TileJobConfig(scene="s"), lambda config, ctx: {}, db_url=db_url, client=cluster_client)
    preflight = RunTracker(db_url).get(run_id).cluster["preflight"]
    assert preflight["seconds"] > 0 and isinstance(preflight["warnings"], list)


def test_the_runner_runs_the_same_preflight_as_the_cli_and_the_form(db_url, cluster_client):
    """A train job that tiles scene 's' first: the runner's pre-flight shows the report (``show``), refuses an AOI
    off the scene before a run row exists, and runs the config as pre-flight stated it (its split derived)."""
    from core.errors import ConfigError
    from core.training.config import TrainJobConfig

    def config(**aoi):
        tile = {"scene": "s", "mode": "patches", "sampling": {"patch_size": 3}, "aoi": aoi}
        return TrainJobConfig(scene="s", tile_job=tile, model="patch_cnn")

    shown, ran = [], []
    far = {"type": "Polygon", "coordinates": [[[0, 0], [0.01, 0], [0.01, 0.01], [0, 0.01], [0, 0]]]}
    with pytest.raises(
        ConfigError, match="pre-flight refused the job:\n- AOI with bounds .* does not overlap scene 's'"
    ):
        execute(config(geometry=far), lambda c, ctx: {}, db_url=db_url, client=cluster_client, show=shown.append)
    assert RunTracker(db_url).list() == [] and not shown[0].ok
    run_id = execute(
        config(), lambda c, ctx: ran.append(c) or {}, db_url=db_url, client=cluster_client, show=shown.append
    )
    assert shown[1].ok and shown[1].cluster is not None and shown[1].cluster.ok  # every worker probed
    block = ran[0].tile_job.split.block_size
    assert block is not None and ran[0] == shown[1].config
    assert RunTracker(db_url).get(run_id).config["tile_job"]["split"]["block_size"] == block
