"""The demo-value checker (:mod:`common.demo_check`) on a synthetic README and canonical folder.

The README's table is written by the real generator (:func:`common.canonical.demo_section`),
so a checker that agrees with it passes and one changed number must fail.
"""

import json

import pytest

from common import canonical
from common import demo_check as D

CLAIMS_YAML = """id: 01_demo
paper:
  authors: ["Demo Author"]
  title: "a synthetic paper for the checker's tests"
  venue: "not printed in the paper"
  year: 2024
  doi: "DOI not printed in the paper"
headline: {model: net, metric: accuracy, class: overall}
defaults: {unit: percent}
claims:
  - {table: "Table 1", model: net, metric: accuracy, value: 96.6}
"""
METRICS = (
    "protocol,model,class,metric,value,ci_low,ci_high\n"
    "published,net,overall,accuracy,0.95,0.8833333333,1.0\n"
    "leak_free,net,overall,accuracy,0.6587301587,0.5793650794,0.746031746\n"
)
RUN = {
    "data": {"source": "synthetic", "description": "demo set: 126 samples x 40 features"},
    "params": {"profile": "demo"},
    "timings_s": {"total": 589.617},
}


def make_repo(root, *, metrics=METRICS):
    """A checkout with one notebook (paper 01_demo), its claims, canonical run and README."""
    (root / "notebooks").mkdir(parents=True)
    nb = {"cells": [], "metadata": {"repro": {"paper": "01_demo", "figures": []}}, "nbformat": 4}
    nb["nbformat_minor"] = 5
    (root / "notebooks" / "01_demo_net.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    (root / "claims").mkdir()
    (root / "claims" / "01_demo.yaml").write_text(CLAIMS_YAML, encoding="utf-8")
    run = root / "results" / "canonical" / "01_demo"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text(metrics, encoding="utf-8")
    (run / "run.json").write_text(json.dumps(RUN), encoding="utf-8")
    table = canonical.demo_section(sorted((root / "notebooks").glob("*.ipynb")), repo=root)
    readme = root / "README.md"
    readme.write_text(f"# x\n\n{canonical.DEMO_START}\n{table}{canonical.DEMO_END}\n")
    return readme, root / "results" / "canonical"


def test_generated_table_passes(tmp_path):
    readme, results = make_repo(tmp_path)
    assert "95.00% [88.33, 100.00]" in readme.read_text()  # the generator's format, as assumed
    assert "9 min 50 s" in readme.read_text()
    assert D.check_readme(readme, results) == []


@pytest.mark.parametrize(
    ("old", "new", "column"),
    [
        ("95.00% [88.33", "95.01% [88.33", "published"),  # one unit of the last digit off
        ("65.87% [57.94, 74.60]", "65.87% [57.94, 74.62]", "leak_free"),
        (": 96.6%", ": 96.8%", "headline claim"),
        ("9 min 50 s", "9 min 52 s", "run time"),
        ("126 samples", "128 samples", "data"),
        ("| demo |", "| smoke |", "profile"),
    ],
)
def test_a_wrong_number_is_detected(tmp_path, old, new, column):
    readme, results = make_repo(tmp_path)
    text = readme.read_text()
    assert old in text
    readme.write_text(text.replace(old, new, 1))
    problems = D.check_readme(readme, results)
    assert len(problems) == 1 and column in problems[0] and problems[0].startswith("01_demo:")


def test_rounding_tolerance_is_half_the_last_digit():
    assert D.rounding_tolerance("95.00") == pytest.approx(0.005)
    assert D.rounding_tolerance("96.6") == pytest.approx(0.05)
    assert D.rounding_tolerance("589") == pytest.approx(0.5)
    # 65.87 stands for 65.865 ... 65.875: the edges pass, just beyond fails
    assert D.check_values(["65.87"], [65.8651]) == []
    assert D.check_values(["65.87"], [65.8749]) == []
    assert len(D.check_values(["65.87"], [65.8649])) == 1
    assert len(D.check_values(["65.87", "1"], [65.87])) == 1  # a missing number is a problem


def test_fresh_runs_get_the_stated_tolerance(tmp_path):
    shifted = METRICS.replace("0.95,", "0.935,")  # 1.5 points lower than the README says
    readme, results = make_repo(tmp_path)
    (results / "01_demo" / "metrics.csv").write_text(shifted, encoding="utf-8")
    assert len(D.check_readme(readme, results)) == 1
    assert D.check_readme(readme, results, tolerance=D.FRESH_TOLERANCE, timings=False) == []
    (results / "01_demo" / "metrics.csv").write_text(
        METRICS.replace("0.95,", "0.925,"), encoding="utf-8"
    )  # 2.5 points: beyond the fresh tolerance
    assert len(D.check_readme(readme, results, tolerance=D.FRESH_TOLERANCE, timings=False)) == 1


def test_results_root_layout_and_missing_run(tmp_path):
    readme, results = make_repo(tmp_path)
    root = tmp_path / "fresh"
    (root / "01_demo").mkdir(parents=True)
    (results / "01_demo").rename(root / "01_demo" / "demo")  # <root>/<paper>/demo/
    assert D.check_readme(readme, root) == []
    problems = D.check_readme(readme, results)
    assert len(problems) == 1 and "no run" in problems[0]


def test_not_run_protocol(tmp_path):
    only_published = "\n".join(METRICS.splitlines()[:2]) + "\n"
    readme, results = make_repo(tmp_path, metrics=only_published)
    assert "| not run |" in readme.read_text()
    assert D.check_readme(readme, results) == []
    (results / "01_demo" / "metrics.csv").write_text(METRICS, encoding="utf-8")
    problems = D.check_readme(readme, results)
    assert len(problems) == 1 and "leak_free" in problems[0]


def test_missing_table_is_reported(tmp_path):
    readme, results = make_repo(tmp_path)
    readme.write_text("# no table\n")
    problems = D.check_readme(readme, results)
    assert len(problems) == 1 and "no demo table" in problems[0]
