"""Shared test settings: headless plotting, quiet TensorFlow, results in tmp dirs."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    """A temporary results root, also exported as $REPRO_RESULTS_DIR."""
    root = tmp_path / "results"
    monkeypatch.setenv("REPRO_RESULTS_DIR", str(root))
    return root


@pytest.fixture(scope="session")
def debian_data():
    """The real Bioconductor ALL and golub files, fetched once into data/raw/debian.

    Fetching needs apt-get (Debian/Ubuntu); CI machines here have it, so these
    tests run in CI.
    """
    from common.data import default_root
    from common.data.microarray import ALL_RDA, GOLUB_RDATA, fetch_debian

    root = default_root("bioc_all")
    if not (list(root.glob(f"**/{ALL_RDA}")) and list(root.glob(f"**/{GOLUB_RDATA}"))):
        fetch_debian(root)
    return root
