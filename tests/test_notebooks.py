"""Notebook harness: every notebook in notebooks/ runs in the smoke profile.

The fixture notebook in tests/fixtures proves the harness itself: it passes when
the notebook writes its metrics and declared figures, and fails when it does not.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common import canonical, notebooks, reproduce

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "harness_notebook.ipynb"
NOTEBOOKS = notebooks.discover(directory=REPO / "notebooks")


def assert_run_complete(path, results_root, **parameters):
    """Run ``path`` in the smoke profile; fail with every problem found."""
    meta = notebooks.notebook_meta(path)
    run_dir = notebooks.run_notebook(path, results_root, profile="smoke", parameters=parameters)
    problems = notebooks.check_run(run_dir, meta["figures"])
    assert not problems, f"{path.name}: " + "; ".join(problems)
    return run_dir


def test_harness_passes_a_complete_notebook(tmp_path):
    run_dir = assert_run_complete(FIXTURE, tmp_path)
    assert run_dir == tmp_path / "00_harness" / "smoke"
    assert (run_dir / FIXTURE.name).is_file(), "the executed copy is kept beside the results"


def test_harness_fails_when_metrics_are_missing(tmp_path):
    with pytest.raises(AssertionError, match="metrics.json is missing"):
        assert_run_complete(FIXTURE, tmp_path, write_metrics=False)


def test_notebook_metadata_is_required(tmp_path):
    bare = tmp_path / "bare.ipynb"
    bare.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    with pytest.raises(ValueError, match="metadata.repro.paper"):
        notebooks.notebook_meta(bare)


# Defined only when notebooks exist (an empty parameter set would show as a skip);
# until then the fixture tests above prove the harness.
if NOTEBOOKS:

    @pytest.mark.notebooks
    @pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
    def test_every_notebook_runs_in_smoke_profile(path, tmp_path):
        assert_run_complete(path, tmp_path)


def test_nbval_runs_a_stored_notebook_in_smoke_profile(tmp_path):
    env = {**os.environ, "REPRO_PROFILE": "smoke", "REPRO_RESULTS_DIR": str(tmp_path)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "-p",
            "no:cacheprovider",
            "-q",
            str(FIXTURE),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    # the stored notebook has profile = None: the environment chose smoke (60 samples)
    run_json = (tmp_path / "00_harness" / "smoke" / "run.json").read_text()
    assert '"n_samples": 60' in run_json


def test_reproduce_with_no_notebooks_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(reproduce, "notebooks_dir", lambda: tmp_path)
    assert reproduce.main([]) == 0
    assert "nothing to reproduce" in capsys.readouterr().out


def test_reproduce_runs_demo_and_refreshes_figures(tmp_path, monkeypatch, capsys):
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    (nb_dir / FIXTURE.name).write_bytes(FIXTURE.read_bytes())
    figures = tmp_path / "figures"
    (figures / "00_harness").mkdir(parents=True)
    (figures / "00_harness" / "stale.png").write_bytes(b"old")
    monkeypatch.setattr(reproduce, "notebooks_dir", lambda: nb_dir)
    monkeypatch.setattr(reproduce, "figures_dir", lambda: figures)
    monkeypatch.setenv("REPRO_RESULTS_DIR", str(tmp_path / "results"))
    # the harness has no claims file, so its run has no claims_vs_reproduced.md to commit
    monkeypatch.setattr(
        canonical, "CANONICAL_FILES", ("metrics.csv", "run.json", "predictions.csv")
    )
    assert reproduce.main([]) == 0
    out = capsys.readouterr().out
    assert "results" in out and "figure(s) refreshed" in out
    assert sorted(p.name for p in (figures / "00_harness").iterdir()) == ["confusion_matrix.png"]
    assert sorted(
        p.name for p in (tmp_path / "results" / "canonical" / "00_harness").iterdir()
    ) == ["metrics.csv", "predictions.csv", "run.json"], (
        "canonical files go beside figures/, not into the repository"
    )
    assert (tmp_path / "results" / "00_harness" / "demo" / "metrics.json").is_file()


def test_check_all_reports_each_notebooks_missing_outputs(tmp_path, capsys):
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    (nb_dir / FIXTURE.name).write_bytes(FIXTURE.read_bytes())
    run_dir = tmp_path / "results" / "00_harness" / "smoke"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text('[{"protocol": "published"}]')
    (run_dir / "run.json").write_text("{}")
    problems = notebooks.check_all(tmp_path / "results", directory=nb_dir)
    assert problems == [
        f"{FIXTURE.name}: declared figure {run_dir / 'confusion_matrix.png'} is missing"
    ]
    (run_dir / "confusion_matrix.png").write_bytes(b"png")
    assert notebooks.check_all(tmp_path / "results", directory=nb_dir) == []


def test_readme_links_every_notebook_to_colab_and_kaggle():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = notebooks.links_table(directory=REPO / "notebooks")
    assert table in readme, (
        "README's launch-link table is stale: paste `python -m common.notebooks links` into it"
    )
    assert table.count("colab.research.google.com") == len(NOTEBOOKS)
