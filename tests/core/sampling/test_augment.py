"""Random training windows (core/sampling/augment.py): inside their tile, on the pooling grid, over labelled pixels."""

from __future__ import annotations

import numpy as np

from core.sampling.augment import dihedral, random_windows, window_side


def test_window_side_is_three_quarters_on_the_pooling_grid() -> None:
    assert window_side(64, 16) == 48 and window_side(64, 8) == 48 and window_side(32, 4) == 24
    assert window_side(32, 16) is None  # 16 px would be one pooling cell: whole tiles instead
    assert window_side(16, 8) is None


def test_random_windows_stay_inside_their_labelled_tiles() -> None:
    rng = np.random.default_rng(0)
    b, h, side, align = 32, 64, 48, 16
    x = rng.normal(size=(b, h, h, 3)).astype(np.float32)
    y = np.full((b, h, h), -1, dtype=np.int32)
    for i in range(b):  # sparse labels: one 6 x 6 labelled patch per tile, somewhere
        r, c = rng.integers(0, h - 6, size=2)
        y[i, r : r + 6, c : c + 6] = i % 4
    seen = set()
    for _ in range(5):
        (xw,), yw, offsets = random_windows([x], y, side, align, rng)
        assert xw.shape == (b, side, side, 3) and yw.shape == (b, side, side)
        for i, (r, c) in enumerate(offsets):
            assert r % align == 0 and c % align == 0 and 0 <= r <= h - side and 0 <= c <= h - side
            np.testing.assert_array_equal(xw[i], x[i, r : r + side, c : c + side])  # pixels of its own tile
            np.testing.assert_array_equal(yw[i], y[i, r : r + side, c : c + side])
            seen.add((int(r), int(c)))
        assert ((yw >= 0).sum(axis=(1, 2)) > 0).all()  # every window holds labelled pixels of its tile
    assert len(seen) > 2  # offsets differ from step to step


def test_dihedral_draws_a_transform_per_sample_the_same_for_every_modality() -> None:
    from core.sampling.augment import dihedral

    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 8, 8, 2))
    y = np.arange(16 * 64).reshape(16, 8, 8)
    (a, b), ty = dihedral([x, 2 * x], y, True, rng)
    np.testing.assert_array_equal(b, 2 * a)  # every modality the same transform
    views = []
    for i in range(16):  # each sample is one of the eight transforms of itself, labels with it
        cands = [np.rot90(y[i], k)[:, ::-1] if f else np.rot90(y[i], k) for k in range(4) for f in (False, True)]
        j = next(j for j, c in enumerate(cands) if np.array_equal(c, ty[i]))
        k, f = divmod(j, 2)
        t = np.rot90(x[i], k, axes=(0, 1))
        np.testing.assert_array_equal(a[i], t[:, ::-1] if f else t)
        views.append(j)
    assert len(set(views)) > 3  # not one draw for the whole batch


def test_model_parallel_ranks_draw_the_same_transforms_whichever_half_of_the_batch_they_hold() -> None:
    """A model-parallel image rank holds the patches and no labels, the fusion rank the labels and no patches: both
    draw the same transforms from the same seed, and the image rank's patches are transformed, never left
    uninitialised (the defect: the batch size was taken from the empty labels)."""
    x = np.arange(6 * 5 * 5 * 2, dtype=np.float32).reshape(6, 5, 5, 2)
    labels = np.arange(6, dtype=np.int32)
    (image_rank,), none = dihedral([x], np.zeros(0, np.int32), False, np.random.default_rng(3))
    empty, fusion_labels = dihedral([], labels, False, np.random.default_rng(3))
    (both,), both_labels = dihedral([x], labels, False, np.random.default_rng(3))
    assert none.size == 0 and empty == [] and np.array_equal(fusion_labels, labels)
    np.testing.assert_array_equal(image_rank, both)  # the same draws as a rank holding the whole batch
    for i in range(6):  # each sample is one of the eight dihedral transforms of itself
        assert any(
            np.array_equal(image_rank[i], t) for k in range(4) for t in (np.rot90(x[i], k), np.rot90(x[i], k)[:, ::-1])
        )
