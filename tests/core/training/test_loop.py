"""Training on real Horovod ranks in the session's 2-worker LocalCluster, on tiny tile stores made here."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.tiling.store import TileStore
from core.training.config import TrainJobConfig
from tests.stores import write_store

CLASSES = (
    {"id": 1, "name": "water", "color": "#0000ff"},
    {"id": 2, "name": "forest", "color": "#00ff00"},
    {"id": 5, "name": "urban", "color": "#ff0000"},
)


def make_store(
    path: Path,
    mode: str = "tiles",
    counts: dict[str, int] | None = None,
    size: int = 16,
    bands: int = 4,
    bad_label_at: int | None = None,
    seed: int = 0,
) -> Path:
    """A tiny store in the core/tilestore.py layout whose classes are learnable from the bands.

    tiles: x (N, size, size, bands) uint16, y (N, size, size) with ~20 % unlabelled pixels;
    patches: x (N, size, size, bands), y (N,) = class of the centre pixel. ``bad_label_at`` puts the undeclared
    label 9 into that train sample.
    """
    rng = np.random.default_rng(seed)
    counts = counts or {"train": 8, "val": 4, "test": 2}
    samples = {}
    ids = np.array([c["id"] for c in CLASSES])
    for split, n in counts.items():
        cls = rng.integers(0, len(ids), size=(n, size, size))
        x = (rng.normal(100, 10, size=(n, size, size, bands)) + 60 * np.eye(bands)[cls % bands]).astype(np.uint16)
        y = ids[cls].astype(np.uint8)
        if mode == "tiles":
            y[rng.random(y.shape) < 0.2] = 0
        else:
            y = y[:, size // 2, size // 2].copy()
        if split == "train" and bad_label_at is not None:
            y[bad_label_at] = 9
        samples[split] = (x, y)
    return write_store(path, samples, mode, CLASSES)


def test_tiny_store_reads_back(tmp_path: Path) -> None:
    store = TileStore(make_store(tmp_path / "s.zarr"))
    xs, y = store.read("train", store.shard("train", 1, 2))
    assert xs["s2"].shape == (4, 16, 16, 4) and y.shape == (4, 16, 16)
    assert set(np.unique(y)) <= {0, 1, 2, 5}


def test_learning_rate_warms_up_linearly_then_decays_in_steps() -> None:
    from core.training.loop import learning_rate

    cfg = TrainJobConfig(
        scene="s",
        store="x",
        learning_rate=0.01,
        warmup_epochs=2,
        lr_decay_epochs=3,
        lr_decay_factor=0.1,
        scheme="data_parallel",
        num_workers=4,
    )
    lr = [learning_rate(cfg, 4, step, steps_per_epoch=10) for step in range(70)]
    assert lr[0] == pytest.approx(0.01) and lr[10] == pytest.approx(0.025)  # halfway from 0.01 to 0.04
    assert lr[20] == pytest.approx(0.04) and lr[29] == pytest.approx(0.04)  # epochs 2: scaled by 4 ranks
    assert lr[30] == pytest.approx(0.004) and lr[60] == pytest.approx(0.0004)  # x0.1 every 3 epochs


def test_train_config_refuses_single_with_several_workers() -> None:
    with pytest.raises(ValueError, match="scheme 'single' trains on one worker but num_workers=2"):
        TrainJobConfig(scene="s", store="x", scheme="single", num_workers=2)
    with pytest.raises(ValueError, match="give the training data: store"):
        TrainJobConfig(scene="s")


# ---- real ranks ------------------------------------------------------------------------------------------------
needs_horovod = pytest.mark.skipif(importlib.util.find_spec("horovod") is None, reason="horovod is not installed")


def _train(config: TrainJobConfig, client: Any, db_url: str, store: Path) -> tuple[Any, int, dict[str, Any]]:
    from tests.runs import train_run

    return train_run(config, client, db_url, store)


def _config(store: Path, **kw: Any) -> TrainJobConfig:
    base: dict[str, Any] = dict(
        scene="tiny",
        store=str(store),
        model="unet",
        model_params={"width": 2, "depth": 2},
        scheme="data_parallel",
        num_workers=2,
        epochs=2,
        batch_size=2,
        log_every=1,
        max_steps_per_epoch=3,
    )
    return TrainJobConfig(**{**base, **kw})


@needs_horovod
@pytest.mark.cluster
@pytest.mark.horovod
@pytest.mark.parametrize("model", ["unet", "patch_cnn"])
@pytest.mark.usefixtures("home")
def test_data_parallel_ranks_end_with_identical_weights(
    model: str, cluster_client: Any, db_url: str, tmp_path: Path
) -> None:
    mode = "tiles" if model == "unet" else "patches"
    store = make_store(tmp_path / "s.zarr", mode=mode, size=16 if mode == "tiles" else 5)
    params = {"width": 2, "depth": 2} if model == "unet" else {"width": 4}
    tracker, run_id, out = _train(_config(store, model=model, model_params=params), cluster_client, db_url, store)

    checksums = [r["checksum"] for r in out["ranks"]]
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    assert [r["optimizer_iterations"] for r in out["ranks"]] == [4, 4]  # 2 epochs x 2 steps (4 samples / 2)
    row = tracker.get(run_id)
    assert row.status == "succeeded" and row.cluster["n_workers"] == 2
    m = row.metrics
    assert m["weights_identical"] and m["num_ranks"] == 2 and m["epochs_run"] == [1, 2]
    assert m["samples_per_s"] > 0 and m["startup"]["launch_to_first_step_s"] > 0
    assert np.isfinite(m["final"]["loss"]) and m["final"]["val_loss"] is not None
    assert 0 <= m["final"]["accuracy"] <= 1
    for name in ("model", "checkpoint"):
        assert (Path(row.artifacts[name]) / "model.keras").exists()
    last = Path(row.artifacts["checkpoint"])
    assert (last / "optimizer.npz").exists() and (last.parent / "epoch-002" / "meta.json").exists()
    from core.models.bundle import load_bundle

    loaded, meta = load_bundle(last)
    assert meta.class_ids == (1, 2, 5) and meta.epoch == 2 and meta.band_stats["s2"]["mean"][0] == 110.0
    assert loaded.output_shape[-1] == 3
    epochs = tracker.events(run_id, kind="epoch")
    assert [e.epoch for e in epochs] == [1, 2] and "val_loss" in epochs[0].data
    steps = tracker.events(run_id, kind="step")
    assert len(steps) == 4 and {r["rank"] for r in steps[0].data["ranks"]} == {0, 1}
    stats = tracker.worker_stats(run_id)
    assert {s.rank for s in stats} == {0, 1} and all(s.samples and s.samples > 0 for s in stats)


@needs_horovod
@pytest.mark.cluster
@pytest.mark.horovod
@pytest.mark.usefixtures("home")
def test_failing_rank_fails_the_run_and_the_next_job_succeeds(cluster_client: Any, db_url: str, tmp_path: Path) -> None:
    from core.errors import JobFailedError

    bad = make_store(tmp_path / "bad.zarr", bad_label_at=3)  # sample 3 is in rank 1's shard (indices 1, 3, 5, 7)
    t0 = time.monotonic()
    with pytest.raises(JobFailedError, match=r"rank 1 of 2 failed: .*label values \[9\] in the train split"):
        _train(_config(bad), cluster_client, db_url, bad)
    assert time.monotonic() - t0 < 60  # rank 0, blocked in the initial broadcast, was stopped, not left hanging
    from db.runs import RunTracker

    failed = RunTracker(db_url).list(kind="train")[0]
    assert failed.status == "failed" and "label values [9]" in failed.error and "rank 1" in failed.error

    good = make_store(tmp_path / "good.zarr")
    tracker, run_id, out = _train(_config(good, epochs=1), cluster_client, db_url, good)
    assert tracker.get(run_id).status == "succeeded" and out["metrics"]["weights_identical"]


@needs_horovod
@pytest.mark.cluster
@pytest.mark.horovod
@pytest.mark.usefixtures("home")
def test_resume_continues_at_the_next_epoch_with_optimizer_state(
    cluster_client: Any, db_url: str, tmp_path: Path
) -> None:
    store = make_store(tmp_path / "s.zarr")
    tracker, first_id, first = _train(_config(store, epochs=2), cluster_client, db_url, store)
    assert first["ranks"][0]["optimizer_iterations"] == 4
    _, second_id, second = _train(_config(store, epochs=3, resume_from=first_id), cluster_client, db_url, store)
    r0 = second["ranks"][0]
    assert r0["start_epoch"] == 3 and r0["epochs_run"] == [3]
    assert r0["optimizer_iterations"] == 6  # Adam's step count came back from the checkpoint (4) + 2 new steps
    assert [h["epoch"] for h in r0["history"]] == [1, 2, 3]  # the earlier epochs' metrics came with it
    assert [e.epoch for e in tracker.events(second_id, kind="epoch")] == [3]
    assert second["metrics"]["weights_identical"]


@pytest.mark.cluster
@pytest.mark.usefixtures("home")
def test_single_scheme_trains_without_horovod_and_stops_early(cluster_client: Any, db_url: str, tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    store = make_store(tmp_path / "s.zarr")
    # learning rate 0 never improves the validation loss: patience 1 stops after epoch 2
    config = _config(store, scheme="single", num_workers=1, epochs=5, patience=1, learning_rate=1e-12, warmup_epochs=0)
    tracker, run_id, out = _train(config, cluster_client, db_url, store)
    m = tracker.get(run_id).metrics
    assert m["num_ranks"] == 1 and m["stopped_early"] and m["epochs_run"] == [1, 2]
    assert out["ranks"][0]["size"] == 1


@pytest.mark.cluster
@pytest.mark.usefixtures("home")
def test_without_validation_samples_every_epoch_runs_and_the_last_is_kept(
    cluster_client: Any, db_url: str, tmp_path: Path
) -> None:
    pytest.importorskip("tensorflow")
    store = make_store(tmp_path / "s.zarr", counts={"train": 8, "test": 2})  # a date split: no validation date
    config = _config(store, scheme="single", num_workers=1, epochs=3, patience=1, learning_rate=1e-12, warmup_epochs=0)
    tracker, run_id, _ = _train(config, cluster_client, db_url, store)
    m = tracker.get(run_id).metrics
    assert m["epochs_run"] == [1, 2, 3] and not m["stopped_early"]  # a flat training loss does not stop it
    assert m["best_epoch"] == 3 and m["best_val"] is None


@pytest.mark.cluster
@pytest.mark.usefixtures("home")
def test_wrong_store_mode_fails_the_run_before_launch(cluster_client: Any, db_url: str, tmp_path: Path) -> None:
    from core.errors import ConfigError
    from db.runs import RunTracker

    store = make_store(tmp_path / "p.zarr", mode="patches", size=5)
    with pytest.raises(ConfigError, match="model 'unet' trains on a store of 'tiles' but .* holds 'patches'"):
        _train(_config(store), cluster_client, db_url, store)
    assert RunTracker(db_url).list(kind="train")[0].status == "failed"


@needs_horovod
@pytest.mark.cluster
@pytest.mark.horovod
@pytest.mark.usefixtures("home")
def test_cancelled_run_stops_its_ranks_and_is_marked_cancelled(
    cluster_client: Any, db_url: str, tmp_path: Path
) -> None:
    import threading

    from core.errors import JobCancelledError
    from db.runs import RunTracker

    store = make_store(tmp_path / "s.zarr")
    config = _config(store, epochs=500, max_steps_per_epoch=None)
    tracker = RunTracker(db_url)
    stop = threading.Event()

    def cancel_after_first_epoch() -> None:  # as a user would, from the run's progress
        while not stop.wait(0.2):
            runs = tracker.list(kind="train")
            if runs and (runs[0].progress_done or 0) >= 1:
                tracker.request_cancel(runs[0].id)
                return

    watcher = threading.Thread(target=cancel_after_first_epoch, daemon=True)
    watcher.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(JobCancelledError, match="cancelled; its 2 rank"):
            _train(config, cluster_client, db_url, store)
    finally:
        stop.set()
    assert time.monotonic() - t0 < 120
    run_id = tracker.list(kind="train")[0].id
    row = tracker.get(run_id)
    assert row.status == "cancelled" and row.progress_done >= 1
    assert Path(tracker.get(run_id).config["store"]).exists()
    assert len(cluster_client.scheduler_info(n_workers=-1)["workers"]) == 2
