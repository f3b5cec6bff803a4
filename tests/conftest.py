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
