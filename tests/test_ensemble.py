"""Paper 05: equation 8 (weighted sum, arg-max, threshold), the grid, selection, the
corrected-image export. Expected values are worked by hand in the comments."""

import numpy as np
import pandas as pd
import pytest

from common import ensemble as E

P1 = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]])
P2 = np.array([[0.5, 0.5], [0.9, 0.1], [0.1, 0.9]])
Y = np.array([0, 0, 1])


def test_weighted_scores_and_threshold():
    s = E.weighted_scores([P1, P2], (0.7, 0.3))
    # row 1: 0.7*0.4 + 0.3*0.9 = 0.55 for class 0; 0.7*0.6 + 0.3*0.1 = 0.45 for class 1
    np.testing.assert_allclose(s[1], [0.55, 0.45])
    pred, covered = E.threshold_predict(s, 0.7)
    assert pred.tolist() == [0, 0, 1] and covered.tolist() == [
        True,
        False,
        True,
    ]  # 0.78, 0.55, 0.83
    with pytest.raises(ValueError, match="2 weights for 1 networks"):
        E.weighted_scores([P1], (0.5, 0.5))


def test_grid_scores_all_images_and_keeps_coverage_as_secondary_columns():
    table = E.grid(Y, [P1, P2], weight_sets=[(0.7, 0.3), (0.3, 0.7)], thresholds=[0.7])
    first = table.iloc[0]  # scores 0.78, 0.55, 0.83: row 1 abstains, rows 0 and 2 right
    assert first["accuracy"] == pytest.approx(2 / 3) and first["coverage"] == pytest.approx(2 / 3)
    assert first["accuracy_covered"] == 1.0
    # (0.3, 0.7): scores 0.62, 0.75, 0.87 -> covered rows 1 and 2; row 1 predicted 0 (0.75): right
    second = table.iloc[1]
    assert second["coverage"] == pytest.approx(2 / 3) and second["accuracy_covered"] == 1.0
    assert E.select(table)["weights"] == (0.7, 0.3), (
        "tie on accuracy and coverage: the first listed"
    )
    with pytest.raises(ValueError, match="cannot select by"):
        E.select(table, by="auc")


def test_selection_does_not_reward_abstaining():
    """Raising gamma from 0.7 to 0.8 drops one wrong (0.75) and one right (0.75) image: accuracy
    on the covered images rises from 3/4 to 2/2, accuracy on all images falls from 3/4 to 2/4. The
    selection keeps gamma 0.7 (selecting by covered-only accuracy would pick 0.8)."""
    proba = np.array([[0.9, 0.1], [0.75, 0.25], [0.75, 0.25], [0.1, 0.9]])
    y = np.array([0, 0, 1, 1])
    table = E.grid(y, [proba, proba], weight_sets=[(0.5, 0.5)], thresholds=[0.7, 0.8])
    assert E.select(table)["gamma"] == 0.7
    assert table["accuracy_covered"].tolist() == [0.75, 1.0] and table["accuracy"].tolist() == [
        0.75,
        0.5,
    ]


# y, confident prediction (or None: abstains) -> the (3, 4) matrix with the abstentions last
Y3 = np.array([0, 0, 1, 1, 2, 2])
PRED3 = np.array([0, 2, 1, 0, 2, 1])
COVERED3 = np.array([True, False, True, True, True, False])


def test_abstention_confusion_has_an_abstention_column():
    cm = E.abstention_confusion(Y3, PRED3, COVERED3, num_classes=3)
    assert cm.tolist() == [[1, 0, 0, 1], [1, 1, 0, 0], [0, 0, 1, 1]]
    with pytest.raises(ValueError, match=r"label\(s\) \[3\] outside 0..2"):
        E.abstention_confusion(Y3, PRED3 + 1, COVERED3, num_classes=3)


def test_abstention_is_wrong_for_its_class_and_predicts_no_class():
    """Worked by hand (6 images, 2 abstentions, 1 error: a class-1 image called 0):
    class 0: TP 1, FN 1 (abstained), FP 1 -> precision 1/2, sensitivity 1/2, TN 3,
    specificity 3/4, accuracy 4/6;
    class 1: TP 1, FN 1, FP 0 -> precision 1, sensitivity 1/2, specificity 4/4, F1 2/3,
    accuracy 5/6;
    class 2: TP 1, FN 1 (abstained), FP 0 (the abstention of a class-1 image predicts no class)
    -> same as class 1.
    Dropping the abstentions instead would give classes 0 and 2 sensitivity 1."""
    cm = E.abstention_confusion(Y3, PRED3, COVERED3, num_classes=3)
    values = E.abstention_metrics(cm, ["a", "b", "c"])
    assert values[("overall", "accuracy")] == pytest.approx(3 / 6)
    assert values[("a", "precision")] == 0.5 and values[("a", "sensitivity")] == 0.5
    assert values[("a", "specificity")] == 0.75 and values[("a", "accuracy")] == pytest.approx(
        4 / 6
    )
    for cls in ("b", "c"):
        assert values[(cls, "precision")] == 1 and values[(cls, "sensitivity")] == 0.5
        assert values[(cls, "specificity")] == 1 and values[(cls, "f1")] == pytest.approx(2 / 3)
        assert values[(cls, "accuracy")] == pytest.approx(5 / 6)
    assert values[("c", "support")] == 2, "an abstained image still counts in its class"
    assert values[("macro", "precision")] == pytest.approx(5 / 6), (
        "the abstention outcome is no class of the average"
    )
    assert values[("macro", "accuracy")] == pytest.approx(7 / 9)
    assert values[("macro", "specificity")] == pytest.approx(11 / 12)
    assert values[("weighted", "sensitivity")] == pytest.approx(0.5)
    assert not any(key[0] == E.ABSTAIN for key in values)


def test_abstention_metrics_reproduce_the_papers_selected_row_from_its_counts():
    """Figure 6 / P360: 176 Benign, 345 Early, 337 Pre, 281 Pro test images, one Pre-B image
    called Benign, no abstention. Table 3's (0.7, 0.3), gamma 0.7 rows follow (printed to 2
    decimals: tolerance 0.005 pp)."""
    cm = np.zeros((4, 5), int)
    cm[[0, 1, 2, 3], [0, 1, 2, 3]] = [176, 345, 336, 281]
    cm[2, 0] = 1
    values = {
        key: 100 * v
        for key, v in E.abstention_metrics(cm, ["Benign", "Early", "Pre", "Pro"]).items()
    }
    printed = {
        ("Benign", "precision"): 99.44,
        ("Benign", "specificity"): 99.90,
        ("Benign", "f1"): 99.72,
        ("Pre", "sensitivity"): 99.70,
        ("Pre", "f1"): 99.85,
        ("Pre", "accuracy"): 99.91,
        ("macro", "precision"): 99.86,
        ("macro", "sensitivity"): 99.93,
        ("macro", "specificity"): 99.97,
        ("macro", "f1"): 99.89,
        ("macro", "accuracy"): 99.96,
        ("overall", "accuracy"): 99.91,
    }
    for key, value in printed.items():
        assert values[key] == pytest.approx(value, abs=0.005), key


def test_score_all_images_equals_evaluate_without_abstentions_and_reports_secondary_rows():
    from common import evaluate

    rng = np.random.default_rng(0)
    scores = rng.dirichlet(np.ones(3), size=40)
    y = np.arange(40) % 3
    rows = E.score_all_images(y, scores, 0.0, ["a", "b", "c"], protocol="published", model="m")
    rows = rows.set_index(["class", "metric"])
    plain = evaluate.evaluate(
        y,
        scores.argmax(1),
        y_score=scores,
        labels=range(3),
        class_names=["a", "b", "c"],
        n_bootstrap=0,
    )
    plain = plain.set_index(["class", "metric"])["value"]
    np.testing.assert_allclose(
        rows.loc[plain.index, "value"], plain, atol=1e-12
    )  # gamma 0: nothing abstains
    assert (
        rows.loc[("overall", "coverage"), "value"] == 1.0
        and rows.loc[("overall", "abstentions"), "value"] == 0
    )
    # at gamma 0.6 some images abstain: overall accuracy counts them as errors,
    # accuracy_covered does not
    rows = E.score_all_images(
        y, scores, 0.6, ["a", "b", "c"], protocol="p", model="m", n_bootstrap=200, seed=1
    )
    rows = rows.set_index(["class", "metric"])
    confident = scores.max(1) >= 0.6
    right = scores.argmax(1) == y
    assert 0 < confident.sum() < 40
    assert rows.loc[("overall", "accuracy"), "value"] == pytest.approx(
        (right & confident).sum() / 40
    )
    assert rows.loc[("overall", "accuracy_covered"), "value"] == pytest.approx(
        right[confident].mean()
    )
    assert rows.loc[("overall", "abstentions"), "value"] == (~confident).sum()
    head = rows.loc[("overall", "accuracy")]
    assert head["ci_low"] <= head["value"] <= head["ci_high"]
    assert np.isnan(rows.loc[("overall", "abstentions"), "ci_low"])


def test_confusion_figure_shows_the_abstentions():
    from common import plots

    cm = E.abstention_confusion(Y3, PRED3, COVERED3, num_classes=3)
    fig = plots.plot_confusion_matrix(cm, ["a", "b", "c"], extra_columns=[E.ABSTAIN])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c", E.ABSTAIN]
    assert sorted(t.get_text() for t in ax.texts) == sorted(str(v) for v in cm.ravel())
    with pytest.raises(ValueError, match="does not match 3 class names"):
        plots.plot_confusion_matrix(cm, ["a", "b", "c"])


def test_dataset_table_and_count_rows():
    table = E.dataset_table({"Benign": 5, "Early": 7})
    assert table["images"].tolist() == [5, 7, 12] and table["type"].tolist() == [
        "Benign",
        "Early",
        "Total",
    ]
    assert set(table["patients"]) == {"not in the data (no patient ids)"}
    assert E.dataset_table({"Benign": 5, "Early": 7}, patients={"Benign": 2, "Early": 1})[
        "patients"
    ].tolist() == [2, 1, 3]
    rows = E.count_rows({"Benign": 5, "Early": 7}, metric="images")
    assert dict(zip(rows["class"], rows["value"])) == {"Benign": 5, "Early": 7, "overall": 12}
    assert set(rows["model"]) == {"dataset"} and set(rows["metric"]) == {"images"}


def test_corrected_images_are_exported_by_kind(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"img{i}.jpg"
        p.write_bytes(b"x" * (i + 1))
        paths.append(str(p))
    y = np.array([0, 1, 2])  # Benign, Early, Pre
    base = {"densenet201": np.array([1, 1, 0]), "resnet50": np.array([0, 0, 2])}
    table = E.corrected_images(
        y,
        base,
        np.array([0, 1, 2]),
        np.array([True, True, False]),
        paths,
        ["Benign", "Early", "Pre"],
    )
    # image 0: densenet called a benign cell Early -> fp_to_tn;
    # image 1: resnet missed Early -> fn_to_tp;
    # image 2 is not covered by the ensemble, so it is not a correction
    assert sorted(zip(table["name"], table["kind"])) == [
        ("img0.jpg", "fp_to_tn"),
        ("img1.jpg", "fn_to_tp"),
    ]
    run = tmp_path / "run"
    counts = E.copy_corrected(table, run)
    assert counts == {"fp_to_tn": 1, "fn_to_tp": 1}
    assert (run / "fp_to_tn" / "densenet201__img0.jpg").read_bytes() == b"x"
    assert len(pd.read_csv(run / "corrected_images.csv")) == 2


def test_alexnet_gets_227_or_at_least_96_px():
    assert E.alexnet_size(224) == 227 and E.alexnet_size(64) == 96 and E.alexnet_size(128) == 128


def test_fine_tune_bn_momentum_moves_running_statistics_faster(tmp_path):
    """With momentum 0.5 the BatchNorm running means move further from their initial
    zeros in the same steps than with the model's own (0.999 in MobileNetV2): the setting reaches
    the trained graph."""
    import keras

    from common import data
    from common.data.synth import synth_aria_all

    root = synth_aria_all(tmp_path / "aria", n_per_class=4, patients_per_class=2, size=96, seed=0)
    ds = data.load("aria_all", root=root)
    y = np.array([list(ds.classes).index(lab) for lab in ds.labels])
    drift = {}
    for momentum in (None, 0.5):
        model, _ = E.fine_tune(
            "mobilenetv2",
            (ds.paths, y),
            4,
            image_size=32,
            pretrained="none",
            epochs=1,
            batch_size=8,
            learning_rate=1e-3,
            checkpoint_dir=tmp_path / f"ck{momentum}",
            eager=True,
            bn_momentum=momentum,
        )
        bns = [
            layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
        ]
        assert bns and all(
            (layer.momentum == 0.5) == (momentum == 0.5) for layer in bns
        )  # None keeps the model's own
        drift[momentum] = np.mean([np.abs(np.asarray(layer.moving_mean)).mean() for layer in bns])
    assert drift[0.5] > 5 * drift[None]


def test_fine_tune_resumes_an_interrupted_run_from_its_backup(tmp_path):
    """A session killed after epoch 2 of 3 resumes at epoch 3 when fine_tune is called again;
    the backup is deleted once training completes."""
    import keras

    from common import data
    from common.data.synth import synth_aria_all

    root = synth_aria_all(tmp_path / "aria", n_per_class=2, patients_per_class=1, size=96, seed=0)
    ds = data.load("aria_all", root=root)
    y = np.array([list(ds.classes).index(lab) for lab in ds.labels])

    class Killed(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt("session killed")

    kw = dict(
        image_size=32,
        pretrained="none",
        epochs=3,
        batch_size=8,
        learning_rate=1e-3,
        checkpoint_dir=tmp_path / "ck",
        eager=True,
    )
    with pytest.raises(KeyboardInterrupt):
        E.fine_tune("mobilenetv2", (ds.paths, y), 4, callbacks=[Killed()], **kw)
    assert any((tmp_path / "ck" / "mobilenetv2").rglob("*")), "the backup survives the kill"
    epochs_run = []
    counter = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs=None: epochs_run.append(epoch)
    )
    _, history = E.fine_tune("mobilenetv2", (ds.paths, y), 4, callbacks=[counter], **kw)
    assert epochs_run == [2], "only the epoch that was not finished runs again"
    assert len(history["loss"]) == 1
    assert not (tmp_path / "ck" / "mobilenetv2").exists() or not any(
        (tmp_path / "ck" / "mobilenetv2").rglob("*")
    )


def test_prediction_table_names_the_abstentions_and_keeps_the_weighted_scores():
    scores = E.weighted_scores([P1, P2], (0.7, 0.3))  # 0.78 (class 0), 0.55 (0), 0.83 (1)
    table = E.prediction_table(Y, scores, 0.7, ["a", "b"], protocol="published", model="ens")
    assert table["predicted_class"].tolist() == ["a", E.ABSTAIN, "b"]
    np.testing.assert_allclose(table["score_a"], scores[:, 0])
    assert set(table["model"]) == {"ens"} and set(table["protocol"]) == {"published"}


def test_grid_table_names_each_setting_and_says_what_each_column_scores():
    table = E.grid_table(E.grid(Y, [P1, P2], weight_sets=[(0.7, 0.3)], thresholds=[0.7, 0.8]))
    assert table["setting"].tolist() == ["ensemble w=0.7/0.3 g=0.7", "ensemble w=0.7/0.3 g=0.8"]
    assert list(table.columns) == [
        "setting",
        "weights",
        "gamma",
        "accuracy (all test images)",
        "coverage (secondary)",
        "accuracy on covered images (secondary)",
    ]
    # gamma 0.8 covers only row 2 (0.83): 1 of 3 right on all images
    assert table["accuracy (all test images)"].tolist() == pytest.approx([2 / 3, 1 / 3])


def test_split_counts_counts_each_class_in_each_part_and_fills_absent_classes():
    y = np.array([0, 0, 1, 2, 2, 2])
    table = E.split_counts(y, {"train": np.array([0, 1, 3]), "test": np.array([2, 4, 5])}, "abc")
    assert table.loc["a"].tolist() == [2, 0] and table.loc["c"].tolist() == [1, 2]
    assert table.loc["b"].tolist() == [0, 1]


def test_network_names_put_the_papers_two_first_once():
    assert E.network_names(["mobilenetv2", "resnet50", "vgg16"]) == [
        "densenet201",
        "resnet50",
        "mobilenetv2",
        "vgg16",
    ]
    assert E.network_weights("alexnet", pretrained="imagenet") == "none"
    assert E.network_weights("alexnet", pretrained="imagenet", alexnet_weights="a.h5") == "a.h5"
    assert E.network_weights("resnet50", pretrained="imagenet") == "imagenet"


def test_profiles_resolve_and_the_notebook_overrides_only_what_it_set():
    from common.runs import notebook_overrides, resolve_params

    smoke = resolve_params(E.PROFILES, profile="smoke")
    assert smoke["epochs"] == 1 and smoke["batch_size"] == 32 and smoke["eager"] is True
    assert resolve_params(E.PROFILES, profile="paper")["image_size"] == 224
    namespace = {"epochs": 3, "image_size": None, "unrelated": 1}
    params = resolve_params(
        E.PROFILES, profile="smoke", **notebook_overrides(namespace, E.PROFILES)
    )
    assert params["epochs"] == 3 and params["image_size"] == 32


def test_architecture_table_shows_densenet201_and_resnet50_stages():
    """Dense blocks of 6/12/48/32 layers (DenseNet-201) and 3/4/6/3 bottleneck blocks
    (ResNet-50), each with a new softmax head of K outputs; stage parameters sum to the total."""
    for name, blocks in (("densenet201", [6, 12, 48, 32]), ("resnet50", [3, 4, 6, 3])):
        table = E.architecture_table(name, 4, image_size=32)
        stages = table[table["stage"].str.endswith("blocks")]
        assert stages["blocks"].tolist() == blocks, name
        assert table["output shape"].iloc[-2] == "(4,)"
        parts, total = table["parameters"].iloc[:-1], table["parameters"].iloc[-1]
        assert parts.sum() == total and table["layers"].iloc[:-1].sum() == table["layers"].iloc[-1]
