"""Paper 03: the ACRNN's exact layer list, the attention equations, ECA, the RMSProp search,
the subset rule, and the pre-processing written to disk once."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from common import acrnn as A
from common.data import stream
from common.data.synth import cached_twin
from common.imaging import wiener_dhe_watershed


def test_acrnn_has_the_papers_layers_in_order():
    model = A.build_acrnn((56, 56, 48))
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert [(c.filters, tuple(c.kernel_size), tuple(c.strides)) for c in convs] == [
        (32, (3, 5), (1, 1)), (32, (3, 5), (1, 1)), (64, (3, 1), (1, 1)), (64, (3, 1), (1, 1)),
        (128, (1, 5), (1, 1)), (128, (1, 5), (1, 1)), (256, (3, 3), (1, 1)), (256, (3, 3), (1, 1))]
    pools = [tuple(l.strides) for l in model.layers if isinstance(l, keras.layers.MaxPooling2D)]
    assert pools == [(4, 3), (4, 1), (1, 3), (2, 2)]
    names = [l.name for l in model.layers]
    for k in range(1, 9):  # BN then ReLU after every convolution
        i = names.index(f"l{k}_conv")
        assert names[i + 1:i + 3] == [f"l{k}_bn", f"l{k}_relu"]
    grus = [l for l in model.layers if isinstance(l, keras.layers.Bidirectional)]
    assert [(g.forward_layer.units, g.forward_layer.activation.__name__) for g in grus] == [(256, "tanh")] * 2
    # 56 x 56 -> pools (4,3), (4,1), (1,3), (2,2) with 'same' padding -> 2 x 4 regions of 256 channels
    assert tuple(model.get_layer("pool_7_8").output.shape[1:]) == (2, 4, 256)
    att = model.get_layer("attention")
    assert [tuple(w.shape) for w in (att.w_delta, att.w_h, att.w_a)] == [(256, 256), (512, 256), (256, 1)]


def test_l2_of_1e4_is_on_every_weight():
    model = A.build_acrnn((24, 24, 8))
    for layer in model._flatten_layers(include_self=False):
        for attr in ("kernel_regularizer", "recurrent_regularizer", "bias_regularizer", "gamma_regularizer", "beta_regularizer"):
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
    zeta = np.tanh(regions @ wd + (h @ wh)[:, None, :]) @ wa           # (4)
    expected_lam = np.exp(zeta[..., 0]) / np.exp(zeta[..., 0]).sum(1, keepdims=True)  # (5)
    np.testing.assert_allclose(np.asarray(lam), expected_lam, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(eps), (expected_lam[..., None] * regions).sum(1), rtol=1e-5, atol=1e-5)  # (6)


def test_eca_rescales_channels_by_a_sigmoid_of_their_means():
    x = np.random.default_rng(1).normal(size=(2, 4, 4, 6)).astype("float32")
    layer = A.ECA(3)
    out = np.asarray(layer(x))
    w = out / x
    assert np.all((w > 0) & (w < 1))
    np.testing.assert_allclose(w, np.broadcast_to(w[:, :1, :1, :], w.shape), rtol=1e-4)  # one weight per channel


def test_positive_precision_and_search_keeps_the_most_precise_candidate():
    y = np.array([1, 1, 0, 0])
    assert A.positive_precision(y, np.array([[0, 1], [1, 0], [0, 1], [1, 0]])) == 0.5
    assert A.positive_precision(y, np.array([[1, 0]] * 4)) == 0.0
    # fake "training": the model's validation output depends on the learning rate only
    outputs = {0.1: np.array([[0, 1], [0, 1], [0, 1], [0, 1]]),   # precision 0.5
               0.01: np.array([[0, 1], [1, 0], [1, 0], [1, 0]])}  # precision 1.0
    built = []

    def build():
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(2)])
        built.append(model)
        return model

    best, _, rows = A.rmsprop_search(build, fit=lambda m: {}, predict_val=lambda m: outputs[round(float(m.optimizer.learning_rate.numpy()), 6)],
                                     y_val=y, learning_rates=[0.1, 0.01], rhos=[0.9])
    assert best is built[1]
    assert [r["val_precision"] for r in rows] == [0.5, 1.0] and [r["selected"] for r in rows] == [False, True]


def test_balanced_subset_is_seeded_and_exact():
    y = np.array([0] * 50 + [1] * 40)
    a = A.balanced_subset(y, {0: 20, 1: 30}, seed=3)
    assert np.bincount(y[a]).tolist() == [20, 30] and len(set(a)) == 50
    assert np.array_equal(a, A.balanced_subset(y, {0: 20, 1: 30}, seed=3))
    assert not np.array_equal(a, A.balanced_subset(y, {0: 20, 1: 30}, seed=4))
    with pytest.raises(ValueError, match="fewer than the 45"):
        A.balanced_subset(y, {1: 45})


def test_preprocessing_is_written_once_and_reused(tmp_path):
    root = cached_twin("cnmc", root=tmp_path / "synthetic", n_per_class=4, patients_per_class=2, size=96, seed=0)
    assert cached_twin("cnmc", root=tmp_path / "synthetic", n_per_class=4, patients_per_class=2, size=96, seed=0) == root
    from common import data

    ds = data.load("cnmc", root)
    calls = []

    def transform(img):
        segmented, _, found = wiener_dhe_watershed(img)
        calls.append(found)
        return segmented

    paths, computed = stream.write_transformed(ds.paths[:5], root, tmp_path / "pre", transform, (64, 64))
    assert computed == 5 and len(calls) == 5 and all(p.endswith(".png") for p in paths)
    again, computed = stream.write_transformed(ds.paths[:5], root, tmp_path / "pre", transform, (64, 64))
    assert again == paths and computed == 0 and len(calls) == 5
    assert all(calls), "the watershed finds the cell in every synthetic image"
    img = stream.load_image(paths[0])
    assert img.shape == (64, 64, 3) and (img == 0).all(axis=2).mean() > 0.5, "the background is blacked out"
    with pytest.raises(stream.DataError, match="not under the dataset root"):
        stream.write_transformed([str(tmp_path / "elsewhere.png")], root, tmp_path / "pre", transform, (64, 64))


def test_spatial_backbone_layer_keeps_the_map_and_its_own_cache_key():
    from common.backbones import build_backbone
    from common.features import cache_key

    grid = build_backbone("mobilenetv2", input_size=32, layer="block_2_add", spatial=True)
    pooled = build_backbone("mobilenetv2", input_size=32, layer="block_2_add")
    assert len(grid.output_shape) == 3 and grid.n_features == int(np.prod(grid.output_shape))
    assert pooled.output_shape == (grid.output_shape[-1],)
    assert grid.layer == "block_2_add:grid" and pooled.layer == "block_2_add"
    assert cache_key(grid, ["a.png"], "fp")[0] != cache_key(pooled, ["a.png"], "fp")[0]
