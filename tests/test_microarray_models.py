"""Paper 01 models: the paper's layer sizes (parameter counts computed by hand),
the pipeline's protocols, and predict_subtype's refusals."""

import numpy as np
import pandas as pd
import pytest

from common import microarray_models as mm


def layer_params(model):
    return [layer.count_params() for layer in model.layers if layer.count_params()]


def test_classifiers_have_the_papers_layers():
    # CNN: conv 3*3*1*32+32; conv 3*3*32*64+64; 16->14->7->5->2, so dense (2*2*64)*128+128; out
    # 128*13+13
    assert layer_params(mm.build_cnn(13)) == [320, 18496, 32896, 1677]
    # SimpleRNN(128) on 16 features: 16*128 + 128*128 + 128
    assert layer_params(mm.build_rnn(13)) == [18560, 1677]
    assert layer_params(mm.build_mlp(13)) == [131584, 131328, 3341]
    # hybrid: conv 320; LSTM 4*(16*32+32*32+32), 4*(32*32+32*32+32); dense (7*7*32 + 32)*64+64,
    # 64*32+32, 32*13+13
    assert layer_params(mm.build_hybrid(13)) == [320, 6272, 8320, 102464, 2080, 429]


def test_autoencoder_is_dense_256_relu_then_sigmoid():
    auto, encoder = mm.build_autoencoder(12625)
    assert layer_params(auto) == [12625 * 256 + 256, 256 * 12625 + 12625]
    assert auto.layers[-1].activation.__name__ == "sigmoid"
    assert encoder.output.shape[-1] == 256


def test_model_inputs_reshape_and_reject_wrong_width():
    codes = np.arange(2 * 256, dtype="float32").reshape(2, 256)
    image, sequence = mm.model_inputs("hybrid", codes)
    assert image.shape == (2, 16, 16, 1) and sequence.shape == (2, 16, 16)
    assert sequence[1, 0, 0] == 256 and mm.model_inputs("mlp", codes).shape == (2, 256)
    with pytest.raises(ValueError, match=r"\(n, 256\)"):
        mm.model_inputs("cnn", codes[:, :100])
    with pytest.raises(ValueError, match="unknown classifier"):
        mm.build_classifier("svm", 3)


def toy_data(n_per_class=8, n_features=40, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], [n_per_class * 2, n_per_class, n_per_class])
    X = rng.normal(size=(y.size, n_features)) + 3 * np.eye(3)[y] @ rng.normal(size=(3, n_features))
    return X.astype("float32"), y


FAST = dict(ae_epochs=1, epochs=1, batch_size=16, eager=True)


def test_leak_free_rounds_fit_everything_on_training_folds():
    X, y = toy_data()
    out = mm.leak_free_rounds(X, y, smote=True, folds=2, seed=0, **FAST)
    assert sorted(np.unique(out["fold"])) == [0, 1], "every sample is tested exactly once"
    first = out["first"]
    np.testing.assert_allclose(first["scaler"].mean_, X[first["train"]].mean(axis=0), rtol=1e-5)
    assert not np.allclose(first["scaler"].mean_, X.mean(axis=0))
    for p in out["proba"].values():
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-4)
    assert set(out["proba"]) == {*mm.CLASSIFIERS, "logreg"}


def test_published_round_balances_the_whole_set_before_splitting():
    X, y = toy_data()
    out = mm.published_round(X, y, smote=True, test_fraction=0.25, seed=0, **FAST)
    samples = out["split"].samples
    assert (samples["y"].value_counts() == 16).all(), "SMOTE on the whole set: every class up to 16"
    test_kinds = samples["kind"].to_numpy()[out["split"].test]
    assert (test_kinds == "smote").any(), "synthetic samples reach the test set, as in the paper"
    assert out["X_all"].shape == (48, X.shape[1])
    assert np.array_equal(out["autoencoder_rows"], np.arange(48)), (
        "the autoencoder saw every row, test rows included"
    )


def test_predict_subtype_reorders_probes_and_refuses_mismatches():
    X, y = toy_data()
    out = mm.leak_free_rounds(X, y, smote=False, folds=2, seed=0, **FAST)
    first = out["first"]
    names = [f"p{i}" for i in range(X.shape[1])]
    predictor = mm.SubtypePredictor(
        names,
        first["scaler"],
        first["encoder"],
        first["classifiers"]["mlp"],
        "mlp",
        ["a", "b", "c"],
    )
    frame = pd.DataFrame(X[first["test"]], columns=names)
    expected = np.array(["a", "b", "c"], dtype=object)[out["proba"]["mlp"][first["test"]].argmax(1)]
    shuffled = frame[list(reversed(names))]
    assert (mm.predict_subtype(predictor, shuffled) == expected).all()
    with pytest.raises(ValueError, match="lack 1 of the 40 probes"):
        predictor.predict(frame.drop(columns="p7"))
    with pytest.raises(ValueError, match="39 features"):
        predictor.predict(X[:3, :-1])
    bad = X[:2].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        predictor.predict(bad)


def test_predict_subtype_names_a_missing_probe_plainly():
    X, y = toy_data()
    out = mm.leak_free_rounds(X, y, smote=False, folds=2, seed=0, **FAST)
    first = out["first"]
    names = np.array([f"p{i}" for i in range(X.shape[1])])  # as a Dataset stores feature names
    predictor = mm.SubtypePredictor(
        names,
        first["scaler"],
        first["encoder"],
        first["classifiers"]["mlp"],
        "mlp",
        ["a", "b", "c"],
    )
    with pytest.raises(ValueError, match=r"\(first: 'p39'\)"):
        predictor.predict(pd.DataFrame(X[:2, :-1], columns=names[:-1]))


# ------------------------------------------------------------------ leave one series out
def series_data(seed=0):
    """Three studies; class 2 exists only in study 'c', so its samples cannot be learnt when 'c' is
    held out."""
    X, y = toy_data(n_per_class=6, seed=seed)
    studies = np.where(y == 2, "c", np.where(np.arange(y.size) % 2, "a", "b"))
    return X, y, studies


def test_leave_one_series_out_holds_each_study_out_and_scores_only_seen_classes():
    X, y, studies = series_data()
    out = mm.leave_one_series_out(X, y, studies, smote=True, models=(), seed=0, logreg_C=1.0)
    assert set(out["proba"]) == {"logreg"}, "models=() runs the baseline alone"
    assert (out["scorable"] == (y != 2)).all(), "class 2 lives in one study only"
    proba = out["proba"]["logreg"]
    np.testing.assert_allclose(proba[y != 2].sum(axis=1), 1.0, rtol=1e-6)
    assert (proba[y == 2][:, 2] == 0).all(), "a class absent from training gets no probability"
    np.testing.assert_allclose(proba[y == 2][:, :2].sum(axis=1), 1.0, rtol=1e-6)


def test_leave_one_series_out_trains_the_networks_on_the_other_studies():
    X, y, studies = series_data()
    out = mm.leave_one_series_out(X, y, studies, smote=False, models=("mlp",), seed=0, **FAST)
    assert set(out["proba"]) == {"mlp", "logreg"}
    rows = out["proba"]["mlp"][studies == "a"]
    assert rows.shape[1] == 3 and np.allclose(rows.sum(axis=1), 1.0, rtol=1e-4)
    with pytest.raises(ValueError, match="at least two series"):
        mm.leave_one_series_out(X, y, np.full(y.size, "a"), smote=False, models=(), seed=0)


def test_loso_summary_and_rows_count_the_scorable_samples():
    y = np.array([0, 0, 1, 1, 2])
    right, wrong = np.eye(3), np.eye(3)[[1, 2, 0]]
    loso = {
        "y_test": y,
        "study": np.array(["a", "a", "b", "b", "c"]),
        "scorable": np.array([1, 1, 1, 1, 0], bool),
        "proba": {"logreg": np.vstack([right[0], wrong[0], right[1], right[1], right[2]])},
    }
    pooled = {"logreg": right[y]}
    table = mm.loso_summary(loso, pooled, ["logreg"]).set_index("held-out series")
    assert (
        table.loc["a", "logreg leave-one-series-out"] == 0.5
        and table.loc["b", "logreg leave-one-series-out"] == 1.0
    )
    assert np.isnan(table.loc["c", "logreg pooled CV"]) and table.loc["c", "samples"] == 1
    assert (
        table.loc["all", "scorable"] == 4
        and table.loc["all", "logreg leave-one-series-out"] == 0.75
    )
    rows = mm.loso_metric_rows(loso, pooled, ["logreg"], n_bootstrap=200).set_index("protocol")
    assert (
        rows.loc["leave_one_series_out", "value"] == 0.75 and rows.loc["leak_free", "value"] == 1.0
    )
    assert (
        rows.loc["leave_one_series_out", "ci_low"]
        <= 0.75
        <= rows.loc["leave_one_series_out", "ci_high"]
    )
    assert set(rows["model"]) == {"logreg+SMOTE"} and set(rows["metric"]) == {"accuracy_scorable"}


def test_accuracy_with_ci():
    value, low, high = mm.accuracy_with_ci(
        np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), n_bootstrap=500
    )
    assert value == 0.75 and 0 <= low <= value <= high <= 1
    assert all(np.isnan(v) for v in mm.accuracy_with_ci(np.array([]), np.array([])))


def test_sigmoid_floor_is_the_error_of_clipping_to_the_unit_interval():
    assert mm.sigmoid_mse_floor(np.array([[-1.0, 0.5, 2.0]])) == pytest.approx(2 / 3)
    # standard normal values: E[x^2; x<0] + E[(x-1)^2; x>1] = 0.5 + 2(1 - Phi(1)) - phi(1) = 0.5754;
    # 200,000 draws (per-value SD about 1.1) give a standard error near 0.0025, so 0.01 is four of
    # them
    z = np.random.default_rng(0).normal(size=(1000, 200))
    assert mm.sigmoid_mse_floor(z) == pytest.approx(0.5754, abs=0.01)


# ------------------------------------------------------------------ the notebook's helpers
def test_profiles_name_the_same_parameters_and_the_papers_values():
    from common.runs import notebook_overrides, resolve_params

    assert {name: set(values) for name, values in mm.PROFILES.items()} == {
        name: set(mm.PROFILES["demo"]) for name in ("smoke", "demo", "paper")
    }
    paper = resolve_params(mm.PROFILES, profile="paper")
    assert paper["ae_epochs"] == 50 and paper["merge_width"] == 16382  # P165, P77
    assert paper["dataset"] == "cumida" and paper["synthetic"] is False
    assert set(mm.FIT_OPTIONS) <= set(paper)
    overrides = notebook_overrides({"epochs": 2, "folds": None, "other": 1}, mm.PROFILES)
    assert resolve_params(mm.PROFILES, profile="smoke", **overrides)["epochs"] == 2


def test_architecture_table_counts_every_layer_and_each_total():
    table = mm.architecture_table(40, 13)
    assert list(table["model"].unique()) == ["autoencoder", *mm.CLASSIFIERS]
    totals = table[table["layer"] == "total"].set_index("model")["parameters"]
    assert totals["autoencoder"] == (40 * 256 + 256) + (256 * 40 + 40)
    assert totals["cnn"] == 320 + 18496 + 32896 + 1677  # as test_classifiers_have_the_papers_layers
    assert totals["hybrid"] == 320 + 6272 + 8320 + 102464 + 2080 + 429
    layers = table[table["layer"] != "total"]
    assert (layers.groupby("model", sort=False)["parameters"].sum() == totals).all()
    assert table.loc[table["layer"] == "decoder", "output shape"].item() == "(40,)"


class _Samples:
    """The three fields of a Dataset that scored_samples reads."""

    def __init__(self, n):
        self.sample_ids = [f"GSM{i}" for i in range(n)]
        self.paths = None
        self.patients = [f"P{i // 2}" for i in range(n)]


def test_scored_samples_names_the_test_rows_and_the_smote_rows():
    from common.splits import make_split

    X, y = toy_data()
    ds = _Samples(len(y))
    split = make_split(  # SMOTE before the split, as published_round does (on unscaled rows here)
        y,
        "published",
        X=X,
        balance="smote",
        paper_order=("scale", "balance", "split"),
        smote_fallback="reduce_k",
        seed=0,
    )
    out = mm.scored_samples(ds, {"split": split}, protocol="published")
    assert out["split"] == "test" and set(out) == {"samples", "split"}
    samples, rows = out["samples"], split.samples.iloc[split.test]
    assert len(samples) == len(split.test)
    made = (rows["kind"] != "original").to_numpy()
    assert made.any() and (~made).any(), "the test rows mix original and SMOTE samples"
    origin = rows["origin"].to_numpy()
    kept = samples[~made]
    assert list(kept["sample_id"]) == [f"GSM{i}" for i in origin[~made]]
    assert list(kept["patient"]) == [f"P{i // 2}" for i in origin[~made]]
    synthetic = samples[made]
    assert (synthetic["patient"] == "").all()
    assert list(synthetic["sample"]) == [f"smote from GSM{i}" for i in origin[made]]
    assert list(synthetic["sample_id"]) == [f"smote-{i}" for i in split.test[made]]


def test_scored_samples_leak_free_scores_every_sample_out_of_fold():
    ds, fold = _Samples(6), np.array([0, 1, 0, 1, 1, 0])
    out = mm.scored_samples(ds, {"fold": fold}, protocol="leak_free")
    assert out["split"] == "out-of-fold" and out["fold"] is fold
    assert list(out["samples"]["sample_id"]) == ds.sample_ids
    with pytest.raises(ValueError, match="unknown protocol"):
        mm.scored_samples(ds, {"fold": fold}, protocol="loso")
