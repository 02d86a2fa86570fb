"""Window predictors are declared by tasks and models (core/tasks) and given their Dask tasks by the inference layer."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.tasks.predictors import DENSE, DENSE_PATCH, PER_PIXEL, WindowPredictor


def test_the_inference_layer_implements_every_built_in_predictor() -> None:
    from core.inference import windows

    assert (DENSE.window, DENSE.chunk) == (windows.predict_dense_window, windows.predict_dense_chunk)
    assert (PER_PIXEL.window, PER_PIXEL.chunk) == (windows.predict_patch_window, None)
    assert (DENSE_PATCH.window, DENSE_PATCH.block) == (windows.predict_patch_dense_window, 256)
    assert DENSE.reads_context and not PER_PIXEL.reads_context and not DENSE_PATCH.reads_context


def test_a_predictor_nobody_implements_says_what_to_import() -> None:
    with pytest.raises(ConfigError, match="window predictor 'sketch' has no Dask tasks: import the module"):
        WindowPredictor("sketch", reads_context=False).window  # noqa: B018


def test_the_baselines_register_their_predictor_and_bundle_format(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.baselines.bundle import BASELINE_PREDICTOR, META_FILE, load_baseline_meta, predict_baseline_window
    from core.models.bundle import bundle_format

    assert BASELINE_PREDICTOR.window is predict_baseline_window
    assert bundle_format(tmp_path) is None  # a folder without the marker: a Keras bundle (or nothing)
    (tmp_path / META_FILE).write_text("{}")
    fmt = bundle_format(tmp_path)
    assert fmt is not None and fmt.predictor is BASELINE_PREDICTOR and fmt.load_meta is load_baseline_meta
