"""The committed canonical runs: refresh from a run folder, size limits, the generated
figure list and README demo table, and the reviewer report reading results/canonical/."""

import json
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from common import canonical, claims, evaluate, plots, report, reproduce
from common.notebooks import discover, notebook_meta
from common.paths import repo_root
from common.runs import resolve_params, start_run

REPO = Path(__file__).resolve().parents[1]
FIXTURE_CLAIMS = REPO / "tests" / "fixtures" / "claims"
HARNESS = REPO / "tests" / "fixtures" / "harness_notebook.ipynb"
PROFILES = {p: {"n": 1} for p in ("smoke", "demo", "paper")}


def make_run(results, name="demo", source="synthetic", published=0.97, free=0.61):
    """A finished run of the harness paper, with every file a canonical run must have."""
    run_ = start_run("00_harness", resolve_params(PROFILES, profile="demo"), run=name, root=results)
    run_.set_data(source, fingerprint=f"fp-{name}", description=f"{source} fixture data")
    rows = pd.concat(
        [
            evaluate.measurement_rows({"accuracy": v}, protocol, "logreg")
            for protocol, v in (("published", published), ("leak_free", free))
        ],
        ignore_index=True,
    )
    rows.loc[rows["protocol"] == "leak_free", ["ci_low", "ci_high"]] = [free - 0.05, free + 0.04]
    evaluate.write_metrics(rows, run_.dir)
    (run_.dir / "predictions.csv").write_text("sample_id,protocol\n1,published\n")
    for figure in (
        "confusion_matrix",
        "roc",
    ):  # only confusion_matrix is declared by the harness notebook
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        plots.save_figure(fig, run_.dir, figure, source=source)
        plt.close(fig)
    run_.write()
    claims.write_report(results=results, directory=FIXTURE_CLAIMS)
    return run_.dir


@pytest.fixture
def repo(tmp_path):
    """A repository skeleton: the harness notebook, the fixture claims, both READMEs with
    markers."""
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(HARNESS, root / "notebooks" / "00_harness.ipynb")
    shutil.copytree(FIXTURE_CLAIMS, root / "claims")
    (root / "figures").mkdir()
    (root / "figures" / "README.md").write_text(
        f"# Figures\n\n{canonical.FIGURES_START}\n{canonical.FIGURES_END}\n"
    )
    (root / "README.md").write_text(
        f"# Repo\n\nbefore\n\n{canonical.DEMO_START}\n{canonical.DEMO_END}\n\nafter\n"
    )
    return root


def refresh(results, repo, run="demo"):
    return reproduce.refresh_from(
        results, discover(directory=repo / "notebooks"), run=run, repo=repo, claims=repo / "claims"
    )


def test_refresh_replaces_canonical_files_and_key_figures_wholesale(tmp_path, repo):
    run_dir = make_run(tmp_path / "results")
    stale_fig, stale_file = (
        repo / "figures" / "00_harness" / "old.png",
        repo / "results" / "canonical" / "00_harness" / "old.md",
    )
    for stale in (stale_fig, stale_file):
        stale.parent.mkdir(parents=True)
        stale.write_text("stale")
    assert refresh(tmp_path / "results", repo) == 0
    folder = repo / "results" / "canonical" / "00_harness"
    assert sorted(p.name for p in folder.iterdir()) == sorted(canonical.CANONICAL_FILES)
    for name in canonical.CANONICAL_FILES:
        assert (folder / name).read_bytes() == (run_dir / name).read_bytes(), name
    # the declared figure only (roc.png is not in metadata repro.figures), re-encoded, a valid PNG
    assert [p.name for p in (repo / "figures" / "00_harness").iterdir()] == ["confusion_matrix.png"]
    from PIL import Image

    with Image.open(repo / "figures" / "00_harness" / "confusion_matrix.png") as img:
        with Image.open(run_dir / "confusion_matrix.png") as original:
            assert img.size == original.size


def test_a_missing_canonical_file_is_an_error_naming_it(tmp_path, repo, capsys):
    run_dir = make_run(tmp_path / "results")
    (run_dir / "predictions.csv").unlink()
    assert refresh(tmp_path / "results", repo) == 1
    out = capsys.readouterr().out
    assert "error: 00_harness:" in out and "predictions.csv is missing" in out
    assert not (repo / "results" / "canonical" / "00_harness").exists(), (
        "nothing is written for that paper"
    )


def test_figures_over_the_limit_stop_with_one_line_naming_paper_and_size(tmp_path, repo):
    run_dir = make_run(tmp_path / "results")
    size = len(canonical.compress_png(run_dir / "confusion_matrix.png"))
    with pytest.raises(canonical.CanonicalError) as err:
        canonical.refresh_paper(
            run_dir, "00_harness", ["confusion_matrix.png"], repo=repo, figure_limit=size - 1
        )
    message = str(err.value)
    assert (
        "\n" not in message
        and message.startswith("00_harness:")
        and f"{size / 1024:.0f} KB" in message
    )
    assert not (repo / "figures" / "00_harness").exists()
    # at exactly the limit it passes (the limit is inclusive)
    canonical.refresh_paper(
        run_dir, "00_harness", ["confusion_matrix.png"], repo=repo, figure_limit=size
    )


def test_total_size_limit_counts_the_other_papers(tmp_path, repo):
    run_dir = make_run(tmp_path / "results")
    other = repo / "figures" / "99_other"
    other.mkdir()
    (other / "big.png").write_bytes(b"0" * 50_000)
    with pytest.raises(
        canonical.CanonicalError, match=r"00_harness: figures/ and results/canonical/ would hold"
    ):
        canonical.refresh_paper(
            run_dir, "00_harness", ["confusion_matrix.png"], repo=repo, total_limit=50_000
        )


def test_png_reencoding_is_never_larger(tmp_path):
    # random noise does not compress to a palette well: the original bytes are kept then
    fig, ax = plt.subplots()
    ax.imshow(__import__("numpy").random.default_rng(0).random((40, 40)))
    path = plots.save_figure(fig, tmp_path, "noise")
    plt.close(fig)
    assert len(canonical.compress_png(path)) <= path.stat().st_size


def test_generated_sections_say_no_run_then_show_the_canonical_run(tmp_path, repo):
    notebooks = discover(directory=repo / "notebooks")
    before = canonical.demo_section(notebooks, repo=repo, claims=repo / "claims")
    assert canonical.NO_RUN in before and "97.00%" not in before
    assert canonical.NO_RUN in canonical.figures_section(notebooks, repo=repo)
    make_run(tmp_path / "results")
    assert refresh(tmp_path / "results", repo) == 0
    text = (repo / "README.md").read_text()
    section = canonical.section_of(text, canonical.DEMO_START, canonical.DEMO_END)
    row = [line for line in section.splitlines() if "00_harness" in line]
    assert len(row) == 1 and canonical.NO_RUN not in row[0]
    assert (
        "logreg accuracy (overall): 95%" in row[0]
        and "97.00%" in row[0]
        and "61.00% [56.00, 65.00]" in row[0]
    )
    assert "SYNTHETIC" in row[0] and "| demo |" in row[0]
    assert text.startswith("# Repo\n\nbefore\n\n") and text.endswith("\n\nafter\n"), (
        "prose around the markers is kept"
    )
    figures = canonical.section_of(
        (repo / "figures" / "README.md").read_text(), canonical.FIGURES_START, canonical.FIGURES_END
    )
    cells = json.loads(HARNESS.read_text())["cells"]
    index = next(i for i, c in enumerate(cells) if '"confusion_matrix"' in "".join(c["source"]))
    assert (
        "[confusion_matrix.png](00_harness/confusion_matrix.png) | `00_harness.ipynb` "
        f"cell [{index}]" in figures
    )
    assert figures.rstrip().endswith("| synthetic |") and "roc.png" not in figures


def test_every_declared_figure_is_found_in_the_cell_that_saves_it():
    for nb in discover(directory=REPO / "notebooks"):
        cells = canonical.figure_cells(nb)
        for name in notebook_meta(nb)["figures"]:
            assert canonical.locate_figure(name, cells) is not None, f"{nb.name}: {name}"
    nb03 = REPO / "notebooks" / "03_vinurajan_oadls_aldc.ipynb"
    source = json.loads(nb03.read_text())["cells"]
    where = canonical.locate_figure("figure10_leak_free.png", canonical.figure_cells(nb03))
    # f"figure{number}_{part}_{protocol}" also fits "figure10_leak_free" loosely; the cell is the
    # one with f"figure{number}_{protocol}"
    assert 'f"figure{number}_{protocol}"' in "".join(source[where[0]]["source"])
    where = canonical.locate_figure("figure6_training_leak_free.png", canonical.figure_cells(nb03))
    assert 'f"figure{number}_{part}_{protocol}"' in "".join(source[where[0]]["source"])


def test_readme_demo_table_is_generated_from_results_canonical():
    notebooks = discover(directory=repo_root() / "notebooks")
    section = canonical.section_of(
        (repo_root() / "README.md").read_text(), canonical.DEMO_START, canonical.DEMO_END
    )
    assert section.strip() == canonical.demo_section(notebooks).strip(), (
        "README's demo table differs from results/canonical/: run python -m common.reproduce readme"
    )


def test_figures_readme_list_is_generated():
    notebooks = discover(directory=repo_root() / "notebooks")
    text = (repo_root() / "figures" / "README.md").read_text()
    section = canonical.section_of(text, canonical.FIGURES_START, canonical.FIGURES_END)
    assert section.strip() == canonical.figures_section(notebooks).strip(), (
        "figures/README.md's list differs from what python -m common.reproduce readme writes"
    )


def test_metrics_read_back_from_csv_when_there_is_no_json(tmp_path):
    rows = evaluate.measurement_rows({"accuracy": 0.5}, "published", "m", cls="NA")
    evaluate.write_metrics(rows, tmp_path)
    (tmp_path / "metrics.json").unlink()
    back = evaluate.read_metrics(tmp_path)
    assert (
        back.loc[0, "class"] == "NA"
        and back.loc[0, "value"] == 0.5
        and pd.isna(back.loc[0, "ci_low"])
    )


# ---- the reviewer report reads results/canonical/ --------------------------------------------


def test_report_on_a_fresh_clone_shows_the_canonical_run(tmp_path, repo):
    make_run(tmp_path / "made")
    assert refresh(tmp_path / "made", repo) == 0
    results = repo / "results"  # a fresh clone: results/ holds only canonical/
    built = report.build_report(results=results, directory=FIXTURE_CLAIMS)
    text = built["markdown"].read_text()
    assert built["runs"] == 1
    assert "## 00_harness · canonical (committed, results/canonical/00_harness)" in text
    summary = text.split("## Summary", 1)[1].split("<a id=", 1)[0]
    assert "[canonical](#00_harness-canonical)" in summary and "61.00% [56.00, 65.00]" in summary
    assert "![confusion matrix (synthetic data)](00_harness/canonical/confusion_matrix.png)" in text
    assert report.broken_links(built["html"]) == []


def test_report_shows_a_local_demo_run_once_when_it_is_the_canonical_run(tmp_path, repo):
    results = repo / "results"
    make_run(results)  # results/00_harness/demo, as make reproduce leaves it
    assert refresh(results, repo) == 0
    make_run(results, name="other", published=0.90, free=0.70)  # a different local run
    built = report.build_report(results=results, directory=FIXTURE_CLAIMS)
    text = built["markdown"].read_text()
    assert built["runs"] == 2
    assert "run `demo`" not in text, "the local demo run is the canonical run: shown once"
    assert f"the same run as the local `{results / '00_harness' / 'demo'}`" in text
    assert "## 00_harness · run `other`" in text
    # once the local demo run differs from the committed one (rerun), both are shown
    meta = json.loads((results / "00_harness" / "demo" / "run.json").read_text())
    meta["started_at"] = "later"
    (results / "00_harness" / "demo" / "run.json").write_text(json.dumps(meta))
    assert report.build_report(results=results, directory=FIXTURE_CLAIMS)["runs"] == 3


def test_make_reproduce_refreshes_the_canonical_run_after_running(
    tmp_path, repo, monkeypatch, capsys
):
    """``reproduce.main`` wiring, with the notebook run replaced by a finished fake run."""
    monkeypatch.setattr(reproduce, "notebooks_dir", lambda: repo / "notebooks")
    monkeypatch.setattr(reproduce, "figures_dir", lambda: repo / "figures")
    monkeypatch.setenv("REPRO_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setattr(reproduce, "run_notebook", lambda nb, root, **kw: make_run(root))
    monkeypatch.setattr(
        reproduce, "check_run", lambda run_dir, figures: []
    )  # the fake predictions.csv is a stub
    assert reproduce.main([]) == 0
    out = capsys.readouterr().out
    assert "1 figure(s) refreshed" in out and "regenerated" in out
    assert (repo / "results" / "canonical" / "00_harness" / "predictions.csv").is_file()
    assert "97.00%" in (repo / "README.md").read_text()
    # --from: the same refresh from an existing run folder, nothing run
    monkeypatch.setattr(
        reproduce, "run_notebook", lambda *a, **k: pytest.fail("--from must not run notebooks")
    )
    (tmp_path / "results" / "00_harness" / "demo" / "predictions.csv").unlink()
    assert reproduce.main(["--from", str(tmp_path / "results")]) == 1
    assert "predictions.csv is missing" in capsys.readouterr().out


def test_key_figures_default_to_all_figures_and_must_be_among_them(tmp_path):
    """metadata repro.key_figures picks the committed figures out of those every run writes."""

    def write(meta):
        path = tmp_path / "nb.ipynb"
        path.write_text(
            json.dumps(
                {"cells": [], "metadata": {"repro": meta}, "nbformat": 4, "nbformat_minor": 5}
            )
        )
        return path

    assert notebook_meta(write({"paper": "x", "figures": ["a.png", "b.png"]}))["key_figures"] == [
        "a.png",
        "b.png",
    ]
    assert notebook_meta(
        write({"paper": "x", "figures": ["a.png", "b.png"], "key_figures": ["b.png"]})
    )["key_figures"] == ["b.png"]
    with pytest.raises(ValueError, match=r"key_figures .* not there: \['c.png'\]"):
        notebook_meta(write({"paper": "x", "figures": ["a.png"], "key_figures": ["c.png"]}))


def test_the_committed_run_json_names_paths_inside_the_repository_relatively(tmp_path):
    repo = tmp_path / "checkout"
    text = json.dumps(
        {
            "cache_root": f"{repo}/data/cache",
            "repo": str(repo),
            "note": f"cache root {repo}/data/cache: 3 GB free",
            "elsewhere": "/kaggle/working/cache",
            "sibling": f"{repo}-other/x",
        }
    )
    got = json.loads(canonical.repo_relative(text, repo))
    assert got == {
        "cache_root": "data/cache",
        "repo": ".",
        "note": "cache root data/cache: 3 GB free",
        "elsewhere": "/kaggle/working/cache",
        "sibling": f"{repo}-other/x",
    }
