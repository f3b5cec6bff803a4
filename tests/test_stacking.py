"""Paper 04: row z-score, fusion, the training rows of each ablation setting, PCA placement,
stacking, the profiles, the sub-sampled twin, the ViT baseline and the architecture table."""

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
    assert len({tuple(r) for r in balanced}) == len(balanced), (
        "every replicate is a new augmented copy"
    )
    minority = balanced[y[balanced[:, 0]] == 1]
    assert minority[:, 1].max() == 5, "2 images x (original + 5 copies) = 12 rows"
    replicas = S.training_rows(train, y, augment=False, oversample=True, seed=0)
    assert set(replicas[:, 1]) == {0}, "without augmentation the replicates are identical copies"


def test_pca_is_fitted_where_the_protocol_says():
    rng = np.random.default_rng(0)
    X_tr, y_tr = rng.normal(size=(40, 6)), np.repeat([0, 1], 20)
    X_te = rng.normal(size=(10, 6)) + 50  # far away: PCA fitted with them has a different mean
    on_train = S.fit_predict(X_tr, y_tr, X_te, pca_variance=0.9, pca_fit="train", rf_trees=10)
    on_all = S.fit_predict(X_tr, y_tr, X_te, pca_variance=0.9, pca_fit="all", rf_trees=10)
    np.testing.assert_allclose(on_train["pca"].mean_, X_tr.mean(axis=0))
    np.testing.assert_allclose(on_all["pca"].mean_, np.vstack([X_tr, X_te]).mean(axis=0))
    assert on_train["proba"].shape == (10, 2) and np.allclose(on_train["proba"].sum(1), 1)
    without = S.fit_predict(X_tr, y_tr, X_te, pca_variance=None, rf_trees=10)
    assert without["pca"] is None and without["n_components"] is None
    with pytest.raises(ValueError, match="pca_fit"):
        S.fit_predict(X_tr, y_tr, X_te, pca_variance=0.9, pca_fit="test")


def test_stacking_learns_a_separable_problem():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 30)
    X = rng.normal(size=(90, 8)) + 4 * np.eye(3, 8)[y]
    out = S.fit_predict(X[::2], y[::2], X[1::2], pca_variance=None, rf_trees=20)
    assert (out["proba"].argmax(1) == y[1::2]).mean() > 0.9
    names = [name for name, _ in out["model"].estimators]
    assert (
        names == ["svm", "rf"]
        and type(out["model"].final_estimator_).__name__ == "LogisticRegression"
    )


def test_subset_counts_scale_down_together():
    assert S.subset_counts({0: 1000, 1: 1000}, {0: 504, 1: 689}) == {0: 504, 1: 689}
    assert S.subset_counts({0: 252, 1: 1000}, {0: 504, 1: 689}) == {0: 252, 1: 344}


def test_svm_is_fitcecoc_like_linear_one_vs_rest_with_scores():
    """The paper trains "a distinct binary SVM classifier ... for every class" with fitcecoc
    (linear by default)."""
    from common.linear_svm import ChunkedLinearSVC

    stacker = S.build_stacker(rf_trees=5)
    svm = dict(stacker.estimators)["svm"]
    assert (
        isinstance(svm, ChunkedLinearSVC) and svm.C == 1.0
    )  # LinearSVC's problem: tests/test_linear_svm.py
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 6)) + np.repeat(np.eye(3, 6) * 3, 20, axis=0)
    y = np.repeat(np.arange(3), 20)
    svm.fit(X, y)
    assert svm.decision_function(X).shape == (60, 3), "one score per class: usable for ROC curves"


def test_fine_tuned_extractor_is_trained_validated_kept_and_reused(tmp_path, monkeypatch, capsys):
    """The paper fine-tunes its three CNNs (new top layer, Adam, validation every 30
    mini-batches) before extraction."""
    from common import data
    from common.backbones import build_backbone
    from common.data.synth import synth_aml_mll
    from common.imaging import hsv_segment_hook

    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    root = synth_aml_mll(tmp_path / "aml", n_per_class=4, patients_per_class=2, size=48, seed=0)
    ds = data.load("aml_mll", root=root)
    y = np.array([ds.classes.index(label) for label in ds.labels])
    kw = dict(
        name="mobilenetv2",
        layer="gap",
        num_classes=5,
        image_size=32,
        pretrained="none",
        epochs=2,
        batch_size=4,
        learning_rate=1e-3,
        segment=hsv_segment_hook(),
        data_key={"fingerprint": ds.fingerprint},
        validate_every=2,
        validation_cells=6,
    )
    tuned, history = S.fine_tune_extractor((ds.paths, y), (ds.paths, y), **kw)
    assert (
        history["validation_every_steps"][:2] == [2, 4] and len(history["validation_accuracy"]) == 5
    )  # 10 steps
    assert tuned.weights_id.startswith("finetuned:") and tuned.output_shape == (1280,)
    batch = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    frozen = build_backbone("mobilenetv2", input_size=32, pretrained="none", seed=0)
    assert not np.allclose(
        tuned.model.predict(tuned.preprocess(batch), verbose=0),
        frozen.model.predict(frozen.preprocess(batch), verbose=0),
    ), "training changed the extractor"
    again, _ = S.fine_tune_extractor((ds.paths, y), (ds.paths, y), **kw)
    assert "reusing" in capsys.readouterr().out and again.weights_id == tuned.weights_id
    np.testing.assert_allclose(
        again.model.predict(again.preprocess(batch), verbose=0),
        tuned.model.predict(tuned.preprocess(batch), verbose=0),
        rtol=1e-5,
        atol=1e-5,
    )


def test_fine_tune_extractor_isolated_trains_in_a_child_and_loads_the_stored_network(
    tmp_path, monkeypatch, capsys
):
    """isolate=True: the network is trained in a child process (its epochs relayed here) and this
    process loads it from the model store; a second call reuses it without a child."""
    from common import data
    from common.data.synth import synth_aml_mll
    from common.imaging import hsv_segment_hook

    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))  # the child inherits it
    ds = data.load(
        "aml_mll",
        root=synth_aml_mll(tmp_path / "aml", n_per_class=4, patients_per_class=2, size=48, seed=0),
    )
    y = np.array([ds.classes.index(label) for label in ds.labels])
    kw = dict(
        name="mobilenetv2",
        layer="gap",
        num_classes=5,
        image_size=32,
        pretrained="none",
        epochs=1,
        batch_size=4,
        learning_rate=1e-3,
        segment=hsv_segment_hook(),
        data_key={"fingerprint": ds.fingerprint, "isolated": True},
        validate_every=2,
        validation_cells=6,
    )
    tuned, history = S.fine_tune_extractor((ds.paths, y), (ds.paths, y), isolate=True, **kw)
    out = capsys.readouterr().out
    assert (
        "fine-tune mobilenetv2" in out and "reusing the trained network" in out
    )  # child's epochs, then loaded here
    assert len(history["validation_accuracy"]) == 2 and tuned.weights_id.startswith("finetuned:")
    again, _ = S.fine_tune_extractor((ds.paths, y), (ds.paths, y), isolate=True, **kw)
    assert (
        again.weights_id == tuned.weights_id
        and "fine-tune mobilenetv2" not in capsys.readouterr().out
    )


# ------------------ memory-lean stacking stage (bank on disk, fused per row set, PCA)
def _disk_bank(folder, n_cells, widths, copies, seed=0):
    """A synthetic bank on disk, as extract_bank leaves it: per network and version one float32
    .npy, memory-mapped; ``copies``: {copy k: the cells that have it}."""
    rng = np.random.default_rng(seed)
    bank = {}
    for net, width in widths.items():
        cells, matrices, keys = {}, {}, {}
        for version, held in {
            "original": np.arange(n_cells),
            0: np.arange(n_cells),
            **copies,
        }.items():
            path = folder / f"{net}-{version}.npy"
            np.save(
                path,
                (
                    rng.normal(size=(len(held), width)) * rng.uniform(0.5, 3, size=(len(held), 1))
                    + 2
                ).astype(np.float32),
            )
            cells[version], matrices[version], keys[version] = (
                np.asarray(held),
                np.load(path, mmap_mode="r"),
                path.stem,
            )
        bank[net] = S.FeatureBank(cells, matrices, keys)
    return bank


def test_fused_rows_equal_the_whole_bank_fusion_of_the_same_rows(tmp_path):
    """fused_rows reads only the rows asked for and gives what fusing every version of the whole
    bank and then picking the rows gave (the notebook's former fused_cache), bit for bit: each row's
    z-score does not depend on the other rows of its chunk."""
    copies = {1: np.array([1, 3, 4, 6]), 2: np.array([3, 6])}
    bank = _disk_bank(tmp_path, 8, {"a": 5, "b": 7}, copies)
    assert (
        isinstance(bank["a"].matrices[0], np.memmap) and bank["a"].matrices[0].dtype == np.float32
    )
    rows = np.array([[0, 0], [3, 2], [1, 1], [3, 0], [6, 2], [4, 1], [6, 1], [3, 1], [7, 0]])
    whole = {
        v: S.fuse([bank[n].matrices[v] for n in "ab"]) for v in bank["a"].versions
    }  # every version, every cell
    position = {v: {c: i for i, c in enumerate(bank["a"].cells[v])} for v in whole}
    expected = np.stack([whole[c][position[c][i]] for i, c in rows])
    got = S.fused_rows(bank, ("a", "b"), rows, segmented=True, chunk_rows=2)
    assert got.dtype == np.float32 and got.shape == (9, 12)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(
        S.fused_rows(bank, ("a", "b"), rows, segmented=False), whole["original"][rows[:, 0]]
    )
    out = np.zeros((9, 7), dtype=np.float32)
    assert S.fused_rows(bank, ("b",), rows, segmented=True, out=out) is out
    np.testing.assert_array_equal(out, expected[:, 5:])
    with pytest.raises(KeyError, match="not extracted"):
        S.fused_rows(bank, ("a",), np.array([[2, 1]]), segmented=True)  # cell 2 has no copy 1
    with pytest.raises(ValueError, match="float32"):
        S.fused_rows(bank, ("a",), rows, segmented=True, out=np.zeros((9, 5)))


def test_fit_pca_equals_the_full_svd_without_stacking_blocks():
    """The chunked covariance PCA gives PCA(svd_solver="full") on the stacked rows. Tolerances: in
    float64 both are exact to ~1e-13 relative (measured 4e-15 on the eigenvalues, 7e-14 on the
    scores), 1e-9 leaves room for other BLAS builds; in float32, "full" itself carries float32
    round-off (measured 1.5e-6 on the eigenvalues, 1e-5 on the scores), so 1e-4."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(60, 60)))[0]
    X = (
        rng.normal(size=(700, 60)) * np.exp(-np.arange(60) / 8) @ basis + 3
    )  # decaying spectrum, offset mean
    for dtype, tol in ((np.float64, 1e-9), (np.float32, 1e-4)):
        X_train, X_test = X[:600].astype(dtype), X[600:].astype(dtype)
        for share in (0.95, None, 7):
            full = PCA(n_components=share, svd_solver="full").fit(np.vstack([X_train, X_test]))
            ours = S.fit_pca([X_train, X_test], n_components=share, chunk_rows=128)
            assert ours.n_components_ == full.n_components_ and ours.components_.dtype == dtype
            np.testing.assert_allclose(
                ours.explained_variance_[:20], full.explained_variance_[:20], rtol=tol
            )
            np.testing.assert_allclose(
                ours.explained_variance_ratio_[:20], full.explained_variance_ratio_[:20], rtol=tol
            )
            np.testing.assert_allclose(ours.mean_, full.mean_, rtol=tol)
            scores, reference = ours.transform(X_test)[:, :20], full.transform(X_test)[:, :20]
            assert scores.dtype == dtype
            np.testing.assert_allclose(
                scores, reference, atol=tol * np.abs(reference).max()
            )  # same signs: same rule
    # fewer rows than columns: the full SVD itself
    few = S.fit_pca([X[:30], X[30:50]], n_components=0.95)
    np.testing.assert_array_equal(
        few.components_, PCA(0.95, svd_solver="full").fit(X[:50]).components_
    )
    on_train = S.fit_pca([X[:600]], n_components=0.95)
    np.testing.assert_allclose(on_train.mean_, X[:600].mean(axis=0))
    with pytest.raises(ValueError, match="same columns"):
        S.fit_pca([X, X[:, :5]], n_components=0.9)


def test_fit_rows_is_fit_predict_on_the_fused_rows_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    n = 60
    y = np.arange(n) % 3
    bank = _disk_bank(tmp_path, n, {"a": 6, "b": 9}, {1: np.arange(0, 40)})
    for net in bank:  # some class signal
        for v, m in bank[net].matrices.items():
            data = np.array(m)
            data[:, :3] += 4 * np.eye(3)[y[bank[net].cells[v]]]
            np.save(tmp_path / f"{net}-{v}.npy", data)
            bank[net].matrices[v] = np.load(tmp_path / f"{net}-{v}.npy", mmap_mode="r")
    train = np.concatenate(
        [
            np.stack([np.arange(40), np.zeros(40, int)], 1),
            np.stack([np.arange(40), np.ones(40, int)], 1),
        ]
    )
    test = np.arange(40, n)
    kw = dict(segmented=True, pca_variance=0.9, pca_fit="all", rf_trees=5, seed=0, label="t")
    logged = []
    first = S.fit_rows(bank, ("a", "b"), train, y, test, keep_model=True, log=logged.append, **kw)
    direct = S.fit_predict(
        S.fused_rows(bank, ("a", "b"), train, segmented=True),
        y[train[:, 0]],
        S.fused_rows(bank, ("a", "b"), np.stack([test, 0 * test], 1), segmented=True),
        pca_variance=0.9,
        pca_fit="all",
        rf_trees=5,
    )
    np.testing.assert_allclose(first["proba"], direct["proba"], atol=1e-12)  # same rows, same fit
    assert first["n_components"] == direct["n_components"] and not first["reused"] and not logged
    again = S.fit_rows(bank, ("a", "b"), train, y, test, keep_model=True, log=logged.append, **kw)
    assert again["reused"] and "reusing" in logged[0]
    np.testing.assert_array_equal(again["proba"], first["proba"])
    np.testing.assert_allclose(
        again["model"].predict_proba(
            again["pca"].transform(
                S.fused_rows(bank, ("a", "b"), np.stack([test, 0 * test], 1), segmented=True)
            )
        ),
        first["proba"],
        atol=1e-12,
    )
    assert list((tmp_path / "cache" / "stacking" / "04_patel_aml").glob("t-*/key.json"))
    other = S.fit_rows(bank, ("a", "b"), train, y, test, log=logged.append, **{**kw, "rf_trees": 6})
    assert not other["reused"] and other["model"] is None and len(logged) == 1, (
        "another setting is another entry"
    )


def test_without_pca_large_row_sets_go_through_a_scratch_file_with_the_same_result(
    tmp_path, monkeypatch
):
    """Above scratch_rows, a setting without PCA gathers its fused rows into a file-backed matrix
    (not anonymous memory); the stacker sees the same numbers, so the probabilities are identical,
    and the file is removed."""
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    n = 60
    y = np.arange(n) % 3
    bank = _disk_bank(tmp_path, n, {"a": 6, "b": 9}, {})
    train, test = np.stack([np.arange(45), np.zeros(45, int)], 1), np.arange(45, n)
    kw = dict(segmented=True, pca_variance=None, rf_trees=5, seed=0, label="s", cache=False)
    in_memory = S.fit_rows(bank, ("a", "b"), train, y, test, scratch_rows=1000, **kw)
    seen = []
    original = S._stack
    monkeypatch.setattr(S, "_stack", lambda X, *a: seen.append(type(X)) or original(X, *a))
    scratched = S.fit_rows(bank, ("a", "b"), train, y, test, scratch_rows=10, **kw)
    assert seen == [np.memmap]
    np.testing.assert_array_equal(scratched["proba"], in_memory["proba"])
    assert not list((tmp_path / "cache" / "stacking" / "scratch").iterdir())


def test_extract_bank_extracts_copies_only_for_the_cells_that_read_them(tmp_path, monkeypatch):
    from common import data, features
    from common.backbones import Backbone
    from common.data.synth import synth_aml_mll
    from common.imaging import hsv_segment_hook

    class Means:  # a stand-in network: per-channel means and maxima of each image
        calls = 0

        def predict_on_batch(self, x):
            Means.calls += 1
            return np.concatenate([x.mean(axis=(1, 2)), x.max(axis=(1, 2))], axis=1)

    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    ds = data.load(
        "aml_mll",
        root=synth_aml_mll(tmp_path / "aml", n_per_class=2, patients_per_class=1, size=24, seed=0),
    )
    net = Backbone("means", Means(), lambda b: b, 16, "none", "pool")
    kw = dict(segment=hsv_segment_hook(), size=16, seed=0, batch_size=4)
    rows = np.array([[0, 0], [1, 0], [1, 1], [4, 1], [4, 2], [7, 1], [7, 0]])
    bank = S.extract_bank(net, ds.paths, ds.fingerprint, rows=rows, **kw)
    assert bank.versions == ["original", 0, 1, 2] and bank.width == 6
    assert bank.cells[1].tolist() == [1, 4, 7] and bank.cells[2].tolist() == [4]
    assert bank.cells[0].tolist() == list(range(10)) and bank.matrices[0].shape == (10, 6)
    assert all(isinstance(m, np.memmap) and m.dtype == np.float32 for m in bank.matrices.values())
    assert bank.rows(1, [7, 1]).shape == (2, 6)
    direct = features.extract_features(
        net, ds.paths, ds.fingerprint, batch_size=4, preprocessing={"size": 16}
    )
    np.testing.assert_array_equal(
        bank.matrices["original"], direct
    )  # the same cache entry as before
    assert (
        bank.keys["original"]
        == features.cache_name(net, ds.paths, ds.fingerprint, preprocessing={"size": 16})[0]
    )
    calls = Means.calls
    other = S.extract_bank(net, ds.paths, ds.fingerprint, rows=rows[:3], **kw)
    assert Means.calls == calls + 1, (
        "original and 0 come from the cache; copy 1 of cell 1 alone is a new entry (1 batch)"
    )
    assert {v: other.keys[v] for v in ("original", 0)} == {v: bank.keys[v] for v in ("original", 0)}
    assert other.versions == ["original", 0, 1] and other.cells[1].tolist() == [1]


# ------------------------------------------------ what the notebook's steps call
def test_profiles_name_every_parameter_of_the_notebook_and_nothing_else():
    """The notebook resolves its parameters from S.PROFILES: a name missing here would be ignored
    there, a name missing in the notebook could not be set by papermill."""
    from common.paths import notebooks_dir
    from common.sweep import notebook_parameters

    names = set(notebook_parameters(notebooks_dir() / "04_patel_aml_stacking.ipynb"))
    for profile, values in S.PROFILES.items():
        assert set(values) == names - {"profile", "run"}, profile
    assert S.PROFILES["paper"]["image_size"] == 224 and S.PROFILES["paper"]["rf_trees"] == 100
    assert S.PROFILES["smoke"]["rf_trees"] == 25 and S.PROFILES["demo"]["rf_trees"] == 100


def test_subsample_to_counts_keeps_the_real_proportions():
    y = np.repeat(np.arange(3), 40)
    keep = S.subsample_to_counts(y, ["a", "b", "c"], {"a": 100, "b": 50, "c": 25}, seed=0)
    assert np.bincount(y[keep]).tolist() == [40, 20, 10]
    assert np.all(np.diff(keep) > 0), "sorted, no cell twice"
    again = S.subsample_to_counts(y, ["a", "b", "c"], {"a": 100, "b": 50, "c": 25}, seed=0)
    np.testing.assert_array_equal(keep, again)
    other = S.subsample_to_counts(y, ["a", "b", "c"], {"a": 100, "b": 50, "c": 25}, seed=1)
    assert not np.array_equal(keep, other), "the seed draws the cells"


def test_fit_setting_is_fit_rows_with_the_settings_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    n = 45
    y = np.arange(n) % 3
    bank = _disk_bank(tmp_path, n, {"a": 6, "b": 9}, {})
    train = np.stack([np.arange(30), np.zeros(30, int)], 1)
    test = np.arange(30, n)
    kw = dict(nets=("a", "b"), pca_fit="train", pca_variance=0.9, rf_trees=5, seed=0)
    proposed = S.fit_setting(
        bank, train, y, test, setting=(True, True, True, True), label="p-proposed", **kw
    )
    direct = S.fit_rows(
        bank,
        ("a", "b"),
        train,
        y,
        test,
        segmented=True,
        pca_variance=0.9,
        rf_trees=5,
        seed=0,
        cache=False,
    )
    np.testing.assert_allclose(proposed["proba"], direct["proba"], atol=1e-12)
    assert proposed["n_components"] == direct["n_components"] is not None
    baseline = S.fit_setting(
        bank, train, y, test, setting=(False, False, False, False), label="p-baseline", **kw
    )
    unsegmented = S.fit_rows(
        bank,
        ("a", "b"),
        train,
        y,
        test,
        segmented=False,
        pca_variance=None,
        rf_trees=5,
        cache=False,
    )
    assert baseline["n_components"] is None, "no PCA in a setting without it"
    np.testing.assert_allclose(baseline["proba"], unsegmented["proba"], atol=1e-12)
    stored = tmp_path / "cache" / "stacking" / "04_patel_aml"
    # the label names the networks ("+" becomes "_" in the folder's name)
    assert list(stored.glob("p-proposed-a_b-*/key.json")), "labelled with the networks"


def test_vit_baseline_trains_predicts_and_is_reused(tmp_path, monkeypatch, capsys):
    """Figure 13's ViT: trained once on the training cells, its test probabilities returned; the
    second call loads the stored network instead of training it again."""
    from common import data
    from common.data.synth import synth_aml_mll
    from common.imaging import hsv_segment_hook

    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    ds = data.load(
        "aml_mll",
        root=synth_aml_mll(tmp_path / "aml", n_per_class=4, patients_per_class=2, size=48, seed=0),
    )
    y = np.array([ds.classes.index(label) for label in ds.labels])
    cells = np.arange(len(y))
    kw = dict(
        fingerprint=ds.fingerprint,
        label="test",
        num_classes=5,
        image_size=32,
        epochs=1,
        learning_rate=1e-3,
        batch_size=4,
        segment=hsv_segment_hook(),
        seed=0,
    )
    proba = S.vit_baseline(ds.paths, y, cells[::2], cells[1::2], cells[1::2], **kw)
    assert proba.shape == (len(cells[1::2]), 5)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)  # softmax rows, float32
    assert "vit test" in capsys.readouterr().out  # its epoch log: it trained
    again = S.vit_baseline(ds.paths, y, cells[::2], cells[1::2], cells[1::2], **kw)
    out = capsys.readouterr().out
    assert "reusing the trained network" in out and "vit test" not in out
    np.testing.assert_allclose(again, proba, atol=1e-6)


def test_extractor_summary_counts_the_networks_parameters():
    from common.backbones import build_backbone

    net = build_backbone("mobilenetv2", input_size=32, pretrained="none", layer="gap", seed=0)
    row = S.extractor_summary(net)
    assert row["network"] == "mobilenetv2" and row["features"] == 1280
    assert row["input"] == "32 x 32 x 3" and row["layers"] == len(net.model.layers)
    assert row["parameters"] == net.model.count_params() > 2_000_000  # MobileNetV2 without top


def test_draw_subset_draws_table7_sizes_from_the_pool_only():
    y = np.repeat(np.arange(2), 50)
    pool = np.arange(0, 100, 2)  # 25 cells per class
    picked = S.draw_subset(y, pool, {1: 10, 0: 40}, seed=7)
    assert np.isin(picked, pool).all() and len(set(picked)) == len(picked)
    # class 0 has 25 of the 40 wanted: both classes scale by 25/40
    assert np.bincount(y[picked]).tolist() == [25, 6]
    assert y[picked[0]] == 1, "drawn in the order of the wanted classes"


def test_predict_cells_gives_the_fitted_settings_test_probabilities(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    y = np.arange(45) % 3
    bank = _disk_bank(tmp_path, 45, {"a": 6, "b": 9}, {})
    train, test = np.stack([np.arange(30), np.zeros(30, int)], 1), np.arange(30, 45)
    fitted = S.fit_rows(
        bank,
        ("a", "b"),
        train,
        y,
        test,
        segmented=True,
        pca_variance=0.9,
        rf_trees=5,
        keep_model=True,
    )
    np.testing.assert_allclose(
        S.predict_cells(fitted, bank, test, nets=("a", "b")), fitted["proba"], atol=1e-12
    )
