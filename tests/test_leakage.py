"""The leakage sheet: each rule of common.leakage on hand-made splits, run.json, and the report."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common import leakage, report, splits
from common.data.core import build_dataset
from common.runs import resolve_params, start_run

REPO = Path(__file__).resolve().parents[1]
FIXTURE_CLAIMS = REPO / "tests" / "fixtures" / "claims"
N = 60
Y = np.array([0] * 40 + [1] * 20)
PATIENTS = np.repeat(np.arange(20), 3).astype(
    str
)  # three samples per patient, one class per patient
AUDIT_NONE = {
    "groups": [],
    "method": "rank",
    "threshold": 0.85,
}  # a duplicate audit that found nothing


def dataset(*, X=True, patients=True, meta=None, feature_names=None, n=N, y=Y):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(n, 5)) + np.asarray(y)[:, None] if X else None
    labels = np.where(np.asarray(y) == 1, "ALL", "normal")
    return build_dataset(
        "toy",
        Path("/tmp"),
        [f"s{i}" for i in range(n)],
        labels,
        patients=PATIENTS[:n] if patients else None,
        X=values,
        paths=None if X else [f"/tmp/img{i}.png" for i in range(n)],
        feature_names=(feature_names or [f"g{i}" for i in range(5)]) if X else None,
        meta=meta if meta is not None else pd.DataFrame({"series": ["A"] * n}),
        source="synthetic",
        fingerprint="toy",
    )


def answers(record):
    return {code: entry["answer"] for code, entry in leakage.leakage_sheet(record).items()}


def test_published_smote_before_the_split_leaks_where_the_taxonomy_says():
    ds = dataset()
    split = splits.make_split(
        Y, "published", X=ds.X, balance="smote", paper_order=("scale", "balance", "split"), seed=0
    )
    record = leakage.split_record(split=split, dataset=ds, duplicates=AUDIT_NONE)
    sheet = leakage.leakage_sheet(record)
    assert record["made_before_split"].get("smote", 0) > 0 and record["synthetic_in_test"] > 0
    assert (
        sheet["L1.2"]["answer"] == "yes"
        and "scaler fitted before the split" in sheet["L1.2"]["because"]
    )
    assert "smote rows in or from the test part" in sheet["L1.2"]["because"]
    assert sheet["L3.2"]["answer"] == "yes", (
        "image-level split: patients on both sides, SMOTE rows across it"
    )
    assert sheet["L3.3"]["answer"] == "yes" and "synthetic" in sheet["L3.3"]["because"]
    # what did not happen is answered "no" / "not applicable", not "yes"
    assert sheet["L1.1"]["answer"] == "no"
    assert sheet["L1.3"]["answer"] == "not applicable"
    assert sheet["L1.4"]["answer"] == "no", (
        "SMOTE rows are interpolations, not copies; the audit found nothing"
    )
    assert sheet["L2"]["answer"] == "no" and sheet["L3.1"]["answer"] == "not applicable"


def test_leak_free_split_answers_no():
    ds = dataset()
    split = splits.make_split(Y, "leak_free", X=ds.X, balance="smote", groups=PATIENTS, seed=0)
    sheet = leakage.leakage_sheet(
        leakage.split_record(split=split, dataset=ds, duplicates=AUDIT_NONE)
    )
    assert {code: entry["answer"] for code, entry in sheet.items()} == {
        "L1.1": "no",
        "L1.2": "no",
        "L1.3": "not applicable",
        "L1.4": "no",
        "L2": "no",
        "L3.1": "not applicable",
        "L3.2": "no",
        "L3.3": "no",
    }
    assert "smote rows made after the split" in sheet["L1.2"]["because"], (
        "balancing on training rows is named"
    )
    assert not any("missing" in entry for entry in sheet.values())


def test_oversampled_copies_before_the_split_are_duplicates_across_it():
    ds = dataset()
    split = splits.make_split(
        Y, "published", X=ds.X, balance="replicate", paper_order=("balance", "split"), seed=0
    )
    record = leakage.split_record(split=split, dataset=ds, duplicates=AUDIT_NONE)
    assert record["copies_across"].get("oversample", 0) > 0
    assert answers(record)["L1.4"] == "yes"


def test_no_duplicate_audit_is_not_read_as_no_duplicates():
    ds = dataset()
    split = splits.make_split(Y, "leak_free", groups=PATIENTS, seed=0)
    sheet = leakage.leakage_sheet(leakage.split_record(split=split, dataset=ds, duplicates=None))
    assert sheet["L1.4"] == {
        "answer": "yes",
        "because": sheet["L1.4"]["because"],
        "missing": "duplicate audit",
    }
    with pytest.raises(TypeError):
        leakage.split_record(
            split=split, dataset=ds
        )  # every caller must say which audit ran (None: none)


def test_profile_audit_groups_across_the_split_are_duplicates():
    ds = dataset()
    train, _, test = splits.stratified_split(Y, fractions=(0.8, 0.2), seed=0)
    pair = {
        "groups": [{"index": [int(train[0]), int(test[0])]}],
        "method": "rank",
        "threshold": 0.85,
    }
    record = leakage.split_record(train=train, test=test, dataset=ds, duplicates=pair)
    assert (
        record["duplicates"]["groups_across"] == 1
        and record["duplicates"]["test_with_train_duplicate"] == 1
    )
    assert answers(record)["L1.4"] == "yes"
    # the audit indexes the dataset; a split over a subset maps it through dataset_rows
    rows = np.arange(10, N)
    sub_train, _, sub_test = splits.stratified_split(Y[rows], fractions=(0.8, 0.2), seed=0)
    inside = {"groups": [[int(rows[sub_train[0]]), int(rows[sub_test[0]])], [0, 1]]}
    record = leakage.split_record(
        train=sub_train, test=sub_test, dataset=ds, dataset_rows=rows, duplicates=inside
    )
    assert record["duplicates"]["groups"] == 1, "the group outside the subset is dropped"
    assert record["duplicates"]["groups_across"] == 1
    # common.data.audit.cross_split_duplicates results: one per round, counts taken as they are
    counted = leakage.split_record(
        train=train,
        test=test,
        dataset=ds,
        duplicates={"n_test": len(test), "n_test_with_train_duplicate": 0, "share": 0.0},
    )
    assert answers(counted)["L1.4"] == "no"
    with pytest.raises(ValueError, match="one per round"):
        leakage.split_record(
            folds=splits.stratified_kfold(Y, k=3, seed=0),
            dataset=ds,
            duplicates={"n_test_with_train_duplicate": 0},
        )


def test_choosing_on_the_test_set_or_testing_training_rows_is_no_test_set():
    ds = dataset()
    train, val, test = splits.stratified_split(
        Y, fractions=(0.6, 0.2, 0.2), groups=PATIENTS, seed=0
    )
    on_val = leakage.split_record(
        train=train,
        val=val,
        test=test,
        dataset=ds,
        duplicates=AUDIT_NONE,
        selection={"threshold": val},
    )
    on_test = leakage.split_record(
        train=train,
        val=val,
        test=test,
        dataset=ds,
        duplicates=AUDIT_NONE,
        selection={"threshold": test},
    )
    assert answers(on_val)["L1.1"] == "no" and answers(on_test)["L1.1"] == "yes"
    assert "selection on the test set" in leakage.leakage_sheet(on_test)["L1.1"]["because"]
    overlapping = leakage.split_record(
        train=train, test=np.concatenate([test, train[:3]]), dataset=ds, duplicates=AUDIT_NONE
    )
    assert overlapping["test_rows_in_train"] == 3 and answers(overlapping)["L1.1"] == "yes"


def test_fitted_steps_leak_only_when_they_saw_test_rows():
    ds = dataset()
    train, _, test = splits.stratified_split(Y, fractions=(0.8, 0.2), groups=PATIENTS, seed=0)
    both = np.concatenate([train, test])
    base = dict(train=train, test=test, dataset=ds, duplicates=AUDIT_NONE)
    assert answers(leakage.split_record(preprocessing={"PCA": both}, **base))["L1.2"] == "yes"
    assert answers(leakage.split_record(preprocessing={"PCA": train}, **base))["L1.2"] == "no"
    assert (
        answers(leakage.split_record(fixed_steps=["frozen CNN"], **base))["L1.2"]
        == "not applicable"
    )
    assert (
        answers(leakage.split_record(feature_selection={"t-test top 100": both}, **base))["L1.3"]
        == "yes"
    )
    assert (
        answers(leakage.split_record(feature_selection={"t-test top 100": train}, **base))["L1.3"]
        == "no"
    )
    # a step's rows from the count it reports (PCA.n_samples_)
    assert np.array_equal(leakage.rows_seen(len(train), train=train, test=test), train)
    assert np.array_equal(leakage.rows_seen(len(both), train=train, test=test), both)
    with pytest.raises(ValueError, match="neither"):
        leakage.rows_seen(len(train) + 1, train=train, test=test)


def test_kfold_rounds_with_fitted_rows_per_fold():
    ds = dataset()
    folds = splits.stratified_kfold(Y, k=3, groups=PATIENTS, seed=0)
    clean = leakage.split_record(
        folds=folds,
        dataset=ds,
        duplicates=AUDIT_NONE,
        preprocessing={"scaler": [train for train, _ in folds]},
    )
    assert clean["rounds"] == 3 and clean["n_test"] == N
    assert clean["test_classes"]["max_difference"] == 0, (
        "pooled out-of-fold test rows are the whole data set"
    )
    assert set(answers(clean).values()) <= {"no", "not applicable"}
    everything = leakage.split_record(
        folds=folds, dataset=ds, duplicates=AUDIT_NONE, preprocessing={"scaler": np.arange(N)}
    )
    assert answers(everything)["L1.2"] == "yes"
    assert everything["preprocessing"]["scaler"]["test_rows_seen"] == N
    with pytest.raises(ValueError, match="one per round"):
        leakage.split_record(
            folds=folds,
            dataset=ds,
            duplicates=AUDIT_NONE,
            preprocessing={"scaler": [train for train, _ in folds[:2]]},
        )


def test_inputs_named_like_metadata_are_illegitimate_and_affx_controls_are_not():
    names = ["AFFX-BioB-5_at", "1000_at", "1001_at", "1002_f_at", "1003_s_at"]
    clean = leakage.split_record(
        train=np.arange(40),
        test=np.arange(40, N),
        dataset=dataset(feature_names=names),
        duplicates=AUDIT_NONE,
    )
    assert clean["inputs"]["technical_controls"] == 1 and answers(clean)["L2"] == "no"
    leaky = leakage.split_record(
        train=np.arange(40),
        test=np.arange(40, N),
        duplicates=AUDIT_NONE,
        dataset=dataset(feature_names=["1000_at", "Series", "type", "1003_at", "1004_at"]),
    )
    assert leaky["inputs"]["flagged"] == ["Series", "type"] and answers(leaky)["L2"] == "yes"
    pixels = leakage.split_record(
        train=np.arange(40), test=np.arange(40, N), dataset=dataset(X=False), duplicates=None
    )
    assert pixels["inputs"]["kind"] == "pixels" and answers(pixels)["L2"] == "no"


def test_temporal_rule_needs_dates_and_reads_the_split_order():
    days = pd.date_range("1997-01-01", periods=N, freq="7D")
    meta = pd.DataFrame(
        {"diagnosis": [f"{d.month}/{d.day}/{d.year}" for d in days], "age": np.arange(N) + 20.0}
    )
    ds = dataset(meta=meta)
    assert leakage.date_columns(ds.meta) == ["diagnosis"], "numbers (age) are not dates"
    order = np.arange(N)
    early, late = (
        order[order % 3 != 0],
        order[order % 3 == 0],
    )  # interleaved in time: not chronological
    mixed = leakage.split_record(train=early, test=late, dataset=ds, duplicates=AUDIT_NONE)
    assert mixed["time"]["column"] == "diagnosis" and answers(mixed)["L3.1"] == "yes"
    chronological = leakage.split_record(
        train=order[:45], test=order[45:], dataset=ds, duplicates=AUDIT_NONE
    )
    assert (
        chronological["time"]["test_before_last_train"] == 0
        and answers(chronological)["L3.1"] == "no"
    )
    assert mixed["time"]["test_before_last_train"] == len(late), (
        "the latest sample (59) is a training sample"
    )
    undated = leakage.split_record(
        train=order[:45], test=order[45:], dataset=dataset(), duplicates=AUDIT_NONE
    )
    assert answers(undated)["L3.1"] == "not applicable"


def test_non_independence_needs_patient_ids_to_be_ruled_out():
    train, _, test = splits.stratified_split(Y, fractions=(0.8, 0.2), seed=0)  # image-level
    shared = leakage.split_record(train=train, test=test, dataset=dataset(), duplicates=AUDIT_NONE)
    assert shared["groups"]["shared"] > 0 and answers(shared)["L3.2"] == "yes"
    unknown = leakage.leakage_sheet(
        leakage.split_record(
            train=train, test=test, dataset=dataset(patients=False), duplicates=AUDIT_NONE
        )
    )
    assert unknown["L3.2"]["answer"] == "yes" and unknown["L3.2"]["missing"] == "patient ids"
    grouped = splits.stratified_split(Y, fractions=(0.8, 0.2), groups=PATIENTS, seed=0)
    clean = leakage.split_record(
        train=grouped[0], test=grouped[2], dataset=dataset(), duplicates=AUDIT_NONE
    )
    assert clean["groups"]["shared"] == 0 and answers(clean)["L3.2"] == "no"


def test_a_test_set_with_other_class_shares_is_sampling_bias():
    ds = dataset()
    train = np.r_[0:30, 40:50]
    test = np.r_[30:40, 50:60]  # half ALL in the test set, a third in the data set
    record = leakage.split_record(train=train, test=test, dataset=ds, duplicates=AUDIT_NONE)
    assert record["test_classes"]["max_difference"] == pytest.approx(1 / 2 - 1 / 3, abs=1e-4)
    assert answers(record)["L3.3"] == "yes"
    stratified = splits.stratified_split(Y, fractions=(0.8, 0.2), seed=0)
    assert (
        answers(
            leakage.split_record(
                train=stratified[0], test=stratified[2], dataset=ds, duplicates=AUDIT_NONE
            )
        )["L3.3"]
        == "no"
    )


def _run_with_sheet(results, name, *, with_sheet=True):
    from common import evaluate

    run_ = start_run(
        "00_harness",
        resolve_params({p: {"n": 1} for p in ("smoke", "demo", "paper")}, profile="demo"),
        run=name,
        root=results,
    )
    run_.set_data("synthetic", f"fp-{name}", description="fixture data")
    if with_sheet:
        ds = dataset()
        for protocol, split in (
            (
                "published",
                splits.make_split(
                    Y,
                    "published",
                    X=ds.X,
                    balance="smote",
                    paper_order=("balance", "split"),
                    seed=0,
                ),
            ),
            ("leak_free", splits.make_split(Y, "leak_free", groups=PATIENTS, seed=0)),
        ):
            run_.record_leakage(
                protocol, leakage.split_record(split=split, dataset=ds, duplicates=None)
            )
    rows = pd.concat(
        [
            evaluate.measurement_rows({"accuracy": 0.9}, p, "logreg")
            for p in ("published", "leak_free")
        ],
        ignore_index=True,
    )
    rows[["ci_low", "ci_high"]] = [0.85, 0.95]
    evaluate.write_metrics(rows, run_.dir)
    run_.write()
    return run_


def test_sheet_round_trips_through_run_json(tmp_path):
    run_ = _run_with_sheet(tmp_path / "results", "demo")
    doc = json.loads((run_.dir / "run.json").read_text())
    assert list(doc["leakage"]) == ["published", "leak_free"]
    for entry in doc["leakage"].values():
        assert entry["sheet"] == leakage.leakage_sheet(entry["facts"]), (
            "the stored sheet follows from the stored facts"
        )
        assert list(entry["sheet"]) == list(leakage.TYPES)
    assert doc["leakage"]["published"]["sheet"]["L3.3"]["answer"] == "yes"
    table = leakage.sheet_table(doc["leakage"])
    assert table.shape == (2, 8) and table.loc["leak_free", "L1.4"] == "yes*"
    assert table.loc["leak_free", "L1.3"] == "n/a"
    named = leakage.sheet_table(doc["leakage"], full_names=True)
    assert (
        named.loc["leak_free", "L1.3 feature selection on training and test set"]
        == "not applicable"
    )
    with pytest.raises(ValueError, match="lacks the fact"):
        leakage.leakage_sheet(
            {k: v for k, v in doc["leakage"]["published"]["facts"].items() if k != "groups"}
        )
    with pytest.raises(ValueError, match="protocol name"):
        run_.record_leakage("", doc["leakage"]["published"]["facts"])


def test_report_shows_each_sheet_and_says_when_a_run_has_none(tmp_path):
    results = tmp_path / "results"
    _run_with_sheet(results, "demo")
    _run_with_sheet(results, "older", with_sheet=False)
    built = report.build_report(
        results=results, directory=FIXTURE_CLAIMS, canonical=tmp_path / "no-canonical"
    )
    text = built["markdown"].read_text()
    section = text.split("## 00_harness · run `demo`", 1)[1].split("## 00_harness", 1)[0]
    sheet = section.split("### Leakage sheet", 1)[1]
    header = next(line for line in sheet.splitlines() if line.startswith("| protocol"))
    assert all(f"{code} {name}" in header for code, name in leakage.TYPES.items())
    published = next(line for line in sheet.splitlines() if line.startswith("| `published`"))
    assert published.count("<sup>") == 8 and 'title="' in published and "**yes**" in published
    assert "`published`, L3.3: " in sheet, "every reason is a footnote too"
    older = text.split("## 00_harness · run `older`", 1)[1]
    assert "No leakage sheet in this run (older run" in older
    html_text = built["html"].read_text()
    assert "<span title=" in html_text and "<table>" in html_text
    assert report.broken_links(built["html"]) == []
