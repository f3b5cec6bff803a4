import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from common import evaluate as ev

# Hand-computed example. Confusion matrix (rows true, columns predicted):
#   [[2, 1, 0],
#    [0, 1, 1],
#    [0, 0, 1]]
Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]
NAMES = ["a", "b", "c"]


def value(rows, cls, metric):
    hit = rows[(rows["class"] == cls) & (rows["metric"] == metric)]
    assert len(hit) == 1, (cls, metric)
    return hit["value"].iloc[0]


def test_specificity_and_one_vs_rest_accuracy_by_hand():
    cm = ev.confusion(Y_TRUE, Y_PRED)
    np.testing.assert_array_equal(cm, [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    # a: TN=3, FP=0 -> 1; b: TN=3, FP=1 -> 3/4; c: TN=4, FP=1 -> 4/5
    np.testing.assert_allclose(ev.specificity_from_confusion(cm), [1.0, 0.75, 0.8])
    # (TP+TN)/n: a (2+3)/6, b (1+3)/6, c (1+4)/6
    np.testing.assert_allclose(ev.one_vs_rest_accuracy(cm), [5 / 6, 4 / 6, 5 / 6])


def test_evaluate_rows_by_hand():
    rows = ev.evaluate(Y_TRUE, Y_PRED, class_names=NAMES, n_bootstrap=0)
    assert list(rows.columns) == ev.ROW_COLUMNS
    assert value(rows, "overall", "accuracy") == pytest.approx(4 / 6)
    assert value(rows, "a", "precision") == pytest.approx(1.0)
    assert value(rows, "b", "precision") == pytest.approx(0.5)
    assert value(rows, "a", "sensitivity") == pytest.approx(2 / 3)
    assert value(rows, "c", "specificity") == pytest.approx(0.8)
    assert value(rows, "macro", "specificity") == pytest.approx((1 + 0.75 + 0.8) / 3)
    # weighted by support 3, 2, 1
    assert value(rows, "weighted", "sensitivity") == pytest.approx(
        (3 * 2 / 3 + 2 * 0.5 + 1 * 1) / 6
    )
    assert value(rows, "b", "support") == 2
    assert rows["ci_low"].isna().all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_arithmetic_agrees_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 3, 200))
    p[p == 3] = 0  # class 3 is never predicted
    rows = ev.evaluate(y, p, n_bootstrap=0)
    for avg in ("macro", "weighted"):
        pr, rc, f1, _ = skm.precision_recall_fscore_support(y, p, average=avg, zero_division=0)
        assert value(rows, avg, "precision") == pytest.approx(pr)
        assert value(rows, avg, "sensitivity") == pytest.approx(rc)
        assert value(rows, avg, "f1") == pytest.approx(f1)
    assert value(rows, "3", "precision") == 0.0, (
        "a class never predicted has precision 0, not an error"
    )
    assert value(rows, "overall", "accuracy") == pytest.approx(skm.accuracy_score(y, p))


def test_rank_auc_agrees_with_sklearn_including_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 150)
    score = np.round(rng.random((150, 3)), 1)  # many ties
    rows = ev.evaluate(y, score.argmax(1), y_score=score, n_bootstrap=0)
    for j in range(3):
        assert value(rows, str(j), "auc") == pytest.approx(skm.roc_auc_score(y == j, score[:, j]))
    per_class = [skm.roc_auc_score(y == j, score[:, j]) for j in range(3)]
    assert value(rows, "macro", "auc") == pytest.approx(np.mean(per_class))
    onehot = np.eye(3)[y]
    assert value(rows, "micro", "auc") == pytest.approx(
        skm.roc_auc_score(onehot, score, average="micro")
    )


def test_binary_scores_may_be_one_column():
    y = np.array([0, 0, 1, 1, 1, 0])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.9, 0.2])
    rows = ev.evaluate(y, (s > 0.5).astype(int), y_score=s, n_bootstrap=0)
    assert value(rows, "1", "auc") == pytest.approx(skm.roc_auc_score(y, s))
    assert value(rows, "0", "auc") == pytest.approx(skm.roc_auc_score(y == 0, 1 - s))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"y_true": [], "y_pred": []}, "empty"),
        ({"y_true": [0, 1, 1], "y_pred": [0, 1]}, "shape"),
        (
            {"y_true": [0, 1, 1], "y_pred": [0, 1, 2], "labels": [0, 1]},
            r"y_pred holds label\(s\) \[2\]",
        ),
        (
            {"y_true": [0, 1, 1], "y_pred": [0, 1, 1], "labels": [0, 1, 2]},
            r"\[2\] have no sample in y_true",
        ),
        (
            {
                "y_true": [0, 1, 1],
                "y_pred": [0, 1, 1],
                "y_score": [[0.5, 0.5], [np.nan, 1], [0, 1]],
            },
            "1 NaN",
        ),
        ({"y_true": [0, 1, 1], "y_pred": [0, 1, 1], "y_score": [[0.5, 0.5], [0, 1]]}, "shape"),
        ({"y_true": [1, 1, 1], "y_pred": [1, 1, 1]}, "at least two classes"),
        ({"y_true": [0, 1], "y_pred": [0, 1], "class_names": ["macro", "b"]}, "reserved"),
    ],
)
def test_bad_input_names_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ev.evaluate(n_bootstrap=0, **kwargs)


def test_bootstrap_ci_brackets_estimate_and_is_seeded():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    score = np.eye(3)[y] * 0.5 + rng.random((300, 3))
    pred = score.argmax(1)
    a = ev.evaluate(y, pred, y_score=score, n_bootstrap=300, seed=1)
    b = ev.evaluate(y, pred, y_score=score, n_bootstrap=300, seed=1)
    pd.testing.assert_frame_equal(a, b)
    ranged = a[a["metric"] != "support"].dropna(subset=["ci_low"])
    assert len(ranged) > 20
    assert (ranged["ci_low"] <= ranged["value"] + 1e-12).all() and (
        ranged["value"] <= ranged["ci_high"] + 1e-12
    ).all()
    acc = a[(a["class"] == "overall") & (a["metric"] == "accuracy")].iloc[0]
    # binomial standard error at n=300 is about 0.028: a 95% interval spans roughly 0.11
    assert 0.05 < acc["ci_high"] - acc["ci_low"] < 0.2


def test_perfect_classifier_has_degenerate_interval():
    y = np.array([0, 1, 2] * 20)
    rows = ev.evaluate(y, y, n_bootstrap=50)
    acc = rows[(rows["class"] == "overall") & (rows["metric"] == "accuracy")].iloc[0]
    assert (acc["value"], acc["ci_low"], acc["ci_high"]) == (1.0, 1.0, 1.0)


def test_curves_match_sklearn():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 120)
    score = np.eye(3)[y] * 0.3 + rng.random((120, 3))
    roc = ev.roc_curves(y, score, class_names=NAMES)
    assert set(roc) == {"a", "b", "c", "micro", "macro"}
    assert roc["b"]["auc"] == pytest.approx(skm.roc_auc_score(y == 1, score[:, 1]))
    assert roc["macro"]["auc"] == pytest.approx(np.mean([roc[n]["auc"] for n in NAMES]))
    assert roc["macro"]["tpr"][-1] == pytest.approx(1.0)
    pr = ev.pr_curves(y, score, class_names=NAMES)
    assert pr["c"]["ap"] == pytest.approx(skm.average_precision_score(y == 2, score[:, 2]))


def test_mcnemar_by_hand():
    y = np.zeros(30, dtype=int)
    a = np.zeros(30, dtype=int)  # always right
    b = a.copy()
    b[:10] = 1  # wrong on 10 samples A gets right
    out = ev.mcnemar_test(y, a, b)
    assert out["table"] == [[20, 10], [0, 0]]
    assert out["exact"] is True and out["n_discordant"] == 10
    assert out["pvalue"] == pytest.approx(2 * 0.5**10)  # two-sided exact binomial, 10 vs 0
    with pytest.raises(ValueError, match="pred_b"):
        ev.mcnemar_test(y, a, b[:5])


def test_metrics_files_round_trip_and_tables(tmp_path):
    rows = pd.concat(
        [
            ev.evaluate(Y_TRUE, Y_PRED, class_names=NAMES, model="cnn", n_bootstrap=20),
            ev.evaluate(Y_TRUE, Y_TRUE, class_names=NAMES, model="mlp", n_bootstrap=20),
        ]
    )
    json_path, csv_path = ev.write_metrics(rows, tmp_path)
    back = ev.read_metrics(tmp_path)
    assert len(back) == len(rows) and list(back.columns) == ev.ROW_COLUMNS
    np.testing.assert_allclose(back["value"], rows["value"])
    assert pd.read_csv(csv_path).shape == back.shape
    table = ev.paper_table(back, metrics=("accuracy", "precision", "f1"), protocol="published")
    assert list(table.columns) == ["model", "accuracy", "precision (macro)", "f1 (macro)"]
    assert (
        table.loc[table["model"] == "mlp", "accuracy"].iloc[0].startswith("100.00 [100.00, 100.00]")
    )
    per_class = ev.paper_table(
        back, index="class", model="cnn", metrics=("precision", "sensitivity")
    )
    assert per_class["class"].tolist() == NAMES
    assert per_class.loc[0, "precision"].startswith("100.00")
    csv_t, md_t = ev.write_table(table, tmp_path, "table5", caption="Table 5 (synthetic data)")
    assert md_t.read_text().startswith("Table 5 (synthetic data)") and "| model" in md_t.read_text()


def test_metric_writing_refuses_bad_rows(tmp_path):
    rows = ev.evaluate(Y_TRUE, Y_PRED, n_bootstrap=0)
    with pytest.raises(ValueError, match="duplicate metric row"):
        ev.write_metrics(pd.concat([rows, rows]), tmp_path)
    with pytest.raises(ValueError, match="lack column"):
        ev.write_metrics(rows.drop(columns="ci_low"), tmp_path)
    with pytest.raises(ValueError, match="no metric rows"):
        ev.write_metrics(rows.iloc[:0], tmp_path)
    assert not (tmp_path / "metrics.json").exists(), "nothing is written half-way"
    with pytest.raises(FileNotFoundError, match="make reproduce"):
        ev.read_metrics(tmp_path)
