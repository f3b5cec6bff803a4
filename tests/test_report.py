"""The reviewer report: summary across papers, per-run sections, synthetic badges, links."""

import json
import re
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from common import claims, evaluate, plots, report
from common.runs import resolve_params, start_run

REPO = Path(__file__).resolve().parents[1]
FIXTURE_CLAIMS = REPO / "tests" / "fixtures" / "claims"
PROFILES = {p: {"n": 1} for p in ("smoke", "demo", "paper")}


def make_run(results, name, source, accuracy_published, accuracy_free, profile="demo"):
    """A finished run of the fixture paper, written through the same helpers notebooks use."""
    run_ = start_run(
        "00_harness", resolve_params(PROFILES, profile=profile), run=name, root=results
    )
    run_.set_data(source, fingerprint=f"fp-{name}", description=f"{source} fixture data")
    run_.describe_protocols(published="split after balancing", leak_free="split first, by patient")
    rows = [
        evaluate.measurement_rows({"accuracy": v}, protocol, "logreg")
        for protocol, v in (("published", accuracy_published), ("leak_free", accuracy_free))
    ]
    rows = __import__("pandas").concat(rows, ignore_index=True)
    rows.loc[rows["protocol"] == "leak_free", ["ci_low", "ci_high"]] = [
        accuracy_free - 0.05,
        accuracy_free + 0.04,
    ]
    evaluate.write_metrics(rows, run_.dir)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    plots.save_figure(fig, run_.dir, "roc", source=source)
    plt.close(fig)
    run_.write()
    return run_.dir


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    make_run(root, "demo", "synthetic", 0.97, 0.61)
    make_run(root, "real", "real", 0.93, 0.80, profile="paper")
    return root


def test_report_summarises_every_run_with_both_protocols_and_badges(results):
    built = report.build_report(results=results, directory=FIXTURE_CLAIMS)
    assert built["runs"] == 2
    text = built["markdown"].read_text()
    summary = text.split("## Summary", 1)[1].split("<a id=", 1)[0]
    rows = [line for line in summary.splitlines() if line.startswith("| 00_harness")]
    assert len(rows) == 2
    paper_row, demo_row = rows  # the paper profile is listed first
    assert (
        "93.00%" in paper_row and "80.00% [75.00, 84.00]" in paper_row and "real data" in paper_row
    )
    assert "97.00%" in demo_row and "61.00% [56.00, 65.00]" in demo_row and "SYNTHETIC" in demo_row
    assert "logreg accuracy (overall), Fixture table: 95%" in demo_row, (
        "the headline claim from the claims file"
    )
    # the synthetic badge is on the run's own section too, and on its figure captions
    section = text.split("## 00_harness · run `demo`", 1)[1]
    assert section.lstrip(" ·").startswith("**🧪 SYNTHETIC DATA**")
    assert "*roc (synthetic data)*" in section
    assert "**leak_free**: split first, by patient" in section
    assert "| Fixture table | logreg  | overall | accuracy | 95%" in section


def test_report_folder_is_self_contained_and_every_link_resolves(results, tmp_path):
    built = report.build_report(results=results, directory=FIXTURE_CLAIMS)
    html = built["html"].read_text()
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) == 2 and all(not src.startswith(("/", "http")) for src in images)
    assert report.broken_links(built["html"]) == []
    # zip-and-share: the copied folder still resolves without results/ beside it
    moved = tmp_path / "shared_report"
    shutil.copytree(built["html"].parent, moved)
    shutil.rmtree(results)
    assert report.broken_links(moved / "index.html") == []
    run_json = json.loads((moved / "00_harness" / "demo" / "run.json").read_text())
    assert run_json["data"]["source"] == "synthetic"


def test_broken_links_are_found(results):
    built = report.build_report(results=results, directory=FIXTURE_CLAIMS)
    (built["html"].parent / "00_harness" / "demo" / "roc.png").unlink()
    html = built["html"].read_text()
    built["html"].write_text(html.replace('href="#summary"', 'href="#nowhere"', 1))
    problems = report.broken_links(built["html"])
    assert any("00_harness/demo/roc.png: file missing" in p for p in problems)
    assert any("#nowhere: no element with that id" in p for p in problems)


def test_rebuilding_drops_runs_that_are_gone(results):
    report.build_report(results=results, directory=FIXTURE_CLAIMS)
    shutil.rmtree(results / "00_harness" / "real")
    built = report.build_report(results=results, directory=FIXTURE_CLAIMS)
    assert built["runs"] == 1
    assert not (results / "report" / "00_harness" / "real").exists()
    assert report.broken_links(built["html"]) == []


def test_incomplete_runs_are_left_out_and_an_empty_results_folder_says_what_to_do(tmp_path):
    (tmp_path / "00_harness" / "killed").mkdir(parents=True)
    (tmp_path / "00_harness" / "killed" / "metrics.json").write_text("[]")
    with pytest.raises(ValueError, match="make reproduce"):
        report.build_report(results=tmp_path, directory=FIXTURE_CLAIMS)


def test_headline_must_match_a_claim(tmp_path):
    text = (FIXTURE_CLAIMS / "00_harness.yaml").read_text()
    (tmp_path / "00_harness.yaml").write_text(
        text.replace("metric: accuracy, class: overall}", "metric: auc, class: overall}", 1)
    )
    with pytest.raises(ValueError, match="matches no claim"):
        claims.load_headline("00_harness", directory=tmp_path)


def test_every_paper_claims_file_names_a_headline_claim():
    for path in sorted((REPO / "claims").glob("*.yaml")):
        head = claims.load_headline(path.stem)
        assert head is not None and head["unit"] == "percent", path.name


def verdict_table(text):
    """The summary's verdict rows, {(run, protocol): cells}."""
    part = text.split("### Verdicts", 1)[1].split('<a id="00_harness', 1)[0]
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in part.splitlines()
        if line.startswith("| 00_harness")
    ]
    return {(r[1].split("]")[0].lstrip("["), r[3]): r[4:] for r in rows}


def test_summary_counts_verdicts_per_run_and_protocol(results):
    make_run(
        results, "close", "real", 0.95, 0.95
    )  # both protocols at the claim: published without an interval
    table = verdict_table(
        report.build_report(results=results, directory=FIXTURE_CLAIMS)["markdown"].read_text()
    )
    # columns: reproduced, not reproduced, not comparable, not comparable because
    # the fixture claims accuracy 95% and macro F1 94%; the runs write accuracy only, so F1 is "not
    # run"
    assert table[("demo", "published")] == ["0", "0", "2", "synthetic data 1, not run 1"]
    assert table[("real", "published")] == [
        "0",
        "1",
        "1",
        "not run 1",
    ]  # 93% without an interval: 2 pp off
    assert table[("real", "leak_free")] == ["0", "1", "1", "not run 1"]  # 95 outside [75, 84]
    assert table[("close", "published")] == ["1", "0", "1", "not run 1"]
    assert table[("close", "leak_free")] == ["1", "0", "1", "not run 1"]  # 95 inside [90, 99]
    assert len(table) == 6
