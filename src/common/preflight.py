"""Preflight: every precondition of a run checked in seconds, before anything is written.

Each notebook calls :func:`preflight` right after resolving its parameters and before
:func:`~common.runs.start_run`. It checks

- **parameters**: every name papermill injected is one the notebook declares
  (``-p epoch 50`` for ``epochs`` is otherwise only a papermill warning, and the run
  goes on with the default for hours);
- **data**: the dataset is found (:func:`common.data.load`: ``<data>/raw/<id>``, else
  discovered by layout) with every expected class present; counts that differ from
  ``data/README.md`` are reported in one line and recorded, not fatal (subsets and
  rehearsals are legitimate);
- **weights**: every network's starting weights can be had (the Keras ImageNet file
  cached, or downloadable now; a local file present; or trained from scratch);
- **disk**: free space under the cache root for what the run will write there;
- **device**: a GPU when the profile expects one (``paper``), unless
  ``REPRO_ALLOW_CPU=1``; the Keras backend.

Problems are collected, not raised one by one: the run stops with one line per
problem (:class:`PreflightError`), each naming the path or value, what was expected
and the fix. In a notebook the error is shown as those lines, without a traceback.
"""

from __future__ import annotations

import ast
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.paths import cache_root, is_writable, nearest_existing, results_root

ALLOW_CPU_ENV = "REPRO_ALLOW_CPU"
#: Profiles that expect a GPU (the others are sized for a CPU).
GPU_PROFILES = ("paper",)
BACKENDS = ("tensorflow", "jax", "torch")
#: Seconds to wait for the ImageNet weights server before calling the weights unobtainable.
DOWNLOAD_PROBE_TIMEOUT = 5.0
#: Millions of parameters per network (the full network as the papers use it), for the disk
#: estimate.
PARAMETERS_M = {
    "efficientnetv2m": 53.2,
    "mobilenetv2": 3.5,
    "resnet50": 25.6,
    "resnet101": 44.7,
    "vgg16": 138.4,
    "densenet121": 8.1,
    "densenet201": 20.2,
    "inceptionv3": 23.9,
    "alexnet": 62.4,
    "vit": 0.4,
    "acrnn": 3.0,
    "cnn": 1.0,
    "cnn_eca": 1.0,
    "cae": 0.02,
}
#: Folders whose size a platform caps below the disk's free space: (folder, bytes). Kaggle keeps at
#: most 20 GB of /kaggle/working, which shutil.disk_usage does not show.
OUTPUT_QUOTAS = ((Path("/kaggle/working"), 20e9),)
#: Bytes a trained network leaves under the cache root per parameter: the saved float32 weights
#: (4) plus a resumable backup holding weights and Adam's two moment slots (12).
BYTES_PER_PARAMETER = 16


class PreflightError(RuntimeError):
    """One or more preconditions failed; the message has one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("preflight failed:\n" + "\n".join(f"  - {p}" for p in self.problems))


@dataclass
class Preflight:
    """What the preflight saw: lines to print, facts for ``run.json``, the loaded dataset."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)
    dataset: Any = None

    def ok(self, what: str, text: str) -> None:
        self.lines.append(f"ok    {what}: {text}")

    def note(self, what: str, text: str) -> None:
        self.lines.append(f"note  {what}: {text}")

    def fail(self, what: str, text: str) -> None:
        self.problems.append(f"{what}: {text}")
        self.lines.append(f"FAIL  {what}: {text}")


# ------------------------------------------------------------------ parameters
def injected_parameters() -> list[str]:
    """Names papermill injected into the running notebook (its ``# Parameters`` cell), or []."""
    try:
        from IPython import get_ipython
    except ImportError:
        return []
    shell = get_ipython()
    if shell is None:
        return []
    names: list[str] = []
    for source in shell.user_ns.get("In", []):
        if not source.lstrip().startswith("# Parameters"):
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign):
                names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return names


def check_parameters(report: Preflight, known: Iterable[str], injected: Iterable[str]) -> None:
    known = sorted(set(known))
    injected = list(injected)
    unknown = sorted(set(injected) - set(known))
    if unknown:
        report.fail(
            "parameters",
            f"unknown parameter(s) {unknown} passed to the notebook; known: {known} "
            "(fix the name in the papermill call or sweep spec)",
        )
    elif injected:
        report.ok("parameters", f"{len(injected)} passed, all declared")


# ------------------------------------------------------------------------ data
def check_data(
    report: Preflight, dataset: str, root: Any, synthetic: bool, load_kwargs: Mapping[str, Any]
) -> None:
    from common.data import DataError, default_root, load, registry_entry

    info = registry_entry(dataset)
    if synthetic:
        report.ok("data", f"synthetic twin of {dataset}, generated under the cache root below")
        report.record["data"] = {"dataset": dataset, "synthetic": True}
        return
    if info.fetch == "debian" and root is None and not default_root(dataset).is_dir():
        if shutil.which("apt-get") and shutil.which("dpkg"):
            report.ok(
                "data",
                f"{dataset} is not here yet; it will be fetched from Debian into "
                f"{default_root(dataset)}",
            )
        else:
            report.fail(
                "data",
                f"{dataset} not found at {default_root(dataset)} and apt-get is missing; copy the "
                f"Debian package files there (see data/README.md)",
            )
        return
    try:
        ds = load(dataset, root=root, **dict(load_kwargs))
    except DataError as exc:
        report.fail("data", str(exc))
        return
    report.dataset = ds
    counts = ds.class_counts()
    missing = [c for c in (info.counts or {}) if c not in counts]
    if missing:
        report.fail(
            "data",
            f"{ds.root}: class(es) {missing} have no samples; expected {sorted(info.counts)} "
            "(re-download the dataset or pass the right data_root)",
        )
        return
    report.ok(
        "data", f"{dataset} at {ds.root} ({ds.source}): {len(ds)} samples, {len(counts)} classes"
    )
    record = {"dataset": dataset, "root": str(ds.root), "counts": counts}
    if info.counts and counts != info.counts:
        differ = {
            c: f"{counts.get(c, 0)} (data/README: {n})"
            for c, n in info.counts.items()
            if counts.get(c, 0) != n
        }
        report.note(
            "data",
            f"class counts differ from data/README.md: {differ}; fine for a subset or rehearsal",
        )
        record["counts_expected"] = dict(info.counts)
    report.record["data"] = record


# --------------------------------------------------------------------- weights
def check_weights(
    report: Preflight, networks: Mapping[str, Any], *, full_networks: Iterable[str] = ()
) -> None:
    """``networks``: name -> ``imagenet`` | ``none`` | weights file path | weights folder
    (:func:`common.backbones.weights_file_in`)."""
    from common.backbones import CUSTOM, imagenet_weights_file, keras_weights_dir, weights_file_in

    full = set(full_networks)
    record = {}
    for name, spec in networks.items():
        spec = str(spec)
        if spec == "none":
            record[name] = "from scratch (random initialisation)"
            continue
        if spec != "imagenet":
            if Path(spec).is_dir():  # a weights folder (common.backbones.weights_file_in)
                # any input size: a network may run at its own size (AlexNet's 227 px); loading
                # names a mismatch
                files = sorted(
                    Path(spec).glob(
                        weights_file_in(spec, name, 0, name in full).name.replace("-0px", "-*px")
                    )
                )
                if files:
                    record[name] = f"local file {files[0]}" + (
                        f" (+{len(files) - 1} other sizes)" if len(files) > 1 else ""
                    )
                else:
                    report.fail(
                        "weights",
                        f"{name}: the weights folder {spec} has no {name}-<size>px weights "
                        "file; write it with common.backbones.write_standin_weights, or "
                        "give a file, 'imagenet' or 'none'",
                    )
            elif Path(spec).is_file():
                record[name] = f"local file {spec}"
            else:
                report.fail(
                    "weights",
                    f"{name}: weights file {spec} does not exist; give an existing file, "
                    "'imagenet' or 'none'",
                )
            continue
        if name in CUSTOM:
            report.fail(
                "weights",
                f"{name}: keras.applications has no ImageNet weights for it; set its weights to a "
                "local file or 'none' (from scratch)",
            )
            continue
        filename, url = imagenet_weights_file(name, include_top=name in full)
        cached = keras_weights_dir() / filename
        if cached.is_file():
            record[name] = f"imagenet ({cached})"
        elif downloadable(url):
            record[name] = f"imagenet (downloaded on first use from {url})"
        else:
            report.fail(
                "weights",
                f"{name}: ImageNet file {filename} is not in {cached.parent} and {url} "
                "cannot be reached; copy the file there, or set this network's weights to "
                "a local file or 'none'",
            )
    if record:
        report.ok("weights", "; ".join(f"{k}: {v}" for k, v in record.items()))
    report.record["weights"] = record


def downloadable(url: str, *, timeout: float = DOWNLOAD_PROBE_TIMEOUT) -> bool:
    """Whether ``url`` answers a HEAD request within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, method="HEAD"), timeout=timeout
        ) as reply:
            return 200 <= reply.status < 400
    except (urllib.error.URLError, OSError, ValueError):
        return False


# ------------------------------------------------------------------------ disk
def network_bytes(names: Iterable[str]) -> int:
    """What the trained networks leave under the cache root (saved weights and a backup)."""
    return int(sum(PARAMETERS_M.get(n, 25.0) * 1e6 * BYTES_PER_PARAMETER for n in names))


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(nearest_existing(path)).free


def check_disk(report: Preflight, need: int) -> None:
    cache = cache_root()
    for what, folder in (("cache", cache), ("results", results_root())):
        if not is_writable(folder):
            report.fail(
                "disk",
                f"the {what} root {folder} is not writable; set "
                f"{'REPRO_CACHE_DIR' if what == 'cache' else 'REPRO_RESULTS_DIR'} to a "
                "writable folder",
            )
            return
    free = free_bytes(cache)
    report.record["disk"] = {
        "cache_root": str(cache),
        "needed_bytes": int(need),
        "free_bytes": int(free),
    }
    quota = next(
        (
            (folder, size)
            for folder, size in OUTPUT_QUOTAS
            if Path(cache).absolute().is_relative_to(folder)
        ),
        None,
    )
    if quota and need > quota[1]:
        report.fail(
            "disk",
            f"the run writes about {need / 1e9:.1f} GB under {cache}, but {quota[0]} keeps "
            f"at most {quota[1] / 1e9:.0f} GB; set REPRO_CACHE_DIR to a folder outside it "
            "(e.g. /tmp/cache, not kept after the session)",
        )
    elif free < need:
        report.fail(
            "disk",
            f"{cache} has {free / 1e9:.1f} GB free, the run writes about {need / 1e9:.1f} "
            "GB there; free space or set REPRO_CACHE_DIR to a larger disk",
        )
    else:
        report.ok(
            "disk",
            f"cache root {cache}: {free / 1e9:.1f} GB free, about {need / 1e9:.2f} GB needed",
        )


# ---------------------------------------------------------------------- device
def gpu_devices() -> list[str]:
    import keras

    try:
        return [str(d) for d in keras.distribution.list_devices("gpu")]
    except Exception:  # a backend that cannot list GPUs has none we can use
        return []


def check_device(report: Preflight, expects_gpu: bool) -> None:
    import keras

    backend = keras.backend.backend()
    if backend not in BACKENDS:
        report.fail(
            "backend",
            f"Keras backend {backend!r} cannot train these models; set KERAS_BACKEND to one of "
            f"{', '.join(BACKENDS)}",
        )
    gpus = gpu_devices()
    allow_cpu = os.environ.get(ALLOW_CPU_ENV, "") == "1"
    report.record["device"] = {
        "backend": backend,
        "gpus": gpus,
        "expects_gpu": expects_gpu,
        "allow_cpu": allow_cpu,
    }
    if gpus:
        report.ok("device", f"{backend} backend, {len(gpus)} GPU(s): {', '.join(gpus)}")
    elif expects_gpu and not allow_cpu:
        report.fail(
            "device",
            f"no GPU visible to the {backend} backend and this profile expects one; choose a GPU "
            f"runtime, or set {ALLOW_CPU_ENV}=1 to run on the CPU anyway (hours to days)",
        )
    else:
        why = f"{ALLOW_CPU_ENV}=1" if expects_gpu else "this profile is sized for a CPU"
        report.ok("device", f"{backend} backend on the CPU ({why})")
    from common.distribute import describe

    training = describe()  # run.json records it at the top level (runs.backend_and_devices)
    if training["devices"] is None:
        report.fail("training devices", training["error"])
    elif training["devices"] > 1:
        report.ok(
            "training devices",
            f"each network trains on {training['devices']} devices ({training['strategy']}); "
            "batch parameters are global batches",
        )


# ----------------------------------------------------------------------- entry
def preflight(
    params: Mapping[str, Any],
    *,
    profiles: Mapping[str, Mapping[str, Any]],
    dataset: str | None = None,
    networks: Mapping[str, Any] | None = None,
    full_networks: Iterable[str] = (),
    disk_bytes: int | Callable[[int], int] = 0,
    load_kwargs: Mapping[str, Any] | None = None,
    expects_gpu: bool | None = None,
    injected: Iterable[str] | None = None,
    verbose: bool = True,
) -> Preflight:
    """Check the run's preconditions; raise :class:`PreflightError` (one line per problem) if any
    fails.

    ``profiles``: the notebook's profiles (their names, with ``profile``, ``run`` and
    ``seed``, are the parameters it declares). ``dataset``: registry id read
    from ``params["data_root"]`` unless ``params["synthetic"]``. ``networks``: each
    network's starting weights; ``full_networks``: those built with their top (VGG fc7).
    ``disk_bytes``: what the run writes under the cache root, or a function of the
    number of samples found (synthetic runs: 0, their twins are small). ``expects_gpu``: default
    True for the ``paper`` profile. ``injected``: names papermill passed (default: read
    from the notebook's history). Returns the :class:`Preflight`, whose ``record``
    goes into ``run.json`` and whose ``dataset`` is the loaded dataset (or None).
    """
    install_short_errors()
    report = Preflight()
    known = {*profiles["demo"], "profile", "run", "seed"}
    check_parameters(report, known, injected_parameters() if injected is None else injected)
    if dataset is not None:
        check_data(
            report,
            dataset,
            params.get("data_root"),
            bool(params.get("synthetic")),
            load_kwargs or {},
        )
    if networks:
        check_weights(report, networks, full_networks=full_networks)
    n = len(report.dataset) if report.dataset is not None else 0
    check_disk(report, int(disk_bytes(n) if callable(disk_bytes) else disk_bytes))
    check_device(
        report, params.get("profile") in GPU_PROFILES if expects_gpu is None else expects_gpu
    )
    if verbose:
        print("preflight\n" + "\n".join(report.lines))
    if report.problems:
        raise PreflightError(report.problems)
    return report


def install_short_errors() -> None:
    """In IPython, show a :class:`PreflightError` or :class:`~common.data.DataError` as its
    message alone (one line per problem), not a traceback. The cell still fails."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    from common.data import DataError

    def short(self, etype, value, tb, tb_offset=None):
        lines = [f"{etype.__name__}: {value}"]
        self._showtraceback(
            etype, value, lines
        )  # an error output (papermill and nbval see the failure), no frames
        return lines

    shell.set_custom_exc((PreflightError, DataError), short)
