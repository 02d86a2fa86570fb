"""The pre-flight's checks on worker reports (the probes' real output is exercised by tests/jobs/test_user_cluster.py,
tests/core/distributed/test_hosts.py and tests/app/test_external_cluster.py): one message per problem, naming the
workers, what differs and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.data.digest import file_digest, readable_change
from core.data.rasters import file_fingerprint
from core.distributed import preflight
from core.distributed.preflight import ClusterReport, JobNeeds, Problem

CLIENT = {
    "dask": "2026.8.0",
    "distributed": "2026.8.0",
    "cloudpickle": "3.1.3",
    "tensorflow": "2.18.1",
    "horovod": "0.28.1",
    "numpy": "2.0.2",
    "rasterio": "1.4.4",
    "python": "3.11.7.final.0",
}


def _worker(host: str, **versions: str | None) -> dict[str, Any]:
    return {"role": "worker", "hostname": host, "versions": {**CLIENT, **versions}}


def test_version_mismatches_are_grouped_per_package_and_version() -> None:
    reports = {
        "tcp://10.0.0.7:1": _worker("node7", tensorflow="2.17.0"),
        "tcp://10.0.0.8:1": _worker("node8", tensorflow="2.17.0", horovod=None),
        "tcp://10.0.0.9:1": _worker("node9"),
        "tcp://10.0.0.1:8786": {"role": "scheduler", "hostname": "login", "versions": {**CLIENT, "numpy": "1.26"}},
    }
    problems = preflight._check_versions(preflight._merge_dists({**CLIENT}) or {}, reports)
    messages = [p.message for p in problems]
    assert len(problems) == 2, messages  # the scheduler needs no numpy match
    tf = next(p for p in problems if p.message.startswith("tensorflow"))
    assert tf.workers == ("tcp://10.0.0.7:1", "tcp://10.0.0.8:1")
    assert (
        "the client has 2.18.1 but worker tcp://10.0.0.7:1 (host node7), worker tcp://10.0.0.8:1 (host node8) "
        "have 2.17.0; install tensorflow==2.18.1 there" in tf.message
    )
    hvd = next(p for p in problems if p.message.startswith("horovod"))
    assert hvd.workers == ("tcp://10.0.0.8:1",) and "do not have it installed" in hvd.message


def test_python_matches_on_major_minor() -> None:
    reports = {"tcp://a:1": _worker("a", python="3.11.9.final.0"), "tcp://b:1": _worker("b", python="3.12.1.final.0")}
    problems = preflight._check_versions(CLIENT, reports)
    assert [p.workers for p in problems] == [("tcp://b:1",)] and "python: the client has 3.11" in problems[0].message


def test_horovod_without_gloo_and_too_few_free_workers() -> None:
    reports = {
        "tcp://a:1": {**_worker("a"), "horovod": {"importable": True, "gloo": False, "error": None}},
        "tcp://b:1": {
            **_worker("b"),
            "horovod": {"importable": False, "gloo": False, "error": "ImportError: undefined symbol"},
        },
    }
    messages = [p.message for p in preflight._check_horovod(reports)]
    assert any("worker tcp://a:1 (host a) have Horovod built without gloo" in m for m in messages)
    assert any("cannot import horovod.tensorflow (ImportError: undefined symbol)" in m for m in messages)
    workers = {"tcp://a:1": {}, "tcp://b:1": {}}
    [busy] = preflight._check_capacity(JobNeeds(ranks=2), workers, {"tcp://b:1"})
    assert "only 1 of 2 are free (busy: tcp://b:1)" in busy.message
    [few] = preflight._check_capacity(JobNeeds(ranks=3), workers, set())
    assert "needs 3 worker processes at once" in few.message and "--nworkers 3" in few.message


def test_report_message_lists_every_problem() -> None:
    report = ClusterReport(
        "tcp://s:1", None, {}, problems=[Problem("engine", ("w",), "first"), Problem("files", ("w",), "second")]
    )
    assert report.message().splitlines() == [
        "cluster pre-flight failed (2 problem(s)) on scheduler tcp://s:1:",
        "- first",
        "- second",
    ]


def test_the_workers_file_check_follows_the_registration_fingerprint(tmp_path: Path) -> None:
    p = tmp_path / "a.tif"
    p.write_bytes(b"a" * 1000)
    fp = file_fingerprint(p)
    assert fp.digest == file_digest(p) and readable_change(fp.path, fp.size, fp.mtime_ns, fp.digest) is None
    p.write_bytes(b"b" * 1000)
    assert readable_change(fp.path, fp.size, fp.mtime_ns, fp.digest) == "content changed"
    p.unlink()
    assert readable_change(fp.path, fp.size, fp.mtime_ns, fp.digest) == "vanished"
