"""A leakage sheet per protocol: the eight leakage types of Kapoor and Narayanan, answered from the
run's facts.

S. Kapoor and A. Narayanan, "Leakage and the reproducibility crisis in machine-learning-based
science",
*Patterns* 4(9):100804, 2023, doi:10.1016/j.patter.2023.100804. Their taxonomy:

====  ===================================================
L1.1  no test set
L1.2  pre-processing on training and test set
L1.3  feature selection on training and test set
L1.4  duplicates in datasets
L2    model uses features that are not legitimate
L3.1  temporal leakage
L3.2  non-independence between training and test samples
L3.3  sampling bias in test distribution
====  ===================================================

Two steps, so that no answer is typed by hand:

1. :func:`split_record` gathers the *facts* of one protocol from what the notebook already
   holds: the split (a :class:`common.splits.Split`, or train/val/test index arrays, or k
   folds), the rows every data-fitted step saw, where models or settings were chosen, the
   dataset (patients, metadata columns, feature names), the duplicate audit and the class
   labels. The record is plain JSON (counts and names, no index lists).
2. :func:`leakage_sheet` answers each type ``yes`` / ``no`` / ``not applicable`` from those
   facts alone, each with a one-line ``because``.

:meth:`common.runs.Run.record_leakage` keeps both in ``run.json`` under ``leakage``;
``make report`` shows the sheet of every run.

Terms
-----
*Rows* are what a split indexes: the original samples, plus, for a :class:`~common.splits.Split`,
the derived rows (SMOTE rows, oversampled duplicates, augmented copies), each with its
*origin* (the original it derives from). A protocol has one or more *rounds* (a hold-out has
one, k-fold cross-validation k); facts are summed over rounds. The *training side* of a
round is its training and validation rows (both shape the model). A step "saw" a test row
when the step's rows include that row's origin (a scaler fitted on every original has seen
each test sample, whatever copy of it is scored).

Rules (the fact that decides each answer in brackets)
-----------------------------------------------------
L1.1 no test set
    **yes** when a test row was also a training-side row in some round
    [``test_rows_in_train``], or when a model, hyperparameter or threshold was chosen on rows
    that include test rows [``selection``: ``test_rows_seen``]; **no** otherwise. Choosing on
    the test set counts here: the reported test score is then a training (selection) score,
    not an estimate on unseen data.
L1.2 pre-processing on training and test set
    **yes** when a data-fitted pre-processing step (scaler, PCA, autoencoder, balancing,
    augmentation, fine-tuned extractor: ``preprocessing``) saw a test row, or when derived
    rows (SMOTE, oversampling, augmentation) were made before the split, i.e. a derived row of
    that kind is in a test part or derives from a test row [``made_before_split``]; **no** when
    such steps exist and saw training rows only (derived kinds that touch no test row were made
    on training rows after the split [``made_after_split``]); **not applicable** when no step is
    fitted to the data (only per-image filters or frozen networks, listed as ``fixed_steps``).
    A split's samples table records a SMOTE row's origin, not the neighbour it was drawn
    towards: a training SMOTE row interpolated towards a test sample is seen only through the
    other SMOTE rows of a pre-split balancing, which reach the test part in practice.
L1.3 feature selection on training and test set
    Like L1.2 for supervised feature-selection steps [``feature_selection``]; **not
    applicable** when the pipeline selects no features from the data. Unsupervised
    reductions (PCA, an autoencoder) are pre-processing (L1.2): they use no labels.
L1.4 duplicates in datasets
    **yes** when duplicates made by the pipeline (oversampled or augmented copies of one
    sample) sit on both sides [``copies_across``], or the duplicate audit finds test samples
    with a duplicate on the training side [``duplicates``: ``test_with_train_duplicate``]; **no**
    when the audit ran and found none and no copy crosses; when no audit ran, **yes**, with the
    missing fact named (see *Missing facts*).
L2 illegitimate features
    **yes** when a model input is named like a label or metadata column of the dataset
    (the label column, patient, series, study, sample, fold, split, file name, date, ...)
    [``inputs``: ``flagged``]; **no** otherwise. Images: the inputs are the pixels, which a new
    sample has at prediction time; no metadata column reaches the model. Expression sets: the
    inputs are probe columns; Affymetrix ``AFFX-`` control probes (spike-in and housekeeping
    controls measured on every chip) are technical measurements of the same hybridisation,
    available for a new sample too, so they are counted [``technical_controls``], not flagged.
L3.1 temporal leakage
    **not applicable** when the dataset carries no time stamp (no metadata column whose values
    read as dates) [``time``]; with one, **yes** when a test row is older than the latest
    training-side sample, i.e. the model learnt from samples later than ones it is tested on (the
    split is not chronological) [``test_before_last_train``], **no** otherwise. The first date
    column is taken as the sample's date (Bioconductor ALL: ``diagnosis``, the diagnosis date; its
    ``date.cr`` and ``date last seen`` come later). A random split of dated samples answers
    *yes*: it matters most for claims about future samples, and these papers' claims are not
    framed in time, which the ``because`` leaves to the reader.
L3.2 non-independence between training and test samples
    **yes** when a patient (or other group: ``group_kind``) has real samples on both sides
    [``groups``: ``shared``, counted over original rows], or a test row and a training row derive
    from one original
    (a SMOTE row and its origin, a sample and its copy) [``origins_across``]; **no** when
    patient ids exist, none is shared and nothing derives across; when the data carry no
    patient ids, **yes** with the missing fact named.
L3.3 sampling bias in test distribution
    **yes** when test rows are not the real data (SMOTE rows, duplicates, augmented copies in
    a test part) [``synthetic_in_test``], or the test class shares differ from the whole
    data set's by more than the tolerance [``test_classes``]; **no** otherwise. The tolerance is
    5 percentage points or one test row's share (1 / test rows), whichever is larger: a
    stratified split is within one row of the natural shares, and 5 points leave room for the
    coarser granularity of patient-grouped splits.

Missing facts
-------------
A ``no`` must be earned by a fact. Where the fact that would rule a leak out was not
recorded (no duplicate audit ran; the data carry no patient ids), the answer is **yes**
(a leak is not ruled out), the ``because`` says which fact is missing and the entry carries
``"missing": "<fact>"``. The conservative reading for a reviewer is the one that does not
overstate how clean a number is. ``split_record``'s ``duplicates`` keyword has no default, so
every caller says what audit it ran (``None``: none).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

ANSWERS = ("yes", "no", "not applicable")
TYPES = {
    "L1.1": "no test set",
    "L1.2": "pre-processing on training and test set",
    "L1.3": "feature selection on training and test set",
    "L1.4": "duplicates in datasets",
    "L2": "illegitimate features",
    "L3.1": "temporal leakage",
    "L3.2": "non-independence between training and test",
    "L3.3": "sampling bias in test distribution",
}
REFERENCE = (
    'S. Kapoor and A. Narayanan, "Leakage and the reproducibility crisis in machine-learning-based '
    'science", Patterns 4(9):100804, 2023, doi:10.1016/j.patter.2023.100804'
)
#: Test class shares may differ from the data set's by this much (or one test row's share, if
#: larger).
CLASS_SHARE_TOLERANCE = 0.05
#: Derived-row kinds that are copies of a sample (duplicates), as opposed to SMOTE's interpolations.
COPY_KINDS = ("oversample", "augment")
#: Input names that are metadata or label columns whatever the dataset calls them
#: (case-insensitive).
METADATA_WORDS = {
    "label",
    "labels",
    "class",
    "target",
    "type",
    "diagnosis",
    "subtype",
    "patient",
    "patient_id",
    "subject",
    "series",
    "study",
    "batch",
    "sample",
    "samples",
    "sample_id",
    "fold",
    "split",
    "filename",
    "file",
    "path",
    "date",
    "time",
    "year",
}
_DATE = re.compile(
    r"^\s*(\d{1,4})[-/.](\d{1,2})[-/.](\d{1,4})(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?\s*$"
)


# ---------------------------------------------------------------------------- facts
def rows_seen(n_fitted: int, *, train: Sequence[int], test: Sequence[int]) -> np.ndarray:
    """The rows a fitted step saw, from the number of rows it reports having been fitted on
    (``PCA.n_samples_``, ``StandardScaler.n_samples_seen_``): ``train`` when that is the number
    of training rows, ``train`` and ``test`` together when it is both. Anything else is an error:
    the step saw rows this function cannot name."""
    train, test = np.asarray(train).ravel(), np.asarray(test).ravel()
    if int(n_fitted) == train.size:
        return train
    if int(n_fitted) == train.size + test.size:
        return np.concatenate([train, test])
    raise ValueError(
        f"a step fitted on {int(n_fitted)} rows is neither the {train.size} training rows nor the "
        f"{train.size + test.size} training and test rows; pass its rows explicitly"
    )


def date_columns(meta: pd.DataFrame) -> list[str]:
    """Metadata columns whose non-missing values read as dates (at least 90% of them, and at
    least one): ``5/21/1997``, ``1997-05-21``, ``21.05.1997``, optionally with a time."""
    found = []
    for name in meta.columns:
        values = meta[name].dropna()
        if values.empty or pd.api.types.is_numeric_dtype(values):
            continue
        text = values.astype(str)
        if text.str.match(_DATE).mean() >= 0.9:
            found.append(str(name))
    return found


def _as_dates(values: pd.Series) -> pd.Series:
    text = values.astype("string")
    parsed = pd.to_datetime(text, errors="coerce", format="%m/%d/%Y")
    if (
        parsed.notna().sum() < text.notna().sum() * 0.9
    ):  # not US month/day/year: ISO or another order
        parsed = pd.to_datetime(text, errors="coerce", format="mixed")
    return parsed


def _per_round(value: Any, n_rounds: int) -> list[np.ndarray]:
    """One index array per round: ``value`` is one array (every round) or a list of arrays."""
    if isinstance(value, (list, tuple)) and value and all(np.ndim(v) == 1 for v in value):
        if len(value) != n_rounds:
            raise ValueError(
                f"{len(value)} row arrays for {n_rounds} rounds; give one array, or one per round"
            )
        return [np.asarray(v, dtype=np.int64).ravel() for v in value]
    return [np.asarray(value, dtype=np.int64).ravel()] * n_rounds


def _group_indices(groups: Any) -> list[list[int]]:
    """Duplicate groups as index lists: lists of ints, or the audits' dicts with ``index``."""
    out = []
    for group in groups:
        members = group["index"] if isinstance(group, Mapping) else group
        out.append([int(i) for i in members])
    return out


def _duplicate_facts(
    duplicates: Any, rounds: list[tuple], origin: np.ndarray, to_original: Mapping[int, int] | None
) -> dict[str, Any]:
    """Facts of the duplicate audit for these rounds (see :func:`split_record`)."""
    if duplicates is None:
        return {"audited": False}
    items = duplicates if isinstance(duplicates, (list, tuple)) else [duplicates]
    if all(isinstance(d, Mapping) and "n_test_with_train_duplicate" in d for d in items):
        if len(items) != len(rounds):
            raise ValueError(
                f"{len(items)} cross-split duplicate counts for {len(rounds)} rounds; give "
                "one per round"
            )
        return {
            "audited": True,
            "method": items[0].get("method", "near-duplicate audit (common.data.audit)"),
            "test_with_train_duplicate": int(
                sum(int(d["n_test_with_train_duplicate"]) for d in items)
            ),
            "groups_across": None,
        }
    if not isinstance(duplicates, Mapping) or "groups" not in duplicates:
        raise ValueError(
            "duplicates must be None (no audit ran), an audit with 'groups' "
            "(common.data.profile_audit) or cross_split_duplicates results "
            "(common.data.audit), one per round"
        )
    groups = _group_indices(duplicates["groups"])
    if to_original is not None:  # the audit indexes the dataset; the split indexes a subset of it
        groups = [[to_original[i] for i in g if i in to_original] for g in groups]
    groups = [g for g in groups if len(g) > 1]
    partner = {i: set(g) - {i} for g in groups for i in g}
    hit, across = 0, 0
    for train_side, _, test in rounds:
        train_o, test_o = set(origin[train_side].tolist()), origin[test]
        across += sum(bool(set(g) & train_o and set(g) & set(test_o.tolist())) for g in groups)
        hit += int(sum(bool(partner.get(int(o), set()) & train_o) for o in test_o))
    method = duplicates.get("method")
    threshold = duplicates.get("threshold")
    label = "duplicate audit" + (
        f" ({method} correlation >= {threshold})" if method and threshold is not None else ""
    )
    return {
        "audited": True,
        "method": label,
        "test_with_train_duplicate": hit,
        "groups_across": across,
        "groups": len(groups),
    }


def _step_facts(
    steps: Mapping[str, Any] | None, rounds: list[tuple], origin: np.ndarray
) -> dict[str, dict]:
    out = {}
    for name, value in (steps or {}).items():
        per_round = _per_round(value, len(rounds))
        seen, rows = 0, 0
        for rows_k, (_, _, test) in zip(per_round, rounds):
            rows += int(rows_k.size)
            seen += int(np.isin(origin[test], origin[rows_k]).sum())
        out[str(name)] = {"rows": rows, "test_rows_seen": seen}
    return out


def split_record(
    *,
    dataset: Any,
    duplicates: Any,
    split: Any = None,
    train: Sequence[int] | None = None,
    val: Sequence[int] | None = None,
    test: Sequence[int] | None = None,
    folds: Sequence[Sequence[Sequence[int]]] | None = None,
    dataset_rows: Sequence[int] | None = None,
    y: Sequence | None = None,
    groups: Sequence | None = None,
    group_kind: str = "patient",
    preprocessing: Mapping[str, Any] | None = None,
    feature_selection: Mapping[str, Any] | None = None,
    selection: Mapping[str, Any] | None = None,
    fixed_steps: Sequence[str] = (),
    design: str | None = None,
) -> dict[str, Any]:
    """The facts of one protocol that :func:`leakage_sheet` answers from (JSON-able).

    Give the split one of three ways: ``split`` (a :class:`common.splits.Split`: its samples
    table, train/val/test and ``fit_rows``; the scaler step is read from ``fit_rows`` when the
    paper's order scales before the split), ``train``/``test`` (and ``val``) index arrays over
    the original samples, or ``folds``, a list of ``(train, test)`` or ``(train, val, test)``
    (k-fold, leave-one-group-out: one round each). Validation rows count as training side.

    dataset : the :class:`common.data.Dataset` the samples come from (patients, metadata,
        feature names or image paths). ``dataset_rows``: the dataset row of each original
        sample when the split indexes a subset (default: the samples are the dataset's rows).
    duplicates : required. ``None`` when no duplicate audit ran; the profile audit
        (``run.data.duplicate_audit``: its ``groups`` index the dataset); or
        ``common.data.audit.cross_split_duplicates`` results, one per round.
    y : labels of the original samples (default: the dataset's labels).
    groups : patient (or other) ids of the original samples (default: ``dataset.patients``).
    preprocessing, feature_selection, selection : ``{step name: rows}``, the rows each
        data-fitted step saw (one array, or one per round), in the split's row space.
        ``selection``: where a model, hyperparameter or threshold was chosen.
    fixed_steps : names of steps that fit nothing to this data (per-image filters, frozen networks).
    design : words for the design (default: ``hold-out`` or ``<k> rounds``).
    """
    n_given = sum(x is not None for x in (split, test, folds))
    if n_given != 1:
        raise ValueError("give exactly one of split, train/test or folds")
    if split is not None:
        samples = split.samples
        origin = samples["origin"].to_numpy().astype(np.int64)
        kind = samples["kind"].to_numpy().astype(str)
        rounds_raw = [(split.train, split.val, split.test)]
        n = int((kind == "original").sum())
    else:
        if folds is not None:
            rounds_raw = [(f[0], None, f[1]) if len(f) == 2 else (f[0], f[1], f[2]) for f in folds]
        else:
            if train is None:
                raise ValueError("test needs its train")
            rounds_raw = [(train, val, test)]
        n = (
            len(dataset_rows)
            if dataset_rows is not None
            else (len(y) if y is not None else len(dataset))
        )
        origin, kind = np.arange(n), np.full(n, "original")
    rounds = []
    for tr, va, te in rounds_raw:
        tr = np.asarray(tr, dtype=np.int64).ravel()
        va = None if va is None else np.asarray(va, dtype=np.int64).ravel()
        te = np.asarray(te, dtype=np.int64).ravel()
        rounds.append((tr if va is None else np.concatenate([tr, va]), va, te))

    rows_of = (
        np.arange(len(dataset))
        if dataset_rows is None
        else np.asarray(dataset_rows, dtype=np.int64)
    )
    if rows_of.size != n:
        raise ValueError(f"{rows_of.size} dataset rows for {n} original samples")
    labels = np.asarray(y if y is not None else dataset.labels[rows_of]).astype(str)
    if labels.size != n:
        raise ValueError(f"{labels.size} labels for {n} original samples")
    if groups is None and getattr(dataset, "patients", None) is not None:
        groups = np.asarray(dataset.patients)[rows_of]
    groups = None if groups is None else np.asarray(groups).astype(str)

    # the split itself
    in_train = in_copies = shared_origins = 0
    made_before: dict[str, int] = {}
    copies_across: dict[str, int] = {}
    synthetic_in_test = 0
    derived = pd.Series(kind[kind != "original"]).value_counts().to_dict()
    for train_side, _, te in rounds:
        train_set = set(train_side.tolist())
        train_o, test_o = set(origin[train_side].tolist()), set(origin[te].tolist())
        in_train += int(np.isin(te, train_side).sum())
        not_same = ~np.isin(te, list(train_set))
        in_copies += int((np.isin(origin[te], list(train_o)) & not_same).sum())
        shared_origins += len(train_o & test_o)
        synthetic_in_test += int((kind[te] != "original").sum())
        test_origin_mask = np.isin(origin, list(test_o))
        touched = np.zeros(kind.size, dtype=bool)
        touched[te] = True
        touched |= test_origin_mask & np.isin(np.arange(kind.size), train_side)
        for k, c in pd.Series(kind[touched & (kind != "original")]).value_counts().items():
            made_before[str(k)] = made_before.get(str(k), 0) + int(c)
        across = np.zeros(kind.size, dtype=bool)
        across[train_side[np.isin(origin[train_side], list(test_o))]] = True
        across[te[np.isin(origin[te], list(train_o))]] = True
        for k, c in pd.Series(kind[across & (kind != "original")]).value_counts().items():
            copies_across[str(k)] = copies_across.get(str(k), 0) + int(c)

    steps = _step_facts(preprocessing, rounds, origin)
    if (
        split is not None
        and len(split.fit_rows)
        and not np.array_equal(np.sort(split.fit_rows), np.sort(split.train))
    ):
        steps.setdefault(
            "scaler fitted before the split",
            _step_facts({"s": split.fit_rows}, rounds, origin)["s"],
        )

    group_facts: dict[str, Any] = {"kind": group_kind, "available": groups is not None}
    if groups is not None:
        real = (
            kind == "original"
        )  # real samples only: rows derived across the split are ``origins_across``
        shared = sum(
            len(
                set(groups[origin[tr[real[tr]]]].tolist())
                & set(groups[origin[te[real[te]]]].tolist())
            )
            for tr, _, te in rounds
        )
        group_facts.update(n_groups=int(len(set(groups.tolist()))), shared=int(shared))

    to_original = (
        None if dataset_rows is None else {int(r): i for i, r in enumerate(rows_of.tolist())}
    )
    dup = _duplicate_facts(duplicates, rounds, origin, to_original)

    meta = (
        dataset.meta.iloc[rows_of].reset_index(drop=True)
        if len(dataset.meta.columns)
        else pd.DataFrame()
    )
    dated = date_columns(meta)
    time_facts: dict[str, Any] = {"columns": dated, "column": dated[0] if dated else None}
    if dated:
        when = _as_dates(meta[dated[0]])
        earlier, n_dated_test = 0, 0
        for tr, _, te in rounds:
            train_when, test_when = when.iloc[origin[tr]].dropna(), when.iloc[origin[te]].dropna()
            n_dated_test += int(test_when.size)
            if train_when.size:
                earlier += int((test_when < train_when.max()).sum())
        time_facts.update(
            test_before_last_train=earlier,
            n_dated_test=n_dated_test,
            first=None if when.dropna().empty else str(when.min().date()),
            last=None if when.dropna().empty else str(when.max().date()),
        )

    if getattr(dataset, "X", None) is not None:
        names = [
            str(f) for f in (dataset.feature_names if dataset.feature_names is not None else [])
        ]
        words = METADATA_WORDS | {str(c).lower() for c in dataset.meta.columns}
        label_column = (
            dataset.info.get("label_column") if isinstance(dataset.info, Mapping) else None
        )
        if label_column:
            words.add(str(label_column).lower())
        inputs = {
            "kind": "features",
            "n_features": len(names),
            "technical_controls": int(sum(name.upper().startswith("AFFX") for name in names)),
            "flagged": [name for name in names if name.strip().lower() in words],
        }
    else:
        inputs = {"kind": "pixels", "n_features": None, "technical_controls": 0, "flagged": []}

    test_labels = np.concatenate([labels[origin[te]] for _, _, te in rounds])
    data_share = pd.Series(labels).value_counts(normalize=True)
    test_share = pd.Series(test_labels).value_counts(normalize=True)
    classes = sorted(set(data_share.index) | set(test_share.index))
    difference = max(
        abs(float(test_share.get(c, 0.0)) - float(data_share.get(c, 0.0))) for c in classes
    )
    tolerance = max(CLASS_SHARE_TOLERANCE, 1.0 / max(test_labels.size, 1))

    return {
        "design": design or ("hold-out" if len(rounds) == 1 else f"{len(rounds)} rounds"),
        "rounds": len(rounds),
        "n_samples": n,
        "n_rows": int(kind.size),
        "n_train": int(sum(r[0].size for r in rounds)),
        "n_test": int(test_labels.size),
        "test_rows_in_train": in_train,
        "origins_across": in_copies,
        "shared_origins": shared_origins,
        "derived_rows": {str(k): int(v) for k, v in derived.items()},
        "made_before_split": made_before,
        "made_after_split": {
            str(k): int(v) for k, v in derived.items() if str(k) not in made_before
        },
        "copies_across": {k: v for k, v in copies_across.items() if k in COPY_KINDS},
        "synthetic_in_test": synthetic_in_test,
        "preprocessing": steps,
        "feature_selection": _step_facts(feature_selection, rounds, origin),
        "selection": _step_facts(selection, rounds, origin),
        "fixed_steps": [str(s) for s in fixed_steps],
        "groups": group_facts,
        "duplicates": dup,
        "time": time_facts,
        "inputs": inputs,
        "test_classes": {
            "test_share": {c: round(float(test_share.get(c, 0.0)), 4) for c in classes},
            "data_share": {c: round(float(data_share.get(c, 0.0)), 4) for c in classes},
            "max_difference": round(difference, 4),
            "tolerance": round(tolerance, 4),
        },
    }


# ---------------------------------------------------------------------------- rules
def _entry(answer: str, because: str, missing: str | None = None) -> dict[str, str]:
    entry = {"answer": answer, "because": " ".join(because.split())}
    if missing:
        entry["missing"] = missing
    return entry


def _names(steps: Mapping[str, dict]) -> str:
    return ", ".join(steps) if steps else "none"


def _kinds(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items())


def rule_no_test_set(r: Mapping[str, Any]) -> dict[str, str]:
    chosen_on_test = {k: v for k, v in r["selection"].items() if v["test_rows_seen"]}
    if r["test_rows_in_train"]:
        return _entry(
            "yes", f"{r['test_rows_in_train']} of {r['n_test']} test rows were also training rows"
        )
    if chosen_on_test:
        step, facts = next(iter(chosen_on_test.items()))
        return _entry(
            "yes",
            f"{step} chosen on rows that include {facts['test_rows_seen']} of the "
            f"{r['n_test']} test rows (selection on the test set)",
        )
    chosen = f"; {_names(r['selection'])} chosen without test rows" if r["selection"] else ""
    return _entry("no", f"{r['n_test']} test rows, none a training row ({r['design']}){chosen}")


def _fitted_rule(
    steps: Mapping[str, dict],
    made_before: Mapping[str, int],
    made_after: Mapping[str, int],
    fixed: Sequence[str],
    what: str,
) -> dict[str, str]:
    on_test = [
        f"{k} ({v['test_rows_seen']} test rows)" for k, v in steps.items() if v["test_rows_seen"]
    ]
    if made_before:
        on_test.append(
            f"{_kinds(made_before)} rows in or from the test part (made before the split)"
        )
    if on_test:
        return _entry("yes", f"fitted on rows that include test rows: {'; '.join(on_test)}")
    after = [f"{k} rows made after the split" for k in made_after]
    if steps or after:
        return _entry(
            "no", f"every {what} step saw training rows only: {', '.join([*steps, *after])}"
        )
    fixed_text = f"; fitting nothing to it: {'; '.join(fixed)}" if fixed else ""
    return _entry("not applicable", f"no {what} step is fitted to the data{fixed_text}")


def rule_preprocessing(r: Mapping[str, Any]) -> dict[str, str]:
    return _fitted_rule(
        r["preprocessing"],
        r["made_before_split"],
        r["made_after_split"],
        r["fixed_steps"],
        "pre-processing",
    )


def rule_feature_selection(r: Mapping[str, Any]) -> dict[str, str]:
    return _fitted_rule(r["feature_selection"], {}, {}, (), "supervised feature-selection")


def rule_duplicates(r: Mapping[str, Any]) -> dict[str, str]:
    dup, copies = r["duplicates"], r["copies_across"]
    if copies:
        return _entry("yes", f"copies of one sample on both sides: {_kinds(copies)} rows")
    if not dup.get("audited"):
        return _entry(
            "yes",
            "no duplicate audit in this run: near-duplicates across the split are not ruled out",
            missing="duplicate audit",
        )
    across = (
        f", {dup['groups_across']} duplicate groups across the split"
        if dup.get("groups_across") is not None
        else ""
    )
    if dup["test_with_train_duplicate"]:
        return _entry(
            "yes",
            f"{dup['method']}: {dup['test_with_train_duplicate']} test samples have a duplicate "
            f"on the training side{across}",
        )
    return _entry(
        "no",
        f"{dup['method']}: no test sample has a duplicate on the training side{across}; "
        "no copy crosses the split",
    )


def rule_features(r: Mapping[str, Any]) -> dict[str, str]:
    inputs = r["inputs"]
    if inputs["flagged"]:
        return _entry(
            "yes",
            "model inputs named like label or metadata columns: "
            f"{', '.join(inputs['flagged'][:5])}",
        )
    if inputs["kind"] == "pixels":
        return _entry(
            "no",
            "inputs are the images' pixels only; no metadata column (patient, series, file name) "
            "reaches the model",
        )
    controls = (
        f"; {inputs['technical_controls']} AFFX control probes, technical measurements of "
        "the same chip"
        if inputs["technical_controls"]
        else ""
    )
    return _entry(
        "no",
        f"inputs are {inputs['n_features']} expression features, none named like a label or "
        f"metadata column{controls}",
    )


def rule_temporal(r: Mapping[str, Any]) -> dict[str, str]:
    time = r["time"]
    if not time["columns"]:
        return _entry("not applicable", "no date or time column in the dataset's metadata")
    span = f"column '{time['column']}', {time['first']} to {time['last']}"
    if time["test_before_last_train"]:
        return _entry(
            "yes",
            f"{time['test_before_last_train']} of {time['n_dated_test']} dated test rows are older "
            f"than the latest training-side sample ({span}): the split is not chronological",
        )
    return _entry(
        "no", f"every dated test row is at least as recent as every training-side sample ({span})"
    )


def rule_non_independence(r: Mapping[str, Any]) -> dict[str, str]:
    groups, kind = r["groups"], r["groups"]["kind"]
    reasons = []
    if groups["available"] and groups["shared"]:
        reasons.append(
            f"{groups['shared']} of {groups['n_groups']} {kind}s have samples on both sides"
        )
    if r["origins_across"]:
        reasons.append(
            f"{r['origins_across']} test rows derive from a sample on the training side "
            "(SMOTE rows or copies made before the split)"
        )
    if reasons:
        return _entry("yes", "; ".join(reasons))
    if not groups["available"]:
        return _entry(
            "yes",
            f"no {kind} ids in the data: samples of one {kind} may sit on both sides",
            missing=f"{kind} ids",
        )
    return _entry(
        "no",
        f"0 of {groups['n_groups']} {kind}s on both sides; no test row derives from a "
        "training sample",
    )


def rule_sampling_bias(r: Mapping[str, Any]) -> dict[str, str]:
    shares = r["test_classes"]
    reasons = []
    if r["synthetic_in_test"]:
        reasons.append(
            f"{r['synthetic_in_test']} of {r['n_test']} test rows are synthetic or copies, "
            "not real samples"
        )
    if shares["max_difference"] > shares["tolerance"] + 1e-9:
        reasons.append(
            "test class shares differ from the data set's by up to "
            f"{100 * shares['max_difference']:.1f} points (tolerance "
            f"{100 * shares['tolerance']:.1f})"
        )
    if reasons:
        return _entry("yes", "; ".join(reasons))
    return _entry(
        "no",
        f"{r['n_test']} real test rows, class shares within {100 * shares['max_difference']:.1f} "
        "points of the data set's",
    )


RULES = {
    "L1.1": rule_no_test_set,
    "L1.2": rule_preprocessing,
    "L1.3": rule_feature_selection,
    "L1.4": rule_duplicates,
    "L2": rule_features,
    "L3.1": rule_temporal,
    "L3.2": rule_non_independence,
    "L3.3": rule_sampling_bias,
}


def leakage_sheet(record: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Each taxonomy type -> ``{"answer": yes|no|not applicable, "because": one line[, "missing":
    fact]}``,
    by the rules of the module docstring, from a :func:`split_record`."""
    sheet = {}
    for code, rule in RULES.items():
        try:
            sheet[code] = rule(record)
        except KeyError as missing:
            raise ValueError(
                f"the record lacks the fact {missing} that rule {code} ({TYPES[code]}) needs; "
                "build it with common.leakage.split_record"
            ) from None
        if sheet[code]["answer"] not in ANSWERS:  # pragma: no cover - the rules return only these
            raise AssertionError(f"rule {code} answered {sheet[code]['answer']!r}")
    return sheet


# ---------------------------------------------------------------------------- tables
def short_answer(answer: str) -> str:
    """``n/a`` for ``not applicable``; other answers as they are."""
    return {"not applicable": "n/a"}.get(answer, answer)


def sheet_table(
    leakage: Mapping[str, Mapping[str, Any]], *, full_names: bool = False, missing_mark: str = "*"
) -> pd.DataFrame:
    """Protocols x types, the answers (``run.leakage`` or ``run.json``'s ``leakage``); an answer
    that rests on a missing fact carries ``missing_mark``. Compact by default (columns ``L1.1``...,
    ``n/a``); ``full_names`` spells out each type and answer."""
    rows = {}
    for protocol, entry in leakage.items():
        sheet = entry["sheet"]
        rows[protocol] = {
            f"{code} {name}" if full_names else code: (
                sheet[code]["answer"] if full_names else short_answer(sheet[code]["answer"])
            )
            + (missing_mark if sheet[code].get("missing") else "")
            for code, name in TYPES.items()
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("protocol")


def sheet_markdown(leakage: Mapping[str, Mapping[str, Any]] | None) -> str:
    """The sheet as Markdown for the report: a protocols x types table whose cells show the answer
    (the reason on hover) and a numbered footnote, then the footnotes (every reason)."""
    import html

    if not leakage:
        return "No leakage sheet in this run (older run: its run.json predates the sheet)."
    header = ["protocol", *[f"{code} {name}" for code, name in TYPES.items()]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes, number = [], 0
    for protocol, entry in leakage.items():
        cells = [f"`{protocol}`"]
        for code in TYPES:
            item = entry["sheet"][code]
            number += 1
            because = item["because"].replace("|", "/")
            mark = "*" if item.get("missing") else ""
            answer = short_answer(item["answer"])
            text = f"**{answer}**{mark}" if item["answer"] == "yes" else f"{answer}{mark}"
            cells.append(
                f'<span title="{html.escape(because, quote=True)}">{text}</span> '
                f"<sup>{number}</sup>"
            )
            notes.append(f"{number}. `{protocol}`, {code}: {because}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(
        [
            *lines,
            "",
            "Reasons (hover a cell for its own; * = a fact was missing, so the leak is not "
            "ruled out):",
            "",
            *notes,
        ]
    )
