"""Streaming feature extraction through a backbone, with a resumable disk cache.

``extract_features`` reads images in batches (:class:`common.data.stream.ImageBatches`),
so memory is bounded by the batch, and returns an (n, d) float32 matrix whose rows
follow ``paths``. Results are cached under ``<cache root>/features/`` as
``<key>.npy`` + ``<key>.json``; the key covers the backbone, its weights identity,
the layer, the input size, every preprocessing setting, the dataset fingerprint
and the exact list of paths, and the stored JSON is compared on every read, so a
changed setting never reuses stale features. While extracting, finished chunks
are written to ``<key>.partial/``; an interrupted run resumes from them, and the
final files appear only when complete (temporary file, then rename). With ``mmap=True``
the cached ``.npy`` comes back memory-mapped read-only (float32): rows are read from disk
when indexed, so a bank of features larger than memory can be used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from common.backbones import Backbone
from common.data.stream import ImageBatches, ImageHook
from common.paths import cache_root
from common.progress import bar

CACHE_VERSION = 1


def cache_dir() -> Path:
    return cache_root() / "features"


def cache_key(
    backbone: Backbone,
    paths: Sequence[str],
    fingerprint: str,
    *,
    preprocessing: Mapping[str, Any] | None = None,
) -> tuple[str, dict]:
    """(hash, key dict) identifying one extraction."""
    key = {
        "version": CACHE_VERSION,
        "backbone": backbone.name,
        "weights": backbone.weights_id,
        "layer": backbone.layer,
        "input_size": backbone.input_size,
        "preprocessing": dict(sorted((preprocessing or {}).items())),
        "dataset_fingerprint": fingerprint,
        "paths_sha": hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest()[:16],
        "n": len(paths),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return f"{backbone.name}-{digest}", key


def cache_name(
    backbone: Backbone,
    paths: Sequence[str],
    fingerprint: str,
    *,
    preprocessing: Mapping[str, Any] | None = None,
    segment_after_augment: bool = False,
) -> tuple[str, dict]:
    """(hash, key dict) under which :func:`extract_features` caches these arguments (its cache
    entry's identity; ``segment_after_augment`` adds the order to the preprocessing described)."""
    described = {
        **dict(preprocessing or {}),
        **({"order": "augment, then segment"} if segment_after_augment else {}),
    }
    return cache_key(
        backbone, [str(p) for p in paths], fingerprint, preprocessing=described or None
    )


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.save(fh, array)
    os.replace(tmp, path)


def load_cached(
    key_name: str, key: dict, directory: Path, *, mmap: bool = False
) -> np.ndarray | None:
    """The cached matrix if ``<key>.npy`` exists and its stored key equals ``key``.

    ``mmap``: return it memory-mapped read-only (``np.load(..., mmap_mode="r")``, float32 as
    stored) instead of reading it into memory: rows are read from disk when indexed."""
    npy, meta = directory / f"{key_name}.npy", directory / f"{key_name}.json"
    if not (npy.is_file() and meta.is_file()):
        return None
    try:
        stored = json.loads(meta.read_text())
        features = np.load(npy, mmap_mode="r" if mmap else None)
    except (OSError, ValueError):
        return None
    if stored != json.loads(json.dumps(key, default=str)) or features.shape[0] != key["n"]:
        return None
    return features


def extract_features(
    backbone: Backbone,
    paths: Sequence[str],
    fingerprint: str,
    *,
    batch_size: int = 32,
    segment: ImageHook | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    directory: Path | None = None,
    use_cache: bool = True,
    chunk_batches: int = 16,
    progress: bool = True,
    augment: Any | None = None,
    segment_after_augment: bool = False,
    mmap: bool = False,
) -> np.ndarray:
    """(n, d) float32 features of ``paths`` (in order) from ``backbone``.

    ``segment`` is an optional per-image hook (e.g. HSV segmentation);
    ``preprocessing`` must describe it (and anything else that changes the pixels,
    e.g. ``{"segment": "hsv", "lower": ..., "upper": ...}``) because it is part of
    the cache key. ``augment`` is an optional per-batch hook (random augmentation,
    seeded: describe it and its seed in ``preprocessing`` too); a resumed partial
    extraction continues with fresh draws, which are still valid augmentations.
    ``fingerprint`` is the dataset's fingerprint. ``segment_after_augment`` segments
    the augmented images (see :class:`~common.data.stream.ImageBatches`); it is part of
    the cache key. ``mmap`` (needs the cache): return the cached ``.npy`` memory-mapped
    read-only (float32) instead of in memory; a fresh extraction then never holds the whole
    matrix either (finished chunks stay on disk and are copied into the final file).
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("no image paths to extract features from")
    if (segment is not None or augment is not None) and not preprocessing:
        raise ValueError(
            "describe the segment hook (and any augment hook) in `preprocessing`: it is "
            "part of the cache key"
        )
    if mmap and not use_cache:
        raise ValueError("mmap=True reads the cached file: it needs use_cache=True")
    directory = Path(directory or cache_dir())
    name, key = cache_name(
        backbone,
        paths,
        fingerprint,
        preprocessing=preprocessing,
        segment_after_augment=segment_after_augment,
    )
    if use_cache:
        hit = load_cached(name, key, directory, mmap=mmap)
        if hit is not None:
            return hit
    batches = ImageBatches(
        paths,
        batch_size=batch_size,
        image_size=(backbone.input_size, backbone.input_size),
        segment=segment,
        augment=augment,
        preprocess=backbone.preprocess,
        segment_after_augment=segment_after_augment,
    )
    partial = directory / f"{name}.partial"
    if use_cache:
        partial.mkdir(parents=True, exist_ok=True)
        (partial / "key.json").write_text(json.dumps(key, sort_keys=True, default=str))
    chunk_rows = chunk_batches * batch_size
    parts: list[np.ndarray] = []
    start = 0
    if use_cache:  # resume from finished chunks
        while (partial / f"rows_{start:09d}.npy").is_file():
            try:
                part = np.load(partial / f"rows_{start:09d}.npy", mmap_mode="r" if mmap else None)
            except (OSError, ValueError):
                break
            parts.append(part)
            start += part.shape[0]
    first_batch = start // batch_size
    pending: list[np.ndarray] = []
    # decode batch b+1 in a thread while the model runs on batch b (at most two batches in memory)
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(batches.__getitem__, first_batch) if first_batch < len(batches) else None
    for b in bar(
        range(first_batch, len(batches)),
        desc=f"features {backbone.name}",
        disable=not progress,
        initial=first_batch,
        total=len(batches),
    ):
        batch = future.result()
        future = pool.submit(batches.__getitem__, b + 1) if b + 1 < len(batches) else None
        pending.append(np.asarray(backbone.model.predict_on_batch(batch), dtype=np.float32))
        rows = sum(p.shape[0] for p in pending)
        if rows >= chunk_rows or b == len(batches) - 1:
            chunk = np.concatenate(pending)
            if use_cache:
                _atomic_save(partial / f"rows_{start:09d}.npy", chunk)
            parts.append(
                np.load(partial / f"rows_{start:09d}.npy", mmap_mode="r") if mmap else chunk
            )
            start += chunk.shape[0]
            pending = []
    pool.shutdown()
    if (
        mmap
    ):  # chunk by chunk from the partial files into the final one: never the whole matrix in memory
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{name}.npy.tmp-{os.getpid()}"
        width = int(np.prod(parts[0].shape[1:]))
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(paths), width))
        row = 0
        for part in parts:
            out[row : row + part.shape[0]] = np.asarray(part).reshape(part.shape[0], width)
            row += part.shape[0]
        out.flush()
        del out
        parts = part = None
        os.replace(tmp, directory / f"{name}.npy")
        features = None
    else:
        features = np.concatenate(parts).reshape(len(paths), -1)
    if use_cache:
        directory.mkdir(parents=True, exist_ok=True)
        if features is not None:
            _atomic_save(directory / f"{name}.npy", features)
        tmp = directory / f".{name}.json.tmp"
        tmp.write_text(json.dumps(key, sort_keys=True, default=str))
        os.replace(tmp, directory / f"{name}.json")
        shutil.rmtree(partial, ignore_errors=True)
    return features if features is not None else np.load(directory / f"{name}.npy", mmap_mode="r")
