"""Figures in one house style (matplotlib + seaborn).

Every ``plot_*`` function returns a matplotlib Figure; :func:`save_figure` writes it
as PNG (150 dpi or more) into a run folder and, when the data source is
``synthetic``, stamps "synthetic data" on its face first, so that a figure made from
generated data can never be mistaken for a result on the real dataset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

DPI = 150
SYNTHETIC_STAMP = "synthetic data"
PALETTE = "tab10"


def set_style() -> None:
    """Apply the house style (call once per notebook; plot functions call it too)."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": DPI, "axes.titleweight": "bold"})


def stamp_synthetic(fig: plt.Figure) -> None:
    """Write "synthetic data" across the figure (idempotent)."""
    if any(getattr(t, "_repro_stamp", False) for t in fig.texts):
        return
    text = fig.text(
        0.5,
        0.5,
        SYNTHETIC_STAMP,
        ha="center",
        va="center",
        rotation=30,
        fontsize=28,
        color="crimson",
        alpha=0.25,
        weight="bold",
        zorder=1000,
    )
    text._repro_stamp = True  # type: ignore[attr-defined]
    corner = fig.text(
        0.995, 0.005, SYNTHETIC_STAMP, ha="right", va="bottom", fontsize=9, color="crimson"
    )
    corner._repro_stamp = True  # type: ignore[attr-defined]


def save_figure(
    fig: plt.Figure, run_dir: Path | str, name: str, *, source: str | None = None, dpi: int = DPI
) -> Path:
    """Save ``fig`` as ``<run_dir>/<name>.png``; stamp it when ``source == 'synthetic'``."""
    if dpi < DPI:
        raise ValueError(f"dpi must be at least {DPI}, got {dpi}")
    if source == "synthetic":
        stamp_synthetic(fig)
    path = Path(run_dir) / (name if name.endswith(".png") else f"{name}.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    tmp.replace(path)
    return path


def _figure(ax: plt.Axes | None, size: tuple[float, float]) -> tuple[plt.Figure, plt.Axes]:
    set_style()
    if ax is not None:
        return ax.figure, ax
    return plt.subplots(figsize=size)


def plot_confusion_matrix(
    cm: np.ndarray,
    class_names: Sequence[str],
    *,
    normalize: bool = False,
    title: str = "Confusion matrix",
    ax: plt.Axes | None = None,
    extra_columns: Sequence[str] = (),
) -> plt.Figure:
    """Heatmap of a confusion matrix; ``normalize=True`` shows row percentages.

    ``extra_columns``: names of outcomes that are not classes (e.g. an abstention), one
    column each after the classes; ``cm`` is then (classes, classes + extras) and row
    percentages count them.
    """
    cm = np.asarray(cm, dtype=float)
    if cm.shape != (len(class_names), len(class_names) + len(extra_columns)):
        raise ValueError(
            f"confusion matrix shape {cm.shape} does not match {len(class_names)} class names"
            + (f" and {len(extra_columns)} extra column(s)" if extra_columns else "")
        )
    size = 1.0 + 0.8 * len(class_names)
    fig, ax = _figure(ax, (size + 1.5, size))
    if normalize:
        with np.errstate(invalid="ignore", divide="ignore"):
            data = 100 * cm / cm.sum(axis=1, keepdims=True)
        fmt, label = ".1f", "% of true class"
    else:
        data, fmt, label = cm, ".0f", "count"
    sns.heatmap(
        data,
        annot=True,
        fmt=fmt,
        cmap="Blues",
        cbar_kws={"label": label},
        xticklabels=[*class_names, *extra_columns],
        yticklabels=class_names,
        ax=ax,
        square=True,
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title + (" (row %)" if normalize else ""))
    return fig


def plot_roc(
    curves: Mapping[str, Mapping[str, Any]],
    *,
    title: str = "ROC curves",
    ax: plt.Axes | None = None,
) -> plt.Figure:
    """ROC curves from :func:`common.evaluate.roc_curves`; AUCs in the legend, chance diagonal."""
    fig, ax = _figure(ax, (6, 5))
    for name, c in curves.items():
        style = (
            {"linestyle": ":", "linewidth": 2} if name in {"micro", "macro"} else {"linewidth": 1.5}
        )
        ax.plot(c["fpr"], c["tpr"], label=f"{name} (AUC = {c['auc']:.3f})", **style)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set(
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
        xlabel="false positive rate (1 - specificity)",
        ylabel="true positive rate (sensitivity)",
        title=title,
    )
    ax.legend(loc="lower right", fontsize=8)
    return fig


def plot_pr(
    curves: Mapping[str, Mapping[str, Any]],
    *,
    title: str = "Precision-recall curves",
    ax: plt.Axes | None = None,
) -> plt.Figure:
    """Precision-recall curves from :func:`common.evaluate.pr_curves`; AP in the legend."""
    fig, ax = _figure(ax, (6, 5))
    for name, c in curves.items():
        style = {"linestyle": ":", "linewidth": 2} if name == "micro" else {"linewidth": 1.5}
        ax.step(
            c["recall"], c["precision"], where="post", label=f"{name} (AP = {c['ap']:.3f})", **style
        )
    ax.set(
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.05),
        xlabel="recall (sensitivity)",
        ylabel="precision",
        title=title,
    )
    ax.legend(loc="lower left", fontsize=8)
    return fig


def plot_history(
    history: Any, *, metrics: Sequence[str] = ("loss", "accuracy"), title: str = "Training curves"
) -> plt.Figure:
    """Training and validation curves from a Keras ``History`` (or its ``.history`` dict)."""
    logs = getattr(history, "history", history)
    if not isinstance(logs, Mapping) or not logs:
        raise ValueError("history must be a keras History or a non-empty dict of per-epoch lists")
    present = [m for m in metrics if m in logs]
    if not present:
        raise ValueError(f"history has none of {list(metrics)}; it has {sorted(logs)}")
    set_style()
    fig, axes = plt.subplots(1, len(present), figsize=(5 * len(present), 4), squeeze=False)
    for ax, metric in zip(axes[0], present):
        epochs = np.arange(1, len(logs[metric]) + 1)
        ax.plot(epochs, logs[metric], marker="o", markersize=3, label="training")
        if f"val_{metric}" in logs:
            ax.plot(epochs, logs[f"val_{metric}"], marker="o", markersize=3, label="validation")
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_embedding(
    points: np.ndarray,
    labels: Sequence,
    *,
    title: str = "t-SNE embedding",
    ax: plt.Axes | None = None,
) -> plt.Figure:
    """Scatter of a 2-D embedding (n, 2) coloured by class label."""
    points = np.asarray(points)
    labels = np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (n, 2), got {points.shape}")
    if labels.shape[0] != points.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {points.shape[0]} points")
    fig, ax = _figure(ax, (6.5, 5.5))
    sns.scatterplot(
        x=points[:, 0], y=points[:, 1], hue=labels.astype(str), s=14, linewidth=0, alpha=0.8, ax=ax
    )
    ax.set(xlabel="dimension 1", ylabel="dimension 2", title=title)
    ax.legend(title="class", fontsize=8, markerscale=1.5)
    return fig


def plot_histogram(
    values: np.ndarray,
    *,
    bins: int = 50,
    title: str = "Histogram",
    xlabel: str = "value",
    ax: plt.Axes | None = None,
) -> plt.Figure:
    """Histogram with min, mean and max marked and written on the plot."""
    values = np.asarray(values, dtype=float).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError("histogram values must be non-empty and finite")
    fig, ax = _figure(ax, (6.5, 4.5))
    ax.hist(values, bins=bins, color=sns.color_palette(PALETTE)[0], alpha=0.85)
    stats = {"min": values.min(), "mean": values.mean(), "max": values.max()}
    for value, color in zip(stats.values(), ["grey", "crimson", "black"]):
        ax.axvline(value, color=color, linestyle="--", linewidth=1)
    ax.text(
        0.98,
        0.95,
        "\n".join(f"{k} = {v:.4g}" for k, v in stats.items()),
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=9,
        bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "grey"},
    )
    ax.set(xlabel=xlabel, ylabel="count", title=title)
    return fig


def plot_image_grid(
    images: Sequence[np.ndarray],
    *,
    captions: Sequence[str] | None = None,
    ncols: int = 4,
    title: str = "",
    size: float = 2.5,
) -> plt.Figure:
    """A grid of images (H, W) or (H, W, C) in [0, 1] float or uint8, with captions."""
    if len(images) == 0:
        raise ValueError("no images to show")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"{len(captions)} captions for {len(images)} images")
    set_style()
    ncols = max(1, min(ncols, len(images)))
    nrows = int(np.ceil(len(images) / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, size * nrows + 0.4), squeeze=False
    )
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i >= len(images):
            continue
        img = np.asarray(images[i])
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        if captions is not None:
            ax.set_title(str(captions[i]), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_reconstruction(
    original: np.ndarray,
    reconstructed: np.ndarray,
    names: Sequence[str],
    *,
    n_features: int = 200,
    title: str = "Original vs reconstructed values",
) -> plt.Figure:
    """One panel per sample: its first ``n_features`` values and their reconstruction,
    with the [0, 1] band a sigmoid output can reach shaded."""
    original, reconstructed = np.atleast_2d(original), np.atleast_2d(reconstructed)
    if original.shape != reconstructed.shape or len(names) != original.shape[0]:
        raise ValueError(
            f"original {original.shape}, reconstructed {reconstructed.shape} and "
            f"{len(names)} names disagree"
        )
    set_style()
    n = original.shape[0]
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.4 * n), squeeze=False, sharex=True)
    idx = np.arange(min(n_features, original.shape[1]))
    for ax, orig, rec, name in zip(axes[:, 0], original, reconstructed, names):
        ax.axhspan(0, 1, color="grey", alpha=0.15, label="sigmoid range [0, 1]")
        ax.plot(idx, orig[idx], linewidth=1, label="original (standardized)")
        ax.plot(idx, rec[idx], linewidth=1, label="reconstructed")
        ax.set(ylabel="value", title=str(name))
    axes[0, 0].legend(fontsize=8, loc="upper right", ncol=3)
    axes[-1, 0].set_xlabel("feature index")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_protocol_comparison(
    rows: Any,
    *,
    metric: str = "accuracy",
    cls: str = "overall",
    models: Sequence[str] | None = None,
    title: str | None = None,
) -> plt.Figure:
    """Bars of one metric per model, one bar per protocol, with the 95% CI as error bars."""
    import pandas as pd

    rows = pd.DataFrame(rows)
    sel = rows[(rows["metric"] == metric) & (rows["class"] == cls)]
    if models is not None:
        sel = sel[sel["model"].isin(models)]
    if sel.empty:
        raise ValueError(f"no rows with metric={metric!r} and class={cls!r}")
    models = list(models) if models is not None else list(dict.fromkeys(sel["model"]))
    protocols = list(dict.fromkeys(sel["protocol"]))
    set_style()
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(models) * len(protocols)), 4.5))
    width = 0.8 / len(protocols)
    for j, protocol in enumerate(protocols):
        part = sel[sel["protocol"] == protocol].set_index("model").reindex(models)
        x = np.arange(len(models)) + (j - (len(protocols) - 1) / 2) * width
        value = 100 * part["value"].to_numpy(dtype=float)
        low = 100 * part["ci_low"].to_numpy(dtype=float)
        high = 100 * part["ci_high"].to_numpy(dtype=float)
        err = np.vstack([value - low, high - value])
        ax.bar(x, value, width, label=protocol, yerr=np.where(np.isfinite(err), err, 0), capsize=3)
    ax.set_xticks(np.arange(len(models)), models, rotation=30, ha="right")
    ax.set(
        ylabel=f"{metric} ({cls}, %)",
        ylim=(0, 105),
        title=title or f"{metric} by protocol (95% CI)",
    )
    ax.legend(title="protocol")
    fig.tight_layout()
    return fig


def plot_metric_bars(table: Any, *, title: str = "", ylabel: str = "%") -> plt.Figure:
    """Grouped bars from a DataFrame: one group per row (e.g. metric), one bar per column
    (e.g. training / test), values as given (pass percentages for a % axis), labelled on top."""
    import pandas as pd

    table = pd.DataFrame(table)
    if table.empty:
        raise ValueError("no values to plot")
    set_style()
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(table) * max(1, table.shape[1]) / 2), 4.2))
    width = 0.8 / table.shape[1]
    for j, column in enumerate(table.columns):
        x = np.arange(len(table)) + (j - (table.shape[1] - 1) / 2) * width
        bars = ax.bar(x, table[column].to_numpy(dtype=float), width, label=str(column))
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(np.arange(len(table)), [str(i) for i in table.index])
    ax.set(ylabel=ylabel, title=title)
    ax.legend()
    fig.tight_layout()
    return fig
