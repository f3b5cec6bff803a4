"""Trained networks survive: reused under the same key, retrained under another, resumed after a
kill."""

import json

import keras
import numpy as np
import pytest

from common import modelstore as M
from common.progress import EpochLog, forecast

X = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
Y = (X[:, 0] > 0).astype("int64")


def build():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def fit_counting(calls, epochs=3, extra=()):
    def fit(model, callbacks):
        calls.append(1)
        return model.fit(
            X, Y, epochs=epochs, batch_size=8, callbacks=[*callbacks, *extra], verbose=0
        ).history

    return fit


def outputs(model):
    return {"test": model.predict(X, verbose=0)}


def test_same_key_reuses_other_key_retrains(tmp_path):
    calls, said = [], []
    first = M.entry("p", "net", {"lr": 1e-3}, root=tmp_path)
    model, out, history, reused = M.train_or_load(
        first, build, fit_counting(calls), outputs, log=said.append
    )
    assert not reused and len(calls) == 1 and len(history["loss"]) == 3
    assert json.loads((first.dir / "key.json").read_text())["lr"] == 1e-3
    again = M.entry("p", "net", {"lr": 1e-3}, root=tmp_path)
    model2, out2, history2, reused2 = M.train_or_load(
        again, build, fit_counting(calls), outputs, log=said.append
    )
    assert reused2 and len(calls) == 1, "nothing retrained"
    assert "reusing" in said[-1] and str(again.dir) in said[-1]
    np.testing.assert_allclose(out2["test"], out["test"])
    np.testing.assert_allclose(model2.predict(X, verbose=0), out["test"], rtol=1e-6, atol=1e-6)
    assert history2 == {k: [float(v) for v in vals] for k, vals in history.items()}
    other = M.entry("p", "net", {"lr": 1e-2}, root=tmp_path)
    assert other.dir != first.dir
    M.train_or_load(other, build, fit_counting(calls), outputs, log=said.append)
    assert len(calls) == 2


def test_an_unfinished_folder_is_trained_again(tmp_path):
    calls = []
    stored = M.entry("p", "net", {}, root=tmp_path)
    M.train_or_load(stored, build, fit_counting(calls), outputs)
    (stored.dir / "key.json").unlink()  # as if killed between the weights and the commit mark
    assert not stored.complete()
    M.train_or_load(stored, build, fit_counting(calls), outputs)
    assert len(calls) == 2 and stored.complete()


def test_a_killed_training_resumes_from_its_last_epoch(tmp_path):
    class Killed(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt("session killed")

    stored = M.entry("p", "net", {}, root=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        M.train_or_load(stored, build, fit_counting([], extra=[Killed()]), outputs)
    assert not stored.complete() and any(stored.backup.rglob("*")), "the backup survives the kill"
    epochs_run, said = [], []
    counter = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs=None: epochs_run.append(epoch)
    )
    M.train_or_load(stored, build, fit_counting([], extra=[counter]), outputs, log=said.append)
    assert epochs_run == [2] and "resuming" in said[0]
    assert stored.complete() and not stored.backup.exists()


def test_code_version_follows_the_source():
    def a():
        return 1

    def b():
        return 2

    assert M.code_version(a) != M.code_version(b) and M.code_version(a) == M.code_version(a)


def test_epoch_log_prints_first_last_and_throttled_lines(capsys):
    log = EpochLog("net", every=3600)
    model = build()
    model.fit(X, Y, epochs=5, batch_size=8, callbacks=[log], verbose=0)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["net epoch 1/5", "net epoch 5/5"], (
        "five epochs, two lines"
    )
    assert "loss" in lines[0] and "left" in lines[0] and "left" not in lines[1]
    log = EpochLog("net", every=0)
    model.fit(X, Y, epochs=3, batch_size=8, callbacks=[log], verbose=0)
    assert len(log.lines) == 3


def test_forecast_scales_the_elapsed_time():
    line = forecast(120.0, 1, 5, "the networks")
    assert "10 min 0 s" in line and "8 min 0 s left" in line
    with pytest.raises(ValueError):
        forecast(1.0, 0, 5, "x")
