"""Streaming image batches from disk with ``keras.utils.PyDataset`` (every backend).

Only one batch of pixels is in memory at a time (per worker): the dataset holds
file paths and labels, and ``__getitem__`` decodes, resizes, optionally segments,
augments and preprocesses the files of one batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from common.data.core import DataError

#: hook(image uint8 (H, W, 3)) -> image uint8 (H, W, 3), applied per image before batching
ImageHook = Callable[[np.ndarray], np.ndarray]
#: hook(batch float32 (B, H, W, 3)) -> batch float32, applied per batch
BatchHook = Callable[[np.ndarray], np.ndarray]
#: Images found unreadable while streaming in this process; ``run.json`` lists them.
UNREADABLE: set[str] = set()


def load_image(path: str | Path, *, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode one image as RGB uint8 (H, W, 3); resize to ``size`` = (height, width) if given."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read image {path} ({type(exc).__name__}); re-download it or remove it "
            "from the list"
        ) from None


def load_image_or_skip(path: str | Path, size: tuple[int, int]) -> np.ndarray | None:
    """:func:`load_image`, or None for an unreadable file, which is named in one line
    (the first time) and remembered in :data:`UNREADABLE` for ``run.json``.

    A file that breaks hours into a run (truncated by a copy, a bad sector) must not
    end it with a traceback: the run goes on without it and says so.
    """
    try:
        return load_image(path, size=size)
    except DataError as exc:
        if str(path) not in UNREADABLE:
            UNREADABLE.add(str(path))
            print(f"skipped: {exc}", flush=True)
        return None


class ImageBatches(keras.utils.PyDataset):
    """Batches of images (float32, 0-255 unless ``preprocess`` rescales) and optional labels.

    Parameters
    ----------
    paths : image file paths.
    labels : (n,) int labels or None (then batches are images only).
    batch_size, image_size : batch length and (height, width).
    segment : per-image hook on uint8 RGB, e.g. HSV segmentation.
    augment : per-batch hook on float32 (training only: leave None for evaluation).
    preprocess : per-batch hook, e.g. a backbone's ``preprocess_input``.
    shuffle, seed : reshuffle the order every epoch, deterministically from ``seed``.
    segment_after_augment : segment the augmented batch (augment, then segment) instead
        of segmenting each image before augmentation (the default).

    An unreadable image is skipped with one line (:func:`load_image_or_skip`): dropped
    from a labelled (training) batch, and replaced by a black image in an unlabelled
    batch so that predictions stay aligned with ``paths``.
    **kwargs : ``workers``, ``use_multiprocessing``, ``max_queue_size`` (keras.utils.PyDataset).
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: Sequence[int] | None = None,
        batch_size: int = 32,
        image_size: tuple[int, int] = (224, 224),
        segment: ImageHook | None = None,
        augment: BatchHook | None = None,
        preprocess: BatchHook | None = None,
        shuffle: bool = False,
        seed: int = 0,
        segment_after_augment: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.segment_after_augment = bool(segment_after_augment)
        self.paths = np.asarray(list(paths), dtype=str)
        if self.paths.size == 0:
            raise DataError("no image paths to stream; check the dataset root and filters")
        self.labels = None if labels is None else np.asarray(labels)
        if self.labels is not None and self.labels.shape[0] != self.paths.shape[0]:
            raise DataError(f"{self.labels.shape[0]} labels for {self.paths.shape[0]} images")
        if batch_size < 1:
            raise DataError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size, self.image_size = int(batch_size), tuple(image_size)
        self.segment, self.augment, self.preprocess = segment, augment, preprocess
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.paths.size)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.paths.size)

    def __len__(self) -> int:
        return math.ceil(self.paths.size / self.batch_size)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range 0..{len(self) - 1}")
        idx = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        images, kept = [], []
        for i in idx:
            img = load_image_or_skip(self.paths[i], self.image_size)
            if img is None:
                if self.labels is not None:
                    continue
                img = np.zeros((*self.image_size, 3), dtype=np.uint8)
            elif self.segment is not None and not self.segment_after_augment:
                img = self.segment(img)
            images.append(img)
            kept.append(i)
        if (
            not images
        ):  # every image of a training batch unreadable: one black image keeps the step valid
            images, kept = [np.zeros((*self.image_size, 3), dtype=np.uint8)], [idx[0]]
        idx = np.asarray(kept)
        batch = np.stack(images).astype(np.float32)
        if self.augment is not None:
            batch = np.asarray(self.augment(batch), dtype=np.float32)
        if (
            self.segment is not None and self.segment_after_augment
        ):  # paper 04's order: augment, then segment
            batch = np.stack(
                [self.segment(np.clip(img, 0, 255).astype(np.uint8)) for img in batch]
            ).astype(np.float32)
        if self.preprocess is not None:
            batch = np.asarray(self.preprocess(batch), dtype=np.float32)
        if self.labels is None:
            return batch
        return batch, self.labels[idx]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()


def write_transformed(
    paths: Sequence[str | Path],
    root: str | Path,
    out: str | Path,
    transform: Callable[[np.ndarray], np.ndarray],
    size: tuple[int, int],
    *,
    info: bool = False,
) -> tuple[list[str], int]:
    """Resize each image to ``size``, apply ``transform`` and save it as PNG under ``out``
    at its path relative to ``root``; files already there are reused, not recomputed.

    Slow per-image pre-processing (Wiener, DHE, watershed) then runs once per image,
    not once per epoch, and the outputs keep stable paths for the feature cache.
    An unreadable source image is named in one line and written as a black image.
    Returns (new paths in the same order, how many were computed now). Each file is
    written to a temporary name and renamed, so an interrupted run leaves no half file.

    ``info=True``: ``transform`` returns ``(image, facts)``, ``facts`` a JSON-able dict about
    that image (e.g. whether a segmentation found the cell), saved beside the PNG as
    ``<name>.json`` before the PNG (an unreadable source gets ``{"unreadable": true}``); a
    PNG without its ``.json`` is recomputed. :func:`read_info` reads them back.
    """
    import json

    from common.progress import bar

    root, out = Path(root), Path(out)
    new_paths, computed = [], 0
    for path in bar(paths, desc="pre-processing", total=len(paths)):
        path = Path(path)
        try:
            rel = path.relative_to(root)
        except ValueError:
            raise DataError(
                f"{path} is not under the dataset root {root}; pass the root the paths "
                "were listed from"
            ) from None
        target = (out / rel).with_suffix(".png")
        if not (target.is_file() and (not info or target.with_suffix(".json").is_file())):
            image = load_image_or_skip(
                path, size
            )  # unreadable: named, counted, kept as a black image
            facts = {"unreadable": True}
            if image is None:
                result = np.zeros((*size, 3), np.uint8)
            elif info:
                result, facts = transform(image)
            else:
                result = transform(image)
            result = np.asarray(result)
            if result.dtype != np.uint8 or result.shape != (*size, 3):
                raise DataError(
                    f"transform returned {result.dtype} {result.shape} for {path}; "
                    f"expected uint8 {(*size, 3)}"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            if info:
                tmp_info = target.with_name(f".{target.stem}.json.tmp")
                tmp_info.write_text(json.dumps(facts, sort_keys=True))
                tmp_info.replace(target.with_suffix(".json"))
            tmp = target.with_name(f".{target.name}.tmp")
            Image.fromarray(result).save(tmp, format="PNG")
            tmp.replace(target)
            computed += 1
        new_paths.append(str(target))
    return new_paths, computed


def read_info(paths: Sequence[str | Path]) -> list[dict]:
    """The per-image facts :func:`write_transformed` saved with ``info=True`` (``<name>.json``
    beside each PNG), in the order of ``paths``."""
    import json

    facts = []
    for path in paths:
        sidecar = Path(path).with_suffix(".json")
        try:
            facts.append(json.loads(sidecar.read_text()))
        except (OSError, ValueError):
            raise DataError(
                f"{sidecar} is missing or unreadable; rerun write_transformed(..., "
                "info=True) to recompute it"
            ) from None
    return facts
