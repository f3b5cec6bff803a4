"""Duplicate profiles: microarray samples whose expression profiles are too alike to be two
patients.

The same patient, or the same RNA, can reach a merged microarray set twice: a GSM
deposited in two GEO series, a re-hybridised sample, GSE22529's two chips of one
patient. A split that puts the two copies on both sides leaks. :func:`audit_profiles`
reports every pair of samples whose profiles correlate at or above ``threshold`` (and
every pair with the same sample id in two series), the connected groups they form, and
the chip pairs the loader already matched (:func:`common.data.microarray.cumida_patients`).
:func:`duplicate_patients` folds the groups into the patient ids, so that a grouped
(``leak_free``) split keeps each group on one side.

Correlation (``method="rank"``, the default)
    Over the features the samples share (the merged columns; under CuMiDa's
    ``paper_width`` merge only series whose columns hold the same probe ids,
    ``info["comparable_series"]``, are compared): each sample's values are ranked
    (Spearman: a scale shift, another normalisation or a log/linear difference changes
    nothing), standardised, centred per feature within each series (removes the probe
    affinity that makes any two raw profiles of ALL correlate at 0.82 to 0.98, median 0.94,
    and a lab's per-probe batch offsets), then the ``n_features`` (2,000) features with the largest
    remaining variance are kept and the correlation is taken over them. ``method="pearson"``
    does the same on the values instead of their ranks.

Threshold 0.85, measured with :func:`planted_table` (20 copies per setting, each made as
1.1 x value + 0.5 plus Gaussian noise of sd ``noise``; ``seed=1`` on ALL and Golub, ``seed=2``
on the twin):

* Real data without duplicates. Bioconductor ALL (128 patients, 12,625 probe sets): the
  highest correlation between two samples is 0.76 (04006 and 26008, two ALL1/AF4 B1
  patients, distinct by sex, age and diagnosis date), the median nearest neighbour 0.53.
  Golub (38 samples, 3,051 genes): highest 0.59, median nearest neighbour 0.39. Nothing
  reaches the threshold; at 0.70 ALL would report four pairs of distinct patients (one of
  them 28021 and 30001, 0.71: BCR/ABL, both women of 54, diagnosed 14 months apart, one
  died in induction).
* Planted on ALL (between-patient sd of a probe: median 0.32, lowest decile 0.20):
  noise sd 0.2 found 20 of 20 (lowest planted correlation 0.96), 0.3 20/20 (0.92), 0.4
  20/20 (0.87), 0.5 13/20 (0.81). On Golub: 0.2 20/20 (0.94), 0.3 20/20 (0.89), 0.4 12/20
  (0.83), 0.5 3/20. No false pair anywhere. ``pearson`` finds a little more at sd 0.5
  (ALL 19/20, Golub 4/20) but lifts ALL's highest distinct pair to 0.81, and copies written
  on a linear instead of a log scale (noise 0.2) are found 20/20 by ``rank``, 0/20 by
  ``pearson``: hence ``rank``.
* Synthetic CuMiDa twin (seven series, 12 samples per class, 400 probes): without plants
  the highest correlation is 0.19 (``compatible`` merge, 156 samples) and 0.20
  (``paper_width``, 300 columns, 240 samples); nothing reported. Copies with noise 0.5 after
  per-probe series offsets of sd 0.5 (the copy takes its new series' offsets): 20/20 found
  (lowest 0.89; all 20 in another series) and 20/20 (0.90; 9 in another series, the other
  blocks hold one series each). Centring per block instead of per series finds 12/20 and
  17/20 there, hence ``center="series"``. With noise 1.0 (two thirds of the twin's
  between-patient sd) 0/20 and 3/20: far noisier copies are not found.

The threshold sits between the highest real pair (0.76) and the lowest planted pair at
technical-replicate noise (0.87 at sd 0.4). A patient sampled twice at different times
(diagnosis and relapse) is a different RNA and correlates less: the audit is not meant to
find that, nor pairs across platforms whose merged columns hold different probes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from common.data.core import DataError, Dataset

METHODS = ("rank", "pearson")
DEFAULT_METHOD = "rank"
DEFAULT_THRESHOLD = 0.85
N_FEATURES = 2000
#: series with fewer samples are centred with their block's mean (their own mean is too noisy)
MIN_SERIES_TO_CENTER = 5
Pair = tuple[int, int, float]  # (i, j, correlation), i < j


# ---------------------------------------------------------------------- profiles
def _series_of(ds: Dataset) -> np.ndarray:
    """Each sample's series (CuMiDa's ``meta["series"]``), else the dataset name."""
    if "series" in ds.meta:
        return ds.meta["series"].to_numpy(dtype=str)
    return np.full(len(ds), ds.name)


def comparable_blocks(ds: Dataset) -> np.ndarray:
    """(n,) int: samples in one block have comparable features (see the module docstring)."""
    series = _series_of(ds)
    groups = ds.info.get("comparable_series")
    if not groups:
        return np.zeros(len(ds), dtype=int)
    block_of = {name: b for b, names in enumerate(groups) for name in names}
    return np.array([block_of.get(s, len(groups)) for s in series], dtype=int)


def _unit_rows(values: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit length (a zero row stays zero)."""
    values = values - values.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(values, axis=1, keepdims=True)
    return np.divide(values, norm, out=np.zeros_like(values), where=norm > 0)


def profile_matrix(
    X: np.ndarray,
    *,
    method: str = DEFAULT_METHOD,
    series: Sequence[str] | None = None,
    n_features: int = N_FEATURES,
    center: str = "series",
) -> np.ndarray:
    """(n, k) unit rows whose dot products are the audit's correlations.

    ``X`` (n, d) the samples of one block; ``series`` (n,) their series (default: one);
    ``center`` ``series`` (each feature centred within each series of at least
    ``MIN_SERIES_TO_CENTER`` samples, the others with the block mean) or ``block``.
    """
    if method not in METHODS:
        raise DataError(
            f"unknown profile correlation {method!r}; choose one of {', '.join(METHODS)}"
        )
    if center not in ("series", "block"):
        raise DataError(f"center must be 'series' or 'block', got {center!r}")
    values = rankdata(X, axis=1) if method == "rank" else np.asarray(X, dtype=np.float64)
    values = _unit_rows(values) * np.sqrt(values.shape[1])  # per-sample standardised
    series = np.zeros(len(values), dtype=int) if series is None else np.asarray(series)
    centred = values - values.mean(axis=0)
    if center == "series":
        for name in np.unique(series):
            rows = series == name
            if rows.sum() >= MIN_SERIES_TO_CENTER:
                centred[rows] = values[rows] - values[rows].mean(axis=0)
    if centred.shape[1] > n_features:
        keep = np.argsort(-centred.var(axis=0), kind="stable")[:n_features]
        centred = centred[:, np.sort(keep)]
    return _unit_rows(centred)


# ------------------------------------------------------------------------- pairs
def correlated_pairs(
    ds: Dataset,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    method: str = DEFAULT_METHOD,
    n_features: int = N_FEATURES,
    center: str = "series",
) -> tuple[list[Pair], np.ndarray]:
    """Pairs ``(i, j, r)`` (i < j, same block) with correlation ``r >= threshold``, and every
    sample's highest correlation with another sample of its block (NaN when it has none)."""
    if ds.X is None:
        raise DataError(
            f"{ds.name} has no expression matrix; the profile audit is for microarray sets"
        )
    blocks, series = comparable_blocks(ds), _series_of(ds)
    pairs: list[tuple[int, int, float]] = []
    nearest = np.full(len(ds), np.nan)
    for block in np.unique(blocks):
        rows = np.flatnonzero(blocks == block)
        if rows.size < 2:
            continue
        unit = profile_matrix(
            ds.X[rows], method=method, series=series[rows], n_features=n_features, center=center
        )
        corr = unit @ unit.T
        np.fill_diagonal(corr, -np.inf)
        nearest[rows] = corr.max(axis=1)
        first, second = np.nonzero(np.triu(corr >= threshold, k=1))
        pairs += [(int(rows[a]), int(rows[b]), float(corr[a, b])) for a, b in zip(first, second)]
    return sorted(pairs), nearest


def same_id_pairs(ds: Dataset) -> list[tuple[int, int]]:
    """Pairs of samples of different series with the same sample id (one GSM in two series)."""
    from common.data.microarray import _plain_sample_id

    series = _series_of(ds)
    by_id: dict[str, list[int]] = {}
    for i, sample in enumerate(ds.sample_ids):
        by_id.setdefault(_plain_sample_id(sample), []).append(i)
    return [
        (a, b)
        for rows in by_id.values()
        for k, a in enumerate(rows)
        for b in rows[k + 1 :]
        if series[a] != series[b]
    ]


def connected_groups(n: int, pairs: Iterable[Sequence[int]]) -> list[list[int]]:
    """Connected components (of two or more samples) of the graph with ``pairs`` as edges, in
    order of their first sample."""
    from common.data.audit import component_labels

    edges = np.asarray([[int(p[0]), int(p[1])] for p in pairs], dtype=np.int64).reshape(-1, 2)
    components: dict[int, list[int]] = {}
    for i, label in enumerate(component_labels(n, edges).tolist()):
        components.setdefault(label, []).append(i)
    return [rows for rows in components.values() if len(rows) > 1]


def duplicate_patients(ds_patients: Sequence[str], groups: Iterable[Sequence[int]]) -> np.ndarray:
    """Patient ids with every group of samples (indices) made one patient.

    Union-find over two kinds of links: samples that already share a patient id, and the
    samples of each group. Every resulting component takes the patient id of its first
    sample (lowest index), so ids that no group touches are unchanged.
    """
    patients = np.asarray(ds_patients, dtype=str)
    first_of: dict[str, int] = {}
    links = [(first_of.setdefault(p, i), i) for i, p in enumerate(patients.tolist())]
    links += [(rows[0], other) for rows in map(list, groups) for other in rows[1:]]
    out = patients.copy()
    for rows in connected_groups(len(patients), links):
        out[rows] = patients[rows[0]]
    return out


def audited_patients(ds: Dataset, audit: dict[str, Any]) -> np.ndarray | None:
    """``ds.patients`` with the audit's groups merged (sample ids stand in for missing
    patient ids); ``ds.patients`` itself when the audit found no group."""
    groups = [g["index"] for g in audit["groups"]]
    if not groups:
        return ds.patients
    return duplicate_patients(ds.patients if ds.patients is not None else ds.sample_ids, groups)


def with_audited_patients(ds: Dataset, audit: dict[str, Any]) -> Dataset:
    """``ds`` with :func:`audited_patients` as its patients (and ``meta["patient"]``)."""
    patients = audited_patients(ds, audit)
    if patients is ds.patients:
        return ds
    meta = ds.meta.assign(patient=patients) if "patient" in ds.meta else ds.meta
    return replace(ds, patients=patients, meta=meta)


# ------------------------------------------------------------------------- audit
def _chip_pairs(ds: Dataset) -> list[list[str]]:
    """Sample ids of each patient the loader gave samples in two or more series."""
    if ds.patients is None:
        return []
    table = pd.DataFrame(
        {"patient": ds.patients, "series": _series_of(ds), "sample": ds.sample_ids}
    )
    spread = table.groupby("patient")["series"].nunique()
    return [table.loc[table["patient"] == p, "sample"].tolist() for p in spread.index[spread > 1]]


def _pair_record(ds: Dataset, i: int, j: int, r: float | None, reason: str) -> dict[str, Any]:
    series = _series_of(ds)
    same = ds.patients is not None and ds.patients[i] == ds.patients[j]
    return {
        "samples": [str(ds.sample_ids[i]), str(ds.sample_ids[j])],
        "index": [i, j],
        "series": [str(series[i]), str(series[j])],
        "labels": [str(ds.labels[i]), str(ds.labels[j])],
        "correlation": None if r is None else round(r, 4),
        "reason": reason,
        "already_same_patient": bool(same),
    }


def _summary(ds: Dataset, result: dict[str, Any]) -> str:
    new = [p for p in result["pairs"] if not p["already_same_patient"]]
    highest = result["highest_correlation"]
    text = (
        f"{ds.name} ({ds.source}): {result['n_samples']} samples in {result['n_blocks']} "
        f"comparable block(s), {result['method']} correlation >= {result['threshold']}: "
        f"{len(result['pairs'])} pair(s) ({len(new)} not already one patient) in "
        f"{len(result['groups'])} group(s); highest correlation "
        f"{'n/a' if highest is None else f'{highest:.2f}'}"
    )
    if result["chip_pairs"]:
        text += (
            f"; {len(result['chip_pairs'])} patients already matched across chips/series by "
            "the loader"
        )
    return text


def audit_profiles(
    ds: Dataset,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    method: str = DEFAULT_METHOD,
    n_features: int = N_FEATURES,
    center: str = "series",
) -> dict[str, Any]:
    """The duplicate-profile audit of a microarray :class:`Dataset`, as a JSON-able dict.

    Keys: ``dataset``, ``source``, ``n_samples``, ``method``, ``threshold``, ``n_features``,
    ``n_blocks``, ``pairs`` (each: samples, index, series, labels, correlation, reason
    ``correlation`` or ``same sample id``, already_same_patient), ``groups`` (connected
    components of the pairs: index, samples, series, labels), ``chip_pairs`` (sample ids of
    the patients the loader matched across chips/series, with ``patients_rule``),
    ``highest_correlation`` (over all compared pairs), ``nearest_quantiles`` (each sample's
    highest correlation: median, 0.99, max) and ``summary`` (one line).
    """
    if not -1 <= threshold <= 1:
        raise DataError(f"threshold must be a correlation in [-1, 1], got {threshold}")
    pairs, nearest = correlated_pairs(
        ds, threshold=threshold, method=method, n_features=n_features, center=center
    )
    records = [_pair_record(ds, i, j, r, "correlation") for i, j, r in pairs]
    found = {(i, j) for i, j, _ in pairs}
    records += [
        _pair_record(ds, i, j, None, "same sample id")
        for i, j in same_id_pairs(ds)
        if (i, j) not in found
    ]
    groups = connected_groups(len(ds), [p["index"] for p in records])
    series = _series_of(ds)
    seen = nearest[np.isfinite(nearest)]
    result: dict[str, Any] = {
        "dataset": ds.name,
        "source": ds.source,
        "n_samples": len(ds),
        "method": method,
        "threshold": threshold,
        "n_features": n_features,
        "center": center,
        "n_blocks": int(np.unique(comparable_blocks(ds)).size),
        "pairs": records,
        "groups": [
            {
                "index": rows,
                "samples": ds.sample_ids[rows].tolist(),
                "series": series[rows].tolist(),
                "labels": ds.labels[rows].tolist(),
            }
            for rows in groups
        ],
        "chip_pairs": _chip_pairs(ds),
        "patients_rule": ds.info.get("patients_rule"),
        "highest_correlation": round(float(seen.max()), 4) if seen.size else None,
        "nearest_quantiles": (
            {
                q: round(float(np.quantile(seen, v)), 4)
                for q, v in (("median", 0.5), ("q99", 0.99), ("max", 1.0))
            }
            if seen.size
            else {}
        ),
    }
    result["summary"] = _summary(ds, result)
    return result


# ------------------------------------------------------------------- measurement
def plant_duplicates(
    ds: Dataset,
    *,
    n: int,
    noise: float = 0.3,
    scale: float = 1.1,
    shift: float = 0.5,
    batch_sd: float = 0.0,
    seed: int = 0,
) -> tuple[Dataset, list[tuple[int, int]]]:
    """``ds`` plus ``n`` re-deposited copies (``scale`` x value + ``shift`` + Gaussian noise of sd
    ``noise``), each in another series of the same comparable block when there is one; and the
    planted ``(original, copy)`` index pairs. ``batch_sd`` > 0 first gives every series its own
    per-feature offsets (sd ``batch_sd``), the copy taking its new series' offsets. For measuring
    the audit (recall, false pairs), not for analysis."""
    rng = np.random.default_rng(seed)
    if ds.X is None or not 0 < n <= len(ds):
        raise DataError(
            f"plant_duplicates needs an expression matrix and 0 < n <= {len(ds)}, got n={n}"
        )
    series, blocks = _series_of(ds), comparable_blocks(ds)
    names = sorted(set(series.tolist()))
    offsets = {s: rng.normal(0, batch_sd, ds.X.shape[1]) if batch_sd > 0 else 0.0 for s in names}
    X = ds.X + np.vstack([np.broadcast_to(offsets[s], ds.X.shape[1]) for s in series])
    sources = rng.choice(len(ds), n, replace=False)
    targets = []
    for i in sources:
        others = sorted({s for s, b in zip(series, blocks) if b == blocks[i] and s != series[i]})
        target = others[rng.integers(len(others))] if others else series[i]
        targets.append(target)
    copies = scale * (
        ds.X[sources] + np.vstack([np.broadcast_to(offsets[t], ds.X.shape[1]) for t in targets])
    )
    copies = copies + shift + rng.normal(0, noise, copies.shape)
    ids = [f"planted_{k}_{ds.sample_ids[i]}" for k, i in enumerate(sources)]
    new_patients = [f"planted_{k}" for k in range(n)]
    meta = ds.meta.iloc[sources].copy()
    for column, values in (("series", targets), ("samples", ids), ("patient", new_patients)):
        if column in meta:
            meta[column] = values
    patients = None if ds.patients is None else np.concatenate([ds.patients, new_patients])
    out = replace(
        ds,
        sample_ids=np.concatenate([ds.sample_ids, ids]),
        labels=np.concatenate([ds.labels, ds.labels[sources]]),
        y=np.concatenate([ds.y, ds.y[sources]]),
        patients=patients,
        X=np.vstack([X, copies]),
        meta=pd.concat([ds.meta, meta], ignore_index=True),
        info=dict(ds.info),
    )
    return out, [(int(i), len(ds) + k) for k, i in enumerate(sources)]


def planted_recall(audit: dict[str, Any], planted: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """How many planted pairs the audit reports, and how many reported pairs were not planted."""
    reported = {tuple(sorted(p["index"])) for p in audit["pairs"] if p["reason"] == "correlation"}
    truth = {tuple(sorted(p)) for p in planted}
    return {
        "planted": len(truth),
        "found": len(truth & reported),
        "false_pairs": len(reported - truth),
    }


def planted_table(
    ds: Dataset,
    *,
    noises: Sequence[float] = (0.2, 0.3, 0.4, 0.5),
    n: int = 20,
    batch_sd: float = 0.0,
    seed: int = 0,
    **audit_kw: Any,
) -> pd.DataFrame:
    """Recall of :func:`plant_duplicates` copies at each noise level: one row per level with
    ``found``, ``planted``, ``false_pairs``, ``across_series`` (copies in another series than their
    original) and ``lowest`` (the lowest correlation of a planted pair). The docstring's numbers."""
    rows = []
    for noise in noises:
        planted_ds, planted = plant_duplicates(ds, n=n, noise=noise, batch_sd=batch_sd, seed=seed)
        series = _series_of(planted_ds)
        every = {
            (i, j): r
            for i, j, r in correlated_pairs(planted_ds, **{**audit_kw, "threshold": -1.0})[0]
        }
        recall = planted_recall(audit_profiles(planted_ds, **audit_kw), planted)
        rows.append(
            {
                "noise": noise,
                "batch_sd": batch_sd,
                **recall,
                "across_series": int(sum(series[a] != series[b] for a, b in planted)),
                "lowest": round(min(every[tuple(sorted(p))] for p in planted), 3),
            }
        )
    return pd.DataFrame(rows)
