"""Where things are read and written: the cache root, dataset discovery, Kaggle downloads."""

import subprocess
import sys
from pathlib import Path

import pytest

from common import paths
from common.data import DataError, load, synth
from common.data import kaggle as K
from common.data.discover import find_root

PLATFORM_VARS = ("KAGGLE_KERNEL_RUN_TYPE", "COLAB_RELEASE_TAG", "COLAB_GPU", "REPRO_CACHE_DIR")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in PLATFORM_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def test_cache_root_per_platform(clean_env, monkeypatch):
    assert paths.cache_root() == clean_env / "data" / "cache"
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    assert paths.cache_root() == Path("/kaggle/working/cache")
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE")
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20261101")
    assert paths.cache_root() == Path("/content/cache")
    monkeypatch.setenv("REPRO_CACHE_DIR", str(clean_env / "mine"))
    assert paths.cache_root() == clean_env / "mine", "the variable wins over the platform default"


def test_downloads_go_to_the_cache_when_the_data_root_is_read_only(clean_env, monkeypatch):
    assert paths.download_root() == clean_env / "data", (
        "a data root that does not exist yet can be created"
    )
    monkeypatch.setattr(paths, "is_writable", lambda path: False)
    assert paths.download_root() == clean_env / "data" / "cache"


def test_temp_dirs_live_under_the_cache_root(clean_env, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(clean_env / "cache"))
    first, second = paths.temp_dir("x_"), paths.temp_dir("x_")
    assert first != second and first.parent == second.parent == clean_env / "cache" / "tmp"


def test_cached_twin_and_feature_cache_follow_the_cache_root(clean_env, monkeypatch):
    from common.data.synth import cached_twin
    from common.features import cache_dir

    monkeypatch.setenv("REPRO_CACHE_DIR", str(clean_env / "cache"))
    twin = cached_twin("aria_all", n_per_class=2, patients_per_class=1, size=32)
    assert twin.parent == clean_env / "cache" / "synthetic"
    assert cache_dir() == clean_env / "cache" / "features"


# ----------------------------------------------------------------- discovery
@pytest.mark.parametrize(
    "dataset,extra",
    [
        ("cnmc", ()),
        ("aria_all", ()),
        ("aml_mll", ()),
        ("cnmc", ("unzipped",)),
        ("aml_mll", ("AML-Cytomorphology_MLL_Helmholtz_v1",)),
    ],
)
def test_a_dataset_one_or_two_levels_down_is_found(clean_env, dataset, extra):
    base = clean_env / "data" / "some-kaggle-slug"
    twin = synth.synth(
        dataset,
        base.joinpath(*extra) if extra else base,
        n_per_class=2,
        patients_per_class=1,
        size=32,
    )
    found = find_root(dataset)
    assert found.resolve() in {twin.resolve(), (twin / "C-NMC_Leukemia").resolve()}
    assert len(load(dataset)) > 0, "the loader reads the folder that discovery found"


def test_the_conventional_folder_wins_and_the_cache_is_never_searched(clean_env, monkeypatch):
    data = clean_env / "data"
    synth.synth(
        "aria_all",
        data / "cache" / "synthetic" / "aria",
        n_per_class=2,
        patients_per_class=1,
        size=32,
    )
    with pytest.raises(DataError, match="no folder under"):
        find_root("aria_all")  # the cached twin does not pass for the dataset
    synth.synth("aria_all", data / "raw" / "aria_all", n_per_class=2, patients_per_class=1, size=32)
    synth.synth("aria_all", data / "elsewhere", n_per_class=2, patients_per_class=1, size=32)
    assert find_root("aria_all") == data / "raw" / "aria_all"


def test_two_candidates_give_one_line_naming_both(clean_env):
    data = clean_env / "data"
    for slug in ("copy-a", "copy-b"):
        synth.synth("aria_all", data / slug, n_per_class=2, patients_per_class=1, size=32)
    with pytest.raises(DataError) as err:
        find_root("aria_all")
    message = str(err.value)
    assert (
        "\n" not in message
        and "copy-a" in message
        and "copy-b" in message
        and "data_root=" in message
    )


def test_inspect_prints_the_folder_it_found(clean_env):
    twin = synth.synth(
        "aria_all",
        clean_env / "data" / "slug" / "leukemia",
        n_per_class=2,
        patients_per_class=1,
        size=32,
    )
    env = {**__import__("os").environ, "REPRO_DATA_DIR": str(clean_env / "data")}
    proc = subprocess.run(
        [sys.executable, "-m", "common.data", "inspect", "aria_all"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"root:       {twin} (found under the data root" in proc.stdout


# ------------------------------------------------------------------ kagglehub
def test_kaggle_without_credentials_says_what_to_do(clean_env, monkeypatch):
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(clean_env / "no-config"))
    outcome = K.fetch_kaggle("mehradaria/leukemia", clean_env / "dest")
    assert outcome.path is None and "kaggle.json" in outcome.message and "\n" not in outcome.message
    assert not (clean_env / "dest").exists()


def test_kaggle_with_credentials_downloads_through_kagglehub(clean_env, monkeypatch):
    import kagglehub

    calls = []
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "0" * 32)
    monkeypatch.setattr(
        kagglehub,
        "dataset_download",
        lambda handle, **kw: calls.append((handle, kw)) or kw["output_dir"],
    )
    outcome = K.fetch_kaggle("mehradaria/leukemia", clean_env / "dest")
    assert calls == [("mehradaria/leukemia", {"output_dir": str(clean_env / "dest")})]
    assert outcome.path == clean_env / "dest" and "KAGGLE_USERNAME" in outcome.message

    def refuse(handle, **kw):
        raise PermissionError("403 Client Error: Forbidden\nmore text")

    monkeypatch.setattr(kagglehub, "dataset_download", refuse)
    outcome = K.fetch_kaggle("mehradaria/leukemia", clean_env / "dest")
    assert outcome.path is None and "403" in outcome.message and "\n" not in outcome.message
