"""Compute Grad-CAM of a fixed small model on the backend named by $KERAS_BACKEND.

Usage: python grad_cam_worker.py OUT.npy
Weights and inputs come from NumPy with fixed seeds, so every backend sees the same
model and images; the test compares the saved heatmaps.
"""

import sys

import keras
import numpy as np

from common.explain import grad_cam


def small_model() -> keras.Model:
    inp = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv_a")(inp)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    return model


if __name__ == "__main__":
    images = np.random.default_rng(1).random((3, 24, 24, 3)).astype("float32")
    heatmaps, classes = grad_cam(small_model(), images, layer="conv_b", class_index=[0, 1, 2])
    np.save(sys.argv[1], heatmaps)
    print(keras.backend.backend(), heatmaps.shape, classes.tolist())
