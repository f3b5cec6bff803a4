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
    assert pred.tolist() == [0, 0, 1] and covered.tolist() == [True, False, True]  # 0.78, 0.55, 0.83
    with pytest.raises(ValueError, match="2 weights for 1 networks"):
        E.weighted_scores([P1], (0.5, 0.5))


def test_grid_reports_coverage_and_both_accuracies_and_select_prefers_coverage_on_ties():
    table = E.grid(Y, [P1, P2], weight_sets=[(0.7, 0.3), (0.3, 0.7)], thresholds=[0.7])
    first = table.iloc[0]
    assert first["coverage"] == pytest.approx(2 / 3)
    assert first["accuracy_covered"] == 1.0 and first["accuracy_abstain_as_error"] == pytest.approx(2 / 3)
    # (0.3, 0.7): scores 0.62, 0.75, 0.87 -> covered rows 1 and 2; row 1 predicted 0 (0.75): right
    second = table.iloc[1]
    assert second["coverage"] == pytest.approx(2 / 3) and second["accuracy_covered"] == 1.0
    assert E.select(table)["weights"] == (0.7, 0.3), "tie on accuracy and coverage: the first listed"
    with pytest.raises(ValueError, match="cannot select by"):
        E.select(table, by="auc")


def test_abstain_accuracy_counts_abstentions_as_errors():
    out = E.abstain_accuracy(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), np.array([True, True, True, False]), 200)
    assert out["value"] == 0.5 and out["coverage"] == 0.75 and out["accuracy_covered"] == pytest.approx(2 / 3)
    assert 0 <= out["ci_low"] <= 0.5 <= out["ci_high"] <= 1


def test_corrected_images_are_exported_by_kind(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"img{i}.jpg"
        p.write_bytes(b"x" * (i + 1))
        paths.append(str(p))
    y = np.array([0, 1, 2])           # Benign, Early, Pre
    base = {"densenet201": np.array([1, 1, 0]), "resnet50": np.array([0, 0, 2])}
    table = E.corrected_images(y, base, np.array([0, 1, 2]), np.array([True, True, False]), paths,
                               ["Benign", "Early", "Pre"])
    # image 0: densenet called a benign cell Early -> fp_to_tn; image 1: resnet missed Early -> fn_to_tp;
    # image 2 is not covered by the ensemble, so it is not a correction
    assert sorted(zip(table["name"], table["kind"])) == [("img0.jpg", "fp_to_tn"), ("img1.jpg", "fn_to_tp")]
    run = tmp_path / "run"
    counts = E.copy_corrected(table, run)
    assert counts == {"fp_to_tn": 1, "fn_to_tp": 1}
    assert (run / "fp_to_tn" / "densenet201__img0.jpg").read_bytes() == b"x"
    assert len(pd.read_csv(run / "corrected_images.csv")) == 2


def test_alexnet_gets_227_or_at_least_96_px():
    assert E.alexnet_size(224) == 227 and E.alexnet_size(64) == 96 and E.alexnet_size(128) == 128


def test_fine_tune_bn_momentum_moves_running_statistics_faster(tmp_path):
    """With momentum 0.5 the BatchNorm running means move further from their initial
    zeros in the same steps than with the model's own (0.999 in MobileNetV2): the setting reaches the trained graph."""
    import keras

    from common.data.synth import synth_aria_all
    from common import data

    root = synth_aria_all(tmp_path / "aria", n_per_class=4, patients_per_class=2, size=96, seed=0)
    ds = data.load("aria_all", root)
    y = np.array([list(ds.classes).index(lab) for lab in ds.labels])
    drift = {}
    for momentum in (None, 0.5):
        model, _ = E.fine_tune("mobilenetv2", (ds.paths, y), 4, image_size=32, pretrained="none", epochs=1,
                               batch_size=8, learning_rate=1e-3, checkpoint_dir=tmp_path / f"ck{momentum}", eager=True,
                               bn_momentum=momentum)
        bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
        assert bns and all((layer.momentum == 0.5) == (momentum == 0.5) for layer in bns)  # None keeps the model's own
        drift[momentum] = np.mean([np.abs(np.asarray(layer.moving_mean)).mean() for layer in bns])
    assert drift[0.5] > 5 * drift[None]


def test_fine_tune_resumes_an_interrupted_run_from_its_backup(tmp_path):
    """A session killed after epoch 2 of 3 resumes at epoch 3 when fine_tune is called again;
    the backup is deleted once training completes."""
    import keras

    from common import data
    from common.data.synth import synth_aria_all

    root = synth_aria_all(tmp_path / "aria", n_per_class=2, patients_per_class=1, size=96, seed=0)
    ds = data.load("aria_all", root)
    y = np.array([list(ds.classes).index(lab) for lab in ds.labels])

    class Killed(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt("session killed")

    kw = dict(image_size=32, pretrained="none", epochs=3, batch_size=8, learning_rate=1e-3,
              checkpoint_dir=tmp_path / "ck", eager=True)
    with pytest.raises(KeyboardInterrupt):
        E.fine_tune("mobilenetv2", (ds.paths, y), 4, callbacks=[Killed()], **kw)
    assert any((tmp_path / "ck" / "mobilenetv2").rglob("*")), "the backup survives the kill"
    epochs_run = []
    counter = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs=None: epochs_run.append(epoch))
    _, history = E.fine_tune("mobilenetv2", (ds.paths, y), 4, callbacks=[counter], **kw)
    assert epochs_run == [2], "only the epoch that was not finished runs again"
    assert len(history["loss"]) == 1
    assert not (tmp_path / "ck" / "mobilenetv2").exists() or not any((tmp_path / "ck" / "mobilenetv2").rglob("*"))
