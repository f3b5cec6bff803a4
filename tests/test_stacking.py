"""Paper 04: row z-score, fusion, the training rows of each ablation setting, PCA placement, stacking."""
import numpy as np
import pytest

from common import stacking as S


def test_row_zscore_normalises_each_row_not_each_column():
    X = np.array([[1.0, 2.0, 3.0], [10.0, 10.0, 10.0], [0.0, 4.0, 8.0]])
    Z = S.row_zscore(X)
    np.testing.assert_allclose(Z.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(Z[[0, 2]].std(axis=1), 1, atol=1e-12)
    assert np.all(Z[1] == 0), "a constant row stays zero instead of dividing by 0"
    np.testing.assert_allclose(Z[0], Z[2]), "rows that differ only in scale and offset become equal"


def test_fuse_zscores_each_network_separately():
    a = np.array([[1.0, 3.0], [2.0, 6.0]])
    b = np.array([[100.0, 300.0, 500.0], [1.0, 2.0, 3.0]])
    fused = S.fuse([a, b])
    assert fused.shape == (2, 5)
    np.testing.assert_allclose(fused[:, :2], S.row_zscore(a), rtol=1e-6)
    np.testing.assert_allclose(fused[:, 2:], S.row_zscore(b), rtol=1e-6)
    with pytest.raises(ValueError, match="same number of rows"):
        S.fuse([a, b[:1]])


def test_training_rows_follow_the_ablation_order():
    y = np.array([0] * 6 + [1] * 2)
    train = np.arange(8)
    plain = S.training_rows(train, y, augment=False, oversample=False)
    assert plain.tolist() == [[i, 0] for i in range(8)]
    augmented = S.training_rows(train, y, augment=True, oversample=False)
    assert len(augmented) == 16 and sorted(map(tuple, augmented[8:])) == [(i, 1) for i in range(8)]
    balanced = S.training_rows(train, y, augment=True, oversample=True, seed=0)
    counts = np.bincount(y[balanced[:, 0]])
    assert counts.tolist() == [12, 12], "oversampled up to the largest class"
    assert len({tuple(r) for r in balanced}) == len(balanced), "every replicate is a new augmented copy"
    minority = balanced[y[balanced[:, 0]] == 1]
    assert minority[:, 1].max() == 5, "2 images x (original + 5 copies) = 12 rows"
    replicas = S.training_rows(train, y, augment=False, oversample=True, seed=0)
    assert set(replicas[:, 1]) == {0}, "without augmentation the replicates are identical copies"


def test_pca_is_fitted_where_the_protocol_says():
    rng = np.random.default_rng(0)
    X_tr, y_tr = rng.normal(size=(40, 6)), np.repeat([0, 1], 20)
    X_te = rng.normal(size=(10, 6)) + 50  # far away: PCA fitted with them has a different mean
    on_train = S.fit_predict(X_tr, y_tr, X_te, 0.9, pca_fit="train", rf_trees=10)
    on_all = S.fit_predict(X_tr, y_tr, X_te, 0.9, pca_fit="all", rf_trees=10)
    np.testing.assert_allclose(on_train["pca"].mean_, X_tr.mean(axis=0))
    np.testing.assert_allclose(on_all["pca"].mean_, np.vstack([X_tr, X_te]).mean(axis=0))
    assert on_train["proba"].shape == (10, 2) and np.allclose(on_train["proba"].sum(1), 1)
    without = S.fit_predict(X_tr, y_tr, X_te, None, rf_trees=10)
    assert without["pca"] is None and without["n_components"] is None
    with pytest.raises(ValueError, match="pca_fit"):
        S.fit_predict(X_tr, y_tr, X_te, 0.9, pca_fit="test")


def test_stacking_learns_a_separable_problem():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 30)
    X = rng.normal(size=(90, 8)) + 4 * np.eye(3, 8)[y]
    out = S.fit_predict(X[::2], y[::2], X[1::2], None, rf_trees=20)
    assert (out["proba"].argmax(1) == y[1::2]).mean() > 0.9
    names = [name for name, _ in out["model"].estimators]
    assert names == ["svm", "rf"] and type(out["model"].final_estimator_).__name__ == "LogisticRegression"


def test_subset_counts_scale_down_together():
    assert S.subset_counts({0: 1000, 1: 1000}, {0: 504, 1: 689}) == {0: 504, 1: 689}
    assert S.subset_counts({0: 252, 1: 1000}, {0: 504, 1: 689}) == {0: 252, 1: 344}


def test_svm_is_fitcecoc_like_linear_one_vs_rest_with_scores():
    """The paper trains "a distinct binary SVM classifier ... for every class" with fitcecoc (linear by default)."""
    from sklearn.svm import LinearSVC

    stacker = S.build_stacker(rf_trees=5)
    svm = dict(stacker.estimators)["svm"][-1]
    assert isinstance(svm, LinearSVC) and svm.multi_class == "ovr"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 6)) + np.repeat(np.eye(3, 6) * 3, 20, axis=0)
    y = np.repeat(np.arange(3), 20)
    svm.fit(X, y)
    assert svm.decision_function(X).shape == (60, 3), "one score per class: usable for ROC curves"


def test_fine_tuned_extractor_is_trained_validated_kept_and_reused(tmp_path, monkeypatch, capsys):
    """The paper fine-tunes its three CNNs (new top layer, Adam, validation every 30 mini-batches) before extraction."""
    from common import data
    from common.backbones import build_backbone
    from common.data.synth import synth_aml_mll
    from common.imaging import hsv_segment_hook

    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    root = synth_aml_mll(tmp_path / "aml", n_per_class=4, patients_per_class=2, size=48, seed=0)
    ds = data.load("aml_mll", root)
    y = np.array([ds.classes.index(label) for label in ds.labels])
    kw = dict(image_size=32, pretrained="none", epochs=2, batch_size=4, learning_rate=1e-3, segment=hsv_segment_hook(),
              data_key={"fingerprint": ds.fingerprint}, validate_every=2, validation_cells=6)
    tuned, history = S.fine_tune_extractor("mobilenetv2", "gap", (ds.paths, y), (ds.paths, y), 5, **kw)
    assert history["validation_every_steps"][:2] == [2, 4] and len(history["validation_accuracy"]) == 5  # 10 steps
    assert tuned.weights_id.startswith("finetuned:") and tuned.output_shape == (1280,)
    batch = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    frozen = build_backbone("mobilenetv2", input_size=32, pretrained="none", seed=0)
    assert not np.allclose(tuned.model.predict(tuned.preprocess(batch), verbose=0),
                           frozen.model.predict(frozen.preprocess(batch), verbose=0)), "training changed the extractor"
    again, _ = S.fine_tune_extractor("mobilenetv2", "gap", (ds.paths, y), (ds.paths, y), 5, **kw)
    assert "reusing" in capsys.readouterr().out and again.weights_id == tuned.weights_id
    np.testing.assert_allclose(again.model.predict(again.preprocess(batch), verbose=0),
                               tuned.model.predict(tuned.preprocess(batch), verbose=0), rtol=1e-5, atol=1e-5)
