"""Image datasets read from their real on-disk layouts (file lists, never pixels).

- ``cnmc``: C-NMC 2019, ``C-NMC_Leukemia/training_data/fold_<k>/{all,hem}/*.bmp`` and
  the prelim test set ``validation_data/C-NMC_test_prelim_phase_data/<n>.bmp`` with
  its labels CSV (``Patient_ID,new_names,labels``; 1 = ALL, 0 = HEM).
- ``aria_all``: Kaggle ALL of Aria et al., ``{Original,Segmented}/{Benign,Early,Pre,Pro}/*.jpg``.
- ``aml_mll``: AML-Cytomorphology_MLL_Helmholtz, ``data/<class>/<patient>/*`` plus an
  optional metadata CSV beside ``data/`` (decimal commas allowed).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from common.data.core import DataError, Dataset, build_dataset, image_files, require_dir

CNMC_DIR = "C-NMC_Leukemia"
CNMC_CLASSES = ("all", "hem")
CNMC_PRELIM_DIR = "validation_data/C-NMC_test_prelim_phase_data"
CNMC_PRELIM_CSV = "validation_data/C-NMC_test_prelim_phase_data_labels.csv"
CNMC_NAME = re.compile(r"^UID_([A-Za-z]?\d+)_\d+_\d+_(all|hem)\.bmp$", re.IGNORECASE)
ARIA_CLASSES = ("Benign", "Early", "Pre", "Pro")
ARIA_VARIANTS = ("Original", "Segmented")
AML_CLASSES = ("CBFB_MYH11", "NPM1", "PML_RARA", "RUNX1_RUNX1T1", "control")


def _class_folder_check(parent: Path, known: tuple[str, ...], what: str) -> list[Path]:
    """The class folders of ``parent``; unknown or empty folders are errors."""
    folders = sorted(p for p in parent.iterdir() if p.is_dir())
    unknown = [p.name for p in folders if p.name not in known]
    if unknown:
        raise DataError(
            f"unknown class folder(s) {unknown} in {parent}; expected only {list(known)} ({what})"
        )
    missing = [k for k in known if not (parent / k).is_dir()]
    if missing:
        raise DataError(
            f"class folder(s) {missing} missing in {parent}; the {what} layout has {list(known)}"
        )
    return [parent / k for k in known]


# --------------------------------------------------------------------------- C-NMC
def cnmc_subject(filename: str) -> str:
    """Subject id from a C-NMC file name, case-normalised: ``UID_h3_1_1_hem.bmp`` -> ``H3``."""
    match = CNMC_NAME.match(Path(filename).name)
    if not match:
        raise DataError(
            f"file name {filename!r} does not follow UID_<subject>_<image>_<cell>_<all|hem>.bmp"
        )
    return match.group(1).upper()


def _cnmc_base(root: Path) -> Path:
    root = require_dir(
        root,
        "C-NMC root",
        "download Kaggle andrewmvd/leukemia-classification and point --root at it",
    )
    return root / CNMC_DIR if (root / CNMC_DIR).is_dir() else root


def load_cnmc(root: Path, *, include_prelim: bool = True) -> Dataset:
    """C-NMC 2019: the three subject-disjoint training folds, plus the labelled prelim set.

    ``meta`` has ``split`` (``train`` / ``prelim``), ``fold`` (0-2, -1 for prelim) and
    ``filename``; ``patients`` are subject ids parsed from the (original) file names.
    Labels are ``all`` and ``hem``. The unlabelled final test set is counted in
    ``info`` but not loaded.
    """
    base = _cnmc_base(Path(root))
    training = require_dir(
        base / "training_data",
        "C-NMC training_data",
        f"expected {CNMC_DIR}/training_data/fold_0..2/{{all,hem}}",
    )
    folds = sorted(p for p in training.iterdir() if p.is_dir())
    bad = [p.name for p in folds if not re.fullmatch(r"fold_\d+", p.name)]
    if bad or not folds:
        raise DataError(
            f"{training} should hold fold_0, fold_1, fold_2 only; found {[p.name for p in folds]}"
        )
    rows, problems = [], []
    for fold in folds:
        for folder in _class_folder_check(fold, CNMC_CLASSES, "C-NMC"):
            files = image_files(folder)
            if not files:
                raise DataError(f"class folder {folder} is empty; re-download or remove the fold")
            for f in files:
                if not CNMC_NAME.match(f.name):
                    raise DataError(
                        f"{f}: name does not follow "
                        "UID_<subject>_<image>_<cell>_<all|hem>.bmp; rename or remove it"
                    )
                suffix_label = f.stem.rsplit("_", 1)[-1].lower()
                if suffix_label != folder.name:
                    problems.append(f"{f} is in {folder.name}/ but its name says {suffix_label}")
                rows.append(
                    {
                        "path": str(f),
                        "label": folder.name,
                        "subject": cnmc_subject(f.name),
                        "split": "train",
                        "fold": int(fold.name.split("_")[1]),
                        "filename": f.name,
                    }
                )
    n_prelim = 0
    if include_prelim and (base / CNMC_PRELIM_DIR).is_dir():
        prelim = _read_cnmc_prelim(base)
        n_prelim = len(prelim)
        rows.extend(prelim)
    testing = base / "testing_data"
    n_unlabelled = (
        sum(1 for p in testing.rglob("*") if p.suffix.lower() == ".bmp") if testing.is_dir() else 0
    )
    table = pd.DataFrame(rows)
    return build_dataset(
        "cnmc",
        base,
        [str(Path(p).relative_to(base)) for p in table["path"]],
        table["label"],
        patients=table["subject"],
        paths=table["path"],
        meta=table[["split", "fold", "filename"]],
        info={
            "n_prelim": n_prelim,
            "n_unlabelled_test": n_unlabelled,
            "folds": [p.name for p in folds],
        },
        problems=problems,
    )


def _read_cnmc_prelim(base: Path) -> list[dict]:
    csv = base / CNMC_PRELIM_CSV
    if not csv.is_file():
        raise DataError(
            f"{csv} is missing; the prelim images cannot be labelled without it (or pass "
            "include_prelim=False)"
        )
    table = pd.read_csv(csv)
    missing = [c for c in ("Patient_ID", "new_names", "labels") if c not in table.columns]
    if missing:
        raise DataError(f"{csv} lacks column(s) {missing}; expected Patient_ID,new_names,labels")
    if table[["Patient_ID", "new_names", "labels"]].isna().any().any():
        raise DataError(f"{csv} has empty cells; every row needs Patient_ID, new_names and labels")
    bad_labels = sorted(set(table["labels"].astype(str)) - {"0", "1"})
    if bad_labels:
        raise DataError(f"{csv}: labels {bad_labels} are not 0 (HEM) or 1 (ALL)")
    folder = base / CNMC_PRELIM_DIR
    rows = []
    for _, r in table.iterrows():
        path = folder / str(r["new_names"])
        if not path.is_file():
            raise DataError(
                f"{csv}: row {r['new_names']} matches no file in {folder}; fix the CSV or "
                "restore the image"
            )
        rows.append(
            {
                "path": str(path),
                "label": "all" if int(r["labels"]) == 1 else "hem",
                "subject": cnmc_subject(str(r["Patient_ID"])),
                "split": "prelim",
                "fold": -1,
                "filename": str(r["Patient_ID"]),
            }
        )
    unlisted = {p.name for p in image_files(folder)} - set(table["new_names"].astype(str))
    if unlisted:
        raise DataError(
            f"{len(unlisted)} prelim image(s) in {folder} have no row in {csv.name} (e.g. "
            f"{sorted(unlisted)[0]})"
        )
    return rows


# -------------------------------------------------------------------- Aria et al.
def load_aria_all(root: Path, *, variant: str = "Original") -> Dataset:
    """Kaggle ALL (Aria et al.): Benign, Early, Pre, Pro; ``variant`` Original or Segmented.

    No patient ids can be recovered from this dataset: ``patients`` is None and only
    image-level splits are possible.
    """
    if variant not in ARIA_VARIANTS:
        raise DataError(f"variant {variant!r} is not one of {ARIA_VARIANTS}")
    root = require_dir(
        Path(root), "Aria ALL root", "download Kaggle mehradaria/leukemia and point --root at it"
    )
    base = require_dir(
        root / variant,
        f"{variant}/ folder",
        f"expected {root}/{variant}/{{{','.join(ARIA_CLASSES)}}}",
    )
    rows = []
    for folder in _class_folder_check(base, ARIA_CLASSES, "Aria ALL"):
        files = image_files(folder)
        if not files:
            raise DataError(f"class folder {folder} is empty; re-download the dataset")
        rows += [{"path": str(f), "label": folder.name} for f in files]
    table = pd.DataFrame(rows)
    return build_dataset(
        "aria_all",
        root,
        [str(Path(p).relative_to(root)) for p in table["path"]],
        table["label"],
        patients=None,
        paths=table["path"],
        meta=pd.DataFrame({"variant": [variant] * len(table)}),
        info={"variant": variant, "patient_ids": "none recoverable: image-level splits only"},
    )


# ---------------------------------------------------------------------------- AML
def _parse_decimal_commas(table: pd.DataFrame) -> pd.DataFrame:
    """Columns that hold only numbers become numeric; decimal commas ("45,5") are read as points."""
    out = table.copy()
    for col in out.columns:
        text = out[col].astype(str).str.strip()
        filled = text[~text.isin(["", "nan", "NaN", "None"])]
        if len(filled) and filled.str.fullmatch(r"-?\d+(?:[.,]\d+)?").all():
            out[col] = pd.to_numeric(text.str.replace(",", ".", regex=False), errors="coerce")
    return out


def read_aml_metadata(path: Path) -> pd.DataFrame:
    """The AML metadata CSV (separator sniffed; decimal commas parsed)."""
    try:
        table = pd.read_csv(path, sep=None, engine="python", dtype=str)
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise DataError(
            f"cannot read metadata {path} ({type(exc).__name__}); fix or remove the file"
        ) from None
    table.columns = [c.strip() for c in table.columns]
    if "patient_id" not in table.columns:
        raise DataError(
            f"metadata {path} has no patient_id column; found {list(table.columns)[:6]}"
        )
    return _parse_decimal_commas(table)


def load_aml_mll(root: Path) -> Dataset:
    """AML-Cytomorphology_MLL_Helmholtz: class / patient / image; every cell takes its patient's
    label.

    ``root`` holds ``data/`` (or is ``data/`` itself). Every image file in a patient
    folder is taken. A metadata CSV beside ``data/`` is merged by ``patient_id``.
    """
    root = require_dir(
        Path(root),
        "AML root",
        "download AML-Cytomorphology_MLL_Helmholtz from TCIA and point --root at it",
    )
    data = root / "data" if (root / "data").is_dir() else root
    rows, problems = [], []
    for folder in _class_folder_check(data, AML_CLASSES, "AML-Cytomorphology_MLL_Helmholtz"):
        patients = sorted(p for p in folder.iterdir() if p.is_dir())
        if not patients:
            raise DataError(
                f"class folder {folder} has no patient folders; expected "
                f"{folder}/<patient>/<images>"
            )
        for patient in patients:
            files = image_files(patient)
            if not files:
                problems.append(f"patient folder {patient} holds no images")
            rows += [{"path": str(f), "label": folder.name, "patient": patient.name} for f in files]
    if not rows:
        raise DataError(f"no images under {data}; expected {data}/<class>/<patient>/*.tif")
    table = pd.DataFrame(rows)
    meta = table[["patient"]].copy()
    csvs = sorted(p for p in (data.parent if data != root else root).glob("*.csv"))
    info = {"metadata": None}
    if csvs:
        md = read_aml_metadata(csvs[0]).drop_duplicates("patient_id")
        meta = meta.merge(md, how="left", left_on="patient", right_on="patient_id").drop(
            columns="patient_id"
        )
        unmatched = sorted(set(table["patient"]) - set(md["patient_id"]))
        if unmatched:
            problems.append(
                f"{len(unmatched)} patient folder(s) have no row in {csvs[0].name} (e.g. "
                f"{unmatched[0]})"
            )
        info["metadata"] = str(csvs[0])
    return build_dataset(
        "aml_mll",
        data.parent if data != root else root,
        [str(Path(p).relative_to(data)) for p in table["path"]],
        table["label"],
        patients=table["patient"],
        paths=table["path"],
        meta=meta,
        info=info,
        problems=problems,
    )
