"""Where things live: repository root, results, data and claims folders.

Every location can be moved with one environment variable, so that tests, CI and
Colab/Kaggle sessions can point the notebooks elsewhere without editing them:

- ``REPRO_RESULTS_DIR``: root of run outputs (default ``<repo>/results``)
- ``REPRO_DATA_DIR``: root of datasets (default ``<repo>/data``); read, never written
- ``REPRO_CACHE_DIR``: root of everything else the code writes (features, preprocessed
  images, checkpoints, saved models, synthetic twins, temporary files). Default:
  ``<data root>/cache`` locally, ``/kaggle/working/cache`` on Kaggle (whose input
  folder is read-only), ``/content/cache`` on Colab.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

RESULTS_ENV = "REPRO_RESULTS_DIR"
DATA_ENV = "REPRO_DATA_DIR"
CACHE_ENV = "REPRO_CACHE_DIR"
#: Writable cache folders of the hosted platforms (their dataset folders are read-only or slow).
PLATFORM_CACHE = {"kaggle": Path("/kaggle/working/cache"), "colab": Path("/content/cache")}


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


def platform() -> str:
    """``kaggle``, ``colab`` or ``local``, from the variables those platforms set in every
    session."""
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
        return "kaggle"
    if "COLAB_RELEASE_TAG" in os.environ or "COLAB_GPU" in os.environ:
        return "colab"
    return "local"


def cache_root() -> Path:
    """Root of everything the code writes besides results: ``$REPRO_CACHE_DIR``, else the
    platform's writable folder (Kaggle, Colab), else ``<data root>/cache``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    return PLATFORM_CACHE.get(platform(), data_root() / "cache")


def is_writable(path: Path) -> bool:
    """Whether files can be created at ``path`` (or, if it does not exist yet, in its
    nearest existing parent): permissions and read-only mounts both count."""
    path = nearest_existing(path)
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def nearest_existing(path: Path) -> Path:
    """``path`` if it exists, else its nearest existing parent (absolute)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def download_root() -> Path:
    """Where downloads go: the data root when it is writable, else the cache root."""
    return data_root() if is_writable(data_root()) else cache_root()


def temp_dir(prefix: str) -> Path:
    """A new empty folder under ``<cache root>/tmp`` (never under the read-only data root);
    the caller deletes it when done."""
    parent = cache_root() / "tmp"
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


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
        raise ValueError(
            f"{path} is not valid YAML ({exc.__class__.__name__}); fix the file"
        ) from None
