"""Train/validation/test splits under two protocols, and a leak check.

``make_split`` is the one entry point:

- ``published``: the paper's own order of operations (``paper_order``), e.g.
  ``("balance", "split")`` for SMOTE on the whole dataset before an 80/20 split, or
  ``("balance", "augment", "split")``. Splits are image-level (patients ignored),
  as the papers do.
- ``leak_free``: split first (grouped by patient when ``groups`` is given), then
  balance and augment the **training** set only; validation and test sets are
  untouched, in their natural class proportions; scalers and feature selection are
  fitted on training rows only.

The result indexes a table of *samples*: the originals plus any synthetic (SMOTE),
duplicated (oversampling) or augmented copies, each with its ``origin`` (the
original it derives from). ``leak_report`` traces those origins and patients
across the split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from common.balance import oversample

PROTOCOLS = ("published", "leak_free")
STEPS = ("scale", "balance", "augment", "split")


def _check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    fractions = tuple(float(f) for f in fractions)
    if (
        len(fractions) not in (2, 3)
        or any(f <= 0 for f in fractions)
        or abs(sum(fractions) - 1) > 1e-6
    ):
        raise ValueError(
            "fractions must be 2 or 3 positive numbers summing to 1 (train, [val,] test), "
            f"got {fractions}"
        )
    return fractions


def _grouped_holdout(
    y: np.ndarray, groups: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out about ``fraction`` of samples, whole groups at a time, stratified."""
    n_splits = max(2, int(round(1 / fraction)))
    n_groups = len(set(groups.tolist()))
    if n_groups < n_splits:
        raise ValueError(
            f"{n_groups} patients cannot be split {n_splits} ways; use fewer folds or more patients"
        )
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    rest, held = next(cv.split(np.zeros(y.size), y, groups))
    return rest, held


def stratified_split(
    y: Sequence,
    *,
    fractions: Sequence[float] = (0.8, 0.2),
    groups: Sequence | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(train, val, test) index arrays, stratified by class; ``val`` is None for two fractions.

    With ``groups`` (patient ids) the split is patient-grouped (StratifiedGroupKFold:
    fractions are then approximate, since whole patients move together).
    """
    y = np.asarray(y)
    fractions = _check_fractions(fractions)
    idx = np.arange(y.size)
    test_frac = fractions[-1]
    if groups is None:
        rest, test = train_test_split(idx, test_size=test_frac, stratify=y, random_state=seed)
    else:
        groups = np.asarray(groups)
        rest, test = _grouped_holdout(y, groups, test_frac, seed)
    if len(fractions) == 2:
        return np.sort(rest), None, np.sort(test)
    val_frac = fractions[1] / (fractions[0] + fractions[1])
    if groups is None:
        train, val = train_test_split(rest, test_size=val_frac, stratify=y[rest], random_state=seed)
    else:
        r_train, r_val = _grouped_holdout(y[rest], groups[rest], val_frac, seed + 1)
        train, val = rest[r_train], rest[r_val]
    return np.sort(train), np.sort(val), np.sort(test)


def stratified_kfold(
    y: Sequence, *, k: int = 5, groups: Sequence | None = None, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train, test) index pairs; patient-grouped when ``groups`` is given."""
    y = np.asarray(y)
    if groups is None:
        cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        return [(tr, te) for tr, te in cv.split(np.zeros(y.size), y)]
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in cv.split(np.zeros(y.size), y, np.asarray(groups))]


@dataclass
class Split:
    """A split over ``samples`` (originals plus derived copies).

    samples : table with ``origin`` (index of the original sample), ``kind``
        (``original``, ``smote``, ``oversample``, ``augment``) and ``y``.
    X : feature rows aligned with ``samples`` when a feature matrix was given.
    fit_rows : rows to fit scalers / feature selection on.
    steps : what was done, in order, in words.
    """

    protocol: str
    samples: pd.DataFrame
    train: np.ndarray
    val: np.ndarray | None
    test: np.ndarray
    fit_rows: np.ndarray
    X: np.ndarray | None = None
    steps: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"{self.protocol}: " + "; then ".join(self.steps)

    def counts(self) -> pd.DataFrame:
        """Class counts per part (train/val/test) - what the notebooks print."""
        parts = {"train": self.train, "val": self.val, "test": self.test}
        return (
            pd.DataFrame(
                {
                    name: self.samples["y"].iloc[idx].value_counts().sort_index()
                    for name, idx in parts.items()
                    if idx is not None
                }
            )
            .fillna(0)
            .astype(int)
        )


def _table(origin: np.ndarray, y: np.ndarray, kind: str, n_original: int) -> pd.DataFrame:
    kinds = np.where(np.arange(origin.size) < n_original, "original", kind)
    return pd.DataFrame({"origin": origin, "kind": kinds, "y": y[origin]})


def _ratio(fractions: tuple[float, ...]) -> str:
    return "/".join(f"{round(100 * f)}" for f in fractions)


def make_split(
    y: Sequence,
    protocol: str,
    *,
    fractions: Sequence[float] = (0.8, 0.2),
    groups: Sequence | None = None,
    X: np.ndarray | None = None,
    balance: str | None = None,
    augment_copies: int = 0,
    paper_order: Sequence[str] = ("split",),
    k_neighbors: int = 5,
    smote_fallback: str | None = None,
    seed: int = 0,
) -> Split:
    """Split (and balance / augment) under ``protocol``; see the module docstring.

    Parameters
    ----------
    y : (n,) labels of the original samples.
    protocol : ``published`` or ``leak_free``.
    fractions : (train, test) or (train, val, test).
    groups : (n,) patient ids, used by ``leak_free`` (``published`` splits images).
    X : (n, d) features; needed for SMOTE, and carried along (synthetic rows added).
    balance : None, ``smote``, ``random`` or ``replicate`` (see :mod:`common.balance`).
    augment_copies : extra augmented copies per sample (offline augmentation, as
        papers that augment before splitting do); copies are transformed on the fly.
    paper_order : the paper's order of ``scale``, ``balance``, ``augment`` and
        ``split`` (``published`` only). Steps not listed are done after the split,
        on the training set.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    y = np.asarray(y)
    n = y.size
    fractions = _check_fractions(fractions)
    unknown = [s for s in paper_order if s not in STEPS]
    if unknown or "split" not in paper_order:
        raise ValueError(
            f"paper_order must contain 'split' and only {STEPS}, got {tuple(paper_order)}"
        )
    if groups is not None and len(groups) != n:
        raise ValueError(f"{len(groups)} patient ids for {n} samples")
    if X is not None and len(X) != n:
        raise ValueError(f"X has {len(X)} rows for {n} labels")
    order = list(paper_order) if protocol == "published" else ["split"]
    before = order[: order.index("split")]

    samples = _table(np.arange(n), y, "original", n)
    X_s = None if X is None else np.asarray(X, dtype=float)
    steps: list[str] = []

    def do_balance(rows: np.ndarray, where: str) -> np.ndarray:
        """Balance ``rows`` of ``samples``; return the rows (old + new) that replace them."""
        nonlocal samples, X_s
        origins_before = samples["origin"].to_numpy()[rows]
        sub_y = samples["y"].to_numpy()[rows]
        sub_X = None if X_s is None else X_s[rows]
        local, X_res = oversample(
            sub_y, balance, seed=seed, X=sub_X, k_neighbors=k_neighbors, fallback=smote_fallback
        )
        new_local = local[rows.size :]
        kind = {"smote": "smote", "random": "oversample", "replicate": "oversample"}[balance]
        new = pd.DataFrame(
            {"origin": origins_before[new_local], "kind": kind, "y": sub_y[new_local]}
        )
        start = len(samples)
        samples = pd.concat([samples, new], ignore_index=True)
        if X_s is not None:
            extra = X_res[rows.size :] if X_res is not None else sub_X[new_local]
            X_s = np.vstack([X_s, extra])
        method = {
            "smote": f"SMOTE (k={k_neighbors})",
            "random": "random oversampling",
            "replicate": "replication oversampling (paper 04)",
        }[balance]
        steps.append(
            f"{method} on {where} ({rows.size} samples) -> {rows.size + len(new)} "
            f"({len(new)} added)"
        )
        return np.concatenate([rows, np.arange(start, len(samples))])

    def do_augment(rows: np.ndarray, where: str) -> np.ndarray:
        nonlocal samples, X_s
        if augment_copies < 1:
            return rows
        rep = np.repeat(rows, augment_copies)
        new = pd.DataFrame(
            {
                "origin": samples["origin"].to_numpy()[rep],
                "kind": "augment",
                "y": samples["y"].to_numpy()[rep],
            }
        )
        start = len(samples)
        samples = pd.concat([samples, new], ignore_index=True)
        if X_s is not None:
            X_s = np.vstack([X_s, X_s[rep]])
        steps.append(
            f"{augment_copies} augmented copies of each sample of {where} -> {rows.size + len(new)}"
        )
        return np.concatenate([rows, np.arange(start, len(samples))])

    rows = np.arange(n)
    scale_all = False
    for step in before:
        if step == "balance" and balance:
            rows = do_balance(rows, "the whole dataset")
        elif step == "augment":
            rows = do_augment(rows, "the whole dataset")
        elif step == "scale":
            scale_all = True
    # the split itself
    use_groups = groups is not None and protocol == "leak_free"
    y_rows = samples["y"].to_numpy()[rows]
    g_rows = np.asarray(groups)[samples["origin"].to_numpy()[rows]] if use_groups else None
    tr, va, te = stratified_split(y_rows, fractions=fractions, groups=g_rows, seed=seed)
    train, val, test = rows[tr], None if va is None else rows[va], rows[te]
    level = "patient-grouped" if use_groups else "image-level (sample-level)"
    steps.append(
        f"stratified {level} split {_ratio(fractions)} -> train {train.size}, "
        + (f"val {val.size}, " if val is not None else "")
        + f"test {test.size}"
    )
    # what the paper (or leak_free) does after the split happens to the training set only
    after = [s for s in ("balance", "augment") if s not in before]
    if "balance" in after and balance:
        train = do_balance(train, "the training set only")
    if "augment" in after and augment_copies:
        train = do_augment(train, "the training set only")
    fit_rows = rows if scale_all else train
    steps.append(
        "scalers/feature selection fitted on "
        + ("all samples before the split" if scale_all else "the training set only")
    )
    if protocol == "leak_free":
        steps.append("validation and test sets untouched, natural class proportions")
    return Split(
        protocol,
        samples,
        np.asarray(train),
        None if val is None else np.asarray(val),
        np.asarray(test),
        np.asarray(fit_rows),
        X_s,
        steps,
    )


def leak_report(split: Split, *, groups: Sequence | None = None) -> dict:
    """What test information reaches the training (and validation) rows.

    - ``shared_origins``: originals represented on both sides (as the sample itself,
      a duplicate, an augmented copy or a SMOTE neighbour);
    - ``derived_in_train``: training rows whose origin is also represented in test;
    - ``synthetic_in_test``: test rows that are not original samples (SMOTE rows,
      duplicates, augmented copies): the test set is then not the real data;
    - ``shared_patients``: patients on both sides (None when ``groups`` is None);
    - ``val_test_shared_origins``: the same between validation and test.
    ``leak_free`` splits report zero everywhere.
    """
    origin = split.samples["origin"].to_numpy()
    train_o, test_o = set(origin[split.train].tolist()), set(origin[split.test].tolist())
    shared = train_o & test_o
    report = {
        "shared_origins": len(shared),
        "derived_in_train": int(np.isin(origin[split.train], list(test_o)).sum()),
        "derived_kinds": split.samples.iloc[split.train][
            np.isin(origin[split.train], list(test_o))
        ]["kind"]
        .value_counts()
        .to_dict(),
        "synthetic_in_test": int(
            (split.samples["kind"].to_numpy()[split.test] != "original").sum()
        ),
        "shared_patients": None,
        "val_test_shared_origins": 0
        if split.val is None
        else len(set(origin[split.val].tolist()) & test_o),
    }
    if groups is not None:
        groups = np.asarray(groups)
        report["shared_patients"] = len(
            set(groups[origin[split.train]].tolist()) & set(groups[origin[split.test]].tolist())
        )
    return report


def describe_leaks(report: dict) -> str:
    """One line for notebooks: 'no leak found' or what leaked."""
    parts = []
    if report["shared_origins"]:
        parts.append(
            f"{report['shared_origins']} original samples are on both sides (as "
            f"themselves, copies or SMOTE neighbours; {report['derived_in_train']} "
            f"training rows: {report['derived_kinds']})"
        )
    if report["synthetic_in_test"]:
        parts.append(
            f"{report['synthetic_in_test']} test rows are synthetic or duplicated, not "
            "original samples"
        )
    if report["shared_patients"]:
        parts.append(f"{report['shared_patients']} patients appear in both training and test")
    if report["val_test_shared_origins"]:
        parts.append(
            f"{report['val_test_shared_origins']} test samples also derive validation rows"
        )
    if report["shared_patients"] is None:
        parts.append("patient overlap unknown (no patient ids)")
    return "; ".join(parts) if parts else "no leak found"
