"""Paper 03: the ACRNN's exact layer list and data flow (convolutions -> attention inside the
Bi-GRU -> Bi-GRU -> softmax), the attention equations, ECA, the RMSProp search, the subset
rule, Tables 2-3's values, and the pre-processing written to disk once with its facts."""

from pathlib import Path

import keras
import numpy as np
import pytest

from common import acrnn as A
from common.data import stream
from common.data.synth import cached_twin
from common.imaging import (
    wiener_dhe_watershed,
    wiener_dhe_watershed_hook,
    wiener_dhe_watershed_settings,
)


def test_acrnn_has_the_papers_layers_in_order():
    model = A.build_acrnn((56, 56, 48))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.filters, tuple(c.kernel_size), tuple(c.strides)) for c in convs] == [
        (32, (3, 5), (1, 1)),
        (32, (3, 5), (1, 1)),
        (64, (3, 1), (1, 1)),
        (64, (3, 1), (1, 1)),
        (128, (1, 5), (1, 1)),
        (128, (1, 5), (1, 1)),
        (256, (3, 3), (1, 1)),
        (256, (3, 3), (1, 1)),
    ]
    pools = [
        tuple(layer.strides)
        for layer in model.layers
        if isinstance(layer, keras.layers.MaxPooling2D)
    ]
    assert pools == [(4, 3), (4, 1), (1, 3), (2, 2)]
    names = [layer.name for layer in model.layers]
    for k in range(1, 9):  # BN then ReLU after every convolution
        i = names.index(f"l{k}_conv")
        assert names[i + 1 : i + 3] == [f"l{k}_bn", f"l{k}_relu"]
    grus = [layer for layer in model.layers if isinstance(layer, keras.layers.Bidirectional)]
    assert [g.name for g in grus] == ["l9_bigru", "l10_bigru"]
    l9_cell, l10 = grus[0].forward_layer.cell.gru, grus[1].forward_layer
    assert [(g.units, g.activation.__name__) for g in (l9_cell, l10)] == [(256, "tanh")] * 2
    # 56 x 56 -> pools (4,3), (4,1), (1,3), (2,2) with 'same' padding -> 2 x 4 regions of 256
    # channels
    assert tuple(model.get_layer("pool_7_8").output.shape[1:]) == (2, 4, 256) and A.pooled_grid(
        56, 56
    ) == (2, 4)
    # equations 4-6 inside l9, one attention per direction: W_h is E x C with E = 256, the GRU
    # unit's size
    for direction in (grus[0].forward_layer, grus[0].backward_layer):
        att = direction.cell.attention
        assert [tuple(w.shape) for w in (att.w_delta, att.w_h, att.w_a)] == [
            (256, 256),
            (256, 256),
            (256, 1),
        ]


def test_the_softmax_reads_the_second_bigru_output():
    """Section 3.4: the features go through the Bi-GRU layers, whose output feeds the FC softmax
    layer."""
    model = A.build_acrnn((24, 24, 8))
    softmax = model.get_layer("softmax")
    assert softmax.input is model.get_layer("l10_bigru").output
    x = np.random.default_rng(0).normal(size=(3, 24, 24, 8)).astype("float32")
    bigru = np.asarray(keras.Model(model.input, model.get_layer("l10_bigru").output)(x))
    kernel, bias = (np.asarray(w) for w in softmax.get_weights())
    logits = bigru @ kernel + bias
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=1e-5, atol=1e-6)


def test_each_gru_step_reads_the_attended_regional_map_with_the_previous_state_as_query():
    """Equations 4-6 with h_{t-1}: epsilon_t = sum lambda_t delta_t is the GRU's input at step t."""
    rng = np.random.default_rng(1)
    regions, channels, units, steps = 3, 5, 4, 3
    cell = A.AttentionGRUCell(units, regions, channels)
    x = rng.normal(size=(2, steps, regions * channels)).astype("float32")
    out = np.asarray(keras.layers.RNN(cell, return_sequences=True)(x))
    wd, wh, wa = (
        np.asarray(w) for w in (cell.attention.w_delta, cell.attention.w_h, cell.attention.w_a)
    )
    h = np.zeros((2, units), "float32")
    for t in range(steps):
        delta = x[:, t].reshape(2, regions, channels)
        zeta = np.tanh(delta @ wd + (h @ wh)[:, None, :]) @ wa  # (4), query h_{t-1}
        lam = np.exp(zeta[..., 0]) / np.exp(zeta[..., 0]).sum(1, keepdims=True)  # (5)
        epsilon = (lam[..., None] * delta).sum(1)  # (6)
        h = np.asarray(cell.gru(epsilon.astype("float32"), [h])[0])
        np.testing.assert_allclose(out[:, t], h, rtol=1e-4, atol=1e-5)


def test_acrnn_weights_round_trip_for_the_model_store(tmp_path):
    model = A.build_acrnn((24, 24, 8))
    x = np.random.default_rng(2).normal(size=(2, 24, 24, 8)).astype("float32")
    model.save_weights(tmp_path / "acrnn.weights.h5")
    again = A.build_acrnn((24, 24, 8))
    again.load_weights(tmp_path / "acrnn.weights.h5")
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(again(x)))


def test_pooled_grid_matches_the_model_and_a_deeper_stage_keeps_regions():
    for side in (12, 24, 28, 56):
        model = A.build_acrnn((side, side, 4))
        assert A.pooled_grid(side, side) == tuple(model.get_layer("pool_7_8").output.shape[1:3])
    assert A.pooled_grid(28, 28) == (1, 2), (
        "EfficientNetV2M stage 3 at 224 px: two regions (time steps)"
    )


def test_l2_of_1e4_is_on_every_weight():
    model = A.build_acrnn((24, 24, 8))
    for layer in model._flatten_layers(include_self=False):
        for attr in (
            "kernel_regularizer",
            "recurrent_regularizer",
            "bias_regularizer",
            "gamma_regularizer",
            "beta_regularizer",
        ):
            reg = getattr(layer, attr, None)
            if reg is not None:
                assert reg.l2 == pytest.approx(1e-4)
    assert len(model.losses) == len(model.trainable_weights), "one L2 penalty per trainable weight"


def test_region_attention_follows_equations_4_to_6():
    rng = np.random.default_rng(0)
    delta = rng.normal(size=(3, 2, 4, 5)).astype("float32")
    h = rng.normal(size=(3, 6)).astype("float32")
    layer = A.RegionAttention()
    eps, lam = layer([delta, h], return_weights=True)
    wd, wh, wa = (np.asarray(w) for w in (layer.w_delta, layer.w_h, layer.w_a))
    regions = delta.reshape(3, 8, 5)
    zeta = np.tanh(regions @ wd + (h @ wh)[:, None, :]) @ wa  # (4)
    expected_lam = np.exp(zeta[..., 0]) / np.exp(zeta[..., 0]).sum(1, keepdims=True)  # (5)
    np.testing.assert_allclose(np.asarray(lam), expected_lam, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(eps), (expected_lam[..., None] * regions).sum(1), rtol=1e-5, atol=1e-5
    )  # (6)


def test_eca_rescales_channels_by_a_sigmoid_of_their_means():
    x = np.random.default_rng(1).normal(size=(2, 4, 4, 6)).astype("float32")
    layer = A.ECA(3)
    out = np.asarray(layer(x))
    w = out / x
    assert np.all((w > 0) & (w < 1))
    np.testing.assert_allclose(
        w, np.broadcast_to(w[:, :1, :1, :], w.shape), rtol=1e-4
    )  # one weight per channel


def test_positive_precision_and_search_keeps_the_most_precise_candidate():
    y = np.array([1, 1, 0, 0])
    assert A.positive_precision(y, np.array([[0, 1], [1, 0], [0, 1], [1, 0]])) == 0.5
    assert A.positive_precision(y, np.array([[1, 0]] * 4)) == 0.0
    # fake "training": the model's validation output depends on the learning rate only
    outputs = {
        0.1: np.array([[0, 1], [0, 1], [0, 1], [0, 1]]),  # precision 0.5
        0.01: np.array([[0, 1], [1, 0], [1, 0], [1, 0]]),
    }  # precision 1.0
    built = []

    def build():
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(2)])
        built.append(model)
        return model

    best, _, rows = A.rmsprop_search(
        build,
        fit=lambda m: {},
        predict_val=lambda m: outputs[round(float(m.optimizer.learning_rate.numpy()), 6)],
        y_val=y,
        learning_rates=[0.1, 0.01],
        rhos=[0.9],
    )
    assert best is built[1]
    assert [r["val_precision"] for r in rows] == [0.5, 1.0] and [r["selected"] for r in rows] == [
        False,
        True,
    ]


def test_fit_on_grid_trains_on_the_training_rows_and_validates_on_the_others(capsys):
    rng = np.random.default_rng(3)
    grid, y = rng.normal(size=(10, 12, 12, 4)).astype("float32"), np.array([0, 1] * 5)
    model = A.compile_rmsprop(A.build_acrnn((12, 12, 4)), 1e-3, 0.9)
    history = A.fit_on_grid(
        model,
        grid,
        y,
        train=np.arange(6),
        val=np.arange(6, 10),
        epochs=2,
        batch_size=4,
        eager=True,
        label="test",
    )
    assert len(history["loss"]) == 2 and len(history["val_accuracy"]) == 2
    assert "test lr 0.001 rho 0.9 epoch 2/2" in capsys.readouterr().out


def test_balanced_subset_is_seeded_and_exact():
    y = np.array([0] * 50 + [1] * 40)
    a = A.balanced_subset(y, {0: 20, 1: 30}, seed=3)
    assert np.bincount(y[a]).tolist() == [20, 30] and len(set(a)) == 50
    assert np.array_equal(a, A.balanced_subset(y, {0: 20, 1: 30}, seed=3))
    assert not np.array_equal(a, A.balanced_subset(y, {0: 20, 1: 30}, seed=4))
    with pytest.raises(ValueError, match="fewer than the 45"):
        A.balanced_subset(y, {1: 45})


def test_preprocessing_is_written_once_and_reused(tmp_path):
    root = cached_twin(
        "cnmc", root=tmp_path / "synthetic", n_per_class=4, patients_per_class=2, size=96, seed=0
    )
    assert (
        cached_twin(
            "cnmc",
            root=tmp_path / "synthetic",
            n_per_class=4,
            patients_per_class=2,
            size=96,
            seed=0,
        )
        == root
    )
    from common import data

    ds = data.load("cnmc", root=root)
    calls = []

    def transform(img):
        segmented, _, found = wiener_dhe_watershed(img)
        calls.append(found)
        return segmented

    paths, computed = stream.write_transformed(
        ds.paths[:5], root, tmp_path / "pre", transform, (64, 64)
    )
    assert computed == 5 and len(calls) == 5 and all(p.endswith(".png") for p in paths)
    again, computed = stream.write_transformed(
        ds.paths[:5], root, tmp_path / "pre", transform, (64, 64)
    )
    assert again == paths and computed == 0 and len(calls) == 5
    assert all(calls), "the watershed finds the cell in every synthetic image"
    img = stream.load_image(paths[0])
    assert img.shape == (64, 64, 3) and (img == 0).all(axis=2).mean() > 0.5, (
        "the background is blacked out"
    )
    with pytest.raises(stream.DataError, match="not under the dataset root"):
        stream.write_transformed(
            [str(tmp_path / "elsewhere.png")], root, tmp_path / "pre", transform, (64, 64)
        )


def test_preprocessing_keeps_each_images_watershed_outcome_beside_it(tmp_path):
    """The fallback count must survive a rerun that reuses the cached images (run.json records
    it)."""
    root = cached_twin(
        "cnmc", root=tmp_path / "synthetic", n_per_class=3, patients_per_class=1, size=96, seed=0
    )
    from common import data

    ds = data.load("cnmc", root=root)
    calls = []
    hook = wiener_dhe_watershed_hook(wiener_dhe_watershed_settings())

    def transform(img):
        calls.append(1)
        return hook(img)

    paths, computed = stream.write_transformed(
        ds.paths[:4], root, tmp_path / "pre", transform, (64, 64), info=True
    )
    facts = stream.read_info(paths)
    assert computed == 4 and [set(f) for f in facts] == [{"watershed_found"}] * 4
    blank = np.zeros((64, 64, 3), np.uint8)  # nothing to segment: the watershed falls back
    assert hook(blank)[1] == {"watershed_found": False}
    again, computed = stream.write_transformed(
        ds.paths[:4], root, tmp_path / "pre", transform, (64, 64), info=True
    )
    assert computed == 0 and len(calls) == 4 and stream.read_info(again) == facts, (
        "reused with its facts"
    )
    Path(paths[0]).with_suffix(".json").unlink()  # an image cached without its facts is recomputed
    _, computed = stream.write_transformed(
        ds.paths[:4], root, tmp_path / "pre", transform, (64, 64), info=True
    )
    assert computed == 1 and stream.read_info(paths) == facts
    Path(paths[1]).with_suffix(".json").unlink()
    with pytest.raises(stream.DataError, match="missing or unreadable"):
        stream.read_info(paths)


def table2_rows():
    from common import evaluate

    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    proba = np.eye(2)[[0, 0, 1, 1, 1, 0, 1, 0]]
    return evaluate.evaluate_models(
        y,
        {"oadls-aldc": proba, "cnn": proba[::-1]},
        ["Normal", "ALL"],
        protocol="published",
        n_bootstrap=20,
        seed=0,
    )


def test_table2_keeps_the_overall_row_as_plain_accuracy_and_class_means():
    rows = table2_rows()
    values = A.per_class_values(
        rows, model="oadls-aldc", protocol="published", classes=["Normal", "ALL"]
    )
    assert list(values.columns) == ["Normal", "ALL", "Overall"] and list(values.index) == list(
        A.TABLE_METRICS
    )
    # 6 of 8 right; Normal: 3 of 4 found, 3 of 4 called Normal are right
    assert values.loc["accuracy", "Overall"] == pytest.approx(75.0)
    assert values.loc["sensitivity", "Normal"] == pytest.approx(75.0)
    for metric in ("precision", "sensitivity", "specificity", "f1"):
        assert values.loc[metric, "Overall"] == pytest.approx(
            values.loc[metric, ["Normal", "ALL"]].mean()
        )
    table = A.per_class_table(
        rows, model="oadls-aldc", protocol="published", classes=["Normal", "ALL"]
    )
    assert table["class"].tolist() == ["Normal", "ALL", "Overall"]
    assert table.loc[2, "accuracy"].startswith("75.00 [")
    with pytest.raises(ValueError, match="no accuracy row for model 'vit'"):
        A.per_class_values(rows, model="vit", protocol="published", classes=["Normal", "ALL"])


def test_comparison_values_put_models_side_by_side():
    rows = table2_rows()
    values = A.comparison_values(
        rows, models=["oadls-aldc", "cnn"], protocol="published", metrics=("accuracy", "f1")
    )
    assert list(values.columns) == ["oadls-aldc", "cnn"] and list(values.index) == [
        "accuracy",
        "f1",
    ]
    own = A.per_class_values(rows, model="cnn", protocol="published", classes=["Normal", "ALL"])
    assert values.loc["f1", "cnn"] == pytest.approx(own.loc["f1", "Overall"])


def test_spatial_backbone_layer_keeps_the_map_and_its_own_cache_key():
    from common.backbones import build_backbone
    from common.features import cache_key

    grid = build_backbone("mobilenetv2", input_size=32, layer="block_2_add", spatial=True)
    pooled = build_backbone("mobilenetv2", input_size=32, layer="block_2_add")
    assert len(grid.output_shape) == 3 and grid.n_features == int(np.prod(grid.output_shape))
    assert pooled.output_shape == (grid.output_shape[-1],)
    assert grid.layer == "block_2_add:grid" and pooled.layer == "block_2_add"
    assert cache_key(grid, ["a.png"], "fp")[0] != cache_key(pooled, ["a.png"], "fp")[0]


def test_spatial_maps_read_shallower_layers_from_one_build():
    from common.backbones import build_backbone

    maps = A.spatial_maps("mobilenetv2", ["block_2_add", "block_5_add"], input_size=32, seed=1)
    alone = build_backbone("mobilenetv2", input_size=32, layer="block_2_add", spatial=True, seed=1)
    shallow = maps["block_2_add"]
    assert (shallow.layer, shallow.weights_id, shallow.output_shape) == (
        alone.layer,
        alone.weights_id,
        alone.output_shape,
    )
    x = np.random.default_rng(0).uniform(-1, 1, size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(shallow.model(x)), np.asarray(alone.model(x)), rtol=1e-5, atol=1e-5
    )
    assert maps["block_5_add"].layer == "block_5_add:grid"
    with pytest.raises(ValueError, match="from shallow to deep"):
        A.spatial_maps("mobilenetv2", ["block_5_add", "block_2_add"], input_size=32)


# ----------------------------------------- the notebook's steps moved into common.acrnn
def test_profiles_hold_the_papers_subset_and_every_profile_the_same_names():
    from common.runs import resolve_params

    assert set(A.PROFILES) == {"smoke", "demo", "paper"}
    names = set(A.PROFILES["demo"])
    assert all(set(values) == names for values in A.PROFILES.values())
    paper = resolve_params(A.PROFILES, profile="paper")
    assert (paper["subset_normal"], paper["subset_all"]) == (1927, 1948)  # P149, Table 1
    assert paper["baselines"] == list(A.BASELINES) and not paper["synthetic"]
    assert set(A.END_TO_END) < set(A.BASELINES)


def test_starting_weights_and_disk_per_image():
    starts = A.starting_weights(["cnn", "vit", "vgg16"], pretrained="imagenet")
    assert starts == {
        "efficientnetv2m": "imagenet",
        "acrnn": "none",
        "cnn": "none",
        "vit": "none",
        "vgg16": "imagenet",
    }
    with pytest.raises(ValueError, match=r"unknown baseline\(s\) \['resnet'\]"):
        A.starting_weights(["cnn", "resnet"])
    # 224 px: PNG 150,528 + stage 2 (56 x 56 x 48) + stage 3 (28 x 28 x 80) float32 + 5,000 floats
    assert A.bytes_per_image(224) == 3 * 224**2 + 4 * 56 * 56 * 48 + 4 * 28 * 28 * 80 + 4 * 5000


def test_table1_counts_images_and_subjects_per_class_with_a_total():
    y = np.array([0, 0, 1, 1, 1])
    table = A.table1_counts(y, ["a", "a", "b", "c", "c"], classes=["Normal", "ALL"])
    assert table.index.tolist() == ["Normal", "ALL", "Total"]
    assert table["images"].tolist() == [2, 3, 5] and table["subjects"].tolist() == [1, 2, 3]


def tiny_grid(n=12, seed=5):
    rng = np.random.default_rng(seed)
    y = np.array([0, 1] * (n // 2))
    grid = rng.normal(size=(n, 8, 8, 3)).astype("float32") + y[:, None, None, None]
    return grid, y, (np.arange(0, 6), np.arange(6, 9), np.arange(9, n))


def test_search_on_grid_keeps_every_candidate_and_selects_by_validation_precision(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path))
    grid, y, rows = tiny_grid()
    options = dict(epochs=1, batch_size=4, eager=True, seed=0, key={"k": 1}, name="acrnn-p")
    model, history, candidates = A.search_on_grid(
        grid, y, rows, learning_rates=[1e-3, 1e-4], rhos=[0.9], **options
    )
    assert [(c["learning_rate"], c["rho"]) for c in candidates] == [(1e-3, 0.9), (1e-4, 0.9)]
    assert sum(c["selected"] for c in candidates) == 1 and len(history["loss"]) == 1
    stored = sorted(p.name for p in (tmp_path / "models" / "03_vinurajan").iterdir())
    assert [s.rsplit("-", 1)[0] for s in stored] == [
        "acrnn-p-lr0.0001-rho0.9",
        "acrnn-p-lr0.001-rho0.9",
    ]
    best = next(c for c in candidates if c["selected"])
    assert best["val_precision"] == max(c["val_precision"] for c in candidates)
    assert model.predict(grid[rows[1]], verbose=0).shape == (3, 2)
    again = A.search_on_grid(grid, y, rows, learning_rates=[1e-3, 1e-4], rhos=[0.9], **options)
    assert again[2] == candidates  # reused from the store: same validation scores


def test_train_selected_on_grid_returns_test_probabilities_and_reuses_them(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path))
    grid, y, rows = tiny_grid()
    setting = {"learning_rate": 1e-3, "rho": 0.9, "selected": True}
    options = dict(rmsprop=setting, epochs=1, batch_size=4, eager=True, name="deep", key={})
    proba = A.train_selected_on_grid(grid, y, rows, **options)
    assert proba.shape == (len(rows[2]), 2)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    (folder,) = (tmp_path / "models" / "03_vinurajan").iterdir()
    assert folder.name.startswith("deep-") and (folder / "key.json").is_file()
    np.testing.assert_array_equal(A.train_selected_on_grid(grid, y, rows, **options), proba)


def test_compiled_sets_the_rmsprop_setting_and_eager_mode():
    model = A.compiled(A.feature_head(4), rmsprop={"learning_rate": 0.01, "rho": 0.8}, eager=True)
    assert isinstance(model.optimizer, keras.optimizers.RMSprop) and model.run_eagerly
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.01)
    assert float(model.optimizer.rho) == pytest.approx(0.8)


def test_kept_trains_once_and_then_reuses_the_test_probabilities(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path))
    x, y = np.eye(4, dtype="float32"), np.array([0, 1, 0, 1])
    fits = []

    def fit(model, callbacks):
        fits.append(len(callbacks))
        return model.fit(x, y, epochs=1, verbose=0, callbacks=callbacks).history

    def build():
        return A.compiled(A.feature_head(4), rmsprop={"learning_rate": 1e-3, "rho": 0.9})

    first = A.kept(build, fit, lambda m: m.predict(x, verbose=0), name="head-p", key={"a": 1})
    second = A.kept(build, fit, lambda m: m.predict(x, verbose=0), name="head-p", key={"a": 1})
    assert fits == [1] and first.shape == (4, 2)  # trained once, with the resumable backup
    np.testing.assert_array_equal(first, second)


def write_images(folder, n, size=16, seed=0):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return np.asarray(paths)


def test_image_batches_stream_square_images_with_or_without_labels(tmp_path):
    paths = write_images(tmp_path, 5, size=20)
    labelled = A.image_batches(paths, np.arange(5) % 2, image_size=16, batch_size=2)
    x, y = labelled[0]
    assert x.shape == (2, 16, 16, 3) and y.tolist() == [0, 1] and len(labelled) == 3
    images_only = A.image_batches(paths, image_size=16, batch_size=4)
    assert np.asarray(images_only[0]).shape == (4, 16, 16, 3)


def test_train_baseline_trains_end_to_end_and_feature_models_per_protocol(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    paths = write_images(tmp_path / "images", 8, size=32)
    y = np.array([0, 1] * 4)
    split = {
        "published": (np.arange(4), np.arange(4, 6), np.arange(6, 8)),
        "leak_free": (np.arange(2, 6), np.arange(6, 8), np.arange(0, 2)),
    }
    setting = {"learning_rate": 1e-3, "rho": 0.9}
    options = dict(
        settings={"published": setting, "leak_free": setting},
        fingerprint="fp",
        image_size=32,
        pretrained="none",
        epochs=1,
        batch_size=4,
        eager=True,
        key={"k": 1},
    )
    for name in ("cnn_eca", "mobilenetv2"):
        proba = A.train_baseline(name, paths, y, split, **options)
        assert list(proba) == ["published", "leak_free"]
        assert all(p.shape == (2, 2) for p in proba.values())
    stored = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "cache" / "models").rglob("*-*"))
    assert {"cnn_eca-published", "cnn_eca-leak_free", "mobilenetv2-published"} <= set(stored)
    with pytest.raises(ValueError, match="not trained end to end"):
        A.train_image_model("vgg16", paths, y, split["published"], rmsprop=setting)


def test_train_feature_head_trains_five_times_the_epochs(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path))
    feats = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
    y, rows = np.array([0, 1] * 4), (np.arange(4), np.arange(4, 6), np.arange(6, 8))
    setting = {"learning_rate": 1e-3, "rho": 0.9}
    proba = A.train_feature_head(feats, y, rows, rmsprop=setting, name="vgg16", epochs=2, label="p")
    assert proba.shape == (2, 2)
    (folder,) = (tmp_path / "models" / "03_vinurajan").iterdir()
    history = __import__("json").loads((folder / "history.json").read_text())
    assert folder.name.startswith("vgg16-p-") and len(history["loss"]) == 2 * A.HEAD_EPOCH_FACTOR


def test_scored_writes_one_row_per_image_with_its_sample():
    from types import SimpleNamespace

    dataset = SimpleNamespace(
        sample_ids=np.array([f"c/{i}.png" for i in range(6)]),
        paths=np.array([f"/data/c/{i}.png" for i in range(6)]),
        patients=np.array(list("aabbcc")),
    )
    y, idx = np.array([0, 1, 1]), np.array([0, 2])
    table = A.scored(
        y,
        {"m": np.array([[0.9, 0.1], [0.2, 0.8]])},
        idx,
        dataset=dataset,
        dataset_rows=np.array([3, 1, 5]),
        classes=["Normal", "ALL"],
        protocol="published",
        split="train",
    )
    assert table["sample_id"].tolist() == ["c/3.png", "c/5.png"]
    assert table["patient"].tolist() == ["b", "c"] and set(table["split"]) == {"train"}
    assert table["score_ALL"].tolist() == [0.1, 0.8]


def test_sensitivity_table_names_each_models_layer_map_and_regions():
    rows = table2_rows()
    rows = rows.assign(model=rows["model"].replace({"cnn": "oadls-aldc [deep]"}))
    table = A.sensitivity_table(
        rows,
        layer_models={
            "main": ("oadls-aldc", (56, 56, 48)),
            "deep": ("oadls-aldc [deep]", (28, 28, 80)),
        },
    )
    by_model = table.set_index("model")
    assert list(table.columns[2:5]) == ["EfficientNetV2M layer", "map per image", "ACRNN regions"]
    assert by_model.loc["oadls-aldc", "EfficientNetV2M layer"] == "main"
    assert by_model.loc["oadls-aldc", "map per image"] == "56 x 56 x 48"
    assert by_model.loc["oadls-aldc", "ACRNN regions"] == "2 x 4"  # P99-P103's poolings at 224 px
    assert by_model.loc["oadls-aldc [deep]", "ACRNN regions"] == "1 x 2"
