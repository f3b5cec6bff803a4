"""Image filters and segmentation used by papers 03, 04 and 05.

Conventions: RGB images are ``uint8`` arrays (H, W, 3) in 0-255; grey images are
``uint8`` (H, W). Every function returns arrays of the same dtype and range as
documented, and raises ``ValueError`` for a wrong dtype or shape.

- :func:`hsv_segment` (papers 04, 05): HSV colour-interval mask, small objects
  removed, holes filled, background set to black.
- :func:`wiener_filter` (paper 03): adaptive Wiener denoising (SciPy), per channel.
- :func:`dynamic_histogram_equalization` (paper 03, after Abdullah-Al-Wadud et al.
  2007): no library ships it, so it is implemented here.
- :func:`watershed_segment` (paper 03): marker-controlled watershed on the
  morphological gradient (scikit-image).
- :func:`wiener_dhe_watershed` chains the three (paper 03);
  :func:`wiener_dhe_watershed_settings` and :func:`settings_digest` name what it ran with
  (its parameters and a hash of its code) for cache keys.
- :func:`before_after` makes the before/after figure for any of them.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage, signal
from skimage import color, morphology, segmentation

from common.modelstore import code_version, json_digest

#: HSV thresholds (hue, saturation, value in [0, 1]) that keep stained (purple/blue)
#: cells and drop the pink smear background and red cells. Measured on 1,080 synthetic
#: smear cells (60 patient stains x 9 classes, before hole filling): 0.4% of background
#: pixels kept on average (worst image 9%), 95.5% of cell pixels kept (5th percentile
#: 73%). Real stains differ: tune them on a few images with ``before_after``.
HSV_LOWER = (0.55, 0.12, 0.05)
HSV_UPPER = (0.85, 1.00, 1.00)


def _check_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(
            f"expected an RGB uint8 image (H, W, 3), got dtype {img.dtype} and shape {img.shape}"
        )
    return img


def _check_grey_or_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(
            f"expected a uint8 image (H, W) or (H, W, 3), got dtype {img.dtype} and shape "
            f"{img.shape}"
        )
    return img


# ----------------------------------------------------------------------- HSV mask
def hsv_segment(
    img: np.ndarray,
    *,
    lower: Sequence[float] = HSV_LOWER,
    upper: Sequence[float] = HSV_UPPER,
    min_size: int = 64,
    fill_holes: bool = True,
    on_empty: str = "error",
) -> tuple[np.ndarray, np.ndarray]:
    """Keep pixels whose HSV lies in [lower, upper]; return (segmented RGB uint8, mask bool).

    ``min_size``: connected objects smaller than this many pixels are dropped.
    ``on_empty``: ``error`` (default) raises when nothing is kept; ``keep`` returns
    the image unchanged with a full mask (for streaming, where one blank image
    must not stop a run).
    """
    img = _check_rgb(img)
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    if (
        lower.shape != (3,)
        or upper.shape != (3,)
        or np.any(lower > upper)
        or lower.min() < 0
        or upper.max() > 1
    ):
        raise ValueError(
            f"HSV bounds must be 3 values in [0, 1] with lower <= upper, got {lower} and {upper}"
        )
    hsv = color.rgb2hsv(img)
    mask = np.all((hsv >= lower) & (hsv <= upper), axis=2)
    if min_size > 0:
        mask = morphology.remove_small_objects(mask, max_size=min_size - 1)
    if fill_holes:
        mask = ndimage.binary_fill_holes(mask)
    if not mask.any():
        if on_empty == "keep":
            return img.copy(), np.ones(mask.shape, bool)
        raise ValueError(
            f"HSV thresholds {tuple(lower)}-{tuple(upper)} selected no pixel; widen them "
            "or check the stain"
        )
    return np.where(mask[..., None], img, 0).astype(np.uint8), mask


# ------------------------------------------------------------------------- Wiener


def hsv_segment_hook(*, lower: Sequence[float] = HSV_LOWER, upper: Sequence[float] = HSV_UPPER):
    """A per-image hook for :class:`~common.data.stream.ImageBatches`: HSV segmentation
    that leaves an image unchanged when nothing is selected (one blank cell must not stop a run)."""
    return functools.partial(
        _segment_or_keep, lower=tuple(lower), upper=tuple(upper)
    )  # picklable: a child can train with it


def _segment_or_keep(
    img: np.ndarray, *, lower: Sequence[float], upper: Sequence[float]
) -> np.ndarray:
    return hsv_segment(img, lower=lower, upper=upper, on_empty="keep")[0]


def wiener_filter(img: np.ndarray, *, size: int = 5) -> np.ndarray:
    """Adaptive Wiener filter (``scipy.signal.wiener``, ``size`` x ``size`` windows) per channel;
    uint8 in, uint8 out. The image is mirrored by ``size // 2`` pixels first: SciPy pads with
    zeros, which would darken a frame around every image."""
    img = _check_grey_or_rgb(img)
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd number, got {size}")
    data = img.astype(np.float64)
    pad = size // 2
    channels = [data] if img.ndim == 2 else [data[..., c] for c in range(3)]
    out = []
    with np.errstate(
        divide="ignore", invalid="ignore"
    ):  # flat windows: SciPy then keeps the local mean
        for channel in channels:
            mirrored = np.pad(channel, pad, mode="reflect") if pad else channel
            filtered = signal.wiener(mirrored, (size, size))[
                pad : pad + channel.shape[0], pad : pad + channel.shape[1]
            ]
            out.append(
                np.where(np.isfinite(filtered), filtered, channel)
            )  # a constant channel: NaN -> kept as is
    out = out[0] if img.ndim == 2 else np.stack(out, axis=2)
    return np.clip(out, 0, 255).round().astype(np.uint8)


# ----------------------------------------------------- dynamic histogram equalization
def _dominance_split(hist: np.ndarray, lo: int, hi: int, depth: int = 0) -> list[int]:
    """Cut points inside [lo, hi] (DHE's repartitioning test, Abdullah-Al-Wadud et al. 2007).

    A sub-histogram is normal-like when at least 68.3% of its pixels lie within mu +/- sigma
    of its grey levels (the share a normal distribution holds there); one that holds less has
    a dominating portion and is split at mu - sigma and mu + sigma, and its outer parts are
    tested again. Returns the first grey levels of the new parts after ``lo``.
    """
    levels = np.arange(lo, hi + 1)
    counts = hist[lo : hi + 1]
    total = counts.sum()
    if total == 0 or hi - lo < 4 or depth > 8:
        return []
    mu = (levels * counts).sum() / total
    sigma = np.sqrt(((levels - mu) ** 2 * counts).sum() / total)
    a, b = int(np.ceil(mu - sigma)), int(np.floor(mu + sigma))
    normal_like = counts[(levels >= a) & (levels <= b)].sum() / total >= 0.683
    if normal_like or not (lo < a <= b < hi):
        return []
    return [
        *_dominance_split(hist, lo, a - 1, depth + 1),
        a,
        b + 1,
        *_dominance_split(hist, b + 1, hi, depth + 1),
    ]


def dhe_mapping(grey: np.ndarray, *, x: float = 1.0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """DHE grey-level mapping (256,) uint8 and its sub-histograms [(lo, hi), ...].

    Steps (Abdullah-Al-Wadud et al. 2007): smooth the histogram; split it at its
    local minima; split any sub-histogram whose mu +/- sigma band holds less than the
    normal 68.3% of its pixels at mu - sigma and mu + sigma (:func:`_dominance_split`);
    give sub-histogram i an output range proportional to span_i * (log CF_i)^x (CF = its
    pixel count); equalize each sub-histogram within its range. Global: one mapping for
    the whole image.
    """
    hist = np.bincount(grey.ravel(), minlength=256).astype(np.float64)
    used = np.flatnonzero(hist)
    first, last = int(used[0]), int(used[-1])
    smooth = np.convolve(hist, np.ones(3) / 3, mode="same")
    minima = [
        i
        for i in range(first + 1, last)
        if smooth[i] < smooth[i - 1] and smooth[i] <= smooth[i + 1]
    ]
    bounds = [first, *minima, last + 1]
    cuts: list[int] = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        cuts += [lo, *_dominance_split(hist, lo, hi - 1)]
    edges = sorted(set(cuts)) + [last + 1]
    parts = [(lo, hi - 1) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]
    cf = np.array([hist[lo : hi + 1].sum() for lo, hi in parts])
    span = np.array([hi - lo + 1 for lo, hi in parts], dtype=float)
    factor = span * np.where(cf > 1, np.log(np.maximum(cf, 1)), 0.0) ** x
    ranges = 255.0 * factor / factor.sum() if factor.sum() > 0 else 255.0 * span / span.sum()
    mapping = np.zeros(256, dtype=np.float64)
    start = 0.0
    for (lo, hi), width, count in zip(parts, ranges, cf):
        cdf = np.cumsum(hist[lo : hi + 1]) / max(count, 1)
        mapping[lo : hi + 1] = start + width * cdf
        start += width
    mapping[last + 1 :] = 255.0
    return np.clip(np.round(mapping), 0, 255).astype(np.uint8), parts


def dynamic_histogram_equalization(img: np.ndarray, *, x: float = 1.0) -> np.ndarray:
    """DHE of a grey image, or of the V channel of an RGB image (hue and saturation kept).

    uint8 in, uint8 out, same shape.
    """
    img = _check_grey_or_rgb(img)
    if img.ndim == 2:
        mapping, _ = dhe_mapping(img, x=x)
        return mapping[img]
    hsv = color.rgb2hsv(img)
    v = np.round(hsv[..., 2] * 255).astype(np.uint8)
    mapping, _ = dhe_mapping(v, x=x)
    hsv[..., 2] = mapping[v] / 255.0
    return np.clip(np.round(color.hsv2rgb(hsv) * 255), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------- watershed
def watershed_segment(
    img: np.ndarray, *, radius: int = 2, h: float = 0.04, min_size: int = 64
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Marker-controlled watershed on the morphological gradient (paper 03).

    Steps: grey image; morphological gradient (dilation - erosion, disk of
    ``radius``); morphological filtering (opening then closing by reconstruction);
    markers = regional minima deeper than ``h``; watershed; reconstruct the object
    from the regions that do not touch the border and differ from the border's
    grey level, fill holes and keep the largest component.

    Returns (segmented RGB uint8 with black background, mask bool, watershed labels int).
    """
    img = _check_rgb(img)
    grey = color.rgb2gray(img)
    disk = morphology.disk(radius)
    gradient = morphology.dilation(grey, disk) - morphology.erosion(grey, disk)
    opened = morphology.reconstruction(
        morphology.erosion(gradient, disk), gradient, method="dilation"
    )
    filtered = morphology.reconstruction(
        morphology.dilation(opened, disk), opened, method="erosion"
    )
    markers, _ = ndimage.label(morphology.h_minima(filtered, h))
    labels = segmentation.watershed(filtered, markers)
    border_ids = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    border_mean = grey[np.isin(labels, border_ids)].mean()
    ids = np.setdiff1d(np.unique(labels), border_ids)
    means = ndimage.mean(grey, labels, ids) if ids.size else np.array([])
    keep = ids[np.abs(np.asarray(means) - border_mean) > 0.05]
    mask = ndimage.binary_fill_holes(np.isin(labels, keep))
    mask = morphology.remove_small_objects(mask, max_size=min_size - 1)
    if not mask.any():
        raise ValueError(
            "watershed found no object apart from the background; lower h or check the image"
        )
    lab, n = ndimage.label(mask)
    if n > 1:
        mask = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    return np.where(mask[..., None], img, 0).astype(np.uint8), mask, labels


def wiener_dhe_watershed(
    img: np.ndarray, *, wiener_size: int = 5, radius: int = 2, h: float = 0.04, min_size: int = 64
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Paper 03's pre-processing and segmentation, in its order: Wiener filter, DHE, then
    marker-controlled watershed on the enhanced image.

    Returns (segmented uint8 RGB, the enhanced image before segmentation, found) where
    ``found`` is False when the watershed kept nothing; the enhanced image is then
    returned as the segmented one (one unsegmentable cell must not stop a run; the
    caller counts them).
    """
    enhanced = dynamic_histogram_equalization(wiener_filter(img, size=wiener_size))
    try:
        segmented, _, _ = watershed_segment(enhanced, radius=radius, h=h, min_size=min_size)
    except ValueError:
        return enhanced, enhanced, False
    return segmented, enhanced, True


def wiener_dhe_watershed_hook(
    settings: Mapping[str, Any],
) -> Callable[[np.ndarray], tuple[np.ndarray, dict]]:
    """A per-image transform for :func:`common.data.stream.write_transformed` with ``info=True``:
    :func:`wiener_dhe_watershed` with ``settings["params"]``, returning (segmented image,
    ``{"watershed_found": bool}``) so that the fallbacks are kept next to the cached images."""
    params = dict(settings["params"])

    def transform(img: np.ndarray) -> tuple[np.ndarray, dict]:
        segmented, _, found = wiener_dhe_watershed(img, **params)
        return segmented, {"watershed_found": bool(found)}

    return transform


# ------------------------------------------------------------------------ figures
def before_after(
    images: Sequence[np.ndarray],
    fn: Callable[[np.ndarray], np.ndarray | tuple],
    *,
    title: str = "",
    captions: Sequence[str] | None = None,
):
    """A two-row figure: the images, then ``fn`` applied to each (first output if a tuple)."""
    from common.plots import plot_image_grid

    after = []
    for img in images:
        out = fn(img)
        after.append(out[0] if isinstance(out, tuple) else out)
    names = (
        list(captions) if captions is not None else [f"image {i + 1}" for i in range(len(images))]
    )
    return plot_image_grid(
        [*images, *after],
        captions=[f"{c}: before" for c in names] + [f"{c}: after" for c in names],
        ncols=len(images),
        title=title,
    )


# ----------------------------------------------------------------------- cache keys
#: the code that decides what :func:`wiener_dhe_watershed` writes (hashed into its settings)
WIENER_DHE_WATERSHED_CODE = (
    _check_rgb,
    _check_grey_or_rgb,
    wiener_filter,
    _dominance_split,
    dhe_mapping,
    dynamic_histogram_equalization,
    watershed_segment,
    wiener_dhe_watershed,
)


def wiener_dhe_watershed_settings(**overrides: Any) -> dict:
    """What :func:`wiener_dhe_watershed` runs with: ``{"steps", "params", "code"}``.

    ``params`` are the function's own keyword defaults (read from its signature, so a changed
    default changes them) with ``overrides`` applied; ``code`` hashes the source of every step
    (:data:`WIENER_DHE_WATERSHED_CODE`), so a changed constant inside a step changes it too.
    Key a cache of its outputs by :func:`settings_digest` of this dict.
    """
    defaults = {
        name: p.default
        for name, p in inspect.signature(wiener_dhe_watershed).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValueError(
            f"wiener_dhe_watershed has no setting {unknown}; choose from {sorted(defaults)}"
        )
    return {
        "steps": "wiener+dhe+watershed",
        "params": {**defaults, **overrides},
        "code": code_version(*WIENER_DHE_WATERSHED_CODE),
    }


def settings_digest(settings: Mapping[str, Any]) -> str:
    """A stable 12-character hash of JSON-able settings (key order does not matter)."""
    return json_digest(settings, length=12)
