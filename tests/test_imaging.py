import numpy as np
import pytest

from common import imaging
from common.data.synth import MORPHOLOGY, make_patient, render_cell


@pytest.fixture
def cell():
    img, mask = render_cell(
        96,
        MORPHOLOGY["aml_mll"]["NPM1"],
        make_patient("P", np.random.default_rng(1)),
        np.random.default_rng(2),
        "smear",
    )
    # the nucleus: the darkest third of the cell
    grey = img.mean(axis=2)
    nucleus = mask & (grey < np.percentile(grey[mask], 33))
    return img, mask, nucleus


@pytest.mark.parametrize("fn", [imaging.hsv_segment, imaging.watershed_segment])
def test_segmentation_keeps_the_nucleus_and_blacks_out_the_background(cell, fn):
    img, truth, nucleus = cell
    out = fn(img)
    segmented, mask = out[0], out[1]
    assert segmented.dtype == np.uint8 and segmented.shape == img.shape and mask.dtype == bool
    assert mask[nucleus].mean() > 0.95
    assert mask[~truth].mean() < 0.1
    assert (segmented[~mask] == 0).all() and (segmented[mask] == img[mask]).all()
    corners = [(0, 0), (0, -1), (-1, 0), (-1, -1)]
    assert not any(mask[c] for c in corners)


def test_hsv_empty_mask_and_bad_input(cell):
    img = cell[0]
    with pytest.raises(ValueError, match="selected no pixel"):
        imaging.hsv_segment(img, lower=(0.0, 0.99, 0.99), upper=(0.01, 1.0, 1.0))
    kept, mask = imaging.hsv_segment(
        img, lower=(0.0, 0.99, 0.99), upper=(0.01, 1.0, 1.0), on_empty="keep"
    )
    assert mask.all() and (kept == img).all()
    with pytest.raises(ValueError, match="RGB uint8"):
        imaging.hsv_segment(img.astype(np.float32))
    with pytest.raises(ValueError, match="lower <= upper"):
        imaging.hsv_segment(img, lower=(0.9, 0, 0), upper=(0.1, 1, 1))


def test_wiener_reduces_noise_and_keeps_dtype():
    rng = np.random.default_rng(0)
    clean = np.tile(np.linspace(50, 200, 64), (64, 1)).astype(np.uint8)
    noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    out = imaging.wiener_filter(noisy)
    assert out.dtype == np.uint8 and out.shape == noisy.shape
    assert (
        np.abs(out.astype(float) - clean).mean() < 0.6 * np.abs(noisy.astype(float) - clean).mean()
    )
    assert imaging.wiener_filter(np.stack([noisy] * 3, axis=2)).shape == (64, 64, 3)
    with pytest.raises(ValueError, match="odd"):
        imaging.wiener_filter(noisy, size=4)


def test_dhe_expands_a_low_contrast_image_and_is_monotone():
    rng = np.random.default_rng(0)
    # two populations squeezed into 100..140: a low-contrast image with a valley between them
    low = np.concatenate([rng.normal(110, 3, 3000), rng.normal(130, 4, 1096)]).clip(100, 140)
    img = low.round().astype(np.uint8).reshape(64, 64)
    out = imaging.dynamic_histogram_equalization(img)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.ptp(out) > 3 * np.ptp(img), "the used intensity range expands"
    mapping, parts = imaging.dhe_mapping(img)
    assert len(parts) >= 2, "the valley between the two populations splits the histogram"
    for lo, hi in parts:
        assert np.all(np.diff(mapping[lo : hi + 1].astype(int)) >= 0), (lo, hi)
    # sub-histograms get disjoint, ordered output ranges
    assert all(mapping[a[1]] <= mapping[b[0]] for a, b in zip(parts, parts[1:]))


def test_dhe_splits_a_sub_histogram_unless_it_is_normal_like():
    """Abdullah-Al-Wadud et al. 2007: a sub-histogram holding at least 68.3% of its pixels within
    mu +/- sigma (as a normal distribution does) is kept; one holding less is split there."""
    levels = np.arange(100)
    flat = np.zeros(256)
    flat[:100] = 10  # uniform: 57.7% within mu +/- sigma -> split
    peaked = np.zeros(256)
    peaked[:101] = np.round(
        1000 * np.exp(-np.abs(np.arange(101) - 50) / 8)
    )  # Laplace-like: ~78% -> kept
    mu, sigma = 49.5, levels.std()
    assert ((levels >= mu - sigma) & (levels <= mu + sigma)).mean() < 0.683
    cuts = imaging._dominance_split(flat, 0, 99)
    assert int(np.ceil(mu - sigma)) in cuts and int(np.floor(mu + sigma)) + 1 in cuts
    assert imaging._dominance_split(peaked, 0, 100) == []
    image = np.repeat(np.arange(100, dtype=np.uint8), 10).reshape(
        40, 25
    )  # the flat histogram as an image
    assert len(imaging.dhe_mapping(image)[1]) > 1


def test_wiener_leaves_flat_areas_and_the_border_alone():
    img = np.zeros((16, 16, 3), np.uint8)
    img[..., 0] = (
        np.arange(16, dtype=np.uint8)[None, :] * 10
    )  # a ramp: its windows are linear, so kept
    img[..., 1] = 90  # constant: SciPy's own zero padding would darken its border
    out = imaging.wiener_filter(img)
    assert (out[..., 1] == 90).all() and (out[..., 2] == 0).all(), (
        "no dark frame, no NaN turned black"
    )
    # inside, every 5 x 5 window of the ramp is linear and its centre equals the window mean: kept
    # (+-1 rounding)
    assert np.abs(out[2:-2, 2:-2, 0].astype(int) - img[2:-2, 2:-2, 0]).max() <= 1


def test_preprocessing_settings_follow_the_parameters_and_the_code(monkeypatch):
    settings = imaging.wiener_dhe_watershed_settings()
    assert settings["params"] == {"wiener_size": 5, "radius": 2, "h": 0.04, "min_size": 64}
    digest = imaging.settings_digest(settings)
    assert digest == imaging.settings_digest(dict(reversed(list(settings.items())))), (
        "stable, order-free"
    )
    changed = imaging.wiener_dhe_watershed_settings(h=0.05)
    assert changed["params"]["h"] == 0.05 and imaging.settings_digest(changed) != digest
    with pytest.raises(ValueError, match=r"no setting \['sigma'\]"):
        imaging.wiener_dhe_watershed_settings(sigma=1)
    # a changed default or step changes the code hash (here: one more step's source)
    monkeypatch.setattr(
        imaging,
        "WIENER_DHE_WATERSHED_CODE",
        (*imaging.WIENER_DHE_WATERSHED_CODE, imaging.hsv_segment),
    )
    assert imaging.settings_digest(imaging.wiener_dhe_watershed_settings()) != digest


def test_dhe_on_rgb_keeps_hue(cell):
    img = cell[0]
    dim = (img.astype(float) * 0.5 + 40).astype(np.uint8)
    out = imaging.dynamic_histogram_equalization(dim)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert out.std() > dim.std()


def test_before_after_figure(cell):
    fig = imaging.before_after([cell[0], cell[0]], imaging.hsv_segment, title="HSV")
    assert len(fig.axes) == 4 and fig.axes[2].get_title() == "image 1: after"
