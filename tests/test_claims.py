import textwrap

import numpy as np
import pandas as pd
import pytest

from common import claims
from common import evaluate as ev

#: a complete ``paper:`` reference (common.claims.REFERENCE_FIELDS), for the files written here
REFERENCE_YAML = textwrap.dedent("""
    paper:
      authors: [A. Someone, B. Other]
      title: A test paper
      venue: not printed in the paper
      year: 2024
      doi: DOI not printed in the paper
""")

CLAIMS_YAML = (
    "id: 99_test\n"
    + REFERENCE_YAML
    + textwrap.dedent("""
    defaults: {unit: percent, protocol: "SMOTE on all data, then 80/20 split"}
    claims:
      - {table: "Table 6", model: hybrid, metric: Accuracy, value: 96.6}
      - {table: "Table 6", model: hybrid, class: weighted, metric: Recall, value: 97}
      - {table: "Table 7", model: hybrid, class: a, metric: F1-score, value: 0.9, unit: fraction}
      - {table: "Table 8", model: vit, metric: accuracy, value: 90}
""")
)


@pytest.fixture
def claims_dir(tmp_path):
    (tmp_path / "99_test.yaml").write_text(CLAIMS_YAML)
    return tmp_path


def metric_rows():
    y = np.array([0, 0, 1, 1, 1, 0, 1, 0])
    p = np.array([0, 0, 1, 1, 0, 0, 1, 0])  # 7/8 correct
    published = ev.evaluate(
        y, p, class_names=["a", "b"], model="hybrid", protocol="published", n_bootstrap=0
    )
    leak_free = ev.evaluate(
        y,
        np.where(np.arange(8) < 4, p, 1 - p),
        class_names=["a", "b"],
        model="hybrid",
        protocol="leak_free",
        n_bootstrap=0,
    )
    return pd.concat([published, leak_free], ignore_index=True)


def test_load_normalises_metric_names_and_applies_defaults(claims_dir):
    df = claims.load_claims("99_test", directory=claims_dir)
    assert df["metric"].tolist() == ["accuracy", "sensitivity", "f1", "accuracy"]
    assert df["class"].tolist() == ["overall", "weighted", "a", "overall"]
    assert df["unit"].tolist() == ["percent", "percent", "fraction", "percent"]
    assert set(df["protocol"]) == {"SMOTE on all data, then 80/20 split"}


def test_compare_gives_deltas_in_the_claims_unit(claims_dir):
    comparison = claims.compare(claims.load_claims("99_test", directory=claims_dir), metric_rows())
    first = comparison.iloc[0]
    assert first["published"] == pytest.approx(7 / 8)
    assert first["delta_published"] == pytest.approx(87.5 - 96.6)  # percentage points
    # leak_free flips the last 4 predictions (3 right, 1 wrong -> 1 right): 4 + 1 = 5/8 correct
    assert first["delta_leak_free"] == pytest.approx(62.5 - 96.6)
    f1_row = comparison.iloc[2]
    assert f1_row["delta_published"] == pytest.approx(f1_row["published"] - 0.9)  # fraction unit
    assert np.isnan(comparison.iloc[3]["published"]), "a model the run lacks stays empty"


def test_markdown_states_source_and_protocols(claims_dir):
    comparison = claims.compare(claims.load_claims("99_test", directory=claims_dir), metric_rows())
    md = claims.comparison_markdown(comparison, source="synthetic")
    assert md.startswith("Data source: **synthetic**") and "generated data" in md
    assert "reproduced (published)" in md and "reproduced (leak_free)" in md
    assert "-9.10 pp" in md and "not run" in md


def test_report_reads_runs_from_disk(tmp_path, claims_dir):
    run_dir = tmp_path / "results" / "99_test" / "demo"
    ev.write_metrics(metric_rows(), run_dir)
    (run_dir / "run.json").write_text('{"data": {"source": "embedded-real"}}')
    written = claims.write_report(results=tmp_path / "results", directory=claims_dir)
    assert written == [run_dir / "claims_vs_reproduced.md"]
    assert "Data source: **embedded-real**" in written[0].read_text()


@pytest.mark.parametrize(
    "text,message",
    [
        ("claims: []", "non-empty 'claims'"),
        ("claims:\n  - {table: T1, model: m, metric: accuracy}", r"lacks \['value'\]"),
        (
            "claims:\n  - {table: T1, model: m, metric: accuracy, value: 1, colour: red}",
            "unknown fields",
        ),
        (
            "claims:\n  - {table: T1, model: m, metric: accuracy, value: 1, unit: permille}",
            "unit 'permille'",
        ),
        ("claims:\n  - {table: T1, model: m, metric: accuracy, value: high}", "not a number"),
        ("claims: [unclosed", "not valid YAML"),
    ],
)
def test_bad_claims_files(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ValueError, match=message):
        claims.load_claims("bad", directory=tmp_path)


@pytest.mark.parametrize("key", claims.REFERENCE_FIELDS)
def test_a_claims_file_without_a_complete_reference_is_a_one_line_error(claims_dir, key):
    path = claims_dir / "99_test.yaml"
    assert claims.load_reference("99_test", directory=claims_dir)["year"] == 2024
    lines = path.read_text().splitlines()
    path.write_text("\n".join(line for line in lines if not line.startswith(f"  {key}:")) + "\n")
    for load in (claims.load_claims, claims.load_reference):
        with pytest.raises(ValueError) as err:
            load("99_test", directory=claims_dir)
        message = str(err.value)
        assert str(path) in message and f"'{key}'" in message and "\n" not in message


@pytest.mark.parametrize(
    "old,new,message",
    [
        ("paper:\n", "reference:\n", "no 'paper' reference mapping"),
        ("title: A test paper", "title: ''", "lacks 'title'"),
        ("authors: [A. Someone, B. Other]", "authors: []", "lacks 'authors'"),
        ("authors: [A. Someone, B. Other]", "authors: A. Someone", "list of names"),
        ("doi: DOI not printed in the paper", "doi: 10.54392/irjmt2563", "'doi' is"),
        ("doi: DOI not printed in the paper", "doi: https://doi.org/", "'doi' is"),
    ],
)
def test_a_bad_reference_names_the_file_and_the_key(claims_dir, old, new, message):
    path = claims_dir / "99_test.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    with pytest.raises(ValueError, match=message) as err:
        claims.load_claims("99_test", directory=claims_dir)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_doi_link_copied_from_the_paper_is_accepted(claims_dir):
    path = claims_dir / "99_test.yaml"
    # paper 04's own DOI, printed on its first page
    doi = "https://doi.org/10.54392/irjmt2563"
    path.write_text(path.read_text().replace("DOI not printed in the paper", doi))
    assert claims.load_reference("99_test", directory=claims_dir)["doi"] == doi


def test_missing_claims_file_says_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="claims/README.md"):
        claims.load_claims("nope", directory=tmp_path)


def test_protocol_gap_states_the_difference_from_the_rows():
    from common.claims import protocol_gap

    rows = pd.DataFrame(
        [
            {
                "protocol": "published",
                "model": "m",
                "class": "overall",
                "metric": "accuracy",
                "value": 0.95,
                "ci_low": 0.9,
                "ci_high": 0.99,
            },
            {
                "protocol": "leak_free",
                "model": "m",
                "class": "overall",
                "metric": "accuracy",
                "value": 0.70,
                "ci_low": 0.6,
                "ci_high": 0.8,
            },
        ]
    )
    text = protocol_gap(rows, "m")
    assert "+25.0 percentage points" in text and "do not overlap" in text
    rows.loc[1, "ci_high"] = 0.92
    assert "overlap, so this run cannot tell" in protocol_gap(rows, "m")
    with pytest.raises(ValueError, match="both protocols"):
        protocol_gap(rows.iloc[:1], "m")


def test_count_claims_compare_as_printed(tmp_path):
    from common.claims import compare, comparison_markdown, load_claims
    from common.evaluate import measurement_rows

    (tmp_path / "p.yaml").write_text(
        REFERENCE_YAML + "claims:\n  - {table: T3, model: dataset, class: AML, "
        "metric: n_before_smote, value: 58, unit: count}\n"
    )
    rows = measurement_rows({"n_before_smote": 60}, "published", "dataset", cls="AML")
    comparison = compare(load_claims("p", directory=tmp_path), rows)
    assert comparison["delta_published"].tolist() == [2.0]
    import re

    assert re.search(r"\|\s+58 \|\s+60 \|", comparison_markdown(comparison, "real"))


def test_a_qualified_run_model_answers_its_claim_and_says_how_it_ran(claims_dir):
    rows = metric_rows()
    rows = pd.concat([rows, rows.assign(model="vit [from scratch]")], ignore_index=True)
    comparison = claims.compare(claims.load_claims("99_test", directory=claims_dir), rows)
    vit = comparison.iloc[3]
    assert vit["published"] == pytest.approx(7 / 8) and vit["reproduced_as"] == "vit [from scratch]"
    assert comparison.iloc[0]["reproduced_as"] == "", "an exact match carries no qualifier"
    text = claims.comparison_markdown(comparison, "synthetic")
    assert "vit (run as vit [from scratch])" in text
    assert claims.base_model("ensemble (selected)") == "ensemble (selected)"


def test_cited_claims_get_no_reproduced_value_and_no_delta(tmp_path):
    (tmp_path / "98_test.yaml").write_text(
        REFERENCE_YAML
        + textwrap.dedent("""
        claims:
          - {table: "Table 3", model: hybrid, metric: accuracy, value: 90, cited: true}
          - {table: "Table 3", model: hybrid, metric: accuracy, value: 91}
    """)
    )
    comparison = claims.compare(claims.load_claims("98_test", directory=tmp_path), metric_rows())
    assert np.isnan(comparison.iloc[0]["published"]) and np.isnan(
        comparison.iloc[0]["delta_published"]
    )
    assert comparison.iloc[1]["published"] == pytest.approx(7 / 8), (
        "the same model, not cited, is compared"
    )
    text = claims.comparison_markdown(comparison, "real")
    assert text.count("cited from other work, not run") == 2  # one cell per protocol
    (tmp_path / "97_test.yaml").write_text(
        "claims:\n  - {table: T, model: m, metric: accuracy, value: 1, cited: yes please}\n"
    )
    with pytest.raises(ValueError, match="cited"):
        claims.load_claims("97_test", directory=tmp_path)


# ------------------------------------------------------------------------------ verdicts
def one_claim(value, unit="percent", cited=False, dataset="cumida"):
    return {
        "model": "m",
        "class": "overall",
        "metric": "accuracy",
        "value": value,
        "unit": unit,
        "cited": cited,
        "dataset": dataset,
    }


@pytest.mark.parametrize(
    "claimed,reproduced,low,high,expected",
    [
        (90.0, 0.91, 0.85, 0.95, ("reproduced", "claim inside the 95% interval")),
        (
            85.0,
            0.91,
            0.85,
            0.95,
            ("reproduced", "claim inside the 95% interval"),
        ),  # on the lower edge
        (
            7.0,
            0.2,
            0.07,
            0.3,
            ("reproduced", "claim inside the 95% interval"),
        ),  # 0.07 * 100 = 7.000000000000001
        (
            96.6,
            0.95,
            0.93,
            0.966,
            ("reproduced", "claim inside the 95% interval"),
        ),  # upper edge, 0.966 * 100 in floats
        (
            96.61,
            0.95,
            0.93,
            0.966,
            ("not reproduced", "claim outside the 95% interval"),
        ),  # just past it
        (84.99, 0.91, 0.85, 0.95, ("not reproduced", "claim outside the 95% interval")),
    ],
)
def test_a_score_is_reproduced_when_the_claim_lies_in_the_interval_edges_included(
    claimed, reproduced, low, high, expected
):
    assert (
        claims.verdict(
            one_claim(claimed),
            reproduced,
            ci_low=low,
            ci_high=high,
            source="real",
            dataset="cumida",
        )
        == expected
    )


def test_a_fraction_claim_is_compared_with_the_interval_as_is():
    assert (
        claims.verdict(one_claim(0.9, unit="fraction"), 0.91, ci_low=0.85, ci_high=0.95)[0]
        == "reproduced"
    )
    assert (
        claims.verdict(one_claim(90, unit="fraction"), 0.91, ci_low=0.85, ci_high=0.95)[0]
        == "not reproduced"
    )  # no x100 for fractions


def test_counts_must_match_exactly_and_values_within_one_percent():
    assert claims.verdict(one_claim(58, unit="count"), 58.0) == ("reproduced", "count: exact")
    assert claims.verdict(one_claim(58, unit="count"), 59.0) == ("not reproduced", "count: exact")
    # a count's bootstrap-free row never has an interval; one given is ignored
    assert (
        claims.verdict(one_claim(58, unit="count"), 59.0, ci_low=50.0, ci_high=70.0)[0]
        == "not reproduced"
    )
    assert claims.verdict(one_claim(0.5, unit="value"), 0.505) == (
        "reproduced",
        "within 1% of the claim",
    )  # the bound
    assert claims.verdict(one_claim(0.5, unit="value"), 0.4949) == (
        "not reproduced",
        "more than 1% off",
    )
    assert claims.verdict(one_claim(96.6), 0.96) == (
        "reproduced",
        "no interval; within 1% of the claim",
    )
    assert claims.verdict(one_claim(96.6), 0.95) == (
        "not reproduced",
        "no interval; more than 1% off",
    )


def test_not_comparable_says_why_in_order_cited_not_run_synthetic_stand_in():
    verdict = claims.verdict  # shorter lines below
    assert verdict(one_claim(90, cited=True), 0.9, ci_low=0.8, ci_high=1.0) == (
        "not comparable",
        "cited from other work",
    )
    assert verdict(one_claim(90), np.nan, source="synthetic") == ("not comparable", "not run")
    assert verdict(
        one_claim(90), 0.9, ci_low=0.8, ci_high=1.0, source="synthetic", dataset="bioc_all"
    ) == (
        "not comparable",
        "synthetic data",
    )
    assert verdict(
        one_claim(90), 0.9, ci_low=0.8, ci_high=1.0, source="embedded-real", dataset="bioc_all"
    ) == (
        "not comparable",
        "stand-in dataset: bioc_all, not cumida",
    )
    # where either side's data set is unknown, the run counts as on the paper's data
    assert (
        verdict(one_claim(90, dataset=""), 0.9, ci_low=0.8, ci_high=1.0, dataset="bioc_all")[0]
        == "reproduced"
    )
    assert (
        verdict(one_claim(90), 0.9, ci_low=0.8, ci_high=1.0, source="real", dataset=None)[0]
        == "reproduced"
    )


def test_compare_gives_a_verdict_per_protocol_and_counts_them(claims_dir):
    rows = metric_rows()
    rows.loc[
        (rows["protocol"] == "published")
        & (rows["class"] == "weighted")
        & (rows["metric"] == "sensitivity"),
        ["ci_low", "ci_high"],
    ] = [0.8, 0.97]
    comparison = claims.compare(
        claims.load_claims("99_test", directory=claims_dir), rows, source="real"
    )
    assert comparison["verdict_published"].tolist() == [
        "not reproduced",
        "reproduced",
        "not reproduced",
        "not comparable",
    ]
    assert comparison["reason_published"].tolist() == [
        "no interval; more than 1% off",
        "claim inside the 95% interval",
        "no interval; more than 1% off",
        "not run",
    ]
    assert claims.verdict_counts(comparison) == [
        {
            "protocol": "published",
            "reproduced": 1,
            "not reproduced": 2,
            "not comparable": 1,
            "not comparable because": "not run 1",
        },
        {
            "protocol": "leak_free",
            "reproduced": 0,
            "not reproduced": 3,
            "not comparable": 1,
            "not comparable because": "not run 1",
        },
    ]


def test_markdown_shows_the_verdicts_and_takes_the_source_when_compare_had_none(claims_dir):
    comparison = claims.compare(claims.load_claims("99_test", directory=claims_dir), metric_rows())
    assert comparison.attrs["source"] is None
    md = claims.comparison_markdown(comparison, source="synthetic")
    assert "verdict (published)" in md and "verdict (leak_free)" in md
    assert (
        md.count("not comparable (synthetic data)") == 6
        and md.count("not comparable (not run)") == 2
    )
    real = claims.comparison_markdown(comparison, source="real")
    assert "not reproduced (no interval; more than 1% off)" in real and "synthetic data" not in real


def test_a_run_on_a_stand_in_dataset_is_not_comparable(tmp_path, claims_dir):
    text = (
        (claims_dir / "99_test.yaml")
        .read_text()
        .replace("defaults: {unit: percent,", "defaults: {unit: percent, dataset: cumida,")
    )
    (claims_dir / "99_test.yaml").write_text(text)
    run_dir = tmp_path / "results" / "99_test" / "demo"
    ev.write_metrics(metric_rows(), run_dir)
    (run_dir / "run.json").write_text(
        '{"data": {"source": "embedded-real"}, "params": {"dataset": "bioc_all"}}'
    )
    comparison, md = claims.claims_vs_run("99_test", run_dir, directory=claims_dir)
    assert set(comparison["reason_published"]) == {
        "stand-in dataset: bioc_all, not cumida",
        "not run",
    }
    assert "not comparable (stand-in dataset: bioc_all, not cumida)" in md
    (run_dir / "run.json").write_text(
        '{"data": {"source": "real", "dataset": "cumida"}, "params": {"dataset": "bioc_all"}}'
    )
    comparison, _ = claims.claims_vs_run("99_test", run_dir, directory=claims_dir)
    assert "stand-in" not in " ".join(comparison["reason_published"]), (
        "data.dataset, where recorded, decides"
    )
