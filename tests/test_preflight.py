"""Preflight: each failing precondition gives one line naming the value and the fix."""

import time

import pytest

from common import preflight as P
from common.data import synth

PROFILES = {
    p: {"data_root": None, "synthetic": False, "epochs": 1} for p in ("smoke", "demo", "paper")
}


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A data root with an Aria twin, cache and results elsewhere, no Keras weights, CPU allowed."""
    for name in ("KAGGLE_KERNEL_RUN_TYPE", "COLAB_RELEASE_TAG", "COLAB_GPU", "REPRO_ALLOW_CPU"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "input"))
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("REPRO_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    synth.synth_aria_all(tmp_path / "input" / "slug", n_per_class=2, patients_per_class=1, size=32)
    return tmp_path


def run(params, **kw):
    kw.setdefault("injected", [])
    kw.setdefault("expects_gpu", False)
    return P.preflight(
        {"profile": "smoke", "data_root": None, "synthetic": False, **params},
        profiles=PROFILES,
        verbose=False,
        **kw,
    )


def problems(**kw):
    with pytest.raises(P.PreflightError) as err:
        run(kw.pop("params", {}), **kw)
    return err.value.problems


def test_a_clean_run_passes_and_records_what_it_saw(env):
    report = run({}, dataset="aria_all", networks={"resnet50": "none"})
    assert report.dataset is not None and len(report.dataset) == 8
    record = report.record
    assert record["data"]["root"] == str(env / "input" / "slug")
    assert record["data"]["counts_expected"]["Benign"] == 504, (
        "a subset's counts are recorded, not fatal"
    )
    assert any(line.startswith("note  data: class counts differ") for line in report.lines)
    assert record["weights"] == {"resnet50": "from scratch (random initialisation)"}
    assert record["device"]["backend"] in P.BACKENDS and record["disk"]["needed_bytes"] == 0


def test_unknown_papermill_parameter_names_it_and_the_known_ones(env):
    lines = problems(injected=["epoch", "profile"])
    assert (
        len(lines) == 1
        and "['epoch']" in lines[0]
        and "'epochs'" in lines[0]
        and "\n" not in lines[0]
    )


def test_missing_dataset_and_ambiguous_dataset(env):
    (env / "input" / "slug").rename(env / "input" / "elsewhere")
    run({}, dataset="aria_all")  # found wherever it sits
    synth.synth_aria_all(env / "input" / "copy", n_per_class=2, patients_per_class=1, size=32)
    [line] = problems(dataset="aria_all")
    assert line.startswith("data: two folders") and "copy" in line and "elsewhere" in line
    [line] = problems(params={"data_root": str(env / "nowhere")}, dataset="aria_all")
    assert "nowhere" in line and "does not exist" in line


def test_weights_that_cannot_be_had(env, monkeypatch):
    monkeypatch.setattr(P, "downloadable", lambda url, timeout=5.0: False)
    lines = problems(
        networks={"alexnet": "imagenet", "resnet50": "imagenet", "vgg16": str(env / "missing.h5")}
    )
    assert any(line.startswith("weights: alexnet") and "'none'" in line for line in lines)
    assert any(
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in line and "keras-home" in line
        for line in lines
    )
    assert any("missing.h5 does not exist" in line for line in lines)
    assert len(lines) == 3, "one line per problem"


def test_cached_imagenet_file_passes_without_network(env, monkeypatch):
    from common.backbones import imagenet_weights_file

    monkeypatch.setattr(
        P, "downloadable", lambda url, timeout=5.0: pytest.fail("no download probe when cached")
    )
    name, _ = imagenet_weights_file("vgg16", include_top=True)
    (env / "keras-home" / "models").mkdir(parents=True)
    (env / "keras-home" / "models" / name).write_bytes(b"h5")
    report = run({}, networks={"vgg16": "imagenet"}, full_networks=["vgg16"])
    assert name in report.record["weights"]["vgg16"]


def test_offline_imagenet_probe_answers_within_seconds(env):
    """Offline (as here), an ImageNet file that is not cached fails in seconds, not after a long
    wait."""
    start = time.perf_counter()
    reachable = P.downloadable(
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    )
    assert time.perf_counter() - start < P.DOWNLOAD_PROBE_TIMEOUT * 3
    if not reachable:
        assert len(problems(networks={"resnet50": "imagenet"})) == 1


def test_too_little_disk(env):
    [line] = problems(disk_bytes=lambda n: 10**18)
    assert line.startswith("disk:") and "GB free" in line and "REPRO_CACHE_DIR" in line


def test_kaggle_working_quota(env, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE_DIR", "/kaggle/working/cache")
    monkeypatch.setattr(P, "is_writable", lambda path: True)
    monkeypatch.setattr(P, "free_bytes", lambda path: 10**12)
    [line] = problems(disk_bytes=25 * 10**9)
    assert "/kaggle/working keeps at most 20 GB" in line and "REPRO_CACHE_DIR" in line
    assert run({}, disk_bytes=10**9).record["disk"]["needed_bytes"] == 10**9


def test_gpu_expected_unless_cpu_is_allowed(env, monkeypatch):
    monkeypatch.setattr(P, "gpu_devices", lambda: [])
    [line] = problems(expects_gpu=True)
    assert line.startswith("device: no GPU") and "REPRO_ALLOW_CPU=1" in line
    monkeypatch.setenv("REPRO_ALLOW_CPU", "1")
    assert run({}, expects_gpu=True).record["device"]["allow_cpu"] is True
    monkeypatch.delenv("REPRO_ALLOW_CPU")
    assert run({"profile": "demo"}, expects_gpu=None).record["device"]["expects_gpu"] is False


def test_all_problems_are_reported_at_once(env, monkeypatch):
    monkeypatch.setattr(P, "gpu_devices", lambda: [])
    lines = problems(
        injected=["epoch"], networks={"alexnet": "imagenet"}, disk_bytes=10**18, expects_gpu=True
    )
    assert [line.split(":")[0] for line in lines] == ["parameters", "weights", "disk", "device"]


def test_injected_parameters_read_from_the_notebook_history(monkeypatch):
    class Shell:
        user_ns = {
            "In": [
                "",
                "profile = None\nepochs = None\n",
                '# Parameters\nprofile = "paper"\nepoch = 50\n',
            ]
        }

    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell())
    assert P.injected_parameters() == ["profile", "epoch"]


def test_weights_folder_names_the_missing_network(env):
    from common.backbones import write_standin_weights

    folder = env / "weights"
    write_standin_weights(folder, ["mobilenetv2"], [32])
    report = run({}, networks={"mobilenetv2": str(folder)})
    assert report.record["weights"]["mobilenetv2"].endswith("mobilenetv2-32px.weights.h5")
    [line] = problems(networks={"mobilenetv2": str(folder), "resnet50": str(folder)})
    assert (
        line.startswith("weights: resnet50: the weights folder") and "write_standin_weights" in line
    )
