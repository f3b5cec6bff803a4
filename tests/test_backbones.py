import keras
import numpy as np
import pytest

from common import backbones
from common.backbones import build_backbone, fine_tune_model

# (name, tiny input, expected feature width with the default global-average-pooling layer)
BACKEND = pytest.mark.backend  # also run under the PyTorch backend (make test-backends)
SHAPES = [
    pytest.param("mobilenetv2", 32, 1280, marks=BACKEND),
    ("resnet50", 32, 2048),
    ("resnet101", 32, 2048),
    ("vgg16", 32, 512),
    ("densenet121", 32, 1024),
    ("densenet201", 32, 1920),
    ("inceptionv3", 75, 2048),
    ("efficientnetv2m", 32, 1280),
    pytest.param("alexnet", 227, 256, marks=BACKEND),
    pytest.param("vit", 32, 64, marks=BACKEND),
]


@pytest.mark.parametrize("name,size,width", SHAPES)
def test_builders_give_documented_feature_shapes_offline(name, size, width):
    bb = build_backbone(name, input_size=size, pretrained="none")
    x = bb.preprocess(
        np.random.default_rng(0).integers(0, 256, (2, size, size, 3)).astype(np.float32)
    )
    out = bb.model.predict_on_batch(x)
    assert out.shape == (2, width) and bb.n_features == width
    assert np.all(np.isfinite(out)) and bb.weights_id == "none-seed0"


@pytest.mark.parametrize(
    "name,layer,size",
    [
        ("vgg16", "fc7", 224),
        ("vgg16", "fc2", 224),
        ("alexnet", "fc7", 227),
        ("resnet50", "pool5", 32),
    ],
)
def test_named_feature_layers(name, layer, size):
    bb = build_backbone(name, input_size=size, layer=layer)
    assert bb.model.output.shape[-1] == (2048 if layer == "pool5" else 4096)


def test_include_top_gives_class_scores():
    bb = build_backbone("alexnet", include_top=True, classes=4)
    assert bb.model.output.shape[-1] == 4 and bb.layer == "top"


def test_local_weights_file_round_trip(tmp_path):
    a = build_backbone("mobilenetv2", input_size=32, seed=1)
    path = tmp_path / "mnv2.weights.h5"
    a.model.save_weights(path)
    b = build_backbone("mobilenetv2", input_size=32, pretrained=path, seed=2)
    c = build_backbone("mobilenetv2", input_size=32, seed=2)
    # compare the weights themselves: a random-init MobileNetV2 at 32 px outputs values near 1e-12
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert any(
        not np.array_equal(wa, wc) for wa, wc in zip(a.model.get_weights(), c.model.get_weights())
    )
    assert b.weights_id.startswith("file:")
    with pytest.raises(ValueError, match="different architecture"):
        build_backbone("vgg16", input_size=32, pretrained=path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_backbone("vgg16", pretrained=tmp_path / "missing.h5")


def test_offline_imagenet_fails_with_one_line(monkeypatch):
    def offline(**kwargs):
        raise Exception(
            "URL fetch failure on https://example.invalid/mobilenet_v2_no_top.h5: None -- "
            "[Errno -2] Name or service not known"
        )

    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    with pytest.raises(RuntimeError) as err:
        build_backbone("mobilenetv2", input_size=96, pretrained="imagenet")
    message = str(err.value)
    assert (
        "\n" not in message
        and "mobilenet_v2_no_top.h5" in message
        and "pretrained='none'" in message
    )
    with pytest.raises(ValueError, match="no ImageNet weights for alexnet"):
        build_backbone("alexnet", pretrained="imagenet")


def test_bad_names():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("resnet9000")
    with pytest.raises(ValueError, match="has no layer 'conv99'"):
        build_backbone("mobilenetv2", input_size=32, layer="conv99")


@pytest.mark.backend
def test_fine_tune_model_freezes_and_trains():
    bb = build_backbone("mobilenetv2", input_size=32)
    model = fine_tune_model(
        bb,
        num_classes=3,
        trainable_layers=4,
        dropout=0.2,
        hidden=16,
        optimizer="sgd",
        learning_rate=1e-3,
    )
    assert sum(layer.trainable for layer in bb.model.layers) == 4
    assert model.output.shape[-1] == 3 and isinstance(model.optimizer, keras.optimizers.SGD)
    frozen = [keras.ops.convert_to_numpy(w).copy() for w in bb.model.layers[10].weights]
    rng = np.random.default_rng(0)
    model.fit(
        rng.random((8, 32, 32, 3)).astype("float32"), rng.integers(0, 3, 8), epochs=1, verbose=0
    )
    for before, w in zip(frozen, bb.model.layers[10].weights):
        np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(w))
    with pytest.raises(ValueError, match="optimizer"):
        fine_tune_model(build_backbone("vit", input_size=32), 2, optimizer="lion")
    assert backbones.NAMES[-2:] == ("alexnet", "vit")


def test_weights_folder_stands_in_for_imagenet(tmp_path):
    """A folder of stand-in files (what a rehearsal writes) loads per network and size; a network
    whose file is missing names the file."""
    written = backbones.write_standin_weights(tmp_path, ["vgg16"], [32], seed=3)
    assert sorted(p.name for p in written) == [
        "vgg16-32px-full.weights.h5",
        "vgg16-32px.weights.h5",
    ]
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    from_folder = build_backbone("vgg16", input_size=32, pretrained=tmp_path, layer="fc7")
    same_seed = build_backbone("vgg16", input_size=32, pretrained="none", layer="fc7", seed=3)
    other_seed = build_backbone("vgg16", input_size=32, pretrained="none", layer="fc7", seed=4)
    assert from_folder.weights_id.startswith("file:")
    np.testing.assert_allclose(
        from_folder.model.predict(x, verbose=0), same_seed.model.predict(x, verbose=0), rtol=1e-5
    )
    assert not np.allclose(
        from_folder.model.predict(x, verbose=0), other_seed.model.predict(x, verbose=0)
    )
    with pytest.raises(FileNotFoundError, match="resnet50-32px.weights.h5"):
        build_backbone("resnet50", input_size=32, pretrained=tmp_path)
