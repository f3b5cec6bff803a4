"""Tests that must hold on every Keras backend (run under torch by `make test-backends`)."""

import json
import os

import numpy as np
import pytest

from common import runs

pytestmark = pytest.mark.backend


def train_tiny_model(seed):
    import keras

    runs.seed_everything(seed)
    x = np.random.rand(64, 8).astype("float32")
    y = (x.sum(axis=1) > 4).astype("int32")
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, shuffle=True)
    return [w.copy() for w in model.get_weights()]


def test_same_seed_same_weights_on_this_backend():
    a, b, c = train_tiny_model(11), train_tiny_model(11), train_tiny_model(12)
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a, c))


def test_run_json_names_the_active_backend(results_dir):
    import keras

    params = runs.resolve_params({p: {} for p in runs.PROFILE_NAMES}, profile="smoke")
    run = runs.start_run("00_backend", params)
    run.set_data("synthetic", "fp")
    doc = json.loads(run.write().read_text())
    assert doc["backend"] == keras.backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        assert doc["backend"] == os.environ["KERAS_BACKEND"]
