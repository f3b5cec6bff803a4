"""Claimed vs reproduced: load ``claims/<paper>.yaml`` and join it with a run's metrics.

The YAML schema is documented in ``claims/README.md``. In short::

    id: 01_kandi
    paper:  # the full reference, as the paper prints it (:func:`load_reference`)
      authors: [Nithin Kandi, ...]
      title: Analysis of LEUKEMIA classification using Microarray Data with Deep Learning models
      venue: not printed in the paper
      year: not printed in the paper
      doi: DOI not printed in the paper
    defaults: {unit: percent, class: overall, protocol: "SMOTE on all data, then split"}
    claims:
      - {table: "Table 6", model: hybrid, metric: accuracy, value: 96.6}
      - {table: "Table 6", model: hybrid, class: weighted, metric: precision, value: 97}

Each claim is compared with the run's rows of the same (model, class, metric),
once for every protocol the run reports (``published``, ``leak_free``), and gets a
verdict there: ``reproduced``, ``not reproduced`` or ``not comparable`` (with the
reason); the rules are :func:`verdict`'s and claims/README.md's "Verdicts".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.evaluate import format_value
from common.paths import claims_dir, read_yaml

REQUIRED_FIELDS = ("table", "model", "metric", "value")
OPTIONAL_FIELDS = ("class", "unit", "protocol", "note", "cited", "dataset")
UNITS = ("percent", "fraction", "count", "value")
#: The keys of a claims file's ``paper:`` reference; every one is required and non-empty.
REFERENCE_FIELDS = ("authors", "title", "venue", "year", "doi")
#: ``doi`` when the paper prints none (never a guessed one); otherwise a https://doi.org/ link.
NO_DOI = "DOI not printed in the paper"
DOI_PREFIX = "https://doi.org/"  # count/value: raw numbers (class counts, errors)
METRIC_ALIASES = {
    "recall": "sensitivity",
    "tpr": "sensitivity",
    "true positive rate": "sensitivity",
    "f1 score": "f1",
    "f1-score": "f1",
    "f1_score": "f1",
    "f-score": "f1",
    "auc-roc": "auc",
    "roc auc": "auc",
    "roc_auc": "auc",
    "tnr": "specificity",
    "acc": "accuracy",
    "ppv": "precision",
}
CLAIM_COLUMNS = [
    "table",
    "protocol",
    "model",
    "class",
    "metric",
    "value",
    "unit",
    "note",
    "cited",
    "dataset",
]
VERDICTS = ("reproduced", "not reproduced", "not comparable")
#: ``unit: value`` claims (and score claims whose run gives no interval) agree within this share
#: of the claim.
RELATIVE_TOLERANCE = 0.01
#: Slack for float rounding at an interval's edge or a tolerance's bound (a fraction turned into
#: percent).
EDGE_SLACK = 1e-9


def normalise_metric(name: str) -> str:
    """Map a paper's metric name (Recall, F1-score, ...) to this package's name."""
    key = str(name).strip().lower()
    return METRIC_ALIASES.get(key, key)


def check_reference(doc: Any, path: Path | str) -> dict[str, Any]:
    """The ``paper:`` reference of a claims file's parsed ``doc``, checked: a mapping with every
    :data:`REFERENCE_FIELDS` key non-empty, ``authors`` a list of names, ``doi`` a
    https://doi.org/ link or :data:`NO_DOI`. Raises a one-line ValueError naming the file
    (``path``) and the missing or bad key."""
    ref = doc.get("paper") if isinstance(doc, dict) else None
    if not isinstance(ref, dict):
        raise ValueError(
            f"{path}: no 'paper' reference mapping (keys {', '.join(REFERENCE_FIELDS)}); "
            "see claims/README.md"
        )
    for key in REFERENCE_FIELDS:
        value = ref.get(key)
        if value is None or (isinstance(value, str | list) and not value):
            raise ValueError(f"{path}: paper reference lacks '{key}'; see claims/README.md")
    authors = ref["authors"]
    if not isinstance(authors, list) or not all(isinstance(a, str) and a for a in authors):
        raise ValueError(f"{path}: paper reference 'authors' must be a list of names")
    doi = str(ref["doi"])
    if doi != NO_DOI and not (doi.startswith(DOI_PREFIX) and len(doi) > len(DOI_PREFIX)):
        raise ValueError(
            f"{path}: paper reference 'doi' is {doi!r}; write a {DOI_PREFIX}... link or {NO_DOI!r}"
        )
    return ref


def load_reference(paper: str, *, directory: Path | None = None) -> dict[str, Any]:
    """The checked ``paper:`` reference of ``claims/<paper>.yaml`` (:func:`check_reference`)."""
    path = Path(directory or claims_dir()) / f"{paper}.yaml"
    return check_reference(read_yaml(path, "see claims/README.md"), path)


def load_claims(paper: str, *, directory: Path | None = None) -> pd.DataFrame:
    """Read and validate ``claims/<paper>.yaml``; one row per claim (:data:`CLAIM_COLUMNS`).

    ``value`` stays as the paper prints it; ``unit`` says whether that is percent
    or a fraction.
    """
    path = Path(directory or claims_dir()) / f"{paper}.yaml"
    doc = read_yaml(path, "transcribe the paper's tables there (see claims/README.md)")
    if not isinstance(doc, dict) or not isinstance(doc.get("claims"), list) or not doc["claims"]:
        raise ValueError(f"{path} needs a non-empty 'claims' list (see claims/README.md)")
    defaults = {
        "class": "overall",
        "unit": "percent",
        "protocol": "as published",
        "note": "",
        "cited": False,
        "dataset": "",
    }
    defaults.update(doc.get("defaults") or {})
    rows = []
    for i, claim in enumerate(doc["claims"], start=1):
        if not isinstance(claim, dict):
            raise ValueError(f"{path}: claim {i} is not a mapping")
        missing = [f for f in REQUIRED_FIELDS if f not in claim]
        extra = sorted(set(claim) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
        if missing or extra:
            raise ValueError(
                f"{path}: claim {i} lacks {missing} / has unknown fields {extra}; "
                "see claims/README.md"
            )
        row = {**defaults, **claim}
        if row["unit"] not in UNITS:
            raise ValueError(f"{path}: claim {i} has unit {row['unit']!r}; use one of {UNITS}")
        try:
            row["value"] = float(row["value"])
        except (TypeError, ValueError):
            raise ValueError(
                f"{path}: claim {i} value {claim['value']!r} is not a number"
            ) from None
        if not isinstance(row["cited"], bool):
            raise ValueError(f"{path}: claim {i} has cited {row['cited']!r}; use true or false")
        row["metric"] = normalise_metric(row["metric"])
        row["class"] = str(row["class"])
        row["model"] = str(row["model"])
        row["dataset"] = str(row["dataset"] or "")
        rows.append({c: row[c] for c in CLAIM_COLUMNS})
    check_reference(doc, path)
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def load_headline(paper: str, *, directory: Path | None = None) -> dict[str, Any] | None:
    """The paper's headline claim: the claim matching the YAML's
    ``headline: {model, metric, class}``.

    Returns that claim as a dict (:data:`CLAIM_COLUMNS`) or None when the file names no headline.
    """
    path = Path(directory or claims_dir()) / f"{paper}.yaml"
    doc = read_yaml(path, "transcribe the paper's tables there (see claims/README.md)")
    head = (doc if isinstance(doc, dict) else {}).get("headline")
    if not head:
        return None
    if not isinstance(head, dict) or not {"model", "metric"} <= set(head):
        raise ValueError(
            f"{path}: headline must be a mapping with model, metric (and class); "
            "see claims/README.md"
        )
    claims = load_claims(paper, directory=directory)
    match = claims[
        (claims["model"] == str(head["model"]))
        & (claims["metric"] == normalise_metric(head["metric"]))
        & (claims["class"] == str(head.get("class", "overall")))
    ]
    if match.empty:
        raise ValueError(
            f"{path}: headline {head} matches no claim; copy model, metric and class from one of "
            "the claims"
        )
    return match.iloc[0].to_dict()


def compare(
    claims: pd.DataFrame,
    metrics: pd.DataFrame,
    *,
    protocols: Sequence[str] | None = None,
    source: str | None = None,
    dataset: str | None = None,
) -> pd.DataFrame:
    """Join claims with reproduced metric rows.

    Returns one row per claim with, for each protocol, the reproduced value and CI
    (as fractions), ``delta_<protocol>`` = reproduced - claimed in the claim's
    unit (percentage points for percent claims), and ``verdict_<protocol>`` /
    ``reason_<protocol>`` (:func:`verdict`). Claims the run does not cover keep NaN
    there. ``source`` (the run's data source) and ``dataset`` (the data set it ran
    on, a :mod:`common.data` id) feed the verdicts; None means unknown.
    """
    if protocols is None:
        protocols = [
            p for p in ("published", "leak_free") if p in set(metrics["protocol"])
        ] or sorted(set(metrics["protocol"]))
    out = claims.copy()
    scale = np.where(out["unit"] == "percent", 100.0, 1.0)
    # a run's model "alexnet [from scratch]" answers the claim on "alexnet"; the table says how it
    # was run
    qualified = metrics.assign(
        model=[base_model(m) for m in metrics["model"]], reproduced_as=metrics["model"]
    )
    keyed = (
        pd.concat([metrics.assign(reproduced_as=metrics["model"]), qualified])
        .drop_duplicates(["protocol", "model", "class", "metric"])
        .set_index(["protocol", "model", "class", "metric"])
    )
    reproduced_as = [""] * len(claims)
    for protocol in protocols:
        values, lows, highs = [], [], []
        for i, (_, claim) in enumerate(claims.iterrows()):
            key = (protocol, claim["model"], claim["class"], claim["metric"])
            if (
                key in keyed.index and not claim["cited"]
            ):  # a number cited from other work is not reproduced here
                hit = keyed.loc[key]
                hit = hit.iloc[0] if isinstance(hit, pd.DataFrame) else hit
                if hit["reproduced_as"] != claim["model"]:
                    reproduced_as[i] = hit["reproduced_as"]
                values.append(hit["value"])
                lows.append(hit["ci_low"])
                highs.append(hit["ci_high"])
            else:
                values.append(np.nan)
                lows.append(np.nan)
                highs.append(np.nan)
        out[protocol] = values
        out[f"{protocol}_ci_low"] = lows
        out[f"{protocol}_ci_high"] = highs
        out[f"delta_{protocol}"] = np.asarray(values, dtype=float) * scale - out["value"]
    out["reproduced_as"] = reproduced_as
    out.attrs["protocols"] = list(protocols)
    return add_verdicts(out, source=source, dataset=dataset)


def stand_in(claim: pd.Series | dict, dataset: str | None) -> bool:
    """Whether the run's ``dataset`` differs from the one the claim was made on (both known)."""
    paper = str(claim.get("dataset") or "")
    return bool(paper and dataset and str(dataset) != paper)


def _agreement(
    claim: pd.Series | dict, value: float, ci_low: float, ci_high: float
) -> tuple[bool, str]:
    """Whether a reproduced value agrees with the claim, and the rule that decided it.

    Counts must match exactly; ``value`` claims within :data:`RELATIVE_TOLERANCE` of the
    claim; scores (percent, fraction) when the claim lies in the reproduced 95% interval,
    edges included, or, where the run gives no interval, within the relative tolerance.
    """
    claimed, unit = float(claim["value"]), claim["unit"]
    scale = 100.0 if unit == "percent" else 1.0
    slack = EDGE_SLACK * max(1.0, abs(claimed))
    if unit == "count":
        return bool(abs(value - claimed) <= slack), "count: exact"
    if unit != "value" and np.isfinite(ci_low) and np.isfinite(ci_high):
        inside = ci_low * scale - slack <= claimed <= ci_high * scale + slack
        return bool(inside), f"claim {'inside' if inside else 'outside'} the 95% interval"
    close = abs(value * scale - claimed) <= RELATIVE_TOLERANCE * abs(claimed) + slack
    rule = (
        f"within {RELATIVE_TOLERANCE:.0%} of the claim"
        if close
        else f"more than {RELATIVE_TOLERANCE:.0%} off"
    )
    return bool(close), rule if unit == "value" else f"no interval; {rule}"


def verdict(
    claim: pd.Series | dict,
    value: float,
    *,
    ci_low: float = np.nan,
    ci_high: float = np.nan,
    source: str | None = None,
    dataset: str | None = None,
) -> tuple[str, str]:
    """(verdict, reason) of one claim under one protocol: ``not comparable`` when the number is
    cited from other work, not run, on synthetic data or on a stand-in dataset (checked in
    that order), else ``reproduced`` or ``not reproduced`` by :func:`_agreement`."""
    if bool(claim.get("cited", False)):
        return "not comparable", "cited from other work"
    if value is None or not np.isfinite(value):
        return "not comparable", "not run"
    if source == "synthetic":
        return "not comparable", "synthetic data"
    if stand_in(claim, dataset):
        return "not comparable", f"stand-in dataset: {dataset}, not {claim['dataset']}"
    agrees, rule = _agreement(claim, float(value), float(ci_low), float(ci_high))
    return ("reproduced" if agrees else "not reproduced"), rule


def add_verdicts(
    comparison: pd.DataFrame, *, source: str | None = None, dataset: str | None = None
) -> pd.DataFrame:
    """:func:`compare`'s rows with ``verdict_<protocol>`` and ``reason_<protocol>`` (re)computed
    for the run's ``source`` and ``dataset``, which ``attrs`` keeps."""
    out = comparison.copy()
    for protocol in out.attrs.get("protocols", []):
        pairs = [
            verdict(
                claim,
                claim[protocol],
                ci_low=claim[f"{protocol}_ci_low"],
                ci_high=claim[f"{protocol}_ci_high"],
                source=source,
                dataset=dataset,
            )
            for _, claim in out.iterrows()
        ]
        out[f"verdict_{protocol}"] = [v for v, _ in pairs]
        out[f"reason_{protocol}"] = [r for _, r in pairs]
    out.attrs.update(source=source, dataset=dataset)
    return out


def verdict_counts(comparison: pd.DataFrame) -> list[dict[str, Any]]:
    """Per protocol: how many claims got each verdict, and the reasons of the not comparable
    ones."""
    rows = []
    for protocol in comparison.attrs.get("protocols", []):
        verdicts, reasons = comparison[f"verdict_{protocol}"], comparison[f"reason_{protocol}"]
        why = reasons[verdicts == "not comparable"].value_counts()
        rows.append(
            {
                "protocol": protocol,
                **{v: int((verdicts == v).sum()) for v in VERDICTS},
                "not comparable because": ", ".join(f"{reason} {n}" for reason, n in why.items()),
            }
        )
    return rows


def base_model(model: str) -> str:
    """A model name without its bracketed qualifier: ``alexnet [from scratch]`` -> ``alexnet``."""
    return re.sub(r"\s*\[[^\]]*\]$", "", str(model))


def comparison_markdown(comparison: pd.DataFrame, source: str, *, note: str = "") -> str:
    """Render :func:`compare`'s result as a Markdown table with the data source stated.

    Reproduced cells are "value [95% CI]" in the claim's unit; deltas are
    reproduced - claimed (percentage points for percent claims); the verdict column
    gives :func:`verdict`'s outcome with its reason. A comparison made without the run's
    source gets its verdicts for ``source`` here.
    """
    protocols = comparison.attrs.get("protocols") or [
        c for c in ("published", "leak_free") if c in comparison.columns
    ]
    if comparison.attrs.get("source") is None:
        comparison = add_verdicts(
            comparison, source=source, dataset=comparison.attrs.get("dataset")
        )
    table = pd.DataFrame(
        {
            "table": comparison["table"],
            "model": [
                m if not r else f"{m} (run as {r})"
                for m, r in zip(
                    comparison["model"],
                    comparison.get("reproduced_as", pd.Series([""] * len(comparison))),
                )
            ],
            "class": comparison["class"],
            "metric": comparison["metric"],
            "claimed": [
                f"{v:g}%"
                if u == "percent"
                else (f"{v:g}" if u == "fraction" else f"{v:,.0f}" if u == "count" else _plain(v))
                for v, u in zip(comparison["value"], comparison["unit"])
            ],
        }
    )
    for protocol in protocols:
        percent = comparison["unit"] == "percent"
        table[f"reproduced ({protocol})"] = [
            "cited from other work, not run"
            if c
            else (
                format_value(v, ci_low=lo, ci_high=hi, percent=p)
                if p or u == "fraction"
                else _plain(v)
            )
            or "not run"
            for v, lo, hi, p, u, c in zip(
                comparison[protocol],
                comparison[f"{protocol}_ci_low"],
                comparison[f"{protocol}_ci_high"],
                percent,
                comparison["unit"],
                comparison.get("cited", pd.Series([False] * len(comparison))),
            )
        ]
        table[f"Δ {protocol}"] = [
            "" if not np.isfinite(d) else f"{d:+.2f}{' pp' if p else ''}"
            for d, p in zip(comparison[f"delta_{protocol}"], percent)
        ]
        table[f"verdict ({protocol})"] = [
            f"{v} ({r})"
            for v, r in zip(comparison[f"verdict_{protocol}"], comparison[f"reason_{protocol}"])
        ]
    header = f"Data source: **{source}**." + (
        " Figures and numbers below come from generated data, not the paper's dataset."
        if source == "synthetic"
        else ""
    )
    lines = [header]
    if note:
        lines.append(note)
    lines += ["", table.to_markdown(index=False)]
    return "\n".join(lines) + "\n"


def _plain(value: float) -> str:
    """A count or raw value as printed: integers without decimals, others to 4 significant
    digits."""
    if value is None or not np.isfinite(value):
        return ""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.4g}"


def protocol_gap(
    metrics: pd.DataFrame, model: str, *, metric: str = "accuracy", cls: str = "overall"
) -> str:
    """One sentence, from a run's metric rows, on what the leak is worth for ``model``."""
    rows = metrics[
        (metrics["model"] == model) & (metrics["metric"] == metric) & (metrics["class"] == cls)
    ]
    by = {r["protocol"]: r for _, r in rows.iterrows()}
    if not {"published", "leak_free"} <= set(by):
        raise ValueError(
            f"no {cls} {metric} of {model!r} under both protocols in these metric rows"
        )
    pub, free = by["published"], by["leak_free"]
    gap = 100 * (pub["value"] - free["value"])
    overlap = not (pub["ci_low"] > free["ci_high"] or free["ci_low"] > pub["ci_high"])
    pub_text = format_value(pub["value"], ci_low=pub["ci_low"], ci_high=pub["ci_high"])
    free_text = format_value(free["value"], ci_low=free["ci_low"], ci_high=free["ci_high"])
    return (
        f"{model}: {metric} {pub_text}% under the paper's "
        f"protocol (published) and {free_text}% without the "
        f"leak (leak_free), a difference of {gap:+.1f} percentage points; the 95% intervals "
        + ("overlap, so this run cannot tell the two apart." if overlap else "do not overlap.")
    )


def run_dataset(meta: dict) -> str | None:
    """The data set a run used, from its ``run.json``: ``data.dataset`` where the notebook
    recorded it, else its ``dataset`` parameter (notebook 01's); None when neither says."""
    return (
        (meta.get("data") or {}).get("dataset") or (meta.get("params") or {}).get("dataset") or None
    )


def claims_vs_run(
    paper: str, run_dir: Path | str, *, source: str | None = None, directory: Path | None = None
) -> tuple[pd.DataFrame, str]:
    """Load a paper's claims and a run's metrics (from disk) and return (comparison, markdown).

    The verdicts use the run's source (``source``, else ``run.json``'s) and its data set
    (:func:`run_dataset`).
    """
    import json

    from common.evaluate import read_metrics

    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    run_json = run_dir / "run.json"
    meta = json.loads(run_json.read_text()) if run_json.is_file() else {}
    source = source or (meta.get("data") or {}).get("source") or "unknown"
    comparison = compare(
        load_claims(paper, directory=directory), metrics, source=source, dataset=run_dataset(meta)
    )
    return comparison, comparison_markdown(comparison, source)


def write_report(*, results: Path | None = None, directory: Path | None = None) -> list[Path]:
    """For every run with metrics and a claims file, write ``claims_vs_reproduced.md``."""
    from common.paths import atomic_write_text, results_root

    results = Path(results or results_root())
    directory = Path(directory or claims_dir())
    written = []
    for metrics in sorted(results.glob("*/*/metrics.json")):
        run_dir, paper = metrics.parent, metrics.parent.parent.name
        if not (directory / f"{paper}.yaml").is_file():
            continue
        _, markdown = claims_vs_run(paper, run_dir, directory=directory)
        title = f"# {paper}: claimed vs reproduced (run {run_dir.name})\n\n"
        written.append(atomic_write_text(run_dir / "claims_vs_reproduced.md", title + markdown))
    return written


def main() -> int:
    """``make report``: write and list the claimed-vs-reproduced tables."""
    written = write_report()
    if not written:
        print(
            "no run under results/ has both metrics.json and a claims file yet: "
            "run `make reproduce` first"
        )
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
