import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from common.explain import grad_cam, last_conv_layer, overlay

WORKER = Path(__file__).parent / "helpers" / "grad_cam_worker.py"


def square_detector():
    """Conv (fixed positive filters) -> ReLU -> GAP -> Dense: the score grows with bright pixels."""
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2)(x)
    model = keras.Model(inp, out)
    conv_w = np.full((3, 3, 3, 4), 0.1, "float32")
    model.get_layer("conv").set_weights([conv_w, np.full(4, -0.05, "float32")])
    model.layers[-1].set_weights([np.array([[1.0, -1.0]] * 4, "float32"), np.zeros(2, "float32")])
    return model


def test_heatmap_points_at_the_evidence():
    img = np.zeros((1, 32, 32, 3), "float32")
    img[0, 4:12, 20:28] = 1.0  # a bright square, top right
    heat, cls = grad_cam(square_detector(), img, class_index=0)
    assert heat.shape == (1, 32, 32) and heat.min() >= 0 and heat.max() == pytest.approx(1.0)
    inside, outside = heat[0, 4:12, 20:28].mean(), heat[0, 20:, :12].mean()
    assert inside > 0.5 and outside < 0.1
    assert last_conv_layer(square_detector()) == "conv"


def test_overlay_and_bad_input():
    heat = np.linspace(0, 1, 64, dtype="float32").reshape(8, 8)
    out = overlay(np.zeros((8, 8, 3), np.uint8), heat)
    assert out.dtype == np.uint8 and out.shape == (8, 8, 3) and out[-1, -1, 0] > out[0, 0, 0]
    with pytest.raises(ValueError, match="no layer 'nope'"):
        grad_cam(square_detector(), np.zeros((1, 32, 32, 3)), layer="nope")
    with pytest.raises(ValueError, match="batch"):
        grad_cam(square_detector(), np.zeros((32, 32, 3)))


@pytest.mark.multibackend
def test_grad_cam_is_the_same_on_tensorflow_jax_and_torch(tmp_path):
    maps = {}
    for backend in ("tensorflow", "jax", "torch"):
        out = tmp_path / f"{backend}.npy"
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.run(
            [sys.executable, str(WORKER), str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"{backend}: {proc.stderr[-2000:]}"
        maps[backend] = np.load(out)
    # float32 arithmetic in different orders: measured differences are about 1e-6 on values in [0,
    # 1]
    np.testing.assert_allclose(maps["jax"], maps["tensorflow"], atol=1e-4)
    np.testing.assert_allclose(maps["torch"], maps["tensorflow"], atol=1e-4)
    assert maps["tensorflow"].std() > 0.05, "the heatmaps are not trivially constant"
