"""patch_fcn: per-patch output shapes, the dense twin gives every pixel its own patch's class, bad inputs refused."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from core.models.patch_fcn import build_patch_fcn, dense_model, patch_side, predict_dense  # noqa: E402


@pytest.mark.parametrize("patch", [3, 5, 9, 25])
def test_patch_fcn_classifies_centre_pixel(patch: int) -> None:
    model = build_patch_fcn((patch, patch, 4), num_classes=3, width=4)
    out = model.predict(np.random.rand(2, patch, patch, 4).astype("float32"), verbose=0)
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)
    assert patch_side(model) == patch == patch_side(dense_model(model))


@pytest.mark.parametrize("patch", [5, 13])
def test_dense_twin_equals_every_patch(patch: int) -> None:
    keras.utils.set_random_seed(7)
    model = build_patch_fcn((patch, patch, 3), num_classes=4, width=4, dropout=0.2)
    x = np.random.default_rng(0).normal(size=(11 + patch - 1, 17 + patch - 1, 3)).astype(np.float32)
    dense = predict_dense(dense_model(model), x)
    patches = np.lib.stride_tricks.sliding_window_view(x, (patch, patch), axis=(0, 1)).transpose(0, 1, 3, 4, 2)
    per_patch = np.asarray(model.predict_on_batch(patches.reshape(-1, patch, patch, 3))).reshape(11, 17, 4)
    assert dense.shape == (11, 17, 4)
    np.testing.assert_allclose(dense, per_patch, atol=1e-5)
    assert np.array_equal(dense.argmax(-1), per_patch.argmax(-1))


def test_patch_fcn_refuses_even_patch_and_several_modalities() -> None:
    with pytest.raises(ValueError, match="odd side >= 3, got 8 x 8"):
        build_patch_fcn((8, 8, 3), 3)
    with pytest.raises(ValueError, match=r"patch_fcn takes one modality, got \['rgb', 'hsi'\]"):
        build_patch_fcn({"rgb": (9, 9, 3), "hsi": (3, 3, 8)}, 3)


def test_only_patch_fcn_has_a_dense_twin() -> None:
    from core.models.patch_cnn import build_patch_cnn

    with pytest.raises(ValueError, match="'patch_cnn' is not a patch_fcn; only patch_fcn models can be evaluated"):
        dense_model(build_patch_cnn((5, 5, 2), 2, width=2))
