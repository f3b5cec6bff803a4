"""Finding a dataset where it is: ``<data root>/raw/<id>``, else by its layout.

A Kaggle session mounts an attached dataset at ``/kaggle/input/<any-slug>/...``; a
TCIA or Kaggle download unzipped by hand adds its own top folder
(``AML-Cytomorphology_MLL_Helmholtz_v1/data/...``); a Colab upload lands wherever the
user put it. :func:`find_root` therefore takes ``<data root>/raw/<id>`` when it exists,
and otherwise walks the data root a few levels deep for the one folder whose layout
matches the dataset (the same folder names the loaders check). Two matches are an
error that names both and how to pick one. The cache root is never searched: the
synthetic twins cached there must not pass for the real dataset.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from common.data.core import DataError

#: How many folder levels below the data root are searched (slug / archive folder / dataset / ...).
MAX_DEPTH = 4
#: Folders never searched: caches, temporary folders and hidden folders.
SKIP = {"cache", "tmp", "__pycache__"}


def _subdirs(folder: Path) -> set[str]:
    try:
        with os.scandir(folder) as entries:
            return {e.name for e in entries if e.is_dir(follow_symlinks=True)}
    except OSError:
        return set()


def _has_classes(folder: Path, classes: tuple[str, ...]) -> bool:
    return set(classes) <= _subdirs(folder)


def matches_cnmc(folder: Path) -> bool:
    """``folder`` holds ``training_data/fold_<k>/{all,hem}`` (C-NMC_Leukemia itself)."""
    from common.data.images import CNMC_CLASSES

    training = folder / "training_data"
    folds = [d for d in _subdirs(training) if d.startswith("fold_")]
    return bool(folds) and _has_classes(training / sorted(folds)[0], CNMC_CLASSES)


def matches_aria_all(folder: Path) -> bool:
    """``folder`` holds ``Original/{Benign,Early,Pre,Pro}`` (or ``Segmented/...``)."""
    from common.data.images import ARIA_CLASSES, ARIA_VARIANTS

    return any(_has_classes(folder / v, ARIA_CLASSES) for v in ARIA_VARIANTS)


def matches_aml_mll(folder: Path) -> bool:
    """``folder`` holds ``data/<the five classes>`` (the TCIA tree)."""
    from common.data.images import AML_CLASSES

    return _has_classes(folder / "data", AML_CLASSES)


def matches_cumida(folder: Path) -> bool:
    """``folder`` holds ``Leukemia_*.csv`` series files."""
    from common.data.microarray import CUMIDA_PATTERN

    return any(folder.glob(CUMIDA_PATTERN))


MATCHERS: dict[str, Callable[[Path], bool]] = {
    "cnmc": matches_cnmc,
    "aria_all": matches_aria_all,
    "aml_mll": matches_aml_mll,
    "cumida": matches_cumida,
}


def search(
    name: str, base: Path, *, max_depth: int = MAX_DEPTH, exclude: tuple[Path, ...] = ()
) -> list[Path]:
    """Every folder under ``base`` (``base`` itself included, ``max_depth`` levels down)
    whose layout matches dataset ``name``; a match is not searched further."""
    matcher = MATCHERS[name]
    excluded = {Path(p).resolve() for p in exclude}
    found: list[Path] = []
    level = [Path(base)]
    for depth in range(max_depth + 1):
        following = []
        for folder in level:
            if folder.resolve() in excluded:
                continue
            if matcher(folder):
                found.append(folder)
                continue
            if depth < max_depth:
                following += [
                    folder / d
                    for d in sorted(_subdirs(folder))
                    if not d.startswith(".") and d.lower() not in SKIP
                ]
        level = following
    return found


def find_root(name: str) -> Path:
    """The folder dataset ``name`` is read from when no root is given (see the module docstring)."""
    from common.paths import cache_root, data_root

    base = data_root()
    conventional = base / "raw" / name
    if conventional.is_dir():
        return conventional
    if name not in MATCHERS:
        raise DataError(
            f"{conventional} does not exist; put the {name} dataset there or pass its "
            "folder as root"
        )
    if not base.is_dir():
        raise DataError(
            f"data root {base} does not exist; set REPRO_DATA_DIR to the folder holding "
            f"the {name} dataset, or pass its folder as root"
        )
    found = search(name, base, exclude=(cache_root(),))
    if not found:
        raise DataError(
            f"no folder under {base} (searched {MAX_DEPTH} levels deep) has the {name} "
            f"layout; put the dataset at {conventional} or pass its folder as root (python "
            "-m common.data list shows each layout)"
        )
    if len(found) > 1:
        raise DataError(
            f"two folders under {base} have the {name} layout: {found[0]} and "
            f"{found[1]}{f' (and {len(found) - 2} more)' if len(found) > 2 else ''}; pick "
            "one with data_root=<folder> (papermill: -p data_root <folder>; CLI: --root "
            "<folder>)"
        )
    return found[0]
