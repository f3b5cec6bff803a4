"""Paper 02: the CAE has the paper's per-layer parameter counts at 450 px; depth-to-space
matches TensorFlow's; codes round-trip through disk; the CNN's real size is printed."""
import numpy as np
import pytest

from common import cae


def conv_params(model):
    return [layer.count_params() for layer in model.layers if layer.count_params()]


def test_cae_has_the_papers_learnables_at_450px():
    model, encoder = cae.build_cae(450)
    assert conv_params(model) == [252, 2214, 6588, 6588, 252, 30]
    assert model.count_params() == 15924
    assert encoder.output.shape[-1] == 67500, "50 x 50 x 27 code"
    assert model.output.shape[1:] == (450, 450, 3)


def test_image_size_must_survive_the_pooling_arithmetic():
    with pytest.raises(ValueError, match="divisible by 9"):
        cae.build_cae(100)


def test_depth_to_space_matches_tensorflow():
    tf = pytest.importorskip("tensorflow")  # the reference implementation; CI's backend is TF
    x = np.arange(2 * 2 * 3 * 27, dtype="float32").reshape(2, 2, 3, 27)
    ours = np.asarray(cae.DepthToSpace(3)(x))
    np.testing.assert_array_equal(ours, tf.nn.depth_to_space(x, 3).numpy())


def test_code_cnn_parameter_count_is_far_from_the_claimed_86_5_million():
    model = cae.build_code_cnn(67500)
    # conv1 32*1*40+40, bn 4*40, ln 2*40, conv2 32*40*80+80, bn 4*80, ln 2*80, dense 80*2+2
    assert model.count_params() == 1320 + 160 + 80 + 102480 + 320 + 160 + 162


def test_codes_round_trip_through_disk(tmp_path):
    from PIL import Image

    from common.data.stream import ImageBatches

    paths = []
    for i in range(5):
        p = tmp_path / f"{i}.png"
        Image.fromarray(np.full((18, 18, 3), 40 * i, dtype=np.uint8)).save(p)
        paths.append(str(p))
    model, encoder = cae.build_cae(18)
    batches = ImageBatches(paths, batch_size=2, image_size=(18, 18))
    codes = cae.encode_to_disk(encoder, batches, tmp_path / "codes.npy")
    assert codes.shape == (5, 2 * 2 * 27)
    direct = np.asarray(encoder.predict(np.stack([np.full((18, 18, 3), 40 * i / 255, "float32") for i in range(5)]), verbose=0))
    np.testing.assert_allclose(codes, direct, rtol=1e-5, atol=1e-6)
    feed = cae.CodeBatches(codes, np.arange(5), batch_size=2, shuffle=True, seed=1)
    seen = np.concatenate([feed[i][1] for i in range(len(feed))])
    assert sorted(seen) == [0, 1, 2, 3, 4] and feed[0][0].shape[-1] == 1
    r = cae.reconstruction_correlations(model, ImageBatches(paths[1:], batch_size=2, image_size=(18, 18)))
    assert r.shape == (4,)


def test_step_decay_drops_by_the_factor_each_period():
    schedule = cae.step_decay(1e-3, 0.1, 5)
    assert [schedule(e) for e in (0, 4, 5, 10)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5])
