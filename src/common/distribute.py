"""Data-parallel training over every visible GPU.

Every network notebooks 02-05 train goes through :func:`common.modelstore.train_or_load`,
which builds, compiles and fits it inside :func:`data_parallel`. With two or more devices the
model's variables are replicated on each and every batch is split across them:

- TensorFlow backend: ``tf.distribute.MirroredStrategy`` over the devices;
- JAX backend: Keras' distribution API, ``keras.distribution.DataParallel``;
- PyTorch backend: Keras has no data-parallel distribution for it; one device is used and
  the run says so.

**Batch.** The batch a notebook gives ``fit`` is the *global* batch, the paper's by default
(each notebook's batch parameter): with 4 GPUs and the paper's 32, each GPU sees 8 images
per step, and the number of steps, the learning rate and the optimizer's state are those of
one device. The results are those of one device up to floating-point summation order
(tests/test_distribute.py), except that batch normalisation computes its statistics per
device (Keras' default; the per-device batch is smaller).

**Devices.** By default every GPU the backend sees (``CUDA_VISIBLE_DEVICES`` limits them; a
sweep's ``pool`` gives each run one). ``REPRO_TRAIN_DEVICES=n`` uses the first n instead; on a
machine without GPUs it may name logical CPU devices, which is how the tests check the
distributed path. ``run.json`` records the count under ``training``.

**JAX limit.** Keras' JAX data parallelism shards each batch evenly over the devices, so a
batch whose size the device count does not divide (an epoch's last batch, a prediction's
last batch) stops the run with a one-line error; TensorFlow's mirrored strategy splits
uneven batches. Both paths are tested on two logical CPU devices (TensorFlow in
``make test``, JAX in ``make test-backends``); neither has run on real GPUs here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

DEVICES_ENV = "REPRO_TRAIN_DEVICES"


def requested_count(*, env: dict[str, str] | None = None) -> int | None:
    """``REPRO_TRAIN_DEVICES`` as a positive integer, or None when it is not set."""
    value = (os.environ if env is None else env).get(DEVICES_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(
            f"{DEVICES_ENV}={value!r} must be a positive integer (the number of devices one "
            "training uses); unset it to use every visible GPU"
        )
    return int(value)


def _devices(kind: str) -> list[str]:
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_logical_devices(kind.upper())]
    if backend == "jax":
        try:
            return [str(d) for d in keras.distribution.list_devices(kind)]
        except RuntimeError:  # JAX raises when no device of that kind exists
            return []
    return []  # torch: no Keras data-parallel distribution


def training_devices(*, count: int | None = None) -> list[str]:
    """The devices one training uses: every visible GPU, or the first ``count`` (default
    ``REPRO_TRAIN_DEVICES``); without GPUs, one CPU device unless more are asked for."""
    count = requested_count() if count is None else count
    gpus = _devices("gpu")
    pool = gpus or _devices("cpu") or ["cpu"]
    if count is None:
        return pool if gpus else pool[:1]
    if count > len(pool):
        kind = "GPU(s)" if gpus else "CPU device(s)"
        raise ValueError(
            f"{DEVICES_ENV}={count} but the backend sees {len(pool)} {kind}; lower it or unset "
            "it to use every visible GPU"
        )
    return pool[:count]


def describe(*, count: int | None = None) -> dict[str, Any]:
    """What a training in this process uses, for ``run.json``: backend, device count and
    names, the strategy, and what the batch means."""
    import keras

    backend = keras.backend.backend()
    try:
        devices = training_devices(count=count)
    except ValueError as exc:
        return {"backend": backend, "devices": None, "error": str(exc)}
    strategies = {
        "tensorflow": "tf.distribute.MirroredStrategy",
        "jax": "keras.distribution.DataParallel",
    }  # two or more devices only on these two: _devices lists none for torch
    return {
        "backend": backend,
        "devices": len(devices),
        "device_names": devices,
        "strategy": strategies[backend] if len(devices) > 1 else "none (one device)",
        "batch": "global: each notebook's batch parameter, split across the devices",
    }


@contextlib.contextmanager
def data_parallel(*, count: int | None = None) -> Iterator[dict[str, Any]]:
    """Build, compile and fit a model inside this block to train it on every device of
    :func:`training_devices`; yields :func:`describe`'s record."""
    import keras

    record = describe(count=count)
    if record["devices"] is None:
        raise ValueError(record["error"])
    backend = keras.backend.backend()
    if record["devices"] < 2:
        yield record
    elif backend == "tensorflow":
        import tensorflow as tf

        with tf.distribute.MirroredStrategy(devices=record["device_names"]).scope():
            yield record
    else:  # jax
        devices = keras.distribution.list_devices()
        chosen = [d for d in devices if str(d) in set(record["device_names"])]
        try:
            with keras.distribution.DataParallel(devices=chosen).scope():
                yield record
        except Exception as exc:
            if type(exc).__name__ != "IndivisibleError":
                raise
            raise ValueError(
                f"the JAX backend splits every batch evenly over the {len(chosen)} devices and a "
                "batch (often an epoch's last) does not divide; run with KERAS_BACKEND=tensorflow "
                f"or set {DEVICES_ENV} to a divisor of every batch size"
            ) from exc
