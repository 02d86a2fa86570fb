"""A scheme added in one module (this one) and no other edit: config validation, the CLI, the launch form and the
pipeline offer it, and it trains on two real Horovod ranks.

``toy_allreduce`` is data parallelism whose gradients are summed over the ranks and then divided by their number
(the plain average, computed another way). The ranks get its spec from the driver, pickled by reference to this
module, which the cluster's spawned workers import (they inherit the test session's ``sys.path``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from core.training.config import TrainJobConfig
from core.training.loop import train_rank
from core.training.schemes import Reduction, SchemeSpec, list_schemes, register_scheme
from tests.app.conftest import _restore_main_module, app_test, tiny_scene  # noqa: F401 - fixtures used below


def sum_over_size(values: Sequence[Any], weight: Any, hvd: Any, name: str) -> list[Any]:
    """Sum over the ranks, then divide by their number."""
    summed = hvd.grouped_allreduce(list(values), op=hvd.Sum, name=f"toy.{name}")  # Horovod: sum across ranks
    return [v / hvd.size() for v in summed]


def _check(model: str, num_workers: int, worker_speeds: Sequence[float] | None) -> None:
    if num_workers < 2:
        raise ValueError("scheme 'toy_allreduce' sums gradients over ranks; it needs num_workers >= 2")


TOY = register_scheme(
    SchemeSpec(
        name="toy_allreduce",
        description="toy: gradients summed, then divided by the ranks",
        rank_fn=train_rank,
        uses_horovod=True,
        check=_check,
        reduction=Reduction(sum_over_size),
        order=90,
    )
)


def test_config_validation_offers_the_new_scheme() -> None:
    assert list_schemes()[-1] == "toy_allreduce" and list_schemes()[0] == "single"
    config = TrainJobConfig(scene="s", store="x", scheme="toy_allreduce", num_workers=2)
    assert config.scheme == "toy_allreduce"
    with pytest.raises(ValueError, match="scheme 'toy_allreduce' sums gradients over ranks; it needs num_workers"):
        TrainJobConfig(scene="s", store="x", scheme="toy_allreduce", num_workers=1)
    with pytest.raises(ValueError, match=r"scheme 'toy' is unknown; choose one of \[.*'toy_allreduce'\]"):
        TrainJobConfig(scene="s", store="x", scheme="toy", num_workers=2)
    from jobs.pipeline import PipelineJobConfig

    assert PipelineJobConfig(scene="s", scheme="toy_allreduce").scheme == "toy_allreduce"


@pytest.mark.usefixtures("home")
def test_the_cli_offers_the_new_scheme(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.cli import main
    from jobs.kinds import parse_config

    assert main(["schemes"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert listed == set(list_schemes()) and "toy_allreduce" in listed
    config = parse_config({"kind": "train", "scene": "s", "store": "x", "scheme": "toy_allreduce", "num_workers": 2})
    assert config.scheme == "toy_allreduce"  # type: ignore[attr-defined]


def test_the_launch_form_offers_the_new_scheme(tiny_scene: Any) -> None:  # noqa: F811
    at = app_test("launch").run()
    assert not at.exception
    assert "toy_allreduce" in at.selectbox(key="launch_scheme").options
    at.selectbox(key="launch_scheme").set_value("toy_allreduce").run()
    assert not at.exception and at.number_input(key="launch_workers").value == 2  # a Horovod scheme


@pytest.mark.skipif(importlib.util.find_spec("horovod") is None, reason="horovod is not installed")
@pytest.mark.cluster
@pytest.mark.horovod
@pytest.mark.usefixtures("home")
def test_the_new_scheme_trains_on_two_real_ranks(cluster_client: Any, db_url: str, tmp_path: Path) -> None:
    from tests.core.training.test_loop import _config, make_store
    from tests.runs import train_run

    store = make_store(tmp_path / "s.zarr")
    tracker, run_id, out = train_run(_config(store, scheme="toy_allreduce"), cluster_client, db_url, store)
    row = tracker.get(run_id)
    assert row.status == "succeeded" and row.metrics["weights_identical"] and row.metrics["num_ranks"] == 2
    assert [r["optimizer_iterations"] for r in out["ranks"]] == [4, 4]
    assert [e.epoch for e in tracker.events(run_id, kind="epoch")] == [1, 2]
    assert len(tracker.events(run_id, kind="step")) == 4
    assert {s.rank for s in tracker.worker_stats(run_id)} == {0, 1}
