"""Paper 02: the CAE has the paper's per-layer parameter counts at 450 px; depth-to-space
matches TensorFlow's; codes round-trip through disk; the CNN's real size is printed;
learnables leave out BatchNorm statistics; correlations and dataset counts per class."""

import numpy as np
import pandas as pd
import pytest

from common import cae


def conv_params(model):
    return [layer.count_params() for layer in model.layers if layer.count_params()]


def test_cae_has_the_papers_learnables_at_450px():
    model, encoder = cae.build_cae(image_size=450)
    assert conv_params(model) == [252, 2214, 6588, 6588, 252, 30]
    assert model.count_params() == 15924
    assert encoder.output.shape[-1] == 67500, "50 x 50 x 27 code"
    assert model.output.shape[1:] == (450, 450, 3)


def test_image_size_must_survive_the_pooling_arithmetic():
    with pytest.raises(ValueError, match="divisible by 9"):
        cae.build_cae(image_size=100)


def test_depth_to_space_matches_tensorflow():
    tf = pytest.importorskip("tensorflow")  # the reference implementation; CI's backend is TF
    x = np.arange(2 * 2 * 3 * 27, dtype="float32").reshape(2, 2, 3, 27)
    ours = np.asarray(cae.DepthToSpace(3)(x))
    np.testing.assert_array_equal(ours, tf.nn.depth_to_space(x, 3).numpy())


def test_code_cnn_parameter_count_is_far_from_the_claimed_86_5_million():
    model = cae.build_code_cnn(67500)
    # conv1 32*1*40+40, bn 4*40, ln 2*40, conv2 32*40*80+80, bn 4*80, ln 2*80, dense 80*2+2
    assert model.count_params() == 1320 + 160 + 80 + 102480 + 320 + 160 + 162


def test_learnables_leave_out_the_batchnorm_moving_statistics():
    model = cae.build_code_cnn(67500)
    # MATLAB's learnables: conv1 1320, bn gamma/beta 2*40, ln 2*40, conv2 102480, bn 2*80, ln 2*80,
    # dense 162
    assert cae.learnable_count(model) == 1320 + 80 + 80 + 102480 + 160 + 160 + 162 == 104442
    assert model.count_params() - cae.learnable_count(model) == 2 * (40 + 80), (
        "moving mean and variance per channel"
    )


def test_learnables_by_layer_are_figure_3s_list():
    model, _ = cae.build_cae(image_size=450)
    by_layer = cae.learnables_by_layer(model)
    assert list(by_layer) == [
        "enc_conv1",
        "enc_conv2",
        "enc_conv3",
        "dec_conv1",
        "dec_conv2",
        "dec_conv3",
    ]
    assert list(by_layer.values()) == [252, 2214, 6588, 6588, 252, 30]
    assert cae.learnable_count(model) == 15924


def test_correlations_are_split_by_class_and_nans_dropped():
    r = np.array([0.9, 0.5, np.nan, 0.7, 0.3])
    y = np.array([1, 0, 1, 1, 0])
    split = cae.correlations_by_class(r, y, class_names=["hem", "all"])
    np.testing.assert_array_equal(split["all"], [0.9, 0.7])
    np.testing.assert_array_equal(split["hem"], [0.5, 0.3])
    np.testing.assert_array_equal(split["overall"], [0.9, 0.5, 0.7, 0.3])
    assert split["all"].mean() != pytest.approx(split["overall"].mean()), (
        "the ALL mean is not the pooled mean"
    )


def test_correlations_by_class_rejects_misaligned_or_unknown_labels():
    with pytest.raises(ValueError, match="3 correlations for 2 labels"):
        cae.correlations_by_class([0.1, 0.2, 0.3], [0, 1], class_names=["hem", "all"])
    with pytest.raises(ValueError, match=r"label\(s\) \[2\]"):
        cae.correlations_by_class([0.1, 0.2], [0, 2], class_names=["hem", "all"])


def test_dataset_counts_images_and_subjects_per_class():
    labels = ["all", "all", "hem", "all", "hem"]
    subjects = ["A1", "A1", "H1", "A2", "H2"]
    counts = cae.dataset_counts(labels, subjects)
    assert counts == {
        "overall": {"images": 5, "subjects": 4},
        "all": {"images": 3, "subjects": 2},
        "hem": {"images": 2, "subjects": 2},
    }
    with pytest.raises(ValueError, match="no images"):
        cae.dataset_counts([], [])


def test_codes_round_trip_through_disk(tmp_path):
    from PIL import Image

    from common.data.stream import ImageBatches

    paths = []
    for i in range(5):
        p = tmp_path / f"{i}.png"
        Image.fromarray(np.full((18, 18, 3), 40 * i, dtype=np.uint8)).save(p)
        paths.append(str(p))
    model, encoder = cae.build_cae(image_size=18)
    batches = ImageBatches(paths, batch_size=2, image_size=(18, 18))
    codes = cae.encode_to_disk(encoder, batches, tmp_path / "codes.npy")
    assert codes.shape == (5, 2 * 2 * 27)
    direct = np.asarray(
        encoder.predict(
            np.stack([np.full((18, 18, 3), 40 * i / 255, "float32") for i in range(5)]), verbose=0
        )
    )
    np.testing.assert_allclose(codes, direct, rtol=1e-5, atol=1e-6)
    feed = cae.CodeBatches(codes, np.arange(5), batch_size=2, shuffle=True, seed=1)
    seen = np.concatenate([feed[i][1] for i in range(len(feed))])
    assert sorted(seen) == [0, 1, 2, 3, 4] and feed[0][0].shape[-1] == 1
    r = cae.reconstruction_correlations(
        model, ImageBatches(paths[1:], batch_size=2, image_size=(18, 18))
    )
    assert r.shape == (4,)


def test_step_decay_drops_by_the_factor_each_period():
    schedule = cae.step_decay(initial=1e-3, factor=0.1, period=5)
    assert [schedule(e) for e in (0, 4, 5, 10)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5])


def test_profiles_resolve_and_the_notebook_overrides_only_what_it_set():
    from common.runs import notebook_overrides, resolve_params

    smoke = resolve_params(cae.PROFILES, profile="smoke")
    assert (smoke["image_size"], smoke["cae_epochs"], smoke["cnn_epochs"]) == (54, 1, 2)
    paper = resolve_params(cae.PROFILES, profile="paper")
    assert (paper["image_size"], paper["cae_batch"], paper["cnn_batch"]) == (450, 6, 16)
    assert paper["synthetic"] is False
    namespace = {"profile": "smoke", "cnn_epochs": 3, "image_size": None, "unrelated": 1}
    overrides = notebook_overrides(namespace, cae.PROFILES)
    assert overrides == {"cnn_epochs": 3}
    resolved = resolve_params(cae.PROFILES, profile="smoke", **overrides)
    assert (resolved["cnn_epochs"], resolved["image_size"]) == (3, 54)
    assert set(cae.FIT_OPTIONS) <= set(resolved), "fit_round's options are all parameters"


def fake_round(calls):
    """A stand-in for fit_round: the test images' scores are (1 - seed/10, seed/10)."""

    def fit_round(train_paths, train_y, test_paths, test_y, workdir, **options):
        calls.append({"train": list(train_paths), "test": list(test_paths), **options})
        seed = options["seed"]
        score = np.tile([1 - seed / 10, seed / 10], (len(test_paths), 1))
        extra = {
            name: np.full((len(paths), 2), seed)
            for name, (paths, _) in options["extra_tests"].items()
        }
        return {"proba": {"test": score, **extra}, "correlations": np.full(len(test_paths), seed)}

    return fit_round


def test_fit_rotations_pools_each_folds_scores_in_input_order(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(cae, "fit_round", fake_round(calls))
    paths = np.array(["a", "b", "c", "d", "e", "f"])
    labels = np.array([0, 1, 1, 0, 1, 0])
    folds = np.array([0, 1, 2, 0, 1, 2])
    subjects = np.array(["s0", "s1", "s2", "s0", "s1", "s2"])
    out = cae.fit_rotations(
        paths,
        labels,
        folds=folds,
        subjects=subjects,
        workdir=tmp_path,
        fingerprint="f",
        seed=5,
        extra_tests={"prelim": (["p1", "p2"], np.array([0, 1]))},
        cae_epochs=1,
    )
    assert [call["name"] for call in calls] == ["fold0", "fold1", "fold2"]
    assert [call["seed"] for call in calls] == [5, 6, 7], "seeded seed + fold"
    assert calls[0]["test"] == ["a", "d"] and calls[0]["train"] == ["b", "c", "e", "f"]
    assert all(call["cae_epochs"] == 1 for call in calls)
    np.testing.assert_allclose(out["proba"][:, 1], [0.5, 0.6, 0.7, 0.5, 0.6, 0.7])
    np.testing.assert_array_equal(out["correlations"], [5, 6, 7, 5, 6, 7])
    assert [scores[0, 0] for scores in out["extra_proba"]["prelim"]] == [5, 6, 7]
    assert [(list(train), list(test)) for train, test in out["rotations"]][1] == (
        [0, 2, 3, 5],
        [1, 4],
    )
    # fold 0 (labels 0, 0) scored 0.5/0.5 -> argmax 0; folds 1 and 2 score class 1 higher
    assert [row["accuracy"] for row in out["per_fold"]] == [1.0, 1.0, 0.5]


def test_fit_rotations_refuses_folds_that_share_a_subject(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(cae, "fit_round", fake_round(calls))
    with pytest.raises(ValueError, match="fold 0 shares subjects"):
        cae.fit_rotations(
            np.array(["a", "b", "c"]),
            np.array([0, 1, 1]),
            folds=np.array([0, 1, 1]),
            subjects=np.array(["s0", "s0", "s1"]),
            workdir=tmp_path,
            fingerprint="f",
            seed=0,
        )
    assert calls == [], "nothing is trained before the check"


def test_score_sets_give_metrics_and_predictions_in_order():
    from types import SimpleNamespace

    dataset = SimpleNamespace(
        sample_ids=np.array([f"id{i}" for i in range(6)]),
        paths=np.array([f"img{i}.png" for i in range(6)]),
        patients=np.array(["p0", "p0", "p1", "p1", "p2", "p2"]),
    )
    y = np.array([0, 1, 0, 1])
    right = np.eye(2)[y]  # every image scored correctly
    scored = [
        cae.ScoredSet("published", "m", "test", y, right, np.array([0, 1, 2, 3])),
        cae.ScoredSet(
            "leak_free",
            "m",
            "out-of-fold",
            y,
            right[::-1],
            np.array([2, 3, 4, 5]),
            fold=np.array([0, 0, 1, 1]),
        ),
    ]
    metrics, predictions = cae.score_sets(
        scored, dataset=dataset, class_names=["hem", "all"], n_bootstrap=20, seed=0
    )
    overall = metrics[(metrics["metric"] == "accuracy") & (metrics["class"] == "overall")]
    accuracy = overall.set_index("protocol")["value"]
    assert accuracy["published"] == 1.0 and accuracy["leak_free"] == 0.0
    assert [len(table) for table in predictions] == [4, 4]
    assert list(predictions[0]["split"]) == ["test"] * 4
    assert list(predictions[1]["fold"].astype(int)) == [0, 0, 1, 1]
    assert list(predictions[1]["patient"]) == ["p1", "p1", "p2", "p2"]


def test_measurements_repeat_every_number_under_each_protocol():
    correlations = {
        "published": {"hem": np.array([0.2, 0.4]), "all": np.array([0.9])},
        "leak_free": {"hem": np.array([0.1]), "all": np.array([0.8, 0.6])},
    }
    counts = {"overall": {"images": 3, "subjects": 2}}
    tables = cae.measurements(
        correlations, architecture={"code_length": 67500}, cnn_learnables=104442, counts=counts
    )
    table = pd.concat(tables, ignore_index=True)
    r = table[table["metric"] == "pearson_r_mean"].set_index(["protocol", "class"])["value"]
    assert r[("published", "hem")] == pytest.approx(0.3)
    assert r[("leak_free", "all")] == pytest.approx(0.7)
    per_protocol = table.groupby("protocol")["metric"].apply(list)
    assert per_protocol["published"] == per_protocol["leak_free"]
    assert "learnable_parameters" in per_protocol["published"]
    assert table.query("model == 'dataset' and metric == 'subjects'")["value"].tolist() == [2, 2]
