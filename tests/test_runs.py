import json
import random

import numpy as np
import pytest

from common import runs

PROFILES = {
    "smoke": {"epochs": 1, "lr": 0.1},
    "demo": {"epochs": 5, "lr": 0.1},
    "paper": {"epochs": 100, "lr": 0.01},
}


def test_profile_fills_defaults_and_explicit_values_override(monkeypatch):
    monkeypatch.delenv(runs.PROFILE_ENV, raising=False)
    params = runs.resolve_params(PROFILES, profile="paper", epochs=None, lr=0.5)
    assert params == {"seed": 0, "epochs": 100, "lr": 0.5, "profile": "paper"}


def test_default_profile_is_demo_and_env_var_overrides_it(monkeypatch):
    monkeypatch.delenv(runs.PROFILE_ENV, raising=False)
    assert runs.resolve_params(PROFILES)["epochs"] == 5
    monkeypatch.setenv(runs.PROFILE_ENV, "smoke")
    assert runs.resolve_params(PROFILES)["profile"] == "smoke"
    # an explicit profile argument beats the environment
    assert runs.resolve_params(PROFILES, profile="paper")["epochs"] == 100


def test_unknown_parameter_is_an_error_not_a_warning():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['epoch'\]"):
        runs.resolve_params(PROFILES, profile="demo", epoch=3)


def test_unknown_profile_names_its_source(monkeypatch):
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        runs.resolve_params(PROFILES, profile="fast")
    monkeypatch.setenv(runs.PROFILE_ENV, "tiny")
    with pytest.raises(ValueError, match=r"REPRO_PROFILE"):
        runs.resolve_params(PROFILES)


def test_profiles_must_share_parameter_names():
    broken = {**PROFILES, "paper": {"epochs": 100, "learning_rate": 0.01}}
    with pytest.raises(ValueError, match="differ in parameters"):
        runs.resolve_params(broken, profile="demo")
    with pytest.raises(ValueError, match="lack paper"):
        runs.resolve_params({"smoke": {}, "demo": {}}, profile="demo")


def test_seed_everything_repeats_python_numpy_and_keras_streams():
    import keras

    def draw():
        runs.seed_everything(7)
        return (
            random.random(),
            np.random.rand(),
            float(keras.ops.convert_to_numpy(keras.random.uniform((1,)))[0]),
        )

    assert draw() == draw()
    runs.seed_everything(8)
    assert random.random() != draw()[0]
    with pytest.raises(ValueError, match="seed"):
        runs.seed_everything(-1)


def test_start_run_creates_folder_and_removes_stale_outputs(results_dir):
    params = runs.resolve_params(PROFILES, profile="smoke")
    stale = results_dir / "01_x" / "smoke"
    stale.mkdir(parents=True)
    (stale / "old_figure.png").write_bytes(b"png")
    (stale / "executed.ipynb").write_text("{}")
    run = runs.start_run("01_x", params)
    assert run.dir == stale
    assert not (stale / "old_figure.png").exists()
    assert (stale / "executed.ipynb").exists(), "the notebook papermill is writing must survive"


def test_run_json_records_everything(results_dir):
    params = runs.resolve_params(PROFILES, profile="smoke", seed=3)
    run = runs.start_run("01_x", params, run="sweep-a")
    with pytest.raises(ValueError, match="set_data"):
        run.write()
    with pytest.raises(ValueError, match="not one of"):
        run.set_data("made-up", "abc")
    run.set_data("synthetic", "abc123", description="twin", n_samples=np.int64(10))
    with run.stage("train"):
        sum(range(1000))
    doc = json.loads(run.write().read_text())
    assert doc["params"] == {"seed": 3, "epochs": 1, "lr": 0.1, "profile": "smoke"}
    assert doc["data"] == {
        "source": "synthetic",
        "fingerprint": "abc123",
        "description": "twin",
        "n_samples": 10,
    }
    assert doc["backend"] in {"tensorflow", "jax", "torch", "numpy"}
    assert doc["devices"] and "keras" in doc["versions"]
    assert set(doc["git"]) == {"commit", "dirty"}
    assert doc["timings_s"]["train"] >= 0 and doc["timings_s"]["total"] >= doc["timings_s"]["train"]
    assert not list(run.dir.glob(".*tmp*")), "atomic writes leave no temporary files"


def test_add_data_records_later_facts_under_data(results_dir):
    run = runs.start_run("01_x", runs.resolve_params(PROFILES, profile="smoke"))
    with pytest.raises(ValueError, match="set_data"):
        run.add_data(duplicate_audit={"pairs": []})
    run.set_data("embedded-real", "f00d")
    run.add_data(duplicate_audit={"pairs": [], "highest_correlation": np.float64(0.5)})
    with pytest.raises(ValueError, match="fingerprint"):
        run.add_data(fingerprint="other")
    doc = json.loads(run.write().read_text())
    assert doc["data"] == {
        "source": "embedded-real",
        "fingerprint": "f00d",
        "description": "",
        "duplicate_audit": {"pairs": [], "highest_correlation": 0.5},
    }


@pytest.mark.parametrize("paper,run_name", [("a/b", None), ("01", "../x"), ("", None)])
def test_start_run_rejects_names_that_escape_the_results_folder(results_dir, paper, run_name):
    params = runs.resolve_params(PROFILES, profile="smoke")
    with pytest.raises(ValueError):
        runs.start_run(paper, params, run=run_name)


def test_start_run_needs_resolved_params(results_dir):
    with pytest.raises(ValueError, match="resolve_params"):
        runs.start_run("01_x", {"epochs": 1})


def test_run_json_records_the_commit_the_run_started_with(results_dir, monkeypatch):
    """A long run whose checkout moves on meanwhile still names the code it ran."""
    run = runs.start_run("01_x", runs.resolve_params(PROFILES, profile="smoke"))
    monkeypatch.setattr(runs, "git_commit", lambda cwd=None: {"commit": "later", "dirty": False})
    run.set_data("synthetic", "fp")
    assert run.to_dict()["git"] != {"commit": "later", "dirty": False}


PROFILES_FIXTURE = {
    "smoke": {"epochs": 1, "nets": ["a"]},
    "demo": {"epochs": 5, "nets": ["a", "b"]},
    "paper": {"epochs": 50, "nets": ["a", "b"]},
}


def test_notebook_overrides_take_the_set_parameters_only():
    namespace = {"epochs": 3, "nets": None, "seed": 7, "ON_KAGGLE": False, "profile": "smoke"}
    assert runs.notebook_overrides(namespace, PROFILES_FIXTURE) == {"epochs": 3, "seed": 7}
    params = runs.resolve_params(
        PROFILES_FIXTURE, profile="smoke", **runs.notebook_overrides(namespace, PROFILES_FIXTURE)
    )
    assert (params["epochs"], params["nets"], params["seed"]) == (3, ["a"], 7)


def test_profiles_table_has_a_row_per_parameter_and_a_column_per_profile():
    table = runs.profiles_table(PROFILES_FIXTURE)
    assert list(table.columns) == ["smoke", "demo", "paper"]
    assert table.loc["epochs"].tolist() == ["1", "5", "50"]
    assert table.loc["nets", "paper"] == "['a', 'b']"
