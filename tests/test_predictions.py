"""predictions.csv: one row per (sample, protocol, model), enough to recompute every accuracy and
macro F1.

The five notebooks' smoke runs are checked by the existing mechanism: `notebooks.check_run` (called
by
`make test-notebooks` after nbval, by `make reproduce`, and by tests/test_notebooks.py) runs
`evaluate.check_predictions` on every run. Here: the helpers on synthetic inputs, that check's
failures, and the
harness fixture notebook run end to end through `notebooks.run_notebook` (seconds, not minutes).
"""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from common import ensemble as E
from common import evaluate as ev
from common import notebooks

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "harness_notebook.ipynb"
CLASSES = ["AML", "ALL", "CLL"]


def scored(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = np.tile(np.arange(len(CLASSES)), n // len(CLASSES))
    good = (
        rng.dirichlet(np.ones(len(CLASSES)), y.size) + 0.8 * np.eye(len(CLASSES))[y]
    )  # mostly right
    return y, {
        "good": good / good.sum(1, keepdims=True),
        "noise": rng.dirichlet(np.ones(len(CLASSES)), y.size),
    }


def written_run(tmp_path, n=60):
    """A run folder with metrics.json and predictions.csv for two protocols, as a notebook writes
    them."""
    y, proba = scored(n)
    half = np.arange(y.size) % 2
    metrics = pd.concat(
        [
            ev.evaluate_models(y, proba, CLASSES, "published", n_bootstrap=0),
            ev.evaluate_models(y, proba, CLASSES, "leak_free", suffix="+SMOTE", n_bootstrap=0),
        ]
    )
    ev.write_metrics(metrics, tmp_path)
    samples = ev.sample_table(
        [f"s{i}" for i in range(y.size)],
        names=[f"img/s{i}.png" for i in range(y.size)],
        patients=[f"p{i // 4}" if i % 5 else None for i in range(y.size)],
    )
    ev.write_predictions(
        [
            ev.prediction_rows(y, proba, CLASSES, "published", samples=samples),
            ev.prediction_rows(
                y,
                proba,
                CLASSES,
                "leak_free",
                suffix="+SMOTE",
                samples=samples,
                split="out-of-fold",
                fold=half,
            ),
        ],
        tmp_path,
    )
    return metrics


def test_rows_are_tidy_and_name_every_sample(tmp_path):
    written_run(tmp_path)
    rows = ev.read_predictions(tmp_path)
    assert list(rows.columns) == ev.PREDICTION_COLUMNS + [f"score_{c}" for c in CLASSES]
    assert len(rows) == 60 * 2 * 2  # samples x models x protocols
    assert not rows.duplicated(["sample_id", "protocol", "model"]).any()
    first = rows.iloc[0]
    assert (
        first["sample_id"],
        first["sample"],
        first["patient"],
        first["split"],
        first["fold"],
    ) == ("s0", "s0.png", "", "test", ""), (
        "a file name, an unknown patient and no fold are written as such"
    )
    free = rows[rows["protocol"] == "leak_free"]
    assert set(free["model"]) == {"good+SMOTE", "noise+SMOTE"} and set(free["fold"]) == {"0", "1"}
    assert free.iloc[1]["patient"] == "p0" and free.iloc[1]["split"] == "out-of-fold"
    scores = rows[[f"score_{c}" for c in CLASSES]].to_numpy()
    assert (np.asarray(CLASSES)[scores.argmax(1)] == rows["predicted_class"]).all(), (
        "arg-max by default"
    )


def test_recomputed_accuracy_and_macro_f1_match_evaluate(tmp_path):
    metrics = written_run(tmp_path).set_index(["protocol", "model", "class", "metric"])["value"]
    recomputed = ev.metrics_from_predictions(ev.read_predictions(tmp_path))
    assert len(recomputed) == 2 * 2 * 2  # (accuracy, macro F1) x models x protocols
    for _, row in recomputed.iterrows():
        # the same confusion-matrix arithmetic in two implementations: equal to float rounding
        assert row["value"] == pytest.approx(
            metrics[(row["protocol"], row["model"], row["class"], row["metric"])], abs=1e-12
        )
    assert ev.check_predictions(tmp_path) == []


def test_an_abstaining_ensemble_recomputes_like_its_own_metrics(tmp_path):
    y, proba = scored(90, seed=3)
    scores = 0.6 * proba["good"] + 0.4 * proba["noise"]
    pred, covered = E.threshold_predict(scores, 0.5)
    assert 0 < covered.sum() < y.size, "the test needs both confident and abstained images"
    ev.write_metrics(
        E.score_all_images(y, scores, 0.5, CLASSES, protocol="published", model="ensemble"),
        tmp_path,
    )
    named = np.where(covered, np.asarray(CLASSES, dtype=object)[pred], E.ABSTAIN)
    ev.write_predictions(
        ev.prediction_rows(
            y, {"ensemble": scores}, CLASSES, "published", y_pred={"ensemble": named}
        ),
        tmp_path,
    )
    assert (ev.read_predictions(tmp_path)["predicted_class"] == E.ABSTAIN).sum() == (~covered).sum()
    assert ev.check_predictions(tmp_path) == []


def test_check_names_a_wrong_row_a_missing_model_and_a_missing_file(tmp_path):
    written_run(tmp_path)
    rows = ev.read_predictions(tmp_path)
    flipped = rows.copy()
    wrong = flipped.index[
        (flipped["model"] == "good") & (flipped["true_class"] == flipped["predicted_class"])
    ][0]
    flipped.loc[wrong, "predicted_class"] = next(
        c for c in CLASSES if c != flipped.loc[wrong, "true_class"]
    )
    ev.write_predictions(flipped, tmp_path)
    problems = ev.check_predictions(tmp_path)
    assert any("overall accuracy" in p and "'good' (published)" in p for p in problems), problems
    assert any("macro f1" in p and "'good' (published)" in p for p in problems), problems
    ev.write_predictions(rows[rows["model"] != "noise+SMOTE"], tmp_path)
    assert ev.check_predictions(tmp_path) == [
        "predictions.csv has no rows for protocol 'leak_free', model 'noise+SMOTE'"
    ]
    (tmp_path / ev.PREDICTIONS_FILE).unlink()
    assert ev.check_predictions(tmp_path) == [
        f"{tmp_path / ev.PREDICTIONS_FILE} is missing (metrics.json has "
        "accuracies; write_predictions)"
    ]


def test_a_run_without_classifier_scores_needs_no_predictions(tmp_path):
    ev.write_metrics(ev.measurement_rows({"n_samples": 60}, "published", "dataset"), tmp_path)
    assert ev.check_predictions(tmp_path) == []


def test_harness_check_fails_a_run_whose_predictions_disagree(tmp_path):
    written_run(tmp_path)
    (tmp_path / "run.json").write_text("{}")
    assert notebooks.check_run(tmp_path, []) == []
    rows = ev.read_predictions(tmp_path)
    ev.write_predictions(
        rows.assign(predicted_class=rows["true_class"]), tmp_path
    )  # every prediction made right
    assert any("'noise' (published), metrics.json" in p for p in notebooks.check_run(tmp_path, []))


def test_bad_inputs_are_refused(tmp_path):
    y, proba = scored()
    with pytest.raises(ValueError, match="samples has 3 rows for 60"):
        ev.prediction_rows(y, proba, CLASSES, "published", samples=ev.sample_table(["a", "b", "c"]))
    with pytest.raises(ValueError, match=r"shape \(60, 2\), expected \(60, 3\)"):
        ev.prediction_rows(y, {"m": proba["good"][:, :2]}, CLASSES, "published")
    with pytest.raises(ValueError, match="fold has 2 values for 60"):
        ev.prediction_rows(y, proba, CLASSES, "published", fold=[0, 1])
    twice = ev.prediction_rows(y, {"m": proba["good"]}, CLASSES, "published")
    with pytest.raises(ValueError, match="duplicate prediction row"):
        ev.write_predictions([twice, twice], tmp_path)


def test_dataset_samples_take_ids_file_names_and_patients_where_known():
    ds = SimpleNamespace(
        sample_ids=np.array(["fold_0/all/a.bmp", "fold_0/hem/b.bmp", "prelim/c.bmp"]),
        paths=np.array(["/data/fold_0/all/a.bmp", "/data/fold_0/hem/b.bmp", "/data/prelim/c.bmp"]),
        patients=np.array(["7", "8", None], dtype=object),
    )
    table = ev.dataset_samples(ds, index=[2, 0])
    assert table.to_dict("list") == {
        "sample_id": ["prelim/c.bmp", "fold_0/all/a.bmp"],
        "sample": ["c.bmp", "a.bmp"],
        "patient": ["", "7"],
    }
    bare = ev.dataset_samples(
        SimpleNamespace(sample_ids=np.array(["GSM1", "GSM2"]), paths=None, patients=None)
    )
    assert bare.to_dict("list") == {
        "sample_id": ["GSM1", "GSM2"],
        "sample": ["GSM1", "GSM2"],
        "patient": ["", ""],
    }


def test_the_harness_notebook_writes_predictions_that_reproduce_its_metrics(tmp_path):
    run_dir = notebooks.run_notebook(FIXTURE, tmp_path, profile="smoke")
    assert notebooks.check_run(run_dir, []) == []
    rows = ev.read_predictions(run_dir)
    assert rows.groupby("protocol").size().to_dict() == {
        "leak_free": 60,
        "published": 24,
    }  # smoke: 60 iris rows, 40 % test
    recomputed = ev.metrics_from_predictions(rows).set_index(
        ["protocol", "model", "class", "metric"]
    )["value"]
    metrics = pd.read_csv(run_dir / "metrics.csv").set_index(
        ["protocol", "model", "class", "metric"]
    )["value"]
    for key, value in recomputed.items():
        assert value == pytest.approx(metrics[key], abs=1e-12), (
            key
        )  # metrics.csv keeps full float precision
