"""Microarray datasets: CuMiDa CSV series, Bioconductor ALL and Golub (Debian packages).

CuMiDa: one CSV per series, ``samples`` (CEL name), ``type`` (label), then one
column per probe. The series come from different platforms (HG-U133A and its A_2
revision, HG-U133B, HG-U133 Plus 2, two Agilent arrays), so a merge needs a rule;
:func:`load_cumida` offers two and records which one ran (``info["merge_rule"]``):

``compatible`` (default)
    Merge on **shared probe ids**, over the series whose platforms share them.
    Series are taken largest first (most samples, then name); each next series joins
    when the probe ids it shares with the merge so far are at least ``min_overlap``
    (default half) of the smaller of the two sets. On the real seven series this
    should keep the HG-U133A family (U133A, U133A_2 and Plus 2, which carries every
    U133A probe set): GSE28497, GSE22529_U133A, GSE63270 and GSE14317 on about 22,277
    probe ids (expected from the platforms' probe lists; not yet run on the real
    files). HG-U133B shares only the AFFX control probes with U133A and the two
    Agilent series (GSE33615, GSE71449) share none, so they are left out and listed
    in ``info["left_out"]`` with their shared count. Series named explicitly in
    ``series`` are never left out: an incompatible one raises.
``paper_width``
    What the paper's numbers imply (P77: 16,382 features; P99: 16,384 per series):
    the first ``width`` probe columns of every series stacked **by position**, probe
    identity ignored. 16,384 is a spreadsheet's column limit and 16,382 = 16,384 minus
    the ``samples`` and ``type`` columns, so we read the paper's merge as a truncation
    of every file at that width (an inference). ``info["same_probe_fraction"]`` says
    how many positions carry the same probe id in every series.

Either way the merge fails with a one-line :class:`DataError` (naming the series and
the count) when fewer than ``min_features`` features survive.

Patients: GSE22529 was hybridised to both chips of the HG-U133A/B set, so
``GSE22529_U133A`` and ``GSE22529_U133B`` hold the same 52 patients. When both chips
of a series are merged, their samples are paired (by sample id when the ids agree,
else by the correlation of the probes both chips carry, within each label) and a pair
shares one ``patients`` id; every other sample is its own patient.

ALL and golub ship as R data files in Debian's ``r-bioc-all`` and
``r-bioc-multtest``; :func:`fetch_debian` unpacks them with ``apt-get download``
and ``dpkg -x`` (no R needed) and the PyPI package ``rdata`` parses them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.data.core import DataError, Dataset, build_dataset, require_dir

CUMIDA_PATTERN = "Leukemia_*.csv"
CUMIDA_MERGES = ("compatible", "paper_width")
PAPER_WIDTH = 16382  # P77; P99's 16,384 counts the samples and type columns too
MIN_OVERLAP = 0.5
DEBIAN_PACKAGES = ("r-bioc-all", "r-bioc-multtest")
ALL_RDA = "ALL/data/ALL.rda"
GOLUB_RDATA = "multtest/data/golub.RData"
ALL_SHAPE = (12625, 128)  # probes x samples, as stored in the ExpressionSet

# Affymetrix 3' probe-set ids are "<number>[_<letter>]_at" (or AFFX-... controls); the number
# ranges tell the chips of the HG-U133 generation apart (Plus 2 = U133A + U133B + 1552256..1570653).
AFFY_ID = re.compile(r"^(\d+)(?:_[a-z])?_at$")
U133A_RANGE, U133B_RANGE, PLUS2_NEW_RANGE = (200000, 222384), (222385, 244889), (1552256, 1570653)


# ------------------------------------------------------------------------- CuMiDa
def series_name(path: Path) -> str:
    """``Leukemia_GSE22529_U133A.csv`` -> ``GSE22529_U133A``."""
    return Path(path).stem.removeprefix("Leukemia_")


def study_name(series: str) -> str:
    """The GEO series a CuMiDa series comes from: ``GSE22529_U133A`` -> ``GSE22529``."""
    return str(series).split("_", 1)[0]


def guess_platform(probe_ids: Iterable[str]) -> str:
    """The platform family a list of probe ids looks like (a guess from id patterns).

    ``HG-U133 Plus 2``, ``HG-U133A``, ``HG-U133B``, ``Agilent`` or ``unknown``.
    """
    ids = [str(p) for p in probe_ids]
    if not ids:
        return "unknown"
    numbers = np.array([int(m.group(1)) for m in map(AFFY_ID.match, ids) if m], dtype=np.int64)
    if sum(1 for p in ids if p.startswith("A_") and "_P" in p) > 0.5 * len(ids):
        return "Agilent"
    if numbers.size < 0.5 * len(ids):
        return "unknown"
    share = {
        name: float(np.mean((numbers >= lo) & (numbers <= hi)))
        for name, (lo, hi) in (("A", U133A_RANGE), ("B", U133B_RANGE), ("new", PLUS2_NEW_RANGE))
    }
    if share["new"] > 0.05 and share["A"] > 0.2 and share["B"] > 0.2:
        return "HG-U133 Plus 2"
    if share["A"] > 0.8:
        return "HG-U133A"
    if share["B"] > 0.8:
        return "HG-U133B"
    return "unknown"


def read_cumida_csv(path: Path) -> pd.DataFrame:
    """One CuMiDa series as a table (samples x [samples, type, probes...]), validated."""
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot read {path} as CSV ({type(exc).__name__}); re-download the series from CuMiDa"
        ) from None
    missing = [c for c in ("samples", "type") if c not in table.columns]
    if missing:
        raise DataError(
            f"{path} lacks column(s) {missing}; a CuMiDa CSV starts with 'samples,type,<probe ids>'"
        )
    if table.shape[0] == 0 or table.shape[1] < 3:
        raise DataError(f"{path} has no samples or no probe columns; re-download the series")
    values = table.iloc[:, 2:]
    if not all(
        pd.api.types.is_numeric_dtype(dtype) for dtype in values.dtypes
    ):  # some column parsed as text
        values = values.apply(pd.to_numeric, errors="coerce")
    n_nan = int(values.isna().to_numpy().sum())
    if n_nan or table["type"].isna().any():
        where = "labels" if table["type"].isna().any() else f"{n_nan} expression value(s)"
        raise DataError(
            f"{path} has missing or non-numeric {where}; drop or impute them before loading"
        )
    return pd.concat([table[["samples", "type"]].astype(str), values], axis=1)


def plan_compatible_merge(
    probe_sets: Mapping[str, Sequence[str]],
    sizes: Mapping[str, int],
    *,
    min_overlap: float = MIN_OVERLAP,
) -> tuple[list[str], list[str], dict[str, int]]:
    """Which series merge on shared probe ids: ``(merged series, shared ids, left out)``.

    Series are taken largest first (``sizes``: samples per series; ties by name); a
    series joins when the ids it shares with the merge so far number at least
    ``min_overlap`` x the smaller of the two sets. ``left out`` maps each other
    series to the number of ids it shared when it was refused. The shared ids keep
    the largest series' column order.
    """
    if not 0 < min_overlap <= 1:
        raise DataError(f"min_overlap must be in (0, 1], got {min_overlap}")
    order = sorted(probe_sets, key=lambda name: (-int(sizes[name]), name))
    shared, merged, left_out = set(probe_sets[order[0]]), [order[0]], {}
    for name in order[1:]:
        ids = set(probe_sets[name])
        common = shared & ids
        if len(common) >= min_overlap * min(len(shared), len(ids)):
            shared, merged = common, merged + [name]
        else:
            left_out[name] = len(common)
    return merged, [p for p in probe_sets[order[0]] if p in shared], left_out


def _plain_sample_id(sample: str) -> str:
    """``GSM705467.CEL.gz`` -> ``gsm705467`` (case and file suffixes dropped)."""
    return re.sub(r"(\.gz|\.cel)+$", "", str(sample).strip().lower())


def _row_correlations(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pearson correlation of every row of ``first`` with every row of ``second``,
    after standardizing each column within its own table (removes chip-wide scale)."""

    def standardize(values: np.ndarray) -> np.ndarray:
        values = (values - values.mean(axis=0)) / values.std(axis=0)
        values = values - values.mean(axis=1, keepdims=True)
        return values / np.linalg.norm(values, axis=1, keepdims=True)

    keep = (first.std(axis=0) > 0) & (second.std(axis=0) > 0)
    return standardize(first[:, keep]) @ standardize(second[:, keep]).T


def match_chip_samples(
    first: pd.DataFrame, second: pd.DataFrame, names: tuple[str, str]
) -> tuple[np.ndarray, str]:
    """Pair the samples of two chips of one series (same patients on two arrays).

    Returns ``order`` (for row i of ``first``, the row of ``second`` of the same
    patient) and how it was matched. Sample ids that agree once case and file
    suffixes are dropped match directly; otherwise each label's samples are paired
    one-to-one by the highest total correlation over the probe ids both chips carry
    (the AFFX controls on HG-U133A/B), each probe standardized within its chip.
    """
    ids_a, ids_b = (
        [_plain_sample_id(s) for s in first["samples"]],
        [_plain_sample_id(s) for s in second["samples"]],
    )
    labels_a, labels_b = first["type"].to_numpy(dtype=str), second["type"].to_numpy(dtype=str)
    counts_a, counts_b = (
        pd.Series(labels_a).value_counts().to_dict(),
        pd.Series(labels_b).value_counts().to_dict(),
    )
    if counts_a != counts_b:
        raise DataError(
            f"{names[0]} and {names[1]} should hold the same patients but their labels differ "
            f"({counts_a} vs {counts_b}); load one of the two chips only (series=...)"
        )
    if len(set(ids_a)) == len(ids_a) and set(ids_a) == set(ids_b):
        where = {s: i for i, s in enumerate(ids_b)}
        order = np.array([where[s] for s in ids_a])
        if (labels_a != labels_b[order]).any():
            raise DataError(
                f"{names[0]} and {names[1]} give one sample id two labels; check the files"
            )
        return order, "by sample id"
    in_second = set(second.columns[2:])
    shared = [p for p in first.columns[2:] if p in in_second]
    if len(shared) < 3:
        raise DataError(
            f"cannot pair the samples of {names[0]} and {names[1]}: their sample ids "
            f"differ and they share {len(shared)} probe id(s); load one of the two chips "
            "only (series=...)"
        )
    from scipy.optimize import linear_sum_assignment

    corr = _row_correlations(
        first[shared].to_numpy(dtype=float), second[shared].to_numpy(dtype=float)
    )
    order, matched = np.full(len(first), -1), []
    for label in sorted(counts_a):
        rows_a, rows_b = np.flatnonzero(labels_a == label), np.flatnonzero(labels_b == label)
        pick_a, pick_b = linear_sum_assignment(-corr[np.ix_(rows_a, rows_b)])
        order[rows_a[pick_a]] = rows_b[pick_b]
        matched.extend(corr[rows_a[pick_a], rows_b[pick_b]])
    return (
        order,
        f"by profile correlation over {len(shared)} shared probe ids (median r = "
        f"{np.median(matched):.2f})",
    )


def cumida_patients(tables: Mapping[str, pd.DataFrame]) -> tuple[dict[str, np.ndarray], list[str]]:
    """A patient id per sample of every series, and one line per paired chip set.

    Series of one study (``GSE22529_U133A`` and ``GSE22529_U133B``) are the same
    patients on two chips: paired samples share ``<study>/<sample of the first chip>``;
    every other sample is ``<series>/<sample>``.
    """
    patients = {
        name: np.array([f"{name}/{_plain_sample_id(s)}" for s in t["samples"]])
        for name, t in tables.items()
    }
    lines = []
    studies: dict[str, list[str]] = {}
    for name in sorted(tables):
        studies.setdefault(study_name(name), []).append(name)
    for study, chips in studies.items():
        for other in chips[1:]:
            order, how = match_chip_samples(tables[chips[0]], tables[other], (chips[0], other))
            shared_ids = np.array(
                [f"{study}/{_plain_sample_id(s)}" for s in tables[chips[0]]["samples"]]
            )
            patients[chips[0]] = shared_ids
            patients[other] = np.empty(len(order), dtype=object)
            patients[other][order] = shared_ids
            patients[other] = patients[other].astype(str)
            lines.append(
                f"{chips[0]} and {other}: the same {len(order)} patients on two chips, paired {how}"
            )
    return patients, lines


def _merge_positional(tables: Mapping[str, pd.DataFrame], width: int) -> tuple[list[str], float]:
    """Feature names and the share of positions holding the same probe id in every series."""
    short = {name: t.shape[1] - 2 for name, t in tables.items() if t.shape[1] - 2 < width}
    if short:
        name, count = next(iter(short.items()))
        raise DataError(
            f"series {name} has {count} probe columns, fewer than width={width}; "
            f"leave it out (series=...) or lower width"
        )
    columns = [list(t.columns[2 : 2 + width]) for t in tables.values()]
    same = float(np.mean([len(set(ids)) == 1 for ids in zip(*columns)]))
    return [f"position_{j + 1}" for j in range(width)], same


def comparable_series(
    tables: Mapping[str, pd.DataFrame], merged: Sequence[str], *, width: int | None
) -> list[list[str]]:
    """Groups of merged series whose merged columns hold the same probe ids, so that their
    profiles can be compared feature by feature: all of them for the ``compatible`` merge
    (``width`` None: one shared id list); under ``paper_width`` the series whose first ``width``
    probe ids are identical (one platform, in one column order)."""
    if width is None:
        return [list(merged)]
    groups: dict[tuple, list[str]] = {}
    for name in merged:
        groups.setdefault(tuple(tables[name].columns[2 : 2 + width]), []).append(name)
    return list(groups.values())


def _series_table(
    tables: Mapping[str, pd.DataFrame], merged: Sequence[str], shared: Mapping[str, int]
) -> list[dict]:
    """One row per loaded series (the paper's Table 2 plus platform and merge facts)."""
    return [
        {
            "series": name,
            "study": study_name(name),
            "platform (guessed from ids)": guess_platform(t.columns[2:]),
            "classes": int(t["type"].nunique()),
            "samples": int(len(t)),
            "probes": int(t.shape[1] - 2),
            "shared with merge": int(shared[name]),
            "merged": name in merged,
        }
        for name, t in tables.items()
    ]


def _cumida_files(
    root: Path | Sequence[Path], series: Iterable[str] | None
) -> tuple[list[Path], Path]:
    if isinstance(root, (str, Path)):
        root = Path(root)
        fix = "put the Leukemia_*.csv files there (see data/README.md)"
        files = sorted(require_dir(root, "CuMiDa folder", fix).glob(CUMIDA_PATTERN))
        base = root
    else:
        files = [Path(p) for p in root]
        base = files[0].parent if files else Path(".")
    if series is not None:
        wanted = set(series)
        files = [f for f in files if series_name(f) in wanted]
        unknown = wanted - {series_name(f) for f in files}
        if unknown:
            available = [series_name(f) for f in files]
            raise DataError(f"series {sorted(unknown)} not found in {base}; available: {available}")
    if not files:
        raise DataError(
            f"no {CUMIDA_PATTERN} files in {base}; download the CuMiDa leukemia series there"
        )
    return files, base


def load_cumida(
    root: Path | Sequence[Path],
    *,
    series: Iterable[str] | None = None,
    merge: str = "compatible",
    min_features: int = 1,
    min_overlap: float = MIN_OVERLAP,
    width: int = PAPER_WIDTH,
) -> Dataset:
    """Read one or more CuMiDa series and merge them (rules in the module docstring).

    ``root`` is a folder of ``Leukemia_*.csv`` files or a list of CSV paths;
    ``series`` optionally picks series by name (``GSE28497``, ``GSE22529_U133A``).
    ``merge``: ``compatible`` (shared probe ids over compatible platforms) or
    ``paper_width`` (the first ``width`` probe columns of every series, by position).
    Fewer than ``min_features`` surviving features is a :class:`DataError`.
    ``meta`` carries each sample's ``series``, ``study`` and ``samples``; ``patients``
    pairs the two chips of one series; ``info`` records the rule, the surviving
    features, the series left out, the compatible merge's plan whichever rule ran,
    one row per series (``series_table``), how patients were paired, and which series
    hold the same probe ids in their merged columns (``comparable_series``).
    """
    if merge not in CUMIDA_MERGES:
        raise DataError(f"unknown CuMiDa merge {merge!r}; choose one of {', '.join(CUMIDA_MERGES)}")
    files, base = _cumida_files(root, series)
    tables = {series_name(f): read_cumida_csv(f) for f in files}
    probe_sets = {name: list(t.columns[2:]) for name, t in tables.items()}
    sizes = {name: len(t) for name, t in tables.items()}
    compatible, shared_ids, left_out = plan_compatible_merge(
        probe_sets, sizes, min_overlap=min_overlap
    )
    if merge == "compatible" and series is not None and left_out:
        name, count = next(iter(left_out.items()))
        raise DataError(
            f"series {name} shares {count} of its {len(probe_sets[name])} probe ids with "
            f"{compatible} (a different platform); leave it out of series=... or use "
            "merge='paper_width'"
        )
    if merge == "compatible":
        merged = [name for name in tables if name in compatible]
        probes, same = shared_ids, None
        shared = {name: left_out.get(name, len(shared_ids)) for name in tables}
        rule = (
            f"compatible: probe ids shared by {len(merged)} series of compatible platforms "
            f"(largest first; a series joins when it shares at least {min_overlap:.0%} of "
            "the smaller probe set)"
        )
    else:
        merged = list(tables)
        probes, same = _merge_positional(tables, width)
        shared = {name: width for name in tables}
        rule = (
            f"paper_width: the first {width} probe columns of every series, stacked by "
            "position (probe ids ignored)"
        )
    if len(probes) < min_features:
        raise DataError(
            f"merging series {merged} keeps {len(probes)} features, fewer than min_features="
            f"{min_features}; load fewer or compatible series (series=...) or lower min_features"
        )
    kept = {name: tables[name] for name in merged}
    patients, pairing = cumida_patients(kept)
    X = np.vstack(
        [
            (t[probes] if merge == "compatible" else t.iloc[:, 2 : 2 + width]).to_numpy(
                dtype=np.float64
            )
            for t in kept.values()
        ]
    )
    meta = pd.concat(
        [
            pd.DataFrame({"series": name, "study": study_name(name), "samples": t["samples"]})
            for name, t in kept.items()
        ],
        ignore_index=True,
    )
    labels = np.concatenate([t["type"].to_numpy(dtype=str) for t in kept.values()])
    info = {
        "merge": merge,
        "merge_rule": rule,
        "n_features": len(probes),
        "min_features": min_features,
        "series_merged": merged,
        "left_out": {} if merge == "paper_width" else left_out,
        "compatible": {"series": compatible, "left_out": left_out, "n_features": len(shared_ids)},
        "probes_per_series": {name: len(p) for name, p in probe_sets.items()},
        "labels_by_series": {name: sorted(set(t["type"])) for name, t in tables.items()},
        "series_table": _series_table(tables, merged, shared),
        "comparable_series": comparable_series(
            tables, merged, width=None if merge == "compatible" else width
        ),
        "patients_rule": "; ".join(pairing)
        or "one sample per patient (no two merged series are chips of one GEO series)",
    }
    if same is not None:
        info["same_probe_fraction"] = same
    patient_ids = np.concatenate(list(patients.values()))
    return build_dataset(
        "cumida",
        base,
        meta["samples"],
        labels,
        patients=patient_ids,
        X=X,
        feature_names=probes,
        meta=meta.assign(patient=patient_ids),
        info=info,
    )


# ------------------------------------------------------------ Debian R data files
def debian_root(data_root: Path) -> Path:
    return Path(data_root) / "raw" / "debian"


def fetch_debian(dest: Path, *, packages: Sequence[str] = DEBIAN_PACKAGES) -> Path:
    """``apt-get download`` the packages and unpack them into ``dest`` with ``dpkg -x``.

    Needs apt-get and dpkg (Debian/Ubuntu), no R and no root unless the package
    lists are empty (then ``apt-get update`` runs first, which needs root).
    """
    dest = Path(dest)
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise DataError(
                f"{tool} not found: on a Debian/Ubuntu machine run `apt-get download "
                f"{' '.join(packages)}` and `dpkg -x <file.deb> {dest}` for each file, or "
                f"copy ALL.rda and golub.RData under {dest}"
            )
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            ["apt-get", "download", *packages], cwd=tmp, capture_output=True, text=True
        )
        if proc.returncode != 0:
            update = subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
            proc = subprocess.run(
                ["apt-get", "download", *packages], cwd=tmp, capture_output=True, text=True
            )
            if proc.returncode != 0:
                reason = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
                hint = (
                    "" if update.returncode == 0 else " (apt-get update failed too: run it as root)"
                )
                raise DataError(
                    f"apt-get download {' '.join(packages)} failed: {reason}{hint}; run "
                    "`sudo apt-get update` and retry"
                )
        debs = sorted(Path(tmp).glob("*.deb"))
        staging = Path(tempfile.mkdtemp(dir=dest.parent if dest.parent.exists() else None))
        try:
            for deb in debs:
                subprocess.run(
                    ["dpkg", "-x", str(deb), str(staging)], check=True, capture_output=True
                )
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                shutil.rmtree(dest)
            staging.rename(dest)  # all or nothing
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return dest


def _find(root: Path, suffix: str, dataset: str) -> Path:
    hits = sorted(Path(root).glob(f"**/{suffix}")) if Path(root).is_dir() else []
    if not hits:
        raise DataError(
            f"{suffix} not found under {root}; run `python -m common.data fetch {dataset}` "
            "(or `make data`)"
        )
    return hits[0]


# R's parse tree (rdata.parser) -------------------------------------------------
def _r_nodes(obj: Any) -> Iterable[Any]:
    """Every node of an rdata parse tree, each once (depth-first)."""
    seen: set[int] = set()
    stack = [obj]
    while stack:
        node = stack.pop()
        if node is None or not hasattr(node, "info") or id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        value = node.value
        if isinstance(value, (list, tuple)):
            stack.extend(value)
        elif hasattr(value, "info"):
            stack.append(value)
        elif value is not None and not isinstance(value, (np.ndarray, bytes, str, int, float)):
            stack.extend(
                getattr(value, a, None) for a in ("enclosure", "frame", "hash_table", "attributes")
            )
        stack.extend([node.attributes, node.tag, getattr(node, "referenced_object", None)])


def _r_symbol(node: Any) -> str | None:
    from rdata.parser import RObjectType as T

    tag = node.tag
    if tag is not None and hasattr(tag, "info") and tag.info.type == T.REF:
        tag = tag.referenced_object
    if tag is not None and hasattr(tag, "info") and tag.info.type == T.SYM:
        tag = tag.value
    if (
        tag is not None
        and hasattr(tag, "info")
        and tag.info.type == T.CHAR
        and tag.value is not None
    ):
        return tag.value.decode("utf-8", errors="replace")
    return None


def _r_attributes(node: Any) -> dict[str, Any]:
    """A node's attribute pairlist as {name: node}."""
    from rdata.parser import RObjectType as T

    out, pair = {}, node.attributes
    while pair is not None and hasattr(pair, "info") and pair.info.type == T.LIST:
        out[_r_symbol(pair)] = pair.value[0]
        pair = pair.value[1]
    return out


def _r_strings(node: Any) -> list[str | None]:
    return [
        None if c.value is None else c.value.decode("utf-8", errors="replace") for c in node.value
    ]


def _r_column(node: Any) -> np.ndarray:
    """An R vector as a NumPy array; factors become their level strings, NA -> None/NaN."""
    from rdata.parser import RObjectType as T

    attrs = _r_attributes(node)
    if node.info.type == T.STR:
        return np.array(_r_strings(node), dtype=object)
    values = (
        np.ma.filled(np.ma.asarray(node.value).astype(float), np.nan)
        if np.ma.isMaskedArray(node.value)
        else np.asarray(node.value)
    )
    if "levels" in attrs:
        levels = _r_strings(attrs["levels"])
        codes = (
            np.ma.filled(np.ma.asarray(node.value), 0)
            if np.ma.isMaskedArray(node.value)
            else np.asarray(node.value)
        )
        return np.array([levels[int(c) - 1] if c > 0 else None for c in codes], dtype=object)
    return values


def _parse_rda(path: Path) -> Any:
    import warnings

    import rdata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return rdata.parser.parse_file(path)
        except Exception as exc:
            raise DataError(
                f"cannot parse {path} ({type(exc).__name__}); delete it and run `python -m "
                "common.data fetch`"
            ) from None


def read_bioc_all_file(path: Path) -> tuple[np.ndarray, list[str], list[str], pd.DataFrame]:
    """(X samples x probes, probe ids, sample ids, phenotype table) from ``ALL.rda``.

    The ExpressionSet is walked as a parse tree: the expression matrix is the real
    vector whose ``dim`` is 12,625 x 128; the phenotype data is the data frame with
    ``BT`` and ``mol.biol`` columns.
    """
    from rdata.parser import RObjectType as T

    parsed = _parse_rda(path)
    matrix = pheno = None
    for node in _r_nodes(parsed.object):
        if node.info.type == T.REAL and isinstance(node.value, np.ndarray) and matrix is None:
            dim = _r_attributes(node).get("dim")
            if dim is not None and tuple(int(d) for d in np.asarray(dim.value)) == ALL_SHAPE:
                matrix = node
        elif node.info.type == T.VEC and pheno is None:
            names = _r_attributes(node).get("names")
            if names is not None and {"BT", "mol.biol"} <= set(_r_strings(names)):
                pheno = node
    if matrix is None or pheno is None:
        raise DataError(
            f"{path} holds no {ALL_SHAPE[0]} x {ALL_SHAPE[1]} expression matrix with "
            "BT/mol.biol phenotypes; is it Bioconductor's ALL?"
        )
    X = np.asarray(matrix.value, dtype=np.float64).reshape(ALL_SHAPE, order="F").T
    dimnames = _r_attributes(matrix)["dimnames"]
    probes, samples = (_r_strings(v) for v in dimnames.value)
    columns = _r_strings(_r_attributes(pheno)["names"])
    table = pd.DataFrame({name: _r_column(col) for name, col in zip(columns, pheno.value)})
    row_names = _r_attributes(pheno).get("row.names")
    if row_names is not None and row_names.info.type == T.STR and _r_strings(row_names) != samples:
        raise DataError(
            f"{path}: phenotype rows and expression columns are in different orders; the "
            "file is not as expected"
        )
    return X, probes, samples, table


def load_bioc_all(root: Path, *, label: str = "BT") -> Dataset:
    """Bioconductor ALL: 128 samples x 12,625 probe sets (HG-U95Av2, RMA).

    ``label`` is a phenotype column (``BT``: B, B1..B4, T, T1..T4; ``mol.biol``:
    NEG, BCR/ABL, ALL1/AF4, E2A/PBX1, NUP-98, p15/p16) or ``lineage`` (B vs T, the
    first letter of ``BT``). Every phenotype column is in ``meta``; ``patients`` is
    the patient code ``cod`` (one sample per patient).
    """
    path = _find(root, ALL_RDA, "bioc_all")
    X, probes, samples, pheno = read_bioc_all_file(path)
    pheno = pheno.assign(lineage=pheno["BT"].str[0])
    if label not in pheno.columns:
        raise DataError(
            f"label {label!r} is not a phenotype column of ALL; choose one of BT, "
            "mol.biol, lineage, ..."
        )
    missing = pheno[label].isna()
    if missing.any():
        raise DataError(
            f"{int(missing.sum())} ALL samples have no {label!r}; choose another label column"
        )
    return build_dataset(
        "bioc_all",
        Path(root),
        samples,
        pheno[label].astype(str),
        patients=pheno["cod"].astype(str),
        X=X,
        feature_names=probes,
        meta=pheno.assign(sample=samples),
        source="embedded-real",
        info={"file": str(path), "label_column": label, "platform": "HG-U95Av2"},
    )


def load_golub(root: Path) -> Dataset:
    """Golub et al. (1999) as preprocessed by Dudoit et al.: 38 samples x 3,051 genes, ALL vs
    AML."""
    import warnings

    import rdata

    path = _find(root, GOLUB_RDATA, "golub")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            data = rdata.read_rda(path)
        except Exception as exc:
            raise DataError(
                f"cannot parse {path} ({type(exc).__name__}); delete it and run `python -m "
                "common.data fetch golub`"
            ) from None
    X = np.asarray(data["golub"], dtype=np.float64).T
    codes = np.asarray(data["golub.cl"]).astype(int)
    gnames = (
        np.asarray(data["golub.gnames"], dtype=object).reshape(3, -1).T
    )  # index, accession, description
    labels = np.where(codes == 0, "ALL", "AML")
    return build_dataset(
        "golub",
        Path(root),
        [f"golub_{i + 1:02d}" for i in range(len(labels))],
        labels,
        X=X,
        feature_names=[str(g) for g in gnames[:, 2]],
        meta=pd.DataFrame({"golub_cl": codes}),
        source="embedded-real",
        info={"file": str(path), "genes": "Dudoit et al. (2002) preprocessing, 3,051 genes"},
    )
