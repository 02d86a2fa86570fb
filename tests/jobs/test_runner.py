import pytest

from core.configs import TileJobConfig
from core.errors import JobCancelledError
from db.runs import RunTracker
from jobs.runner import execute

pytestmark = pytest.mark.cluster


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
