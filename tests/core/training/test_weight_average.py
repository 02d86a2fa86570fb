"""Weight averaging (core/weight_average.py): the running average itself, and on real Horovod ranks."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.errors import ConfigError
from core.training.config import TrainJobConfig
from core.training.weight_average import RAW_FILE, WeightAverage


def _model() -> Any:
    import keras

    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dropout(0.5)])


def test_average_follows_the_weights_and_swaps_back(tmp_path: Path) -> None:
    model = _model()
    w0 = [w.numpy() for w in model.trainable_weights]
    avg = WeightAverage(model, 0.75)
    w1 = [a + 4.0 for a in w0]
    for w, a in zip(model.trainable_weights, w1):
        w.assign(a)
    avg.update(0)  # step 0: the ramp (1 + 0) / (10 + 0) = 0.1 caps the decay
    expected = [0.1 * a + 0.9 * b for a, b in zip(w0, w1)]
    assert all(np.allclose(a.numpy(), e) for a, e in zip(avg.variables, expected))
    for w, a in zip(model.trainable_weights, w0):
        w.assign(a)
    avg.update(1000)  # later steps: the decay itself
    expected = [0.75 * e + 0.25 * a for e, a in zip(expected, w0)]
    assert all(np.allclose(a.numpy(), e) for a, e in zip(avg.variables, expected))
    avg.swap()  # the model holds the average, the average holds the raw weights
    assert all(np.allclose(w.numpy(), e) for w, e in zip(model.trainable_weights, expected))
    avg.save_raw(tmp_path)
    avg.swap()
    assert all(np.array_equal(w.numpy(), a) for w, a in zip(model.trainable_weights, w0))

    # a checkpoint: the bundle's (averaged) weights are loaded into a fresh model, then restore() puts them in the
    # average and the raw weights back into the model
    fresh = _model()
    for w, e in zip(fresh.trainable_weights, expected):
        w.assign(e)
    again = WeightAverage(fresh, 0.75)
    again.restore(tmp_path)
    assert all(np.array_equal(w.numpy(), a) for w, a in zip(fresh.trainable_weights, w0))
    assert all(np.allclose(a.numpy(), e) for a, e in zip(again.variables, expected))


def test_decay_outside_the_unit_interval_and_model_parallel_are_refused() -> None:
    with pytest.raises(ConfigError, match="ema_decay 1.0 is outside"):
        WeightAverage(_model(), 1.0)
    with pytest.raises(ValueError, match="ema_decay .* is not available for scheme 'model_parallel'"):
        TrainJobConfig(scene="s", store="x", model="two_stream", scheme="model_parallel", num_workers=3, ema_decay=0.99)


@pytest.mark.skipif(importlib.util.find_spec("horovod") is None, reason="horovod is not installed")
@pytest.mark.cluster
@pytest.mark.horovod
@pytest.mark.usefixtures("home")
def test_ranks_keep_identical_weights_and_the_bundle_holds_the_average(
    cluster_client: Any, db_url: str, tmp_path: Path
) -> None:
    import keras

    from tests.core.training.test_loop import _config, _train, make_store

    store = make_store(tmp_path / "s.zarr")
    config = _config(store, epochs=2, ema_decay=0.9, learning_rate=0.01)
    tracker, run_id, out = _train(config, cluster_client, db_url, store)
    assert out["metrics"]["weights_identical"]
    last = Path(out["artifacts"]["checkpoint"])
    with np.load(last / RAW_FILE) as z:
        raw = [z[f"arr_{i}"] for i in range(len(z.files))]
    bundle = keras.models.load_model(last / "model.keras", compile=False)
    averaged = [w.numpy() for w in bundle.trainable_weights]
    assert len(raw) == len(averaged)
    assert max(float(np.abs(r - a).max()) for r, a in zip(raw, averaged)) > 1e-6  # the bundle is not the raw model
    # what --resume does with these files: the raw weights back into the model, the bundle's into the average
    average = WeightAverage(bundle, 0.9)
    average.restore(last)
    assert all(np.array_equal(w.numpy(), r) for w, r in zip(bundle.trainable_weights, raw))
    assert all(np.array_equal(a.numpy(), v) for a, v in zip(average.variables, averaged))

    # resume: the raw weights go back into training, the average into the average
    _, _, second = _train(
        _config(store, epochs=3, ema_decay=0.9, learning_rate=0.01, resume_from=run_id), cluster_client, db_url, store
    )
    assert second["ranks"][0]["epochs_run"] == [3] and second["metrics"]["weights_identical"]
