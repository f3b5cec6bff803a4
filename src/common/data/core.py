"""The record every loader returns, the one error type, and fingerprints."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: A synthetic tree carries this file at its root; loaders then report source "synthetic".
SYNTHETIC_MARKER = "SYNTHETIC_DATA.txt"
IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff")


class DataError(ValueError):
    """Bad or missing data. The message is one line naming the path or value and the fix."""


@dataclass
class Dataset:
    """One dataset as loaded from disk; every array is aligned with ``sample_ids``.

    Attributes
    ----------
    name : registry id (``cumida``, ``bioc_all``, ``golub``, ``cnmc``, ``aria_all``, ``aml_mll``).
    sample_ids : (n,) str. CEL/array name, or image path relative to the root.
    labels : (n,) str, the label strings as the dataset writes them.
    classes : sorted class strings; ``y`` indexes into it.
    y : (n,) int64 encoded labels.
    patients : (n,) str patient/subject ids, or None where the layout has none.
    paths : (n,) str absolute image paths (image sets), else None. Pixels are never loaded here.
    X : (n, d) float64 feature matrix (microarray sets), else None.
    feature_names : (d,) str probe/gene ids, else None.
    meta : per-sample table (fold, split, series, phenotype columns, ...).
    source : ``real``, ``embedded-real`` or ``synthetic``.
    fingerprint : sha256 of the file list and sizes (images) or of the matrix and labels.
    info : loader-specific facts (merge rule, surviving features, unlabeled counts, ...).
    problems : tolerated layout problems found while reading.
    """

    name: str
    root: Path
    sample_ids: np.ndarray
    labels: np.ndarray
    classes: list[str]
    y: np.ndarray
    patients: np.ndarray | None
    paths: np.ndarray | None
    X: np.ndarray | None
    feature_names: np.ndarray | None
    meta: pd.DataFrame
    source: str
    fingerprint: str
    info: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.sample_ids.shape[0])

    @property
    def n_patients(self) -> int | None:
        return None if self.patients is None else int(len(set(self.patients.tolist())))

    def class_counts(self) -> dict[str, int]:
        values, counts = np.unique(self.labels, return_counts=True)
        return {str(v): int(c) for v, c in zip(values, counts)}

    def subset(self, mask: np.ndarray) -> Dataset:
        """The samples where ``mask`` is True (classes keep their encoding)."""
        mask = np.asarray(mask)
        pick = lambda a: None if a is None else a[mask]  # noqa: E731
        return Dataset(
            name=self.name,
            root=self.root,
            sample_ids=self.sample_ids[mask],
            labels=self.labels[mask],
            classes=self.classes,
            y=self.y[mask],
            patients=pick(self.patients),
            paths=pick(self.paths),
            X=pick(self.X),
            feature_names=self.feature_names,
            meta=self.meta[mask].reset_index(drop=True),
            source=self.source,
            fingerprint=self.fingerprint,
            info=dict(self.info),
            problems=list(self.problems),
        )


def build_dataset(
    name: str,
    root: Path,
    sample_ids: Iterable,
    labels: Iterable,
    *,
    patients: Iterable | None = None,
    paths: Iterable | None = None,
    X: np.ndarray | None = None,
    feature_names: Iterable | None = None,
    meta: pd.DataFrame | None = None,
    source: str | None = None,
    fingerprint: str | None = None,
    info: dict | None = None,
    problems: list[str] | None = None,
    classes: list[str] | None = None,
) -> Dataset:
    """Assemble a :class:`Dataset`, encoding labels and computing the fingerprint."""
    sample_ids = np.asarray(list(sample_ids), dtype=str)
    labels = np.asarray(list(labels), dtype=str)
    if sample_ids.size == 0:
        raise DataError(
            f"no samples found under {root}; check the path and the expected layout "
            "(python -m common.data list)"
        )
    classes = sorted(set(labels.tolist())) if classes is None else list(classes)
    lookup = {c: i for i, c in enumerate(classes)}
    y = np.array([lookup[v] for v in labels.tolist()], dtype=np.int64)
    paths_arr = None if paths is None else np.asarray(list(paths), dtype=str)
    if fingerprint is None:
        fingerprint = (
            files_fingerprint(root, paths_arr)
            if paths_arr is not None
            else matrix_fingerprint(X, labels)
        )
    return Dataset(
        name=name,
        root=Path(root),
        sample_ids=sample_ids,
        labels=labels,
        classes=classes,
        y=y,
        patients=None if patients is None else np.asarray(list(patients), dtype=str),
        paths=paths_arr,
        X=X,
        feature_names=None if feature_names is None else np.asarray(list(feature_names), dtype=str),
        meta=(meta if meta is not None else pd.DataFrame(index=range(len(sample_ids)))).reset_index(
            drop=True
        ),
        source=source or detect_source(Path(root)),
        fingerprint=fingerprint,
        info=info or {},
        problems=problems or [],
    )


def detect_source(root: Path) -> str:
    """``synthetic`` when the synthetic marker sits at (or above) ``root``, else ``real``."""
    root = Path(root).resolve()
    for folder in [root, *root.parents][:4]:
        if (folder / SYNTHETIC_MARKER).is_file():
            return "synthetic"
    return "real"


def files_fingerprint(root: Path, paths: Iterable[str]) -> str:
    """sha256 over (path relative to root, size) of every file, in sorted order."""
    root = Path(root)
    digest = hashlib.sha256()
    for p in sorted(str(x) for x in paths):
        path = Path(p)
        rel = path.relative_to(root) if path.is_absolute() and path.is_relative_to(root) else path
        digest.update(f"{rel.as_posix()}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def matrix_fingerprint(X: np.ndarray | None, labels: np.ndarray) -> str:
    """sha256 over the matrix bytes (float64, C order) and the labels."""
    digest = hashlib.sha256()
    if X is not None:
        digest.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    digest.update("\n".join(labels.tolist()).encode())
    return digest.hexdigest()[:16]


def require_dir(path: Path, what: str, fix: str) -> Path:
    """``path`` if it is a directory, else a one-line :class:`DataError`."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{what} not found: {path} does not exist or is not a folder; {fix}")
    return path


def image_files(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (by suffix, case-insensitive), sorted."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def check_images(paths: Iterable[str | Path]) -> list[str]:
    """Open every image fully; return one problem line per unreadable or truncated file."""
    from PIL import Image

    problems = []
    for p in paths:
        try:
            with Image.open(p) as img:
                img.load()
        except Exception as exc:  # PIL raises many types for broken files
            problems.append(
                f"unreadable image {p} ({type(exc).__name__}); re-download or delete it"
            )
    return problems


def image_sizes(paths: Iterable[str | Path], *, limit: int = 20) -> list[tuple[int, int]]:
    """Distinct (width, height) among the first ``limit`` images (headers only)."""
    from PIL import Image

    sizes = set()
    for p in list(paths)[:limit]:
        try:
            with Image.open(p) as img:
                sizes.add(img.size)
        except Exception:
            continue
    return sorted(sizes)
