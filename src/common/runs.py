"""Run bookkeeping: profiles, parameters, seeding, the run folder and ``run.json``.

A notebook declares its defaults once per profile::

    PROFILES = {
        "smoke": {"epochs": 1, "n_samples": 60},
        "demo":  {"epochs": 20, "n_samples": None},
        "paper": {"epochs": 200, "n_samples": None},
    }
    params = resolve_params(PROFILES, profile=profile, epochs=epochs)

``profile`` itself resolves as: the explicit argument, else ``$REPRO_PROFILE``, else
``demo``. A profile only fills defaults: any parameter passed as something other
than ``None`` overrides it. Unknown parameter names are an error.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import random
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from common.paths import atomic_write_text, repo_root, results_root

PROFILE_NAMES = ("smoke", "demo", "paper")
PROFILE_ENV = "REPRO_PROFILE"
DEFAULT_PROFILE = "demo"
DATA_SOURCES = ("real", "embedded-real", "synthetic")
#: Keys every resolved parameter set carries, whatever the notebook declares.
COMMON_DEFAULTS = {"seed": 0}
#: Packages whose versions ``run.json`` records (when installed).
RECORDED_PACKAGES = (
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "imbalanced-learn",
    "scikit-image",
    "statsmodels",
    "matplotlib",
    "seaborn",
    "keras",
    "tensorflow",
    "torch",
    "jax",
    "papermill",
    "leukemia-repro-common",
)
#: Output files a new run replaces; anything else in the folder (e.g. the executed
#: notebook papermill is writing) is left alone.
RUN_OUTPUT_SUFFIXES = (".png", ".csv", ".md", ".json")


def resolve_profile(*, profile: str | None = None) -> str:
    """The profile to use: ``profile``, else ``$REPRO_PROFILE``, else ``demo``."""
    name = profile or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    if name not in PROFILE_NAMES:
        source = "argument profile" if profile else f"${PROFILE_ENV}"
        raise ValueError(
            f"unknown profile {name!r} (from {source}); choose one of {', '.join(PROFILE_NAMES)}"
        )
    return name


def resolve_params(
    profiles: Mapping[str, Mapping[str, Any]],
    *,
    profile: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Merge a profile's defaults with explicit overrides.

    Parameters
    ----------
    profiles : mapping profile name -> {parameter: default}. Every profile must name
        the same parameters (a typo in one profile is an error, not a silent gap).
    profile : profile name or None (then ``$REPRO_PROFILE`` or ``demo``).
    **overrides : parameter values; ``None`` means "take the profile's value".

    Returns a new dict with every parameter, plus ``profile`` and ``seed``.
    """
    missing = [p for p in PROFILE_NAMES if p not in profiles]
    if missing:
        raise ValueError(f"profiles lack {', '.join(missing)}; define smoke, demo and paper")
    key_sets = {name: set(profiles[name]) for name in PROFILE_NAMES}
    reference = key_sets["demo"]
    for name, keys in key_sets.items():
        if keys != reference:
            diff = sorted(keys ^ reference)
            raise ValueError(
                f"profile {name!r} and 'demo' differ in parameters {diff}; give every "
                "profile the same names"
            )
    chosen = resolve_profile(profile=profile)
    known = reference | set(COMMON_DEFAULTS)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; known: {sorted(known)}")
    params: dict[str, Any] = {**COMMON_DEFAULTS, **dict(profiles[chosen])}
    for key, value in overrides.items():
        if value is not None:
            params[key] = value
    params["profile"] = chosen
    return params


def notebook_overrides(
    namespace: Mapping[str, Any], profiles: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The values a notebook's parameters cell (or papermill's injected cell) set.

    Every parameter the profiles name (and ``seed``) that is set in ``namespace`` and not
    ``None``, so that ``resolve_params(PROFILES, profile=profile, **notebook_overrides(globals(),
    PROFILES))`` replaces a call that repeats every parameter's name.
    """
    known = set(COMMON_DEFAULTS).union(*(set(values) for values in profiles.values()))
    return {name: namespace[name] for name in sorted(known) if namespace.get(name) is not None}


def profiles_table(profiles: Mapping[str, Mapping[str, Any]]):
    """The profiles as one table: a row per parameter, a column per profile (``smoke``,
    ``demo``, ``paper``), each value as written (lists and ``None`` included)."""
    import pandas as pd

    names = list(dict.fromkeys(name for values in profiles.values() for name in values))
    cells = {
        profile: [repr(profiles[profile].get(name, "")) for name in names]
        for profile in PROFILE_NAMES
        if profile in profiles
    }
    return pd.DataFrame(cells, index=pd.Index(names, name="parameter"))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the active Keras backend from one integer."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    os.environ["PYTHONHASHSEED"] = str(int(seed))
    random.seed(int(seed))
    np.random.seed(int(seed))
    import keras  # imported here so that non-Keras helpers stay light

    keras.utils.set_random_seed(int(seed))


def package_versions(*, names: tuple[str, ...] = RECORDED_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (packages that are absent are left out)."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(*, cwd: Path | None = None) -> dict[str, Any]:
    """Commit hash of the checkout and whether it has uncommitted changes."""
    cwd = cwd or repo_root()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if commit.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def backend_and_devices() -> dict[str, Any]:
    """Active Keras backend and the devices it sees (backend-agnostic)."""
    import keras

    try:
        devices = [str(d) for d in keras.distribution.list_devices()]
    except Exception as exc:  # a backend without device listing must not stop a run
        devices = [f"unknown ({type(exc).__name__})"]
    return {
        "backend": keras.backend.backend(),
        "devices": devices,
        "machine": platform.machine(),
        # the GPUs this process was given (a sweep's pool sets one per run); None: not set
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        # what each training uses (common.distribute): device count, strategy, global batch
        "training": _training_devices(),
    }


def _training_devices() -> dict[str, Any]:
    from common.distribute import describe

    try:
        return describe()
    except Exception as exc:  # a backend that cannot list devices must not stop a run
        return {"devices": None, "error": f"{type(exc).__name__}: {exc}"}


def _clean_json(value: Any) -> Any:
    """Make parameters JSON-safe (NumPy scalars, paths, tuples)."""
    if isinstance(value, Mapping):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass
class Run:
    """One execution of a notebook: its folder, parameters, data and timings."""

    paper: str
    name: str
    dir: Path
    params: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    protocols: dict[str, str] = field(default_factory=dict)
    preflight: dict[str, Any] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    spans: list[dict[str, Any]] = field(default_factory=list)
    leakage: dict[str, Any] = field(default_factory=dict)
    git: dict[str, Any] = field(
        default_factory=git_commit
    )  # the code the run started with, not the code at its end

    def path(self, filename: str) -> Path:
        """Path of an output file inside the run folder."""
        return self.dir / filename

    @property
    def source(self) -> str | None:
        """The data source recorded with :meth:`set_data` (None before)."""
        return self.data.get("source")

    def set_data(self, source: str, fingerprint: str, description: str = "", **extra: Any) -> None:
        """Record where the data came from (``real``/``embedded-real``/``synthetic``)."""
        if source not in DATA_SOURCES:
            raise ValueError(f"data source {source!r} is not one of {', '.join(DATA_SOURCES)}")
        if not fingerprint:
            raise ValueError("a dataset fingerprint is required; use the loader's fingerprint")
        self.data = {
            "source": source,
            "fingerprint": fingerprint,
            "description": description,
            **_clean_json(extra),
        }

    def add_data(self, **facts: Any) -> None:
        """Add facts about the data found after :meth:`set_data` (e.g. a duplicate audit);
        ``run.json`` keeps them under ``data``."""
        if not self.data:
            raise ValueError("call run.set_data(source, fingerprint) before add_data")
        clash = sorted(set(facts) & {"source", "fingerprint"})
        if clash:
            raise ValueError(f"add_data cannot replace {clash}; use set_data")
        self.data.update(_clean_json(facts))

    def describe_protocols(self, **texts: str) -> None:
        """Record what each protocol did, in words (``published=..., leak_free=...``);
        ``run.json`` keeps them and ``make report`` shows them beside the numbers."""
        for name, text in texts.items():
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"protocol {name!r} needs a description in words, got {text!r}")
            self.protocols[name] = " ".join(text.split())

    def record_leakage(self, protocol: str, record: Mapping[str, Any]) -> dict[str, dict[str, str]]:
        """Record a protocol's leakage facts (:func:`common.leakage.split_record`) and the sheet
        answered from them (:func:`common.leakage.leakage_sheet`); ``run.json`` keeps both under
        ``leakage`` and ``make report`` shows the sheet. Returns the sheet."""
        from common.leakage import leakage_sheet

        if not isinstance(protocol, str) or not protocol.strip():
            raise ValueError(f"a leakage sheet needs a protocol name, got {protocol!r}")
        facts = _clean_json(dict(record))
        sheet = leakage_sheet(facts)
        self.leakage[protocol] = {"facts": facts, "sheet": sheet}
        return sheet

    def forecast(self, done: float, total: float, what: str) -> str:
        """Print (and return) the estimated total time of ``what`` after ``done`` of
        ``total`` equal-cost units, from the time since the run started."""
        from common.progress import forecast

        line = forecast(time.time() - self.started_at, done, total, what)
        print(line, flush=True)
        return line

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage of the run; the wall time lands in ``run.json``."""
        start, began = time.perf_counter(), time.time()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 3)
            # wall-clock span, so that a memory sampler outside the process (common.rehearse) can
            # attribute its samples to stages
            self.spans.append(
                {"stage": name, "start": round(began, 3), "end": round(time.time(), 3)}
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "paper": self.paper,
            "run": self.name,
            "params": _clean_json(self.params),
            "data": self.data,
            "protocols": self.protocols,
            **({"leakage": self.leakage} if self.leakage else {}),
            "preflight": _clean_json(self.preflight),
            "unreadable_images": unreadable_images(),
            "versions": package_versions(),
            **backend_and_devices(),
            "git": self.git,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
            "timings_s": {**self.timings, "total": round(time.time() - self.started_at, 3)},
            "started_at_s": round(self.started_at, 3),
            "stage_spans": self.spans,
        }

    def write(self) -> Path:
        """Write ``run.json`` (atomically). Call at the end of the notebook."""
        if not self.data:
            raise ValueError(
                "run.json needs the data source: call run.set_data(source, fingerprint) first"
            )
        return atomic_write_text(
            self.path("run.json"), json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"
        )


def unreadable_images() -> list[str]:
    """Images skipped as unreadable while streaming in this process (see
    :mod:`common.data.stream`)."""
    from common.data.stream import UNREADABLE

    return sorted(UNREADABLE)


def quiet_notebook_logs() -> None:
    """Keep notebook output readable: TensorFlow's retracing notes and Keras's NumPy-2
    ``__array__`` deprecation warning say nothing about the reproduction."""
    import warnings

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    warnings.filterwarnings(
        "ignore", message=".*__array__ implementation doesn't accept a copy keyword.*"
    )


def start_run(
    paper: str, params: Mapping[str, Any], *, run: str | None = None, root: Path | None = None
) -> Run:
    """Seed everything and prepare ``<root>/<paper>/<run>/``.

    ``run`` defaults to the profile name. Outputs of an earlier run with the same
    name (PNG/CSV/MD/JSON files) are removed so that nothing stale survives.
    """
    quiet_notebook_logs()
    if "seed" not in params or "profile" not in params:
        raise ValueError("params must come from resolve_params (they need 'seed' and 'profile')")
    if not paper or any(sep in paper for sep in "/\\"):
        raise ValueError(f"paper id {paper!r} must be a plain folder name such as '01_kandi'")
    name = run or str(params["profile"])
    if any(sep in name for sep in "/\\") or name in {"", ".", ".."}:
        raise ValueError(f"run name {name!r} must be a plain folder name")
    run_dir = Path(root or results_root()) / paper / name
    run_dir.mkdir(parents=True, exist_ok=True)
    for item in run_dir.iterdir():
        if item.is_file() and item.suffix in RUN_OUTPUT_SUFFIXES:
            item.unlink()
    seed_everything(int(params["seed"]))
    return Run(paper=paper, name=name, dir=run_dir, params=dict(params))
