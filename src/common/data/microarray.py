"""Microarray datasets: CuMiDa CSV series, Bioconductor ALL and Golub (Debian packages).

CuMiDa: one CSV per series, ``samples`` (CEL name), ``type`` (label), then one
column per probe. Several series are merged on the **intersection of probe ids**
(series come from different platforms, so positions do not line up); the record
reports how many probes survive and which labels came from which series.

ALL and golub ship as R data files in Debian's ``r-bioc-all`` and
``r-bioc-multtest``; :func:`fetch_debian` unpacks them with ``apt-get download``
and ``dpkg -x`` (no R needed) and the PyPI package ``rdata`` parses them.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from common.data.core import DataError, Dataset, build_dataset, require_dir

CUMIDA_PATTERN = "Leukemia_*.csv"
DEBIAN_PACKAGES = ("r-bioc-all", "r-bioc-multtest")
ALL_RDA = "ALL/data/ALL.rda"
GOLUB_RDATA = "multtest/data/golub.RData"
ALL_SHAPE = (12625, 128)  # probes x samples, as stored in the ExpressionSet


# ------------------------------------------------------------------------- CuMiDa
def series_name(path: Path) -> str:
    """``Leukemia_GSE22529_U133A.csv`` -> ``GSE22529_U133A``."""
    return Path(path).stem.removeprefix("Leukemia_")


def read_cumida_csv(path: Path) -> pd.DataFrame:
    """One CuMiDa series as a table (samples x [samples, type, probes...]), validated."""
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path} as CSV ({type(exc).__name__}); re-download the series from CuMiDa") from None
    missing = [c for c in ("samples", "type") if c not in table.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {missing}; a CuMiDa CSV starts with 'samples,type,<probe ids>'")
    if table.shape[0] == 0 or table.shape[1] < 3:
        raise DataError(f"{path} has no samples or no probe columns; re-download the series")
    probes = table.columns[2:]
    values = table[probes].apply(pd.to_numeric, errors="coerce")
    n_nan = int(values.isna().to_numpy().sum())
    if n_nan or table["type"].isna().any():
        where = "labels" if table["type"].isna().any() else f"{n_nan} expression value(s)"
        raise DataError(f"{path} has missing or non-numeric {where}; drop or impute them before loading")
    return pd.concat([table[["samples", "type"]].astype(str), values], axis=1)


def load_cumida(root: Path | Sequence[Path], series: Iterable[str] | None = None) -> Dataset:
    """Read one or more CuMiDa series and merge them on shared probe ids.

    ``root`` is a folder of ``Leukemia_*.csv`` files or a list of CSV paths;
    ``series`` optionally picks series by name (``GSE28497``, ``GSE22529_U133A``).
    ``meta`` carries the ``series`` of every sample; ``info`` says how many probes
    each series had, how many survive the intersection, and the labels per series.
    """
    if isinstance(root, (str, Path)):
        root = Path(root)
        files = sorted(require_dir(root, "CuMiDa folder", "put the Leukemia_*.csv files there (see data/README.md)").glob(CUMIDA_PATTERN))
        base = root
    else:
        files = [Path(p) for p in root]
        base = files[0].parent if files else Path(".")
    if series is not None:
        wanted = set(series)
        files = [f for f in files if series_name(f) in wanted]
        unknown = wanted - {series_name(f) for f in files}
        if unknown:
            raise DataError(f"series {sorted(unknown)} not found in {base}; available: {[series_name(f) for f in files]}")
    if not files:
        raise DataError(f"no {CUMIDA_PATTERN} files in {base}; download the CuMiDa leukemia series there")
    tables = {series_name(f): read_cumida_csv(f) for f in files}
    probe_sets = {name: list(t.columns[2:]) for name, t in tables.items()}
    shared = set.intersection(*(set(p) for p in probe_sets.values()))
    first = next(iter(probe_sets.values()))
    probes = [p for p in first if p in shared]  # keep the first series' order
    if not probes:
        raise DataError(f"the series {sorted(tables)} share no probe id; merge fewer or compatible series")
    X = np.vstack([t[probes].to_numpy(dtype=np.float64) for t in tables.values()])
    meta = pd.concat([pd.DataFrame({"series": name, "samples": t["samples"]}) for name, t in tables.items()],
                     ignore_index=True)
    labels = np.concatenate([t["type"].to_numpy(dtype=str) for t in tables.values()])
    info = {
        "merge_rule": "intersection of probe ids",
        "probes_per_series": {name: len(p) for name, p in probe_sets.items()},
        "n_features": len(probes),
        "labels_by_series": {name: sorted(set(t["type"])) for name, t in tables.items()},
    }
    return build_dataset("cumida", base, meta["samples"], labels, X=X, feature_names=probes, meta=meta, info=info)


# ------------------------------------------------------------ Debian R data files
def debian_root(data_root: Path) -> Path:
    return Path(data_root) / "raw" / "debian"


def fetch_debian(dest: Path, packages: Sequence[str] = DEBIAN_PACKAGES) -> Path:
    """``apt-get download`` the packages and unpack them into ``dest`` with ``dpkg -x``.

    Needs apt-get and dpkg (Debian/Ubuntu), no R and no root unless the package
    lists are empty (then ``apt-get update`` runs first, which needs root).
    """
    dest = Path(dest)
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise DataError(
                f"{tool} not found: on a Debian/Ubuntu machine run `apt-get download {' '.join(packages)}` "
                f"and `dpkg -x <file.deb> {dest}` for each file, or copy ALL.rda and golub.RData under {dest}"
            )
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(["apt-get", "download", *packages], cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0:
            update = subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
            proc = subprocess.run(["apt-get", "download", *packages], cwd=tmp, capture_output=True, text=True)
            if proc.returncode != 0:
                reason = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
                hint = "" if update.returncode == 0 else " (apt-get update failed too: run it as root)"
                raise DataError(f"apt-get download {' '.join(packages)} failed: {reason}{hint}; run `sudo apt-get update` and retry")
        debs = sorted(Path(tmp).glob("*.deb"))
        staging = Path(tempfile.mkdtemp(dir=dest.parent if dest.parent.exists() else None))
        try:
            for deb in debs:
                subprocess.run(["dpkg", "-x", str(deb), str(staging)], check=True, capture_output=True)
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
        raise DataError(f"{suffix} not found under {root}; run `python -m common.data fetch {dataset}` (or `make data`)")
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
            stack.extend(getattr(value, a, None) for a in ("enclosure", "frame", "hash_table", "attributes"))
        stack.extend([node.attributes, node.tag, getattr(node, "referenced_object", None)])


def _r_symbol(node: Any) -> str | None:
    from rdata.parser import RObjectType as T

    tag = node.tag
    if tag is not None and hasattr(tag, "info") and tag.info.type == T.REF:
        tag = tag.referenced_object
    if tag is not None and hasattr(tag, "info") and tag.info.type == T.SYM:
        tag = tag.value
    if tag is not None and hasattr(tag, "info") and tag.info.type == T.CHAR and tag.value is not None:
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
    return [None if c.value is None else c.value.decode("utf-8", errors="replace") for c in node.value]


def _r_column(node: Any) -> np.ndarray:
    """An R vector as a NumPy array; factors become their level strings, NA -> None/NaN."""
    from rdata.parser import RObjectType as T

    attrs = _r_attributes(node)
    if node.info.type == T.STR:
        return np.array(_r_strings(node), dtype=object)
    values = np.ma.filled(np.ma.asarray(node.value).astype(float), np.nan) if np.ma.isMaskedArray(node.value) else np.asarray(node.value)
    if "levels" in attrs:
        levels = _r_strings(attrs["levels"])
        codes = np.ma.filled(np.ma.asarray(node.value), 0) if np.ma.isMaskedArray(node.value) else np.asarray(node.value)
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
            raise DataError(f"cannot parse {path} ({type(exc).__name__}); delete it and run `python -m common.data fetch`") from None


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
        raise DataError(f"{path} holds no {ALL_SHAPE[0]} x {ALL_SHAPE[1]} expression matrix with BT/mol.biol phenotypes; is it Bioconductor's ALL?")
    X = np.asarray(matrix.value, dtype=np.float64).reshape(ALL_SHAPE, order="F").T
    dimnames = _r_attributes(matrix)["dimnames"]
    probes, samples = (_r_strings(v) for v in dimnames.value)
    columns = _r_strings(_r_attributes(pheno)["names"])
    table = pd.DataFrame({name: _r_column(col) for name, col in zip(columns, pheno.value)})
    row_names = _r_attributes(pheno).get("row.names")
    if row_names is not None and row_names.info.type == T.STR and _r_strings(row_names) != samples:
        raise DataError(f"{path}: phenotype rows and expression columns are in different orders; the file is not as expected")
    return X, probes, samples, table


def load_bioc_all(root: Path, label: str = "BT") -> Dataset:
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
        raise DataError(f"label {label!r} is not a phenotype column of ALL; choose one of BT, mol.biol, lineage, ...")
    missing = pheno[label].isna()
    if missing.any():
        raise DataError(f"{int(missing.sum())} ALL samples have no {label!r}; choose another label column")
    return build_dataset(
        "bioc_all", Path(root), samples, pheno[label].astype(str), patients=pheno["cod"].astype(str), X=X,
        feature_names=probes, meta=pheno.assign(sample=samples), source="embedded-real",
        info={"file": str(path), "label_column": label, "platform": "HG-U95Av2"},
    )


def load_golub(root: Path) -> Dataset:
    """Golub et al. (1999) as preprocessed by Dudoit et al.: 38 samples x 3,051 genes, ALL vs AML."""
    import warnings

    import rdata

    path = _find(root, GOLUB_RDATA, "golub")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            data = rdata.read_rda(path)
        except Exception as exc:
            raise DataError(f"cannot parse {path} ({type(exc).__name__}); delete it and run `python -m common.data fetch golub`") from None
    X = np.asarray(data["golub"], dtype=np.float64).T
    codes = np.asarray(data["golub.cl"]).astype(int)
    gnames = np.asarray(data["golub.gnames"], dtype=object).reshape(3, -1).T  # index, accession, description
    labels = np.where(codes == 0, "ALL", "AML")
    return build_dataset(
        "golub", Path(root), [f"golub_{i + 1:02d}" for i in range(len(labels))], labels, X=X,
        feature_names=[str(g) for g in gnames[:, 2]], meta=pd.DataFrame({"golub_cl": codes}),
        source="embedded-real", info={"file": str(path), "genes": "Dudoit et al. (2002) preprocessing, 3,051 genes"},
    )
