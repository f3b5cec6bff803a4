"""A simulated Kaggle session: read-only input holding a dataset under an arbitrary slug,
caches and results elsewhere. Notebook 05's ``paper`` profile (tiny overrides) runs to its
end and writes nothing under the data root; a missing ImageNet file stops it in seconds.
"""

import json
import os
import stat
import time
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest

from common.data import synth

REPO = Path(__file__).resolve().parents[1]
NB05 = REPO / "notebooks" / "05_patel_all_weighted_ensemble.ipynb"


def snapshot(root: Path) -> dict:
    """Every path under ``root`` with its size and modification time (root ignores permissions, so
    compare)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def read_only(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.fixture
def kaggle(tmp_path, monkeypatch):
    """/kaggle/input and /kaggle/working stand-ins; the Aria twin one slug and one archive folder
    down."""
    data = tmp_path / "input"
    synth.synth_aria_all(
        data / "some-user-leukemia" / "leukemia", n_per_class=12, patients_per_class=1, size=96
    )
    read_only(data)
    working = tmp_path / "working"
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    monkeypatch.setenv("REPRO_DATA_DIR", str(data))
    monkeypatch.setenv("REPRO_CACHE_DIR", str(working / "cache"))
    monkeypatch.setenv("REPRO_RESULTS_DIR", str(working / "results"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))  # no ImageNet file cached
    monkeypatch.setenv("REPRO_ALLOW_CPU", "1")
    monkeypatch.delenv("REPRO_PROFILE", raising=False)
    yield data, working
    for p in [data, *data.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


def execute(out: Path, **parameters):
    pm.execute_notebook(
        str(NB05),
        str(out),
        parameters={"profile": "paper", **parameters},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(NB05.parent),
    )


def test_paper_profile_runs_on_a_read_only_kaggle_input(kaggle, tmp_path):
    data, working = kaggle
    before = snapshot(data)
    execute(
        tmp_path / "executed.ipynb",
        image_size=32,
        epochs=1,
        pretrained="none",
        baselines=["alexnet"],
        n_bootstrap=50,
        eager=True,
    )
    assert snapshot(data) == before, "nothing is written under the data root"
    run = json.loads((working / "results" / "05_patel_all" / "paper" / "run.json").read_text())
    assert run["data"]["source"] == "synthetic"
    assert run["preflight"]["data"]["root"] == str(data / "some-user-leukemia" / "leukemia"), (
        "found without configuration"
    )
    assert run["preflight"]["device"]["allow_cpu"] is True
    assert run["data"]["network_weights"]["alexnet"] == "none"
    metrics = pd.read_csv(working / "results" / "05_patel_all" / "paper" / "metrics.csv")
    assert "alexnet [from scratch]" in set(metrics["model"]), "AlexNet's start is said in its rows"
    stored = sorted(
        p.name.split("-")[0] for p in (working / "cache" / "models" / "05_patel_all").iterdir()
    )
    assert stored == ["alexnet", "densenet201", "resnet50"], (
        "every fine-tuned network is kept in the cache root"
    )
    assert not any((working / "cache" / "tmp").iterdir()), "temporary files are removed"


def test_missing_imagenet_file_fails_in_the_preflight_within_a_minute(
    kaggle, tmp_path, monkeypatch
):
    data, working = kaggle
    for name in (
        "https_proxy",
        "HTTPS_PROXY",
    ):  # no ImageNet server, even on a machine with internet
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    start = time.perf_counter()
    with pytest.raises(pm.PapermillExecutionError) as err:
        execute(tmp_path / "executed.ipynb", image_size=32, epochs=1)
    assert time.perf_counter() - start < 60
    message = str(err.value)
    assert (
        "PreflightError" in message
        and "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    )
    assert not (working / "results").exists() and not (working / "cache").exists(), (
        "nothing written before the preflight"
    )
    assert os.environ["KAGGLE_KERNEL_RUN_TYPE"] == "Batch"
