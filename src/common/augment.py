"""On-the-fly augmentation with Keras preprocessing layers (backend-agnostic).

Papers 04 and 05 rotate, flip, scale (0.9-1.1) and translate their training
images. :func:`build_augmenter` returns a ``keras.Sequential`` of those layers;
:func:`batch_hook` wraps it for :class:`common.data.stream.ImageBatches` so that
only training batches are augmented. Under a fixed ``seed`` the same sequence of
batches gets the same transformations.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

FLIPS = ("horizontal", "vertical", "horizontal_and_vertical", None)


def build_augmenter(
    *,
    rotation_deg: float = 20.0,
    flip: str | None = "horizontal_and_vertical",
    zoom: float = 0.1,
    translate: float = 0.1,
    seed: int = 0,
    zoom_axes_independent: bool = False,
) -> keras.Sequential:
    """Random rotation (+/- ``rotation_deg``), flips, scaling (1 +/- ``zoom``), translation
    (+/- ``translate`` of height/width). Set any of them to 0/None to leave it out.

    Scaling keeps the aspect ratio unless ``zoom_axes_independent``: then height and
    width get their own factor in 1 +/- ``zoom`` (paper 04: "sized between 0.9 and 1.1
    times their original size along the X and Y axes").

    Input and output: float batches (B, H, W, C), any value range; shape and dtype kept.
    """
    if flip not in FLIPS:
        raise ValueError(f"flip must be one of {FLIPS}, got {flip!r}")
    if rotation_deg < 0 or not 0 <= zoom < 1 or not 0 <= translate < 1:
        raise ValueError(
            "need rotation_deg >= 0, 0 <= zoom < 1, 0 <= translate < 1; got "
            f"{rotation_deg}, {zoom}, {translate}"
        )
    layers = []
    if flip:
        layers.append(keras.layers.RandomFlip(flip, seed=seed))
    if rotation_deg:
        layers.append(
            keras.layers.RandomRotation(rotation_deg / 360.0, fill_mode="reflect", seed=seed + 1)
        )
    if zoom:
        layers.append(
            keras.layers.RandomZoom(
                (-zoom, zoom),
                (-zoom, zoom) if zoom_axes_independent else None,
                fill_mode="reflect",
                seed=seed + 2,
            )
        )
    if translate:
        layers.append(
            keras.layers.RandomTranslation(translate, translate, fill_mode="reflect", seed=seed + 3)
        )
    if not layers:
        raise ValueError("every augmentation is switched off; pass augment=None instead")
    return keras.Sequential(layers, name="augment")


def batch_hook(augmenter: keras.Sequential) -> Callable[[np.ndarray], np.ndarray]:
    """A NumPy-in, NumPy-out hook for :class:`~common.data.stream.ImageBatches` (training only)."""

    def hook(batch: np.ndarray) -> np.ndarray:
        out = augmenter(keras.ops.convert_to_tensor(batch, dtype="float32"), training=True)
        return np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float32)

    return hook
