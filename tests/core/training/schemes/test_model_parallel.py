"""Model parallelism of the two-stream CNN on 3 real Horovod ranks in a 3-worker LocalCluster."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.tiling.store import StoreInfo, TileStore

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("horovod") is None, reason="horovod is not installed"),
    pytest.mark.cluster,
    pytest.mark.horovod,
]

CLASSES = (
    {"id": 1, "name": "water", "color": "#0000ff"},
    {"id": 2, "name": "forest", "color": "#00ff00"},
    {"id": 5, "name": "urban", "color": "#ff0000"},
)
# A 9 px RGB patch and its 3 px HSI patch (1/3 resolution). HSI first: the whole model's input order differs from
# the rank order (rank 0 = RGB), which the fusion rank must undo before concatenating.
SHAPES = {"hsi": (3, 3, 5), "rgb": (9, 9, 3)}
PARAMS: dict[str, Any] = {"width": 2, "dense": [8], "blocks": 2, "dropout": 0.0}


@pytest.fixture(scope="module")
def mp_client() -> Iterator[Any]:
    """A real LocalCluster with the 3 worker processes a model-parallel job needs (1 thread each)."""
    import dask
    from dask.distributed import Client, LocalCluster

    from core.distributed.cluster import worker_env

    cluster = LocalCluster(
        n_workers=3,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        memory_limit="3GiB",
        env=worker_env(1),
    )
    # The client refreshes its cached scheduler info every 2 s with no per-worker entries; when that lands between
    # the launcher's scheduler_info(n_workers=-1) call and its return, a live rank's worker looks lost (see report).
    with dask.config.set({"distributed.client.scheduler-info-interval": "1h"}):
        client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def make_mm_store(path: Path, counts: dict[str, int] | None = None, seed: int = 0) -> Path:
    """A tiny 2-modality patch store in the core/tilestore.py layout; the class shows in both modalities' bands."""
    rng = np.random.default_rng(seed)
    counts = counts or {"train": 12, "val": 6, "test": 5}
    store = TileStore.create(path)
    ids = np.array([c["id"] for c in CLASSES])
    for split, n in counts.items():
        store.create_split(split, n, {m: (*s, "uint16") for m, s in SHAPES.items()}, ())
        cls = rng.integers(0, len(ids), size=n)
        for m, (h, w, c) in SHAPES.items():
            x = rng.normal(100, 10, size=(n, h, w, c)) + 60 * np.eye(c)[cls % c][:, None, None, :]
            store.array(split, f"x_{m}")[...] = x.astype(np.uint16)
        store.array(split, "y")[...] = ids[cls].astype(np.uint8)
        store.array(split, "valid")[...] = np.ones(n, bool)
    stats = {m: {"mean": [110.0] * s[2], "std": [25.0] * s[2]} for m, s in SHAPES.items()}
    store.set_info(
        StoreInfo(
            scene={"name": "tiny"},
            config={},
            mode="patches",
            modalities=("hsi", "rgb"),
            sample_size={m: s[0] for m, s in SHAPES.items()},
            classes=CLASSES,
            dates=(None,),
            counts=counts,
            band_stats=stats,
        )
    )
    return path


@pytest.mark.parametrize("split", ["baseline", "optimized"])
def test_split_forward_and_backward_equal_the_single_process_model(split: str, mp_client: Any) -> None:
    tf = pytest.importorskip("tensorflow")
    import keras

    from core.distributed.launcher import run_horovod
    from core.models.two_stream import activation_bytes, build_two_stream, weights_by_layer
    from core.training.schemes.model_parallel import mp_gradients_rank

    keras.utils.set_random_seed(3)
    full = build_two_stream(SHAPES, num_classes=3, **PARAMS)
    rng = np.random.default_rng(4)
    batch = {m: rng.normal(size=(6, *s)).astype("float32") for m, s in SHAPES.items()}
    batch["y"] = np.array([0, 1, 2, 2, 1, 0], np.int32)
    with tf.GradientTape() as tape:
        probs = full([batch[m] for m in SHAPES], training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(batch["y"], probs))
    grads = {v.path: g.numpy() for v, g in zip(full.trainable_variables, tape.gradient(loss, full.trainable_variables))}

    ranks = run_horovod(
        mp_client,
        mp_gradients_rank,
        num_ranks=3,
        timeout=240,
        kwargs=dict(
            full_weights=weights_by_layer(full),
            input_shapes=SHAPES,
            num_classes=3,
            model_params=PARAMS,
            split=split,
            batch=batch,
        ),
    )

    assert [r["role"] for r in ranks] == ["rgb", "hsi", "fusion"]
    assert ranks[2]["loss"] == pytest.approx(float(loss), rel=1e-5)
    split_grads = {k: v for r in ranks for k, v in r["grads"].items()}
    assert sorted(split_grads) == sorted(grads)  # every variable of the whole model, on exactly one rank
    for path, g in grads.items():
        np.testing.assert_allclose(split_grads[path], g, rtol=1e-4, atol=1e-5, err_msg=path)
    assert np.abs(split_grads["rgb_conv1/kernel"]).sum() > 0  # the gradient really reached the branch ranks
    # traffic, counted from the tensors: each branch sends its activations and gets their gradient back
    sent = [activation_bytes(SHAPES[m], split, 6, PARAMS["width"], PARAMS["blocks"]) for m in ("rgb", "hsi")]
    assert [(r["bytes_sent"], r["bytes_recv"]) for r in ranks] == [
        (sent[0], sent[0]),
        (sent[1], sent[1]),
        (sum(sent), sum(sent)),
    ]


@pytest.mark.usefixtures("home")
def test_model_parallel_training_writes_a_bundle_that_predicts(mp_client: Any, db_url: str, tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from core.models.bundle import load_bundle
    from core.models.two_stream import activation_bytes
    from core.training.config import TrainJobConfig
    from core.training.schemes.model_parallel import time_inference
    from tests.runs import train_run

    store = make_mm_store(tmp_path / "mm.zarr")
    config = TrainJobConfig(
        scene="tiny",
        store=str(store),
        model="two_stream",
        model_params=PARAMS,
        scheme="model_parallel",
        mp_split="optimized",
        num_workers=3,
        epochs=2,
        batch_size=4,
        log_every=1,
        max_steps_per_epoch=2,
        warmup_epochs=0,
    )
    tracker, run_id, out = train_run(config, mp_client, db_url, store)

    row = tracker.get(run_id)
    assert row.status == "succeeded" and row.metrics["epochs_run"] == [1, 2]
    assert row.metrics["weights_identical"]  # every rank reports the checksum of the same assembled model
    assert [r["role"] for r in out["ranks"]] == ["rgb", "hsi", "fusion"]
    assert [r["optimizer_iterations"] for r in out["ranks"]] == [4, 4, 4]  # each rank updated its own part
    assert np.isfinite(row.metrics["final"]["loss"]) and row.metrics["final"]["val_loss"] is not None
    assert [e.epoch for e in tracker.events(run_id, kind="epoch")] == [1, 2]
    assert len(tracker.events(run_id, kind="step")) == 4

    model, meta = load_bundle(row.artifacts["model"])
    assert meta.model == "two_stream" and meta.modalities == ("hsi", "rgb") and meta.class_ids == (1, 2, 5)
    xs, _ = TileStore(store).read("test", np.arange(5))
    probs = model.predict([meta.normalise(m, xs[m]) for m in meta.modalities], verbose=0)
    assert probs.shape == (5, 3) and np.allclose(probs.sum(-1), 1.0, atol=1e-5)

    stats = [s for s in tracker.worker_stats(run_id) if s.data["epoch"] == 2]
    per_step = {s.rank: (s.data["bytes_per_step_sent"], s.data["bytes_per_step_recv"]) for s in stats}
    act = {m: activation_bytes(SHAPES[m], "optimized", 4, PARAMS["width"], PARAMS["blocks"]) for m in SHAPES}
    assert per_step == {
        0: (act["rgb"], act["rgb"]),
        1: (act["hsi"], act["hsi"]),
        2: (act["rgb"] + act["hsi"], act["rgb"] + act["hsi"]),
    }
    assert all(s.peak_mem_bytes > 50e6 and s.cpu_percent > 0 and s.data["role"] for s in stats)

    # model-parallel inference with either split gives the whole model's classes
    full_ids = np.asarray(meta.class_ids)[probs.argmax(-1)]
    for split in ("baseline", "optimized"):
        timed = time_inference(
            mp_client, row.artifacts["model"], store, mp_split=split, n_patches=10, batch_size=4, timeout=240
        )
        np.testing.assert_array_equal(timed["ranks"][2]["class_ids"], np.resize(full_ids, 10))
        assert timed["seconds"] > 0 and timed["ranks"][0]["bytes_sent"] > 0
    dp = time_inference(
        mp_client, row.artifacts["model"], store, scheme="data_parallel", n_patches=10, batch_size=4, timeout=240
    )
    assert sum(r["patches"] for r in dp["ranks"]) == 10
