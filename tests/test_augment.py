import numpy as np
import pytest

from common.augment import batch_hook, build_augmenter

pytestmark = pytest.mark.backend


def batch():
    rng = np.random.default_rng(0)
    return (rng.random((4, 32, 32, 3)) * 255).astype(np.float32)


def test_augmentation_keeps_shape_and_dtype_and_changes_pixels():
    x = batch()
    out = batch_hook(build_augmenter(seed=1))(x)
    assert out.shape == x.shape and out.dtype == np.float32
    assert not np.allclose(out, x)


def test_augmentation_is_deterministic_under_a_seed():
    x = batch()
    a, b, c = (batch_hook(build_augmenter(seed=s)) for s in (3, 3, 4))
    np.testing.assert_allclose(a(x), b(x), atol=1e-4)
    assert not np.allclose(a(x), c(x))


def test_augmentation_bad_settings():
    with pytest.raises(ValueError, match="flip"):
        build_augmenter(flip="diagonal")
    with pytest.raises(ValueError, match="switched off"):
        build_augmenter(rotation_deg=0, flip=None, zoom=0, translate=0)


def test_independent_axis_scaling_changes_the_aspect_ratio():
    """A centred square scaled with one factor per axis stops being square (paper 04: X and Y
    axes)."""
    x = np.zeros((16, 64, 64, 3), np.float32)
    x[:, 24:40, 24:40] = 255.0

    def extents(out):
        mask = out[..., 0] > 127
        return mask.any(axis=2).sum(axis=1), mask.any(axis=1).sum(axis=1)  # rows, columns covered

    rows, cols = extents(
        batch_hook(
            build_augmenter(
                rotation_deg=0, flip=None, zoom=0.3, translate=0, seed=3, zoom_axes_independent=True
            )
        )(x)
    )
    assert (rows != cols).any()
    rows, cols = extents(
        batch_hook(build_augmenter(rotation_deg=0, flip=None, zoom=0.3, translate=0, seed=3))(x)
    )
    assert (np.abs(rows - cols) <= 1).all(), (
        "one factor for both axes keeps the square (1 px of resampling)"
    )
