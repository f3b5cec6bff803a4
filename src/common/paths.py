"""Where things live: repository root, results, data and claims folders.

Every location can be moved with one environment variable, so that tests, CI and
Colab/Kaggle sessions can point the notebooks elsewhere without editing them:

- ``REPRO_RESULTS_DIR``: root of run outputs (default ``<repo>/results``)
- ``REPRO_DATA_DIR``: root of datasets (default ``<repo>/data``)
"""
from __future__ import annotations

import os
from pathlib import Path

RESULTS_ENV = "REPRO_RESULTS_DIR"
DATA_ENV = "REPRO_DATA_DIR"


def repo_root() -> Path:
    """The repository checkout this package was installed from (editable install).

    Falls back to the first parent of the working directory holding
    ``pyproject.toml`` when the package is installed elsewhere.
    """
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "common").is_dir():
            return parent
    for parent in [Path.cwd(), *Path.cwd().parents]:
        if (parent / "pyproject.toml").is_file():
            return parent
    return Path.cwd()


def results_root() -> Path:
    """Root folder of run outputs: ``$REPRO_RESULTS_DIR`` or ``<repo>/results``."""
    return Path(os.environ.get(RESULTS_ENV) or repo_root() / "results")


def data_root() -> Path:
    """Root folder of datasets: ``$REPRO_DATA_DIR`` or ``<repo>/data``."""
    return Path(os.environ.get(DATA_ENV) or repo_root() / "data")


def claims_dir() -> Path:
    return repo_root() / "claims"


def figures_dir() -> Path:
    return repo_root() / "figures"


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file and rename, never half-way."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_yaml(path: Path, missing: str) -> object:
    """Parse a YAML file; a missing file or bad YAML raises one line naming the file
    (``missing`` says what to do when it does not exist)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; {missing}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML ({exc.__class__.__name__}); fix the file") from None

