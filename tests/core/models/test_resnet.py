"""ResNet-50 multi-label: the builder, the paper's learning-rate recipe, and 2-rank training on a tiny store."""

from __future__ import annotations

import importlib.util
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
needs_horovod = pytest.mark.skipif(importlib.util.find_spec("horovod") is None, reason="horovod is not installed")


def make_store(
    path: Path, mode: str = "tiles", counts: dict[str, int] | None = None, size: int = 16, bands: int = 4, seed: int = 0
) -> Path:
    """A tiny store (core/tilestore.py layout) whose tiles hold 1 or 2 classes in halves, learnable from the bands.

    tiles: x (N, size, size, bands) uint16, y (N, size, size) with ~10 % unlabelled pixels; patches: y (N,) = the
    class of the centre pixel.
    """
    rng = np.random.default_rng(seed)
    counts = counts or {"train": 8, "val": 4, "test": 2}
    samples = {}
    ids = np.array([c["id"] for c in CLASSES])
    for split, n in counts.items():
        first, second = rng.integers(0, 3, size=n), rng.integers(0, 3, size=n)
        cls = np.repeat(first[:, None, None], size, 1).repeat(size, 2)
        cls[:, size // 2 :, :] = second[:, None, None]
        x = (rng.normal(100, 10, size=(n, size, size, bands)) + 60 * np.eye(bands)[cls % bands]).astype(np.uint16)
        y = ids[cls].astype(np.uint8)
        if mode == "tiles":
            y[rng.random(y.shape) < 0.1] = 0
        else:
            y = y[:, size // 2, size // 2].copy()
        samples[split] = (x, y)
    return write_store(path, samples, mode, CLASSES)


# ---- the builder -------------------------------------------------------------------------------------------------
def test_resnet50_at_tiny_width_gives_independent_class_probabilities() -> None:
    keras = pytest.importorskip("keras")
    from core.models import build_resnet50, get_model

    model = build_resnet50((16, 16, 5), num_classes=4, width=2)
    out = model.predict(np.random.default_rng(0).normal(size=(3, 16, 16, 5)).astype("float32"), verbose=0)
    assert out.shape == (3, 4) and np.all((out >= 0) & (out <= 1))
    assert not np.allclose(out.sum(-1), 1.0)  # sigmoids, not a softmax
    convs = [la for la in model.layers if isinstance(la, keras.layers.Conv2D)]
    assert len(convs) == 1 + 16 * 3 + 4  # stem, 3 convs in each of 3+4+6+3 blocks, 4 projection shortcuts
    assert len(model.losses) == len(convs)  # L2 on every convolution
    bns = [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert len(bns) == len(convs)
    names = [la.name for la in model.layers]
    assert names[-2:] == ["dropout", "probabilities"] and model.get_layer("dropout").rate == 0.5
    assert get_model("resnet50").task == "multilabel" and get_model("resnet50").store_mode == "tiles"


def test_resnet50_at_full_width_is_the_real_resnet50() -> None:
    pytest.importorskip("keras")
    from core.models import build_resnet50

    model = build_resnet50((224, 224, 3), num_classes=1000)  # built, not run
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 25_557_032  # torchvision's resnet50 parameters (no conv biases): the same network
    assert model.get_layer("stage4_block3_out").output.shape == (None, 7, 7, 2048)


def test_resnet50_takes_any_bands_and_several_modalities_and_refuses_bad_sizes() -> None:
    pytest.importorskip("keras")
    from core.models import build_resnet50

    m = build_resnet50({"rgb": (32, 32, 3), "hsi": (8, 8, 48)}, num_classes=7, width=1, dropout=0.0, l2=0.0)
    out = m.predict([np.zeros((2, 32, 32, 3), "float32"), np.zeros((2, 8, 8, 48), "float32")], verbose=0)
    assert out.shape == (2, 7) and not m.losses and "dropout" not in [la.name for la in m.layers]
    assert build_resnet50((5, 5, 13), 2, width=1).output_shape == (None, 2)  # tiny tiles end at 1x1
    with pytest.raises(ValueError, match="dropout=1.0"):
        build_resnet50((16, 16, 3), 2, dropout=1.0)


# ---- the recipe --------------------------------------------------------------------------------------------------
def test_resnet_default_rate_is_0_1_k_n_over_256_with_warmup_and_scaled_step_decay() -> None:
    from core.models import get_model
    from core.training.loop import base_learning_rate, learning_rate

    cfg = TrainJobConfig(
        scene="s",
        store="x",
        scheme="data_parallel",
        num_workers=2,
        batch_size=32,
        epochs=20,
        model="resnet50",
        **get_model("resnet50").recipe.fields,
    )
    assert base_learning_rate(cfg) == pytest.approx(0.1 * 32 / 256)
    lr = {e: learning_rate(cfg, 2, e * 10, steps_per_epoch=10) for e in range(20)}
    assert lr[0] == pytest.approx(0.0125) and lr[5] == pytest.approx(0.1 * 2 * 32 / 256)  # warm-up to k*n
    # decay x0.1 at 30/60/80 % of 20 epochs = epochs 6, 12, 16
    assert [lr[e] / lr[5] for e in (5, 6, 11, 12, 15, 16, 19)] == pytest.approx([1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    mine = cfg.model_copy(update={"learning_rate": 0.02})
    assert base_learning_rate(mine) == 0.02  # a rate the user chose is kept
    unet = TrainJobConfig(scene="s", store="x", model="unet")
    assert base_learning_rate(unet) == unet.learning_rate


# ---- real ranks --------------------------------------------------------------------------------------------------
@needs_horovod
@pytest.mark.cluster
@pytest.mark.horovod
@pytest.mark.usefixtures("home")
@pytest.mark.parametrize("scheme", ["data_parallel", "heterogeneous"])
def test_two_rank_resnet50_multilabel_ends_with_identical_weights(
    scheme: str, cluster_client: Any, db_url: str, tmp_path: Path
) -> None:
    from core.models.bundle import load_bundle
    from tests.runs import train_run

    store = make_store(tmp_path / "s.zarr")
    extra: dict[str, Any] = {"worker_speeds": (1.0, 3.0)} if scheme == "heterogeneous" else {}
    config = TrainJobConfig(
        scene="tiny",
        store=str(store),
        model="resnet50",
        model_params={"width": 2},
        scheme=scheme,
        num_workers=2,
        epochs=2,
        batch_size=2,
        max_steps_per_epoch=2,
        log_every=1,
        optimizer="sgd_nesterov",
        mixup_alpha=0.2,
        label_fraction=0.2,
        **extra,
    )
    tracker, run_id, out = train_run(config, cluster_client, db_url, store)

    ranks = out["ranks"]
    assert ranks[0]["checksum"] == ranks[1]["checksum"]  # includes the batch-norm moving statistics
    assert [r["optimizer_iterations"] for r in ranks] == [4, 4]
    m = tracker.get(run_id).metrics
    final = m["final"]
    for key in ("micro_f1", "macro_f1", "val_micro_f1", "val_macro_f1", "val_micro_precision", "val_macro_recall"):
        assert 0 <= final[key] <= 1
    assert set(final["val_per_class_f1"]) == {"1", "2", "5"} and np.isfinite(final["loss"])
    assert "val_macro_f1" in tracker.events(run_id, kind="epoch")[-1].data
    if scheme == "heterogeneous":
        assert m["heterogeneous"]["shares"] == [1, 3] and m["batch_per_rank"] == [1, 3]
    model, meta = load_bundle(Path(tracker.get(run_id).artifacts["checkpoint"]))
    assert meta.task == "multilabel" and meta.class_ids == (1, 2, 5) and model.output_shape == (None, 3)
    moving = model.get_layer("stem_bn").moving_mean.numpy()
    assert np.abs(moving).max() > 0  # the statistics moved during training (and are still equal on both ranks)
    assert {r.rank for r in tracker.worker_stats(run_id)} == {0, 1}


# ---- test-split scores of a trained bundle -----------------------------------------------------------------------
def test_trained_resnet50_bundle_scores_its_test_tiles(tmp_path: Path) -> None:
    """One training step in this process (scheme ``single``), then evaluate_bundle on the saved bundle agrees with
    the loaded model's own predictions scored by scikit-learn."""
    pytest.importorskip("keras")
    from sklearn.metrics import precision_recall_fscore_support

    from core.evaluation.job import evaluate_bundle
    from core.models.bundle import load_bundle
    from core.tasks.multilabel import targets
    from core.training.loop import train_rank

    store = make_store(tmp_path / "s.zarr", counts={"train": 4, "val": 2, "test": 5})
    config = TrainJobConfig(
        scene="tiny",
        store=str(store),
        model="resnet50",
        model_params={"width": 1},
        epochs=1,
        batch_size=2,
        max_steps_per_epoch=1,
        label_fraction=0.2,
    )
    train_rank(config.model_dump(mode="json"), str(store), str(tmp_path / "run"))
    bundle = tmp_path / "run" / "model"
    got = evaluate_bundle(bundle, store, label_fraction=config.label_fraction)  # one batch, as predicted below

    model, meta = load_bundle(bundle)
    xs, y = TileStore(store).read("test", np.arange(5))
    prob = np.asarray(model.predict_on_batch(meta.normalise("s2", xs["s2"])))
    t, p = targets(y, meta.class_ids, 0.2), (prob >= 0.5).astype(int)
    for avg in ("micro", "macro"):
        want = precision_recall_fscore_support(t, p, average=avg, zero_division=0)[:3]
        assert (got[f"{avg}_precision"], got[f"{avg}_recall"], got[f"{avg}_f1"]) == pytest.approx(want)
    assert got["samples"] == 5 and set(got["per_class"]) == {"1", "2", "5"}
    assert got["per_class"]["5"]["name"] == "urban" and got["task"] == "multilabel"
