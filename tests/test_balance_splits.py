import numpy as np
import pandas as pd
import pytest

from common import balance
from common.splits import (
    describe_leaks,
    leak_report,
    make_split,
    stratified_kfold,
    stratified_split,
)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [60, 24, 12])
    X = rng.normal(size=(y.size, 6)) + y[:, None] * 1.5
    patients = np.repeat(np.arange(32), 3)  # 3 samples per patient, one class each
    return X, y, patients


# ------------------------------------------------------------------------ balance
def test_random_oversample_equalises_and_keeps_originals_first(data):
    _, y, _ = data
    origin = balance.random_oversample(y, seed=1)
    np.testing.assert_array_equal(origin[: y.size], np.arange(y.size))
    assert np.bincount(y[origin]).tolist() == [60, 60, 60]
    np.testing.assert_array_equal(origin, balance.random_oversample(y, seed=1))


def test_replicate_oversample_is_whole_copies_plus_remainder():
    y = np.array([0] * 10 + [1] * 4)
    origin = balance.replicate_oversample(y, seed=0)
    counts = pd.Series(origin[y[origin] == 1]).value_counts()
    # 10 = 2 full copies of 4 + 2 drawn without replacement: every image 2 or 3 times
    assert np.bincount(y[origin]).tolist() == [10, 10]
    assert set(counts.tolist()) == {2, 3} and (counts == 3).sum() == 2


def test_smote_adds_synthetic_rows_with_traceable_origins(data):
    X, y, _ = data
    X_res, y_res, origin = balance.smote(X, y, seed=0)
    np.testing.assert_array_equal(X_res[: y.size], X)
    assert np.bincount(y_res).tolist() == [60, 60, 60]
    synthetic = np.arange(y.size, y_res.size)
    assert (y[origin[synthetic]] == y_res[synthetic]).all(), (
        "a synthetic row derives from its own class"
    )


def test_smote_too_small_class_is_a_clear_error_or_a_logged_fallback(caplog):
    X = np.random.default_rng(0).normal(size=(23, 3))
    y = np.array([0] * 20 + [1] * 3)
    with pytest.raises(
        ValueError, match=r"class 1 has 3 sample\(s\), too few for SMOTE with k_neighbors=5"
    ):
        balance.smote(X, y)
    X_res, y_res, _ = balance.smote(X, y, fallback="reduce_k")
    assert np.bincount(y_res).tolist() == [20, 20]
    assert "k_neighbors reduced from 5 to 2" in caplog.text
    with pytest.raises(ValueError, match=r"class 1 has 1 sample"):
        balance.smote(X[:21], np.array([0] * 20 + [1]), fallback="reduce_k")


def test_balance_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        balance.smote(np.array([[np.nan], [1.0], [2.0]]), [0, 1, 1])
    with pytest.raises(ValueError, match="needs the feature matrix"):
        balance.oversample([0, 1, 1], "smote")
    with pytest.raises(ValueError, match="unknown balancing method"):
        balance.oversample([0, 1, 1], "adasyn")


# ------------------------------------------------------------------------- splits
def test_plain_and_grouped_splits(data):
    _, y, patients = data
    train, val, test = stratified_split(y, fractions=(0.7, 0.15, 0.15), seed=0)
    assert len(set(train) | set(val) | set(test)) == y.size and not set(train) & set(test)
    assert abs(test.size - 0.15 * y.size) <= 3
    train, val, test = stratified_split(y, fractions=(0.7, 0.15, 0.15), groups=patients, seed=0)
    sides = [set(patients[i]) for i in (train, val, test)]
    assert not (sides[0] & sides[2]) and not (sides[0] & sides[1]) and not (sides[1] & sides[2])
    for tr, te in stratified_kfold(y, k=4, groups=patients):
        assert not set(patients[tr]) & set(patients[te])
    with pytest.raises(ValueError, match="summing to 1"):
        stratified_split(y, fractions=(0.7, 0.2))


def test_smote_before_split_leaks_and_the_leak_check_finds_it(data):
    X, y, patients = data
    published = make_split(
        y, "published", X=X, balance="smote", paper_order=("balance", "split"), seed=0
    )
    report = leak_report(published, groups=patients)
    assert report["shared_origins"] > 0 and report["derived_kinds"].get("smote", 0) > 0
    assert report["synthetic_in_test"] > 0 and report["shared_patients"] > 0
    assert "SMOTE (k=5) on the whole dataset" in published.describe()
    # the synthetic training rows sit next to test originals: the leak is real, not bookkeeping
    origin = published.samples["origin"].to_numpy()
    test_origins = set(
        origin[published.test][published.samples["kind"].to_numpy()[published.test] == "original"]
    )
    leaked = [
        r
        for r in published.train
        if published.samples["kind"].iat[r] == "smote" and origin[r] in test_origins
    ]
    assert leaked
    dist = [np.linalg.norm(published.X[r] - X[origin[r]]) for r in leaked]
    spread = np.median(np.linalg.norm(X - X.mean(0), axis=1))
    assert np.median(dist) < spread


def test_leak_free_reports_zero_and_keeps_test_natural(data):
    X, y, patients = data
    split = make_split(
        y,
        "leak_free",
        X=X,
        groups=patients,
        balance="smote",
        augment_copies=1,
        fractions=(0.7, 0.15, 0.15),
        paper_order=("balance", "augment", "split"),
        seed=0,
    )
    report = leak_report(split, groups=patients)
    assert report == {
        "shared_origins": 0,
        "derived_in_train": 0,
        "derived_kinds": {},
        "synthetic_in_test": 0,
        "shared_patients": 0,
        "val_test_shared_origins": 0,
    }
    assert describe_leaks(report) == "no leak found"
    kinds = split.samples["kind"].to_numpy()
    assert set(kinds[split.test]) == {"original"} and set(kinds[split.val]) == {"original"}
    assert {"smote", "augment"} <= set(kinds[split.train])
    # the test set keeps the natural class proportions (60:24:12), the training set is balanced
    test_counts = np.bincount(split.samples["y"].to_numpy()[split.test], minlength=3)
    assert test_counts[0] > 2 * test_counts[2]
    train_counts = np.bincount(
        split.samples["y"].to_numpy()[split.train[kinds[split.train] != "augment"]]
    )
    assert train_counts.min() == train_counts.max()
    np.testing.assert_array_equal(split.fit_rows, split.train)
    assert split.describe().startswith("leak_free: stratified patient-grouped split")


def test_published_order_is_observable_in_the_steps(data):
    _, y, _ = data
    before = make_split(
        y,
        "published",
        balance="replicate",
        augment_copies=2,
        paper_order=("scale", "balance", "augment", "split"),
    )
    after = make_split(y, "published", balance="replicate", paper_order=("split", "balance"))
    assert before.steps[0].startswith("replication oversampling (paper 04) on the whole dataset")
    assert "fitted on all samples before the split" in before.describe()
    assert after.steps[1].startswith("replication oversampling (paper 04) on the training set only")
    assert leak_report(after)["shared_origins"] == 0 < leak_report(before)["shared_origins"]
    assert leak_report(before)["shared_patients"] is None
    assert "patient overlap unknown" in describe_leaks(leak_report(before))


def test_make_split_bad_input(data):
    X, y, patients = data
    with pytest.raises(ValueError, match="protocol"):
        make_split(y, "cheating")
    with pytest.raises(ValueError, match="paper_order"):
        make_split(y, "published", paper_order=("balance",))
    with pytest.raises(ValueError, match="patient ids"):
        make_split(y, "leak_free", groups=patients[:5])
