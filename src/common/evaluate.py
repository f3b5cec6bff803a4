"""Evaluation: per-class and averaged metrics, curves, bootstrap CIs, McNemar.

Conventions (the same in every function):

- ``y_true``, ``y_pred``: 1-D arrays of class labels, shape (n,).
- ``labels``: the ordered classes (default: sorted union of ``y_true``); every
  label in ``y_true`` and ``y_pred`` must be among them.
- ``y_score``: class scores, shape (n, k) with columns in the order of ``labels``;
  for two classes a 1-D array of shape (n,) is the score of ``labels[1]``.
- ``class_names``: display names for ``labels`` (default ``str(label)``).

Metric names are ``accuracy``, ``precision``, ``sensitivity`` (= recall),
``specificity``, ``f1``, ``auc``, ``average_precision`` and ``support``. Rows use
``class`` = a class name, ``macro`` (unweighted mean over classes), ``weighted``
(mean weighted by class support), ``micro`` (AUC/AP over all one-vs-rest
decisions) or ``overall`` (plain accuracy). Per-class ``accuracy`` is one-vs-rest:
(TP + TN) / n.

A class that is never predicted gets precision 0 (scikit-learn's
``zero_division=0``); that is a real property of the classifier, not an error. A
class with no sample in ``y_true`` makes its sensitivity and AUC undefined: that is
an error (pass ``labels`` without it, or use a split that contains it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from common.paths import atomic_write_text

ROW_COLUMNS = ["protocol", "model", "class", "metric", "value", "ci_low", "ci_high"]
AVERAGES = ("macro", "weighted")
CLASS_METRICS = ("accuracy", "precision", "sensitivity", "specificity", "f1")


# --------------------------------------------------------------------------- inputs
def check_inputs(
    y_true: Sequence,
    *,
    y_pred: Sequence | None = None,
    y_score: np.ndarray | None = None,
    labels: Sequence | None = None,
    require_all_classes: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray]:
    """Validate and normalise inputs; raise ``ValueError`` naming the problem."""
    y_true = np.asarray(y_true)
    if y_true.ndim != 1:
        raise ValueError(f"y_true must be 1-D, got shape {y_true.shape}")
    if y_true.size == 0:
        raise ValueError("y_true is empty: there is nothing to evaluate")
    labels = np.asarray(sorted(set(y_true.tolist())) if labels is None else list(labels))
    if labels.size < 2:
        raise ValueError(f"need at least two classes, got labels={labels.tolist()}")
    known = set(labels.tolist())
    unknown = sorted(set(y_true.tolist()) - known, key=str)
    if unknown:
        raise ValueError(
            f"y_true holds label(s) {unknown} that are not in labels {labels.tolist()}"
        )
    if require_all_classes:
        absent = [lab for lab in labels.tolist() if not np.any(y_true == lab)]
        if absent:
            raise ValueError(
                f"class(es) {absent} have no sample in y_true, so their sensitivity and AUC are "
                "undefined; drop them from labels or use a split that contains them"
            )
    if y_pred is not None:
        y_pred = np.asarray(y_pred)
        if y_pred.shape != y_true.shape:
            raise ValueError(f"y_pred has shape {y_pred.shape} but y_true has {y_true.shape}")
        unknown = sorted(set(y_pred.tolist()) - known, key=str)
        if unknown:
            raise ValueError(
                f"y_pred holds label(s) {unknown} that are not in labels {labels.tolist()}"
            )
    if y_score is not None:
        y_score = np.asarray(y_score, dtype=float)
        if y_score.ndim == 1 and labels.size == 2:
            y_score = np.column_stack([1.0 - y_score, y_score])
        if y_score.ndim != 2 or y_score.shape != (y_true.size, labels.size):
            raise ValueError(
                f"y_score must have shape ({y_true.size}, {labels.size}) (samples x "
                f"classes), got {y_score.shape}"
            )
        n_bad = int(np.sum(~np.isfinite(y_score)))
        if n_bad:
            raise ValueError(
                f"y_score holds {n_bad} NaN or infinite value(s); fix the model outputs first"
            )
    return y_true, y_pred, y_score, labels


def _names(labels: np.ndarray, class_names: Sequence[str] | None) -> list[str]:
    if class_names is None:
        return [str(lab) for lab in labels.tolist()]
    if len(class_names) != labels.size:
        raise ValueError(f"class_names has {len(class_names)} names for {labels.size} labels")
    names = [str(n) for n in class_names]
    clash = {"macro", "weighted", "micro", "overall"} & set(names)
    if clash:
        raise ValueError(
            f"class name(s) {sorted(clash)} are reserved for averages; rename the class"
        )
    return names


# ---------------------------------------------------------- hand-written (sklearn lacks)
def confusion(y_true: Sequence, y_pred: Sequence, *, labels: Sequence | None = None) -> np.ndarray:
    """Confusion matrix, rows = true class, columns = predicted class (counts)."""
    y_true, y_pred, _, labels = check_inputs(
        y_true, y_pred=y_pred, labels=labels, require_all_classes=False
    )
    return skm.confusion_matrix(y_true, y_pred, labels=labels)


def specificity_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class specificity TN / (TN + FP) from a square confusion matrix.

    A class with no negatives (TN + FP = 0) gets NaN.
    """
    cm = np.asarray(cm, dtype=float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tn + fp > 0, tn / (tn + fp), np.nan)


def one_vs_rest_accuracy(cm: np.ndarray) -> np.ndarray:
    """Per-class accuracy of the one-vs-rest decision, (TP + TN) / n."""
    cm = np.asarray(cm, dtype=float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.sum() == 0:
        raise ValueError(f"confusion matrix must be square and non-empty, got shape {cm.shape}")
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    return (cm.sum() - fp - fn) / cm.sum()


# ------------------------------------------------------------------- metric values
def _encode(y: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Class indices 0..k-1 of ``y`` in the order of ``labels``."""
    lookup = {lab: i for i, lab in enumerate(labels.tolist())}
    return np.fromiter((lookup[v] for v in y.tolist()), dtype=np.int64, count=y.size)


def _metrics_from_confusion(cm: np.ndarray, names: list[str]) -> dict[tuple[str, str], float]:
    """{(class, metric): value} for per-class, macro, weighted and overall metrics.

    The same arithmetic as scikit-learn's ``precision_recall_fscore_support`` with
    ``zero_division=0`` (a test checks they agree), done on the confusion matrix so
    that thousands of bootstrap resamples stay fast.
    """
    cm = cm.astype(float)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, np.nan)
        denom = precision + np.nan_to_num(recall)
        f1 = np.where(denom > 0, 2 * precision * np.nan_to_num(recall) / denom, 0.0)
    per_class = {
        "accuracy": one_vs_rest_accuracy(cm),
        "precision": precision,
        "sensitivity": recall,
        "specificity": specificity_from_confusion(cm),
        "f1": f1,
    }
    out: dict[tuple[str, str], float] = {("overall", "accuracy"): float(tp.sum() / cm.sum())}
    weights = support / support.sum()
    for metric, values in per_class.items():
        for name, value in zip(names, values):
            out[(name, metric)] = float(value)
        out[("macro", metric)] = float(np.nanmean(values)) if np.isfinite(values).any() else np.nan
        out[("weighted", metric)] = float(np.nansum(values * weights))
    for name, count in zip(names, support):
        out[(name, "support")] = float(count)
    return out


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) identity; NaN if one side is empty."""
    from scipy.stats import rankdata

    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.nan
    ranks = rankdata(score)
    return float((ranks[positive.astype(bool)].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _auc_values(
    onehot: np.ndarray, y_score: np.ndarray, names: list[str]
) -> dict[tuple[str, str], float]:
    """{(class, 'auc'): value} per class, macro (mean of classes) and micro."""
    aucs = [_binary_auc(onehot[:, j], y_score[:, j]) for j in range(len(names))]
    out = {(name, "auc"): auc for name, auc in zip(names, aucs)}
    out[("macro", "auc")] = float(np.nanmean(aucs)) if np.isfinite(aucs).any() else np.nan
    out[("micro", "auc")] = _binary_auc(onehot.ravel(), y_score.ravel())
    return out


def _score_values(
    y_true: np.ndarray, y_score: np.ndarray, labels: np.ndarray, names: list[str]
) -> dict:
    """AUC (per class, macro, micro) and average precision (per class, macro, micro)."""
    onehot = (y_true[:, None] == labels[None, :]).astype(int)
    out = _auc_values(onehot, y_score, names)
    aps = [
        float(skm.average_precision_score(onehot[:, j], y_score[:, j])) for j in range(len(names))
    ]
    for name, ap in zip(names, aps):
        out[(name, "average_precision")] = ap
    out[("macro", "average_precision")] = float(np.mean(aps))
    out[("micro", "average_precision")] = float(
        skm.average_precision_score(onehot.ravel(), y_score.ravel())
    )
    return out


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    y_score: np.ndarray | None,
    labels: np.ndarray,
    names: list[str],
    *,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[tuple[str, str], tuple[float, float]]:
    """Percentile bootstrap CIs over test samples for the label metrics and AUC.

    Each resample draws n test samples with replacement; a metric undefined in a
    resample (a class absent) is left out of that metric's percentiles. Average
    precision gets no interval (it is reported as a point value).
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    rng = np.random.default_rng(seed)
    k, n = labels.size, y_true.size
    t, p = _encode(y_true, labels), _encode(y_pred, labels)
    onehot = np.eye(k, dtype=int)[t] if y_score is not None else None
    draws: dict[tuple[str, str], list[float]] = {}
    for _ in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        cm = np.bincount(t[idx] * k + p[idx], minlength=k * k).reshape(k, k)
        values = _metrics_from_confusion(cm, names)
        if y_score is not None:
            values.update(_auc_values(onehot[idx], y_score[idx], names))
        for key, value in values.items():
            draws.setdefault(key, []).append(value)
    cis = {}
    for key, values in draws.items():
        arr = np.asarray(values, dtype=float)
        arr = arr[np.isfinite(arr)]
        if key[1] == "support" or arr.size == 0:
            cis[key] = (np.nan, np.nan)
        else:
            lo, hi = np.percentile(arr, [100 * alpha / 2, 100 * (1 - alpha / 2)])
            cis[key] = (float(lo), float(hi))
    return cis


def evaluate(
    y_true: Sequence,
    y_pred: Sequence,
    *,
    y_score: np.ndarray | None = None,
    labels: Sequence | None = None,
    class_names: Sequence[str] | None = None,
    protocol: str = "published",
    model: str = "model",
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """All metrics of one model on one test set as tidy rows (:data:`ROW_COLUMNS`).

    ``n_bootstrap=0`` skips the confidence intervals (ci_low/ci_high are NaN).
    Values are fractions in [0, 1]; ``support`` is a count.
    """
    y_true, y_pred, y_score, labels = check_inputs(
        y_true, y_pred=y_pred, y_score=y_score, labels=labels
    )
    names = _names(labels, class_names)
    values = _metrics_from_confusion(skm.confusion_matrix(y_true, y_pred, labels=labels), names)
    if y_score is not None:
        values.update(_score_values(y_true, y_score, labels, names))
    cis = (
        bootstrap_ci(
            y_true, y_pred, y_score, labels, names, n_resamples=n_bootstrap, alpha=alpha, seed=seed
        )
        if n_bootstrap
        else {}
    )
    rows = [
        {
            "protocol": protocol,
            "model": model,
            "class": cls,
            "metric": metric,
            "value": value,
            "ci_low": cis.get((cls, metric), (np.nan, np.nan))[0],
            "ci_high": cis.get((cls, metric), (np.nan, np.nan))[1],
        }
        for (cls, metric), value in values.items()
    ]
    return pd.DataFrame(rows, columns=ROW_COLUMNS)


# -------------------------------------------------------------------------- curves
def roc_curves(
    y_true: Sequence,
    y_score: np.ndarray,
    *,
    labels: Sequence | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, dict[str, np.ndarray | float]]:
    """One-vs-rest ROC curve per class plus ``micro`` and ``macro``.

    Returns {name: {"fpr", "tpr", "auc"}}. The macro curve is the mean TPR
    interpolated on the union of FPR points; its ``auc`` is the mean of per-class
    AUCs (scikit-learn's macro AUC).
    """
    y_true, _, y_score, labels = check_inputs(y_true, y_score=y_score, labels=labels)
    names = _names(labels, class_names)
    onehot = (y_true[:, None] == labels[None, :]).astype(int)
    curves: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(names):
        fpr, tpr, _ = skm.roc_curve(onehot[:, j], y_score[:, j])
        curves[name] = {"fpr": fpr, "tpr": tpr, "auc": float(skm.auc(fpr, tpr))}
    fpr, tpr, _ = skm.roc_curve(onehot.ravel(), y_score.ravel())
    curves["micro"] = {"fpr": fpr, "tpr": tpr, "auc": float(skm.auc(fpr, tpr))}
    grid = np.unique(np.concatenate([curves[n]["fpr"] for n in names]))
    mean_tpr = np.mean([np.interp(grid, curves[n]["fpr"], curves[n]["tpr"]) for n in names], axis=0)
    curves["macro"] = {
        "fpr": grid,
        "tpr": mean_tpr,
        "auc": float(np.mean([curves[n]["auc"] for n in names])),
    }
    return curves


def pr_curves(
    y_true: Sequence,
    y_score: np.ndarray,
    *,
    labels: Sequence | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, dict[str, np.ndarray | float]]:
    """One-vs-rest precision-recall curve per class plus ``micro``.

    Returns {name: {"precision", "recall", "ap"}} (ap = average precision).
    """
    y_true, _, y_score, labels = check_inputs(y_true, y_score=y_score, labels=labels)
    names = _names(labels, class_names)
    onehot = (y_true[:, None] == labels[None, :]).astype(int)
    curves: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(names):
        p, r, _ = skm.precision_recall_curve(onehot[:, j], y_score[:, j])
        curves[name] = {
            "precision": p,
            "recall": r,
            "ap": float(skm.average_precision_score(onehot[:, j], y_score[:, j])),
        }
    p, r, _ = skm.precision_recall_curve(onehot.ravel(), y_score.ravel())
    curves["micro"] = {
        "precision": p,
        "recall": r,
        "ap": float(skm.average_precision_score(onehot.ravel(), y_score.ravel())),
    }
    return curves


# ------------------------------------------------------------------------- McNemar
def mcnemar_test(
    y_true: Sequence,
    pred_a: Sequence,
    pred_b: Sequence,
    *,
    exact: bool | None = None,
    correction: bool = True,
) -> dict[str, Any]:
    """McNemar's test of two classifiers on the same test samples (statsmodels).

    The 2x2 table counts [[both right, only A right], [only B right, both wrong]].
    ``exact=None`` uses the exact binomial test when fewer than 25 samples are
    discordant, else the chi-square test, with continuity correction unless
    ``correction=False`` ((b - c)^2 / (b + c), the form some papers report).
    """
    from statsmodels.stats.contingency_tables import mcnemar

    y_true, pred_a, pred_b = (np.asarray(a) for a in (y_true, pred_a, pred_b))
    if y_true.ndim != 1 or y_true.size == 0:
        raise ValueError(f"y_true must be a non-empty 1-D array, got shape {y_true.shape}")
    for name, pred in (("pred_a", pred_a), ("pred_b", pred_b)):
        if pred.shape != y_true.shape:
            raise ValueError(f"{name} has shape {pred.shape} but y_true has {y_true.shape}")
    a_ok, b_ok = pred_a == y_true, pred_b == y_true
    table = np.array(
        [[np.sum(a_ok & b_ok), np.sum(a_ok & ~b_ok)], [np.sum(~a_ok & b_ok), np.sum(~a_ok & ~b_ok)]]
    )
    discordant = int(table[0, 1] + table[1, 0])
    use_exact = discordant < 25 if exact is None else bool(exact)
    result = mcnemar(table, exact=use_exact, correction=correction)
    return {
        "table": table.tolist(),
        "n_discordant": discordant,
        "statistic": float(result.statistic),
        "pvalue": float(result.pvalue),
        "exact": use_exact,
        "accuracy_a": float(a_ok.mean()),
        "accuracy_b": float(b_ok.mean()),
    }


def evaluate_models(
    y_true: Sequence,
    proba: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    protocol: str,
    *,
    suffix: str = "",
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`evaluate` for several models' class probabilities on one test set
    (labels 0..K-1, prediction = argmax); model names get ``suffix`` appended."""
    labels = list(range(len(class_names)))
    return pd.concat(
        [
            evaluate(
                y_true,
                np.asarray(p).argmax(axis=1),
                y_score=p,
                labels=labels,
                class_names=class_names,
                protocol=protocol,
                model=f"{name}{suffix}",
                n_bootstrap=n_bootstrap,
                seed=seed,
            )
            for name, p in proba.items()
        ],
        ignore_index=True,
    )


def measurement_rows(
    values: Mapping[str, float], protocol: str, model: str, *, cls: str = "overall"
) -> pd.DataFrame:
    """Metric rows for numbers that are not classifier scores (class counts,
    reconstruction errors, parameter counts), so claims can sit beside them."""
    return pd.DataFrame(
        [
            {
                "protocol": protocol,
                "model": model,
                "class": cls,
                "metric": name,
                "value": float(v),
                "ci_low": np.nan,
                "ci_high": np.nan,
            }
            for name, v in values.items()
        ],
        columns=ROW_COLUMNS,
    )


# ------------------------------------------------------------------ files and tables
def _check_rows(rows: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ROW_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"metric rows lack column(s) {missing}; build them with evaluate()")
    if rows.empty:
        raise ValueError("no metric rows to write; evaluate at least one model first")
    dup = rows.duplicated(subset=["protocol", "model", "class", "metric"])
    if dup.any():
        first = rows.loc[dup, ["protocol", "model", "class", "metric"]].iloc[0].tolist()
        raise ValueError(
            f"duplicate metric row {first}; give each model a distinct name per protocol"
        )
    return rows[ROW_COLUMNS + [c for c in rows.columns if c not in ROW_COLUMNS]]


def write_metrics(rows: pd.DataFrame, run_dir: Path | str) -> tuple[Path, Path]:
    """Write tidy metric rows to ``metrics.json`` and ``metrics.csv`` in ``run_dir``."""
    rows = _check_rows(rows)
    run_dir = Path(run_dir)
    records = json.loads(rows.to_json(orient="records"))
    json_path = atomic_write_text(run_dir / "metrics.json", json.dumps(records, indent=1) + "\n")
    csv_path = atomic_write_text(run_dir / "metrics.csv", rows.to_csv(index=False))
    return json_path, csv_path


def read_metrics(run_dir: Path | str) -> pd.DataFrame:
    """Read the metric rows of a run back from ``metrics.json``, else from ``metrics.csv``
    (the committed canonical runs under ``results/canonical/`` keep only the CSV)."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file() and (Path(run_dir) / "metrics.csv").is_file():
        numeric = {
            c: [""] for c in ("value", "ci_low", "ci_high")
        }  # a class named "NA" stays a name
        return _check_rows(
            pd.read_csv(Path(run_dir) / "metrics.csv", keep_default_na=False, na_values=numeric)
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run the notebook first (make reproduce)")
    rows = pd.DataFrame(json.loads(path.read_text(encoding="utf-8")))
    return _check_rows(rows)


def format_value(
    value: float,
    *,
    ci_low: float = np.nan,
    ci_high: float = np.nan,
    percent: bool = True,
    decimals: int = 2,
) -> str:
    """'97.12 [95.01, 98.40]' (percent) or '0.9712 [...]'; empty for NaN."""
    if value is None or not np.isfinite(value):
        return ""
    scale = 100.0 if percent else 1.0
    digits = decimals if percent else decimals + 2
    text = f"{value * scale:.{digits}f}"
    if ci_low is not None and np.isfinite(ci_low) and ci_high is not None and np.isfinite(ci_high):
        text += f" [{ci_low * scale:.{digits}f}, {ci_high * scale:.{digits}f}]"
    return text


def paper_table(
    rows: pd.DataFrame,
    *,
    metrics: Sequence[str] = ("accuracy", "precision", "sensitivity", "specificity", "f1"),
    index: str = "model",
    average: str = "macro",
    protocol: str | None = None,
    model: str | None = None,
    percent: bool = True,
    decimals: int = 2,
) -> pd.DataFrame:
    """A table shaped like a paper's: one row per model (or class), one column per metric.

    ``index="model"``: each model's ``accuracy`` is the overall accuracy, other
    metrics are the ``average`` over classes (``macro`` or ``weighted``), and the
    column headers say which. ``index="class"``: one row per class for ``model``.
    Cells read "value [ci_low, ci_high]", in percent by default.
    """
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    rows = _check_rows(rows)
    if protocol is not None:
        rows = rows[rows["protocol"] == protocol]
    if model is not None:
        rows = rows[rows["model"] == model]
    if rows.empty:
        raise ValueError(f"no metric rows for protocol={protocol!r}, model={model!r}")
    cells = rows.assign(
        cell=[
            format_value(v, ci_low=lo, ci_high=hi, percent=percent, decimals=decimals)
            for v, lo, hi in zip(rows["value"], rows["ci_low"], rows["ci_high"])
        ]
    )
    if index == "model":
        keep = ((cells["metric"] == "accuracy") & (cells["class"] == "overall")) | (
            (cells["metric"] != "accuracy") & (cells["class"] == average)
        )
        cells = cells[keep & cells["metric"].isin(metrics)]
        group = ["protocol", "model"] if protocol is None else ["model"]
        table = cells.pivot_table(
            index=group, columns="metric", values="cell", aggfunc="first", sort=False
        )
        table = table[[m for m in metrics if m in table.columns]]
        table.columns = [m if m == "accuracy" else f"{m} ({average})" for m in table.columns]
    elif index == "class":
        averages = {"macro", "weighted", "micro", "overall"}
        cells = cells[~cells["class"].isin(averages) & cells["metric"].isin(metrics)]
        group = ["model", "class"] if model is None else ["class"]
        table = cells.pivot_table(
            index=group, columns="metric", values="cell", aggfunc="first", sort=False
        )
        table = table[[m for m in metrics if m in table.columns]]
    else:
        raise ValueError(f"index must be 'model' or 'class', got {index!r}")
    table.columns.name = None
    return table.reset_index()


def write_table(
    table: pd.DataFrame, run_dir: Path | str, name: str, *, caption: str = ""
) -> tuple[Path, Path]:
    """Write a table as ``<name>.csv`` and ``<name>.md`` (with an optional caption line)."""
    run_dir = Path(run_dir)
    md = table.to_markdown(index=False)
    if caption:
        md = f"{caption}\n\n{md}"
    csv_path = atomic_write_text(run_dir / f"{name}.csv", table.to_csv(index=False))
    md_path = atomic_write_text(run_dir / f"{name}.md", md + "\n")
    return csv_path, md_path


# ------------------------------------------------------------- per-sample predictions
#: Columns of ``predictions.csv`` before the per-class ``score_<class>`` columns.
PREDICTION_COLUMNS = [
    "sample_id",
    "sample",
    "patient",
    "split",
    "fold",
    "protocol",
    "model",
    "true_class",
    "predicted_class",
]
PREDICTIONS_FILE = "predictions.csv"
SCORE_PREFIX = "score_"
#: Metric rows that :func:`check_predictions` recomputes from ``predictions.csv``.
RECOMPUTED = (("overall", "accuracy"), ("macro", "f1"))


def sample_table(
    sample_ids: Sequence, *, names: Sequence | None = None, patients: Sequence | None = None
) -> pd.DataFrame:
    """Who each evaluated sample is: ``sample_id``, ``sample`` (file or sample name; the
    id when not given) and ``patient`` (empty where unknown), one row per sample."""
    ids = [str(s) for s in sample_ids]
    return pd.DataFrame(
        {
            "sample_id": ids,
            "sample": ids if names is None else [Path(str(n)).name for n in names],
            "patient": [""] * len(ids)
            if patients is None
            else ["" if p is None else str(p) for p in patients],
        }
    )


def dataset_samples(dataset: Any, *, index: Sequence[int] | None = None) -> pd.DataFrame:
    """:func:`sample_table` of a :class:`common.data.Dataset`'s samples at ``index`` (all when
    None): its sample ids, file names (when it has paths) and patients (when it has them)."""
    index = np.arange(len(dataset.sample_ids)) if index is None else np.asarray(index, dtype=int)
    pick = lambda values: None if values is None else np.asarray(values)[index]  # noqa: E731
    return sample_table(
        np.asarray(dataset.sample_ids)[index],
        names=pick(dataset.paths),
        patients=pick(dataset.patients),
    )


def _per_sample(values: Any, n: int, what: str) -> list[str]:
    """A per-sample text column: one value repeated, or ``n`` values (None/NaN -> empty)."""
    if values is None or isinstance(values, (str, int, np.integer)):
        return [("" if values is None else str(values))] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"{what} has {len(values)} values for {n} samples")
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]


def _class_text(pred: Any, class_names: Sequence[str]) -> list[str]:
    """Predicted classes as names: integers index ``class_names``, anything else (an
    abstention such as ``no confident prediction``) is written as given."""
    pred = np.asarray(pred)
    if np.issubdtype(pred.dtype, np.integer):
        return [str(class_names[i]) for i in pred.tolist()]
    return [str(p) for p in pred.tolist()]


def prediction_rows(
    y_true: Sequence,
    proba: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    protocol: str,
    *,
    suffix: str = "",
    y_pred: Mapping[str, Sequence] | None = None,
    samples: pd.DataFrame | None = None,
    split: str | Sequence = "test",
    fold: Sequence | None = None,
) -> pd.DataFrame:
    """Per-sample rows (:data:`PREDICTION_COLUMNS` plus ``score_<class>``) for the models
    :func:`evaluate_models` scores on the same test set.

    ``y_true``: labels 0..K-1; ``proba``: {model: (n, K) class scores}; the predicted class
    is the arg-max unless ``y_pred`` gives a model's own (class indices, or names such as an
    abstention). ``samples``: :func:`sample_table` of the n samples (default: ids 0..n-1).
    ``split``: one name (``test``, ``train``, ``out-of-fold``, ...) or one per sample;
    ``fold``: each sample's fold (empty when None). Model names get ``suffix`` appended.
    """
    y_true = np.asarray(y_true)
    n, names = y_true.size, [str(c) for c in class_names]
    samples = sample_table(range(n)) if samples is None else samples.reset_index(drop=True)
    if len(samples) != n:
        raise ValueError(f"samples has {len(samples)} rows for {n} test samples")
    who = pd.DataFrame(
        {
            "sample_id": samples["sample_id"].astype(str),
            "sample": samples.get("sample", samples["sample_id"]).astype(str),
            "patient": _per_sample(samples.get("patient"), n, "patient"),
            "split": _per_sample(split, n, "split"),
            "fold": _per_sample(fold, n, "fold"),
            "protocol": protocol,
            "true_class": _class_text(y_true.astype(int), names),
        }
    )
    frames = []
    for model, scores in proba.items():
        scores = np.asarray(scores, dtype=float)
        if scores.shape != (n, len(names)):
            raise ValueError(
                f"{model}: scores have shape {scores.shape}, expected ({n}, {len(names)})"
            )
        pred = scores.argmax(axis=1) if y_pred is None or model not in y_pred else y_pred[model]
        frame = who.assign(model=f"{model}{suffix}", predicted_class=_class_text(pred, names))
        frames.append(
            pd.concat(
                [frame, pd.DataFrame(scores, columns=[SCORE_PREFIX + c for c in names])], axis=1
            )
        )
    out = pd.concat(frames, ignore_index=True)
    return out[PREDICTION_COLUMNS + [SCORE_PREFIX + c for c in names]]


def write_predictions(rows: pd.DataFrame | Sequence[pd.DataFrame], run_dir: Path | str) -> Path:
    """Write :func:`prediction_rows` (one frame or several) to ``predictions.csv`` in
    ``run_dir``."""
    rows = pd.concat(list(rows), ignore_index=True) if not isinstance(rows, pd.DataFrame) else rows
    missing = [c for c in PREDICTION_COLUMNS if c not in rows.columns]
    if missing or rows.empty:
        raise ValueError(
            f"prediction rows lack column(s) {missing} or are empty; build them with "
            "prediction_rows()"
        )
    dup = rows.duplicated(subset=["sample_id", "protocol", "model"])
    if dup.any():
        first = rows.loc[dup, ["sample_id", "protocol", "model"]].iloc[0].tolist()
        raise ValueError(
            f"duplicate prediction row {first}; give each sample a distinct id per "
            "protocol and model"
        )
    scores = [c for c in rows.columns if c.startswith(SCORE_PREFIX)]
    return atomic_write_text(
        Path(run_dir) / PREDICTIONS_FILE, rows[PREDICTION_COLUMNS + scores].to_csv(index=False)
    )


def read_predictions(run_dir: Path | str) -> pd.DataFrame:
    """Read a run's ``predictions.csv`` back (text columns as strings, empty where unknown)."""
    path = Path(run_dir) / PREDICTIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run the notebook first (make reproduce)")
    return pd.read_csv(path, dtype={c: str for c in PREDICTION_COLUMNS}, keep_default_na=False)


def metrics_from_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """Accuracy (class ``overall``) and macro F1 per (protocol, model), recomputed from
    per-sample rows: the classes are the ``score_<class>`` columns; a predicted class
    outside them (an abstention) is wrong for its true class and counts for no class."""
    classes = [c[len(SCORE_PREFIX) :] for c in predictions.columns if c.startswith(SCORE_PREFIX)]
    rows = []
    for (protocol, model), part in predictions.groupby(["protocol", "model"], sort=False):
        true, pred = part["true_class"].to_numpy(), part["predicted_class"].to_numpy()
        values = {
            ("overall", "accuracy"): float(np.mean(true == pred)),
            ("macro", "f1"): float(
                skm.f1_score(true, pred, labels=classes, average="macro", zero_division=0)
            ),
        }
        rows += [
            {"protocol": protocol, "model": model, "class": cls, "metric": metric, "value": value}
            for (cls, metric), value in values.items()
        ]
    return pd.DataFrame(rows, columns=["protocol", "model", "class", "metric", "value"])


def check_predictions(run_dir: Path | str, *, tolerance: float = 1e-9) -> list[str]:
    """Problems with a run's ``predictions.csv``: every accuracy and macro F1 in its metric
    rows must be recomputable from the rows of that protocol and model.

    ``tolerance``: metrics.json keeps 10 decimals (pandas' ``to_json``), so recomputed
    values agree to within 1e-10; 1e-9 leaves room for that rounding and nothing else.
    Returns one-line problems (empty when every value matches).
    """
    run_dir = Path(run_dir)
    metrics = pd.DataFrame(
        json.loads((run_dir / "metrics.json").read_text(encoding="utf-8") or "[]")
    )
    if metrics.empty or not {"protocol", "model", "class", "metric", "value"} <= set(
        metrics.columns
    ):
        return []
    wanted = metrics[[(c, m) in RECOMPUTED for c, m in zip(metrics["class"], metrics["metric"])]]
    if wanted.empty:
        return []
    if not (run_dir / PREDICTIONS_FILE).is_file():
        return [
            f"{run_dir / PREDICTIONS_FILE} is missing (metrics.json has accuracies; "
            "write_predictions)"
        ]
    recomputed = metrics_from_predictions(read_predictions(run_dir)).set_index(
        ["protocol", "model", "class", "metric"]
    )
    problems = []
    for _, row in wanted.iterrows():
        key = (row["protocol"], row["model"], row["class"], row["metric"])
        if key not in recomputed.index:
            problems.append(
                f"{PREDICTIONS_FILE} has no rows for protocol {key[0]!r}, model {key[1]!r}"
            )
        elif not abs(recomputed.loc[key, "value"] - row["value"]) <= tolerance:
            problems.append(
                f"{PREDICTIONS_FILE} gives {key[2]} {key[3]} "
                f"{recomputed.loc[key, 'value']:.6f} for {key[1]!r} ({key[0]}), "
                f"metrics.json {row['value']:.6f}"
            )
    return sorted(set(problems))
