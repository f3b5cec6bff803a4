"""Datasets: one registry, real-layout loaders, synthetic twins, streaming batches.

>>> from common.data import load
>>> ds = load("bioc_all")                 # default root: <data>/raw/debian (or <cache>/raw/debian)
>>> ds = load("cnmc")                     # <data>/raw/cnmc, else the one folder with its layout
>>> ds = load("cnmc", root="data/raw/cnmc")

Every loader returns a :class:`~common.data.core.Dataset`. ``python -m common.data``
is the command-line interface (``list``, ``inspect``, ``synth``, ``fetch``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.data.core import SYNTHETIC_MARKER, DataError, Dataset
from common.data.discover import find_root
from common.data.images import load_aml_mll, load_aria_all, load_cnmc
from common.data.microarray import debian_root, fetch_debian, load_bioc_all, load_cumida, load_golub
from common.paths import cache_root, data_root, download_root

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "SYNTHETIC_MARKER",
    "default_root",
    "load",
    "load_or_fetch",
]


@dataclass(frozen=True)
class DatasetInfo:
    """What the registry knows about a dataset."""

    id: str
    title: str
    papers: str
    source: str
    licence: str
    layout: str
    loader: Callable[..., Dataset]
    fetch: str  # "debian", "kaggle:<owner>/<slug>" (kagglehub) or manual instructions
    #: samples per label in the full dataset as data/README.md gives them (None: depends on options
    #: or unverified); the preflight reports a copy that differs (subsets and rehearsals are
    #: legitimate)
    counts: dict[str, int] | None = None


DATASETS: dict[str, DatasetInfo] = {
    d.id: d
    for d in [
        DatasetInfo(
            "cumida",
            "CuMiDa leukemia microarray series",
            "01",
            "CuMiDa (Feltes et al. 2019), one CSV per GEO series",
            "public GEO-derived data; cite Feltes et al. 2019 and each GSE series",
            "<root>/Leukemia_<GSE>[_<platform>].csv  (samples, type, <probe ids>...)",
            load_cumida,
            "Download each Leukemia_*.csv from the CuMiDa website (Leukemia section) into <root>.",
        ),
        DatasetInfo(
            "bioc_all",
            "Bioconductor ALL (Chiaretti et al. 2004)",
            "01 (embedded-real stand-in)",
            "Debian package r-bioc-all",
            "Artistic-2.0 (Bioconductor package ALL)",
            "<root>/**/site-library/ALL/data/ALL.rda",
            load_bioc_all,
            "debian",
        ),
        DatasetInfo(
            "golub",
            "Golub et al. 1999 (Dudoit et al. preprocessing)",
            "01 (embedded-real stand-in)",
            "Debian package r-bioc-multtest",
            "LGPL (Bioconductor package multtest)",
            "<root>/**/site-library/multtest/data/golub.RData",
            load_golub,
            "debian",
        ),
        DatasetInfo(
            "cnmc",
            "C-NMC 2019 single-cell images",
            "02, 03",
            "Kaggle andrewmvd/leukemia-classification (from TCIA C-NMC 2019)",
            "see the Kaggle and TCIA pages (TCIA data usage policy); verify before redistribution",
            "<root>/C-NMC_Leukemia/training_data/fold_{0,1,2}/{all,hem}/*.bmp, validation_data/...",
            load_cnmc,
            "kaggle:andrewmvd/leukemia-classification",
            {"all": 7272 + 1219, "hem": 3389 + 648},  # training folds + labelled prelim set
        ),
        DatasetInfo(
            "aria_all",
            "Kaggle ALL images (Aria et al.)",
            "05",
            "Kaggle mehradaria/leukemia",
            "see the Kaggle page; verify before redistribution",
            "<root>/{Original,Segmented}/{Benign,Early,Pre,Pro}/*.jpg",
            load_aria_all,
            "kaggle:mehradaria/leukemia",
            {"Benign": 504, "Early": 985, "Pre": 963, "Pro": 804},
        ),
        DatasetInfo(
            "aml_mll",
            "AML-Cytomorphology_MLL_Helmholtz (Hehr et al. 2023)",
            "04",
            "The Cancer Imaging Archive (TCIA) collection AML-Cytomorphology_MLL_Helmholtz",
            "TCIA data usage policy (see the collection page)",
            "<root>/data/{control,CBFB_MYH11,NPM1,PML_RARA,RUNX1_RUNX1T1}/<patient>/*.tif "
            "[+ metadata CSV]",
            load_aml_mll,
            "Download the collection with the NBIA Data Retriever from its TCIA page into <root>.",
            {
                "control": 20305,
                "CBFB_MYH11": 17212,
                "NPM1": 17710,
                "RUNX1_RUNX1T1": 14403,
                "PML_RARA": 11584,
            },
        ),
    ]
}


def default_root(name: str) -> Path:
    """Where a dataset is read from when no root is given.

    Debian-packaged sets: ``<data>/raw/debian``, else ``<cache>/raw/debian`` (where
    :func:`fetch_debian` puts them when the data root is read-only), else where a fetch
    would put them. Other sets: :func:`~common.data.discover.find_root`
    (``<data>/raw/<name>``, else the one folder under the data root with its layout).
    """
    info = registry_entry(name)
    if info.fetch == "debian":
        for base in (data_root(), cache_root()):
            if debian_root(base).is_dir():
                return debian_root(base)
        return debian_root(download_root())
    return find_root(name)


def registry_entry(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def load(name: str, *, root: Path | str | None = None, **kwargs: Any) -> Dataset:
    """Load a dataset by registry id from ``root`` (default :func:`default_root`)."""
    info = registry_entry(name)
    return info.loader(Path(root) if root is not None else default_root(name), **kwargs)


def load_or_fetch(name: str, *, root: Path | str | None = None, **kwargs: Any) -> Dataset:
    """:func:`load`, first fetching a Debian-packaged set (``bioc_all``, ``golub``)
    into its default folder when it is not there yet. Other datasets are loaded as they are."""
    info = registry_entry(name)
    if info.fetch == "debian" and root is None and not default_root(name).is_dir():
        where = (
            ""
            if default_root(name).is_relative_to(data_root())
            else " (the data root is read-only)"
        )
        print(f"fetching {name} from Debian packages into {default_root(name)}{where}", flush=True)
        fetch_debian(default_root(name))
    return load(name, root=root, **kwargs)
