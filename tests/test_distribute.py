"""Data-parallel training (common.distribute) through common.modelstore.train_or_load: two
logical CPU devices stand in for two GPUs, and the model must match the one-device model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common import distribute

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "fixtures" / "distributed_training.py"


@pytest.mark.parametrize(
    "value, expected", [("", None), ("2", 2), (" 4 ", 4)], ids=["unset", "two", "spaces"]
)
def test_requested_count_reads_the_environment(value, expected):
    assert distribute.requested_count(env={distribute.DEVICES_ENV: value}) == expected


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_bad_device_count_is_one_line_naming_the_variable(value):
    with pytest.raises(ValueError, match=f"{distribute.DEVICES_ENV}='{value}' must be a positive"):
        distribute.requested_count(env={distribute.DEVICES_ENV: value})


def test_without_gpus_one_cpu_device_trains():
    # this machine has no GPU: the default is one device, and nothing is distributed
    record = distribute.describe()
    assert record["devices"] == 1 and record["strategy"] == "none (one device)"


def run_script(env_extra):
    env = {**os.environ, **env_extra}
    env.pop(distribute.DEVICES_ENV, None)
    out = subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_two_devices_match_one(result, strategy):
    one, two = result["1"], result["2"]
    assert one["described"]["devices"] == 1 and two["described"]["devices"] == 2
    assert two["described"]["strategy"] == strategy
    assert any("training on 2 devices" in line for line in two["log"]), two["log"]
    # the batch given to fit is the global batch: the same number of optimizer steps
    assert one["steps"] == two["steps"] == 6 * 3
    # Same batches, same initial weights: only the order of the gradient sum differs
    # (float32, relative error ~1e-7 per step); 18 Adam steps keep the difference
    # far below 1e-4 (measured: about 1e-7).
    np.testing.assert_allclose(np.array(two["proba"]), np.array(one["proba"]), atol=1e-4)
    assert "REPRO_TRAIN_DEVICES=3 but the backend sees 2 CPU device(s)" in result["too_many"]


def test_tensorflow_mirrored_strategy_matches_one_device():
    result = run_script({"KERAS_BACKEND": "tensorflow"})
    check_two_devices_match_one(result, "tf.distribute.MirroredStrategy")


@pytest.mark.multibackend
def test_jax_data_parallel_matches_one_device():
    result = run_script(
        {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    )
    check_two_devices_match_one(result, "keras.distribution.DataParallel")
