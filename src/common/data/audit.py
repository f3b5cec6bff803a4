"""Near-duplicate image audit: perceptual hashes, pairs, groups, a contact sheet.

``python -m common.data audit DATASET`` (or :func:`audit_images`) hashes every image,
finds the pairs whose hashes are close, joins them into groups (connected
components) and reports counts, the largest groups (as a contact sheet) and
unreadable files. The notebooks use :func:`cross_split_duplicates` (how many test
images have a near-duplicate in training) and :func:`pseudo_patients` (groups for a
grouped split that keeps each near-duplicate cluster on one side).

Method (the documented choice)
------------------------------
- **Signature**: ``phash`` (DCT, 16 x 16 = 256 bits) concatenated with ``dhash``
  (horizontal gradients, 256 bits), both from the maintained ``imagehash`` library, on
  the grayscale image shrunk once to 64 x 64: 512 bits per variant.
- **Variants**: flips and 90-degree rotations change a hash, and so does a crop of a
  few per cent (it shifts and rescales the picture). Each image is hashed in the 8
  symmetries of the square, of the whole image and of its central 93%
  (``CROP_SCALES``). A pair's distance is the smallest Hamming distance between one
  image's plain signature and any variant of the other (crop variants both ways).
- **Dark backgrounds** (C-NMC's cells on black, Aria's ``Segmented`` set): when 98% of
  the border is darker than ``DARK_LEVEL``, the content's bounding box is hashed
  instead of the frame (:func:`trim_dark_border`), so cropping background changes
  nothing; such "framed" images need no crop variants.
- **Thresholds**: a pair is a near-duplicate at distance <= ``DEFAULT_THRESHOLD`` (88 of
  512 bits), or <= ``FRAMED_THRESHOLD`` (48) when both images are framed: without the
  frame to tell them apart, distinct cells on black sit closer together (the closest
  distinct pair of the C-NMC twin is at 72), while their copies sit closer too (<= 56).
- **Groups**: connected components of the pairs (``scipy.sparse.csgraph``).
- **Search**: all pairs i < j, vectorised (packed uint64 words, XOR, popcount) in
  blocks of 256 rows x 2,048 columns; memory stays at a few such blocks.

Rejected by measurement (twins with copies as below): 8 x 8 hashes (``phash``,
``dhash``, ``whash``: thousands of distinct look-alike synthetic cells within the
distance a 4% crop needs); ``phash`` 16 alone (crops reach 50 bits, distinct cells come
within 22); no crop variants (a 2-5% crop then costs up to 70 bits of ``phash`` 16 and
76 of ``dhash`` 16); one threshold for both kinds of background (only 72 would meet
both targets on both twins, with no margin). A grid of 16 crop boxes instead of the
one central crop separated Aria's crops further (worst copy 69, first distinct pair
94) but costs four times the search; the central crop meets the targets.

Measured (``plant_duplicates`` + ``score_planted``; this CPU, 2 cores shared with other jobs)
------------------------------------------------------------------------------------------------
Copies of a seeded 10% of the images, one kind each in turn: resized (x0.5-0.8 or
x1.25-1.5), JPEG re-compressed (quality 40-75), flipped left-right, flipped up-down,
cropped 2-5% per side, and all of these combined. Recall = planted pairs reported;
false-pair rate = reported pairs that are neither planted nor the generator's own
byte-identical images (:func:`score_planted`).

================================  ========  =======  ============  ==========================
===============
twin (real layout and size)       images    planted  recall        false pairs                 time
cold/cached
================================  ========  =======  ============  ==========================
===============
Aria ``aria_all`` 224 px JPEG     3,582     326      0.991         0 (0%)                      26 s
/ 9 s
C-NMC ``cnmc`` 450 px BMP         13,594    1,066    0.998         0 (0%)                      191 s
/ 75 s
================================  ========  =======  ============  ==========================
===============

Aria's misses: 2 of 54 crops and 1 of 54 combined copies (at 89 to 96 bits); thresholds
72 to 102 meet both targets there (recall >= 0.95, false pairs <= 1%), the first
false pair appears at 96. C-NMC (all framed): framed thresholds 18 to 74 meet both
targets, the first false pair at 72. Times are the whole command (load, hash, search,
figure); "cached" reuses the hash cache and only searches pairs (Aria 5 s, C-NMC 69 s).

AML (``aml_mll``, 81,214 cells of 144 px): hashing measured at 5.6 ms per image (about
8 minutes), and one block of 256 rows against all 81,214 columns at 10.9 s (0.53 us
per pair), so the 3.3e9 pairs take about 30 minutes: some 40 minutes cold, 30 cached.
(A 2,200-cell AML twin with plants: copies at <= 78 bits, distinct cells >= 111.)

Cache: hashes are kept under ``<cache root>/audit/`` in a file named by the dataset
id, its :attr:`~common.data.core.Dataset.fingerprint` and the method, and looked up by
path, so a rerun (or a subset of the same dataset) hashes nothing again.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from common.data.core import DataError, Dataset

#: The eight symmetries of the square, as PIL transposes (None = the image itself).
DIHEDRAL = (
    None,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
)
#: Hashes concatenated into one signature, and the side of the square they are computed on.
HASH_TYPES = ("phash", "dhash")
HASH_SIZE = 16
#: Each image is hashed whole and as its central crop of this share of each side.
CROP_SCALES = (1.0, 0.93)
#: Largest Hamming distance (of HASH_BITS) at which two images count as near-duplicates ...
DEFAULT_THRESHOLD = 88
#: ... and the same when both images were framed (content on a dark background, trimmed).
FRAMED_THRESHOLD = 48
#: Gray level (0-255) below which a border counts as dark background (see :func:`trim_dark_border`).
DARK_LEVEL = 24
HASH_BITS = len(HASH_TYPES) * HASH_SIZE * HASH_SIZE
_CROPS = "-".join(str(s) for s in CROP_SCALES)
METHOD = f"{'+'.join(HASH_TYPES)}{HASH_SIZE}-d8-trim{DARK_LEVEL}-crops{_CROPS}"
#: The table of planted copies, at a twin's root (JSON: the AML loader reads any CSV there as
#: metadata).
PLANTED_FILE = "PLANTED_DUPLICATES.json"
#: Kinds of planted copies for the validation (see :func:`transform_copy`).
PLANT_KINDS = ("resize", "jpeg", "hflip", "vflip", "crop", "combined")


# ------------------------------------------------------------------------ hashing
def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Boolean hash bits (any shape) -> uint64 words (ceil(bits / 64),), zero-padded."""
    packed = np.packbits(np.asarray(bits, dtype=bool).ravel())
    packed = np.concatenate([packed, np.zeros((-packed.size) % 8, np.uint8)])
    return packed.view(np.uint64)


def trim_dark_border(gray: Image.Image, *, level: int = DARK_LEVEL) -> Image.Image:
    """The bounding box of the content when the image lies on a dark background, else the image.

    A background counts as dark when at least 98% of the outermost ring of pixels is
    below ``level`` (C-NMC's cells on black, Aria's ``Segmented`` set); the content is
    every pixel at or above it. A crop that removes only background then changes nothing.
    """
    pixels = np.asarray(gray)
    ring = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if (ring < level).mean() < 0.98:
        return gray
    rows, cols = np.nonzero(pixels >= level)
    if rows.size < 16:  # (almost) all dark: nothing to frame
        return gray
    return gray.crop((int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1))


def image_signatures(path: str | Path) -> tuple[np.ndarray, bool]:
    """The signatures of one image's variants and whether its content was framed.

    Returns ``(len(CROP_SCALES) * 8, HASH_BITS / 64)`` uint64 (row 0 the image as it
    is; rows follow ``CROP_SCALES`` x ``DIHEDRAL``) and ``framed`` (a dark background was
    trimmed by :func:`trim_dark_border`; such images get no crop variants: their rows
    repeat the whole image's). Raises whatever PIL raises for an unreadable file.
    """
    import imagehash

    functions = [getattr(imagehash, name) for name in HASH_TYPES]
    side = 4 * HASH_SIZE  # phash's own working size (hash_size x highfreq_factor 4)
    with Image.open(path) as img:
        img.load()
        full = img.convert("L")
    gray = trim_dark_border(full)
    framed = gray.size != full.size
    rows = []
    for scale in CROP_SCALES:
        width, height = gray.size
        margin_x, margin_y = width * (1 - scale) / 2, height * (1 - scale) / 2
        part = (
            gray
            if scale == 1.0 or framed
            else gray.crop(
                (
                    round(margin_x),
                    round(margin_y),
                    round(width - margin_x),
                    round(height - margin_y),
                )
            )
        )
        small = part.resize((side, side), Image.Resampling.LANCZOS)
        for op in DIHEDRAL:
            variant = small if op is None else small.transpose(op)
            rows.append(
                np.concatenate([pack_bits(f(variant, hash_size=HASH_SIZE).hash) for f in functions])
            )
    return np.stack(rows), framed


def hash_images(
    paths: Sequence[str], *, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Signatures of many images: (n, variants, words) uint64, ``framed`` (n,) bool, and one
    error string per image (``""`` when it was read; unreadable images get zero rows and the
    reason)."""
    from tqdm import tqdm

    n_variants, n_words = len(CROP_SCALES) * len(DIHEDRAL), HASH_BITS // 64
    signatures = np.zeros((len(paths), n_variants, n_words), np.uint64)
    framed = np.zeros(len(paths), bool)
    errors = [""] * len(paths)
    bar = tqdm(paths, desc="hashing images", disable=not progress, mininterval=15.0, ascii=True)
    for index, path in enumerate(bar):
        try:
            signatures[index], framed[index] = image_signatures(path)
        except Exception as exc:  # PIL raises many types for broken files; the audit lists them
            errors[index] = f"{type(exc).__name__}: {exc}"[:160]
    return signatures, framed, errors


def cache_file(ds: Dataset, *, cache_dir: Path | str | None = None) -> Path:
    """Where the signatures of ``ds`` are kept: ``<cache
    root>/audit/<id>-<fingerprint>-<method>.npz``."""
    from common.paths import cache_root

    folder = Path(cache_dir) if cache_dir is not None else cache_root() / "audit"
    return folder / f"{ds.name}-{ds.fingerprint}-{METHOD}.npz"


def cached_signatures(
    ds: Dataset, *, cache_dir: Path | str | None = None, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """:func:`hash_images` over ``ds.paths``, reusing the cache file of this dataset and method.

    Images already in the cache (looked up by path) are not read again; new ones are
    hashed and the cache rewritten. Returns signatures, framed, errors and
    ``{"path", "reused", "hashed"}``.
    """
    if ds.paths is None:
        raise DataError(
            f"{ds.name} has no images to hash (a feature matrix: use the profile audit)"
        )
    path = cache_file(ds, cache_dir=cache_dir)
    paths = [str(p) for p in ds.paths]
    known: dict[str, tuple[np.ndarray, bool, str]] = {}
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                known = {
                    p: (s, bool(f), str(e))
                    for p, s, f, e in zip(
                        stored["paths"].tolist(),
                        stored["signatures"],
                        stored["framed"],
                        stored["errors"].tolist(),
                    )
                }
        except (OSError, ValueError, KeyError):  # a damaged cache is rebuilt, never trusted
            known = {}
    missing = [p for p in paths if p not in known]
    if missing:
        fresh, fresh_framed, fresh_errors = hash_images(missing, progress=progress)
        known.update(
            {p: (s, bool(f), e) for p, s, f, e in zip(missing, fresh, fresh_framed, fresh_errors)}
        )
        _write_cache(path, known)
    signatures = np.stack([known[p][0] for p in paths]).astype(np.uint64)
    framed = np.array([known[p][1] for p in paths], bool)
    errors = [known[p][2] for p in paths]
    return (
        signatures,
        framed,
        errors,
        {"path": str(path), "reused": len(paths) - len(missing), "hashed": len(missing)},
    )


def _write_cache(path: Path, known: dict[str, tuple[np.ndarray, bool, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(known)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npz")
    np.savez(
        tmp,
        paths=np.array(keys, dtype=str),
        signatures=np.stack([known[k][0] for k in keys]),
        framed=np.array([known[k][1] for k in keys], bool),
        errors=np.array([known[k][2] for k in keys], dtype=str),
    )
    os.replace(tmp, path)


# ---------------------------------------------------------------------- pair search
def popcount(words: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 element (same shape, uint8)."""
    if hasattr(np, "bitwise_count"):  # NumPy >= 2.0
        return np.bitwise_count(words)
    table = np.array([bin(i).count("1") for i in range(256)], np.uint8)
    return (
        table[np.ascontiguousarray(words).view(np.uint8)]
        .reshape(*words.shape, 8)
        .sum(-1, dtype=np.uint8)
    )


def _min_distance(plain: np.ndarray, variants: np.ndarray) -> np.ndarray:
    """(r, words) against (c, v, words): the smallest Hamming distance over v, (r, c) uint16."""
    best = np.full((plain.shape[0], variants.shape[0]), np.iinfo(np.uint16).max, np.uint16)
    dist = np.empty_like(best)
    for v in range(variants.shape[1]):
        dist[:] = 0
        for w in range(plain.shape[1]):
            dist += popcount(plain[:, None, w] ^ variants[None, :, v, w])
        np.minimum(best, dist, out=best)
    return best


def near_duplicate_pairs(
    signatures: np.ndarray,
    *,
    threshold: int = DEFAULT_THRESHOLD,
    framed: np.ndarray | None = None,
    framed_threshold: int = FRAMED_THRESHOLD,
    valid: np.ndarray | None = None,
    chunk: int = 256,
    tile: int = 2048,
) -> np.ndarray:
    """Every near-duplicate pair (i < j): (m, 3) int64 rows ``[i, j, distance]``.

    ``signatures``: (n, variants, words) uint64 from :func:`hash_images`. The distance
    of a pair is the smallest Hamming distance between one image's plain signature
    (variant 0) and any variant of the other; the crop variants are tried both ways
    (either image may be the cropped one), the flips and rotations one way (a symmetry
    applied to both images leaves their distance about the same). A pair is kept at
    distance <= ``threshold``, or <= ``framed_threshold`` when both images are
    ``framed`` ((n,) bool; content on a dark background, trimmed). ``valid`` (n,) bool
    leaves out unreadable images. Work: ``chunk`` x ``tile`` blocks of the upper triangle.
    """
    signatures = np.asarray(signatures, dtype=np.uint64)
    n = signatures.shape[0]
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    framed = np.zeros(n, bool) if framed is None else np.asarray(framed, bool)
    loosest = max(threshold, framed_threshold)
    crops = signatures[:, len(DIHEDRAL) :]  # the crop variants (empty when CROP_SCALES is (1.0,))
    found = []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        for left in range(start, n, tile):
            right = min(n, left + tile)
            best = _min_distance(signatures[start:stop, 0], signatures[left:right])
            if crops.shape[1]:
                np.minimum(
                    best, _min_distance(signatures[left:right, 0], crops[start:stop]).T, out=best
                )
            i, j = np.nonzero(best <= loosest)
            dist = best[i, j]
            i, j = i + start, j + left
            limit = np.where(framed[i] & framed[j], framed_threshold, threshold)
            keep = (j > i) & valid[i] & valid[j] & (dist <= limit)
            found.append(np.stack([i[keep], j[keep], dist[keep]], axis=1).astype(np.int64))
    return np.concatenate(found) if found else np.zeros((0, 3), np.int64)


# --------------------------------------------------------------------------- groups
def component_labels(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected-component label of each of ``n`` nodes given (m, 2) edges."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def duplicate_groups(n: int, pairs: np.ndarray) -> list[list[int]]:
    """Groups of near-duplicates: connected components of ``pairs`` ((m, >=2) index rows) among
    ``n`` images, each a sorted list of two or more indices; largest first, then by first index."""
    pairs = np.asarray(pairs, dtype=np.int64)
    if pairs.size == 0:
        return []
    pairs = pairs.reshape(len(pairs), -1)
    labels = component_labels(n, pairs[:, :2])
    members: dict[int, list[int]] = {}
    for index in np.unique(pairs[:, :2]):
        members.setdefault(int(labels[index]), []).append(int(index))
    return sorted((sorted(g) for g in members.values()), key=lambda g: (-len(g), g[0]))


def _as_groups(groups_or_pairs: Any) -> list[list[int]]:
    """Groups from either groups (lists of indices) or an (m, 2) / (m, 3) pair array."""
    if (
        isinstance(groups_or_pairs, np.ndarray)
        and groups_or_pairs.ndim == 2
        and groups_or_pairs.shape[1] in (2, 3)
    ):
        pairs = groups_or_pairs[:, :2].astype(np.int64)
        return duplicate_groups(int(pairs.max()) + 1 if len(pairs) else 0, pairs)
    return [sorted(int(i) for i in g) for g in groups_or_pairs if len(g) > 1]


def cross_split_duplicates(
    groups_or_pairs: Any, train_idx: Iterable[int], test_idx: Iterable[int]
) -> dict:
    """How many test images have a near-duplicate in the training set.

    ``groups_or_pairs``: the audit's ``groups`` (lists of sample indices; every two members
    of a group count as near-duplicates) or a pair array ((m, 2) or the audit's (m, 3)
    ``[i, j, distance]``; pairs are joined into groups first). ``train_idx`` and
    ``test_idx`` index the same samples. Returns ``n_test``, ``n_test_with_train_duplicate``,
    ``share`` (of the test set), ``test_indices`` (those test images) and ``pairs``
    (``[train_index, test_index]``, every such combination).
    """
    in_train, in_test = {int(i) for i in train_idx}, {int(i) for i in test_idx}
    pairs = []
    for group in _as_groups(groups_or_pairs):
        pairs += [[a, b] for a in group if a in in_train for b in group if b in in_test and b != a]
    hit = sorted({b for _, b in pairs})
    return {
        "n_test": len(in_test),
        "n_test_with_train_duplicate": len(hit),
        "share": len(hit) / len(in_test) if in_test else 0.0,
        "test_indices": hit,
        "pairs": sorted(pairs),
    }


def pseudo_patients(n: int, groups: Any, *, patients: Sequence | None = None) -> np.ndarray:
    """Group labels for a grouped split that keeps every near-duplicate cluster on one side.

    Without ``patients``: each cluster (a group of near-duplicates) gets one id
    ``dup-<k>`` and every other image its own ``img-<index>``. With ``patients`` ((n,)
    ids): images that share a patient or a cluster are joined (union-find), and each
    joined set is named by its patient ids, sorted and ``+``-joined (``P1`` stays ``P1``
    unless a cluster bridges it to ``P7``: then both become ``P1+P7``). Returns (n,) str.
    ``groups`` may also be a pair array (see :func:`cross_split_duplicates`).
    """
    groups = _as_groups(groups)
    if any(i < 0 or i >= n for g in groups for i in g):
        raise DataError(f"a group holds an index outside 0..{n - 1}; groups index the {n} samples")
    edges = [[g[0], member] for g in groups for member in g[1:]]
    if patients is None:
        labels = np.array([f"img-{i}" for i in range(n)], dtype=object)
        for k, group in enumerate(groups):
            labels[group] = f"dup-{k}"
        return labels.astype(str)
    patients = np.asarray(patients, dtype=str)
    if patients.shape != (n,):
        raise DataError(f"patients has shape {patients.shape}; expected ({n},), one id per sample")
    first: dict[str, int] = {}
    for index, patient in enumerate(patients.tolist()):
        edges.append([first.setdefault(patient, index), index])
    component = component_labels(n, np.asarray(edges, np.int64).reshape(-1, 2))
    names: dict[int, set[str]] = {}
    for index, label in enumerate(component.tolist()):
        names.setdefault(label, set()).add(patients[index])
    return np.array(["+".join(sorted(names[label])) for label in component.tolist()], dtype=str)


# -------------------------------------------------- planted copies (validation only)
def _copy_name(dataset: str, original: Path, k: int) -> str:
    """A file name for a planted copy that the dataset's loader accepts (C-NMC names must parse)."""
    if dataset == "cnmc":
        parts = original.stem.split("_")  # UID, subject, image, cell, label
        return f"UID_{parts[1]}_{9000 + k}_{parts[3]}_{parts[4]}{original.suffix}"
    return f"{original.stem}-copy{k}{original.suffix}"


def transform_copy(
    img: Image.Image, kind: str, rng: np.random.Generator
) -> tuple[Image.Image, dict]:
    """One planted copy of ``img``: ``resize`` (x0.5-0.8 or x1.25-1.5), ``jpeg`` (quality 40-75),
    ``hflip`` / ``vflip``, ``crop`` (2-5% off each side, drawn per side, kept at the cropped
    size), or ``combined`` (crop, a flip, resize and JPEG in turn). Returns the copy and its
    parameters."""
    img = img.convert("RGB")
    width, height = img.size
    if kind == "resize":
        scale = float(rng.uniform(0.5, 0.8) if rng.random() < 0.5 else rng.uniform(1.25, 1.5))
        size = (round(width * scale), round(height * scale))
        return img.resize(size, Image.Resampling.BICUBIC), {"scale": round(scale, 3)}
    if kind == "jpeg":
        quality = int(rng.integers(40, 76))
        buffer = io.BytesIO()
        img.save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        return Image.open(buffer).convert("RGB"), {"quality": quality}
    if kind in ("hflip", "vflip"):
        flip = (
            Image.Transpose.FLIP_LEFT_RIGHT if kind == "hflip" else Image.Transpose.FLIP_TOP_BOTTOM
        )
        return img.transpose(flip), {}
    if kind == "crop":
        left, top, right, bottom = (float(v) for v in rng.uniform(0.02, 0.05, 4))
        box = (
            round(left * width),
            round(top * height),
            width - round(right * width),
            height - round(bottom * height),
        )
        return img.crop(box), {"crop_ltrb": [round(v, 3) for v in (left, top, right, bottom)]}
    if kind == "combined":
        params: dict = {}
        for step in ("crop", "hflip" if rng.random() < 0.5 else "vflip", "resize", "jpeg"):
            img, more = transform_copy(img, step, rng)
            params[step] = more or True
        return img, params
    raise DataError(f"unknown copy kind {kind!r}; choose from {PLANT_KINDS}")


def _save_like(img: Image.Image, path: Path) -> None:
    """Save in the format the suffix names (JPEG at the synthetic twins' quality, 92)."""
    formats = {
        ".bmp": "BMP",
        ".jpg": "JPEG",
        ".jpeg": "JPEG",
        ".png": "PNG",
        ".tif": "TIFF",
        ".tiff": "TIFF",
    }
    fmt = formats[path.suffix.lower()]
    img.save(path, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))


def plant_duplicates(
    ds: Dataset,
    *,
    fraction: float = 0.1,
    kinds: Sequence[str] = PLANT_KINDS,
    seed: int = 0,
    eligible: np.ndarray | None = None,
) -> pd.DataFrame:
    """Add a transformed copy of a seeded random ``fraction`` of a synthetic twin's images, in its
    layout.

    Each chosen image gets one copy, written beside it under a name its loader accepts;
    the kinds cycle through ``kinds`` (see :func:`transform_copy`). On C-NMC only the
    training folds are used (the prelim set is listed in a CSV). Writes
    ``PLANTED_DUPLICATES.json`` at the loader's root and returns the same table:
    ``original``, ``copy`` (paths relative to ``ds.root``), ``kind``, ``params`` (JSON).
    Reload the dataset afterwards. Only synthetic twins are written (real data is read, never
    written).
    """
    if ds.source != "synthetic" or ds.paths is None:
        raise DataError(
            f"planting duplicates needs a synthetic image twin; {ds.name} at {ds.root} is "
            f"{ds.source}"
        )
    if eligible is None and "split" in ds.meta:
        eligible = (ds.meta["split"] == "train").to_numpy()
    candidates = np.arange(len(ds)) if eligible is None else np.flatnonzero(eligible)
    rng = np.random.default_rng([seed, 77])
    chosen = np.sort(
        rng.choice(candidates, max(1, round(fraction * len(candidates))), replace=False)
    )
    rows = []
    for k, index in enumerate(chosen):
        original = Path(ds.paths[index])
        kind = kinds[k % len(kinds)]
        with Image.open(original) as img:
            copy, params = transform_copy(img, kind, rng)
        target = original.with_name(_copy_name(ds.name, original, k))
        if target.exists():
            raise DataError(f"{target} exists already; plant duplicates into a fresh twin")
        _save_like(copy, target)
        rows.append(
            {
                "original": str(original.relative_to(ds.root)),
                "copy": str(target.relative_to(ds.root)),
                "kind": kind,
                "params": json.dumps(params),
            }
        )
    table = pd.DataFrame(rows)
    table.to_json(Path(ds.root) / PLANTED_FILE, orient="records", indent=1)
    return table


def read_planted(ds: Dataset) -> pd.DataFrame:
    """The table :func:`plant_duplicates` wrote for this twin (``original``, ``copy``, ``kind``,
    ``params``)."""
    path = Path(ds.root) / PLANTED_FILE
    if not path.is_file():
        raise DataError(
            f"{path} not found; plant duplicates first (common.data.audit.plant_duplicates)"
        )
    return pd.read_json(path, orient="records")


def planted_families(
    ds: Dataset, *, planted: pd.DataFrame | None = None
) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
    """Family of every image ((n,) int, see :func:`score_planted`) and the planted pairs ``(i, j,
    kind)``, i < j."""
    import hashlib

    planted = read_planted(ds) if planted is None else planted
    index = {str(Path(p).resolve()): i for i, p in enumerate(ds.paths)}
    root = Path(ds.root).resolve()
    family = np.arange(len(ds))
    copies, truth = set(), []
    for original, copy, kind in zip(planted["original"], planted["copy"], planted["kind"]):
        i, j = index[str(root / original)], index[str(root / copy)]
        family[j] = i
        copies.add(j)
        truth.append((min(i, j), max(i, j), str(kind)))
    by_digest: dict[str, int] = {}
    for i, path in enumerate(ds.paths):
        if i not in copies:
            family[i] = by_digest.setdefault(hashlib.sha256(Path(path).read_bytes()).hexdigest(), i)
    return family[family], truth  # a copy of a generator duplicate joins that duplicate's family


def score_planted(
    ds: Dataset,
    pairs: np.ndarray,
    *,
    planted: pd.DataFrame | None = None,
    families: tuple[np.ndarray, list] | None = None,
) -> dict:
    """Recall and false-pair rate of reported ``pairs`` ((m, >=2) indices into ``ds``) on a planted
    twin.

    Definitions. Images are in one *family* when one is a planted copy of the other, or
    when the generator itself wrote them byte-identical (its own duplicates; none are
    expected). **Recall**: the share of planted (original, copy) pairs that are reported
    as a pair. **False-pair rate**: the share of reported pairs whose two images are not
    of one family, i.e. neither planted nor the generator's own duplicates; distinct
    generated cells that merely look alike count as false. Returns both, their counts,
    the recall per kind of copy and the first false pairs. ``families``: the output of
    :func:`planted_families`, to score many thresholds without reading the files again.
    """
    family, truth = planted_families(ds, planted=planted) if families is None else families
    reported = (
        {(int(min(a, b)), int(max(a, b))) for a, b in np.asarray(pairs)[:, :2]}
        if len(pairs)
        else set()
    )
    found = [(i, j) in reported for i, j, _ in truth]
    false = [p for p in reported if family[p[0]] != family[p[1]]]
    kinds = sorted({k for _, _, k in truth})
    return {
        "n_planted": len(truth),
        "n_found": int(sum(found)),
        "recall": float(np.mean(found)) if truth else float("nan"),
        "n_reported": len(reported),
        "n_false": len(false),
        "false_pair_rate": len(false) / len(reported) if reported else 0.0,
        "recall_by_kind": {
            k: float(np.mean([f for f, (_, _, kk) in zip(found, truth) if kk == k])) for k in kinds
        },
        "false_pairs": sorted(false)[:20],
    }


# ---------------------------------------------------------------------------- audit
def audit_images(
    ds: Dataset,
    *,
    threshold: int = DEFAULT_THRESHOLD,
    framed_threshold: int = FRAMED_THRESHOLD,
    cache_dir: Path | str | None = None,
    n_largest: int = 10,
    progress: bool = True,
) -> dict:
    """Near-duplicate audit of an image dataset; a JSON-able dict.

    Keys: ``dataset``, ``source``, ``root``, ``fingerprint``, ``n_images``,
    ``n_readable``, ``method`` (hash, bits, variants, library version), ``threshold``,
    ``framed_threshold``, ``n_pairs``, ``n_groups``, ``n_images_in_groups``,
    ``group_sizes`` ({size: count}), ``largest_groups`` (sample ids of the
    ``n_largest`` largest groups), ``groups`` (all, as sample indices), ``pairs``
    (``[i, j, distance]``), ``unreadable`` (``{"path", "reason"}`` each; listed, not
    fatal), ``cache`` (file, images reused, images hashed), ``seconds`` and ``summary``
    (one line). Raises :class:`DataError` when no image can be read.
    """
    from importlib.metadata import version

    if ds.paths is None:
        raise DataError(f"{ds.name} holds a feature matrix, not images; audit its profiles instead")
    started = time.perf_counter()
    signatures, framed, errors, cache = cached_signatures(
        ds, cache_dir=cache_dir, progress=progress
    )
    hashed = time.perf_counter()
    valid = np.array([not e for e in errors])
    unreadable = [{"path": str(p), "reason": e} for p, e in zip(ds.paths, errors) if e]
    if not valid.any():
        raise DataError(
            f"none of the {len(ds)} images under {ds.root} can be read (first: "
            f"{unreadable[0]['path']}: {unreadable[0]['reason']}); re-download the dataset"
        )
    pairs = near_duplicate_pairs(
        signatures,
        threshold=threshold,
        framed=framed,
        framed_threshold=framed_threshold,
        valid=valid,
    )
    groups = duplicate_groups(len(ds), pairs)
    sizes = pd.Series([len(g) for g in groups], dtype=int).value_counts().sort_index()
    in_groups = int(sum(len(g) for g in groups))
    result = {
        "dataset": ds.name,
        "source": ds.source,
        "root": str(ds.root),
        "fingerprint": ds.fingerprint,
        "n_images": len(ds),
        "n_readable": int(valid.sum()),
        "method": {
            "hash": "+".join(f"{h}{HASH_SIZE}" for h in HASH_TYPES),
            "bits": HASH_BITS,
            "variants": f"8 flips/rotations x central crops {list(CROP_SCALES)}; "
            f"dark borders trimmed (gray < {DARK_LEVEL})",
            "library": f"imagehash {version('imagehash')}",
            "n_framed": int(framed[valid].sum()),
        },
        "threshold": int(threshold),
        "framed_threshold": int(framed_threshold),
        "n_pairs": int(len(pairs)),
        "n_groups": len(groups),
        "n_images_in_groups": in_groups,
        "group_sizes": {str(k): int(v) for k, v in sizes.items()},
        "largest_groups": [[str(ds.sample_ids[i]) for i in g] for g in groups[:n_largest]],
        "groups": groups,
        "pairs": pairs.tolist(),
        "unreadable": unreadable,
        "cache": cache,
        "seconds": {
            "hashing": round(hashed - started, 2),
            "pairs": round(time.perf_counter() - hashed, 2),
        },
    }
    result["summary"] = summary_line(result)
    return result


def summary_line(result: dict) -> str:
    """One line: dataset, source, images, groups, images in groups, largest group, unreadable,
    method."""
    largest = len(result["groups"][0]) if result["groups"] else 0
    share = result["n_images_in_groups"] / max(1, result["n_readable"])
    return (
        f"{result['dataset']} ({result['source']}): {result['n_images']:,} images, "
        f"{result['n_groups']:,} near-duplicate group(s) holding "
        f"{result['n_images_in_groups']:,} ({share:.1%}), largest {largest}; "
        f"{len(result['unreadable'])} unreadable; {result['method']['hash']} over "
        f"flips/rotations/crops, distance <= {result['threshold']} of "
        f"{result['method']['bits']} bits (<= {result['framed_threshold']} on dark "
        "backgrounds)"
    )


def contact_sheet(
    ds: Dataset,
    groups: Sequence[Sequence[int]],
    *,
    n_groups: int = 8,
    per_group: int = 6,
    max_columns: int = 8,
    thumbnail: int = 128,
):
    """A figure of the ``n_groups`` largest groups (up to ``per_group`` images each), side by side
    when they are small (at most ``max_columns`` images a row), each image captioned with its
    group, file name and label; marked "synthetic data" when ``ds.source`` is synthetic."""
    import matplotlib.pyplot as plt

    from common.plots import set_style, stamp_synthetic

    shown = [list(g)[:per_group] for g in list(groups)[:n_groups]]
    if not shown:
        raise DataError(f"no near-duplicate groups in {ds.name}: nothing to draw")
    set_style()
    width = max(len(g) for g in shown)
    blocks = max(1, max_columns // width)  # groups per row
    nrows = int(np.ceil(len(shown) / blocks))
    fig, axes = plt.subplots(
        nrows, blocks * width, figsize=(1.7 * blocks * width, 1.95 * nrows + 0.6), squeeze=False
    )
    for ax in axes.ravel():
        ax.axis("off")
    for k, group in enumerate(shown):
        for col, index in enumerate(group):
            ax = axes[k // blocks][(k % blocks) * width + col]
            try:
                with Image.open(ds.paths[index]) as img:
                    img = img.convert("RGB")
                    img.thumbnail((thumbnail, thumbnail))
                    ax.imshow(np.asarray(img))
            except Exception as exc:  # an image that broke after hashing: say so in its cell
                ax.text(
                    0.5,
                    0.5,
                    f"unreadable\n{type(exc).__name__}",
                    ha="center",
                    va="center",
                    fontsize=7,
                )
            head = f"group {k + 1} ({len(groups[k])})" if col == 0 else ""
            ax.set_title(
                f"{head}\n{Path(ds.paths[index]).name[-26:]}\n{ds.labels[index]}", fontsize=6
            )
    label = " (synthetic data)" if ds.source == "synthetic" else ""
    fig.suptitle(f"Largest near-duplicate groups: {ds.name}{label}", fontsize=10)
    fig.tight_layout()
    if ds.source == "synthetic":
        stamp_synthetic(fig)
    return fig


def save_contact_sheet(ds: Dataset, result: dict, path: Path | str) -> Path | None:
    """Draw :func:`contact_sheet` for ``result['groups']`` into the PNG ``path``; None when there
    are no groups."""
    import matplotlib.pyplot as plt

    from common.plots import save_figure

    if not result["groups"]:
        return None
    fig = contact_sheet(ds, result["groups"])
    path = Path(path)
    try:
        return save_figure(fig, path.parent, path.name, source=ds.source)
    finally:
        plt.close(fig)
