"""``python -m common.rehearse NN``: what a notebook's ``paper`` profile costs, measured.

A rehearsal runs notebook NN's ``paper`` profile end to end with papermill on a
synthetic twin written in the real dataset's on-disk layout with the real class
proportions, patients and folds times ``--scale``; local weight files
(:func:`common.backbones.write_standin_weights`) stand in for the ImageNet downloads.
Only the image size and the epoch counts may be reduced (each is stated in the output);
the rehearsal projects them back, taking a CNN stage's cost as proportional to its
pixels (image size squared) and to its epochs. It runs with an empty cache (a cold
run), samples the resident memory of the papermill process and all its children
every half second, attributes the samples to the notebook's stages
(``Run.stage`` spans in ``run.json``) and writes
``results/rehearsal/<NN>/<tag>/rehearsal.json`` and ``row.md``.

``python -m common.rehearse report`` fits, per notebook and stage, the growth exponent
of time in N (log-log least squares over the scales) and the slope of peak memory in
N, projects both to the full dataset, and writes ``results/rehearsal/COSTS.md`` and
the README section "What the paper profile costs" (``--readme``). The numbers come
from the rehearsal files only.

Memory: ``rss`` is the resident set (what ``top`` shows), ``anon`` its anonymous part
(rss minus file-backed and shared pages). File-backed pages of memory-mapped feature
banks count in ``rss`` but are page cache the kernel reclaims under pressure; the
12 GB budget is checked against ``anon``, and both are reported.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.paths import cache_root, notebooks_dir, repo_root

BUDGET_GB = 12.0  # Colab's free tier: about 12.7 GB of RAM for the whole machine
SESSION_HOURS = 12.0
SAMPLE_EVERY_S = 0.5
MIN_SCALES = 3  # fewer measured sizes give no growth fit and no projection
README_START, README_END = "<!-- rehearsal:start -->", "<!-- rehearsal:end -->"


@dataclass(frozen=True)
class StageRule:
    """How a stage's cost projects back from the rehearsal's image size and epochs."""

    pattern: str  # regex on the stage name
    pixels: bool = False  # cost proportional to image_size ** 2
    epochs: str | None = None  # cost proportional to this epoch parameter


@dataclass(frozen=True)
class Spec:
    notebook: str
    dataset: str
    full_n: int  # samples the paper profile processes at full size
    unit: str
    epochs: dict[str, int]  # epoch parameters and their paper values
    paper_size: int | None = None
    min_size: int = 32  # smallest image size every network of the notebook builds at
    default_size: int = 32
    networks: tuple[str, ...] = ()  # networks started from ImageNet weights (local stand-ins here)
    stages: tuple[StageRule, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    #: what the rehearsal scales cannot show; ``budget_verdict`` replaces the table's budget cell
    #: when the projection alone cannot decide it (said why in the caveat)
    caveat: str = ""
    budget_verdict: str | None = None
    #: the peak memory at full size is composed (an upper bound) from a rehearsal at the paper's
    #: image size and the largest full-width stacking run (:func:`composed_peak`), when both exist
    composed_memory: bool = False


AML_COUNTS = {
    "control": 20305,
    "CBFB_MYH11": 17212,
    "NPM1": 17710,
    "RUNX1_RUNX1T1": 14403,
    "PML_RARA": 11584,
}
AML_PATIENTS = {"control": 60, "CBFB_MYH11": 37, "NPM1": 36, "RUNX1_RUNX1T1": 32, "PML_RARA": 24}
CNMC_COUNTS = {"all": 2397 + 2418 + 2457, "hem": 1130 + 1163 + 1096}
CNMC_PRELIM = {"all": 1219, "hem": 648}
CNMC_SUBJECTS = {"all": 47, "hem": 29}
ARIA_COUNTS = {"Benign": 504, "Early": 985, "Pre": 963, "Pro": 804}
ARIA_PATIENTS = {"Benign": 25, "Early": 20, "Pre": 21, "Pro": 23}
# paper 01's Table 2: samples per series; GSE28497's classes from data/README.md, the other series'
# class split is not published (split evenly here)
CUMIDA_SAMPLES = {
    "GSE14317": 25,
    "GSE71449": 45,
    "GSE33615": 71,
    "GSE63270": 101,
    "GSE22529_U133A": 52,
    "GSE22529_U133B": 52,
}
GSE28497_CLASSES = {
    "B-CELL_ALL": 74,
    "B-CELL_ALL_ETV6-RUNX1": 53,
    "B-CELL_ALL_HYPERDIP": 51,
    "B-CELL_ALL_T-ALL": 46,
    "B-CELL_ALL_TCF3-PBX1": 22,
    "B-CELL_ALL_HYPO": 18,
    "B-CELL_ALL_MLL": 17,
}
CUMIDA_PROBES = (
    22283  # HG-U133A; the other platforms in proportion (common.data.synth.cumida_platform_ids)
)

SPECS = {
    "01": Spec(
        "01_kandi_microarray_hybrid.ipynb",
        "cumida",
        627,
        "samples",
        {"ae_epochs": 50, "epochs": 30},
        stages=(StageRule(r"^(published|leak_free|leave_one_series_out)", epochs="epochs"),),
    ),
    "02": Spec(
        "02_alhammadi_cae_cnn.ipynb",
        "cnmc",
        sum(CNMC_COUNTS.values()) + sum(CNMC_PRELIM.values()),
        "images",
        {"cae_epochs": 30, "cnn_epochs": 15},
        paper_size=450,
        min_size=27,
        default_size=54,
        stages=(StageRule(r"^(published|leak_free)", pixels=True, epochs="cnn_epochs"),),
    ),
    "03": Spec(
        "03_vinurajan_oadls_aldc.ipynb",
        "cnmc",
        1927 + 1948,
        "images (the paper's subset)",
        {"epochs": 30, "deeper_epochs": 30, "baseline_epochs": 10},
        paper_size=224,
        min_size=75,
        default_size=96,
        networks=("efficientnetv2m", "vgg16", "densenet121", "mobilenetv2", "inceptionv3"),
        stages=(
            StageRule(r"^efficientnetv2m_features|^preprocess", pixels=True),
            StageRule(r"^acrnn_search", pixels=True, epochs="epochs"),
            StageRule(r"^acrnn_", pixels=True, epochs="deeper_epochs"),
            StageRule(r"^baseline_", pixels=True, epochs="baseline_epochs"),
        ),
        extra={"subset": {"subset_normal": 1927, "subset_all": 1948}},
    ),
    "04": Spec(
        "04_patel_aml_stacking.ipynb",
        "aml_mll",
        sum(AML_COUNTS.values()),
        "cells",
        {"cnn_epochs": 50, "vit_epochs": 50},
        paper_size=224,
        min_size=32,
        default_size=32,
        networks=("mobilenetv2", "resnet101", "vgg16"),
        stages=(
            StageRule(r"^features_", pixels=True),
            StageRule(r"^fine_tune_", pixels=True, epochs="cnn_epochs"),
            StageRule(r"^vit_", pixels=True, epochs="vit_epochs"),
        ),
        caveat="At the rehearsal scales a setting's training rows are fewer than the 7,424 fused "
        "feature columns, so PCA and the SVM run their small-N branches (full SVD, "
        "liblinear's dual) and the stacking stages' growth does not extrapolate to the "
        "paper's 142,140 rows: that stage is measured at the real width on its own (the "
        "stacking table below; its peak anon there is the stage's own process). The rest "
        "of the notebook's memory is mostly fixed: networks, TensorFlow's runtime and the "
        "memory it keeps after each training (each fine-tuned CNN trains in a child "
        "process for that reason), and at 224 px more than at 32 px (VGG-16's first dense "
        "layer takes 25,088 inputs instead of 512). So the peak at full size is composed "
        "from measurements rather than read from the 32 px fit "
        "(common.rehearse.composed_peak): a rehearsal at the paper's 224 px holds every "
        "fixed cost; the stacking stages (stacking_*, grouped_kfold) are the part that "
        "grows with N, and they do not overlap the rest in time, so the bound is the "
        "larger of the other stages' peak at 224 px and the kernel's peak during stacking "
        "at 224 px plus the whole stacking stage at the real width and the paper's "
        "largest row count (measured in its own process). On this CPU a fine-tune's "
        "activations at 224 px sit in host memory (on a GPU they sit on the GPU), so the "
        "first term over-states a GPU session's host memory.",
        budget_verdict="not shown (no rehearsal at 224 px or no full-width stacking run yet; "
        "see its caveat)",
        composed_memory=True,
    ),
    "05": Spec(
        "05_patel_all_weighted_ensemble.ipynb",
        "aria_all",
        sum(ARIA_COUNTS.values()),
        "images",
        {"epochs": 10},
        paper_size=224,
        min_size=32,
        default_size=32,
        networks=("densenet201", "resnet50", "alexnet", "vgg16", "mobilenetv2"),
        stages=(StageRule(r"^fine_tune_", pixels=True, epochs="epochs"),),
    ),
}


def _scaled(counts: dict[str, int], scale: float, minimum: int) -> dict[str, int]:
    return {k: max(minimum, int(round(v * scale))) for k, v in counts.items()}


def twin_kwargs(nb: str, scale: float) -> dict[str, Any]:
    """The synthetic twin's arguments at ``scale``: the real counts per class (and per series,
    patients, prelim set) times ``scale``, with the minimum a notebook's splits need."""
    if nb == "01":
        from common.data.synth import CUMIDA_PAPER_SERIES

        counts: dict[str, Any] = {"GSE28497": _scaled(GSE28497_CLASSES, scale, 5)}
        for name, total in CUMIDA_SAMPLES.items():
            labels = CUMIDA_PAPER_SERIES[name]
            counts[name] = max(5, int(round(total * scale / len(labels))))
        return {
            "n_per_class": counts,
            "n_probes": CUMIDA_PROBES,
            "series": CUMIDA_PAPER_SERIES,
            "platform_ids": True,
        }
    if nb in (
        "02",
        "03",
    ):  # six subjects per class: patient-grouped test, validation and three folds each get one
        return {
            "n_per_class": _scaled(CNMC_COUNTS, scale, 12),
            "patients_per_class": _scaled(CNMC_SUBJECTS, scale, 6),
            "n_prelim": _scaled(CNMC_PRELIM, scale, 4),
            "size": 450,
        }
    if (
        nb == "04"
        # eight patients per class: the patient-level 15% test and validation parts each get every
        # class
    ):
        return {
            "n_per_class": _scaled(AML_COUNTS, scale, 16),
            "patients_per_class": _scaled(AML_PATIENTS, scale, 8),
            "size": 144,
        }
    if nb == "05":
        return {
            "n_per_class": _scaled(ARIA_COUNTS, scale, 8),
            "patients_per_class": _scaled(ARIA_PATIENTS, scale, 2),
            "size": 224,
        }
    raise ValueError(nb)


def twin(nb: str, scale: float) -> Path:
    """The scaled twin, written once under ``<cache root>/rehearsal/twins`` and reused."""
    from common.data.synth import synth
    from common.modelstore import json_digest

    spec, kwargs = SPECS[nb], twin_kwargs(nb, scale)
    out = (
        cache_root()
        / "rehearsal"
        / "twins"
        / f"{spec.dataset}-{nb}-s{scale:g}-{json_digest(kwargs)[:8]}"
    )
    if not out.is_dir():
        synth(spec.dataset, out, seed=0, **kwargs)
    return out


def notebook_params(
    nb: str, scale: float, *, root: Path, size: int | None, epochs: int | None, weights: Path | None
) -> dict[str, Any]:
    """papermill parameters of the rehearsal: the ``paper`` profile, on the twin, with the stated
    reductions."""
    spec = SPECS[nb]
    params: dict[str, Any] = {"profile": "paper", "run": "rehearsal", "data_root": str(root)}
    if spec.paper_size is not None:
        params["image_size"] = size or spec.paper_size
    if (
        epochs is not None
    ):  # the longest epoch parameter becomes `epochs`, the others shrink in proportion
        ratio = min(1.0, epochs / max(spec.epochs.values()))
        params.update(
            {name: max(1, int(round(paper * ratio))) for name, paper in spec.epochs.items()}
        )
    if spec.networks and weights is not None:
        params["pretrained"] = str(weights)
    for name, full in spec.extra.get("subset", {}).items():
        params[name] = max(4, int(round(full * scale)))
    return params


# ------------------------------------------------------------------ sampling
class MemorySampler(threading.Thread):
    """Samples rss and anonymous rss (MB) of a process and all its children."""

    def __init__(self, pid: int, every: float = SAMPLE_EVERY_S):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float, float]] = []  # (time, rss MB, anon MB)
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._halt.is_set():
            rss = anon = 0.0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for proc in procs:
                try:
                    mem = proc.memory_info()
                except psutil.Error:
                    continue
                rss += mem.rss
                anon += mem.rss - getattr(mem, "shared", 0)
            self.samples.append((time.time(), rss / 2**20, anon / 2**20))
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def stage_table(
    run_json: dict, samples: list[tuple[float, float, float]], wall_s: float
) -> list[dict[str, Any]]:
    """Per stage: wall seconds (``Run.stage`` accumulates repeated stages) and the peak rss/anon
    of the samples inside its spans; ``other`` is the rest of the notebook (start-up, imports,
    figures, tables), and ``notebook`` the whole papermill run."""
    timings = {k: v for k, v in run_json.get("timings_s", {}).items() if k != "total"}
    spans = run_json.get("stage_spans", [])
    t = np.array([s[0] for s in samples]) if samples else np.zeros(0)
    rss = np.array([s[1] for s in samples]) if samples else np.zeros(0)
    anon = np.array([s[2] for s in samples]) if samples else np.zeros(0)
    inside_any = np.zeros(t.size, dtype=bool)
    rows = []
    for name, seconds in timings.items():
        hit = np.zeros(t.size, dtype=bool)
        for span in spans:
            if span["stage"] == name:
                hit |= (t >= span["start"]) & (t <= span["end"])
        inside_any |= hit
        rows.append(
            {
                "stage": name,
                "seconds": round(float(seconds), 2),
                "peak_rss_mb": round(float(rss[hit].max()), 1) if hit.any() else None,
                "peak_anon_mb": round(float(anon[hit].max()), 1) if hit.any() else None,
            }
        )
    rest = ~inside_any
    rows.append(
        {
            "stage": "other",
            "seconds": round(max(0.0, wall_s - sum(timings.values())), 2),
            "peak_rss_mb": round(float(rss[rest].max()), 1) if rest.any() else None,
            "peak_anon_mb": round(float(anon[rest].max()), 1) if rest.any() else None,
        }
    )
    rows.append(
        {
            "stage": "notebook",
            "seconds": round(wall_s, 2),
            "peak_rss_mb": round(float(rss.max()), 1) if rss.size else None,
            "peak_anon_mb": round(float(anon.max()), 1) if anon.size else None,
        }
    )
    return rows


def projection_factor(nb: str, stage: str, params: dict[str, Any]) -> tuple[float, str]:
    """(factor, why) that takes a stage's rehearsal time back to the paper's image size and
    epochs."""
    spec = SPECS[nb]
    for rule in spec.stages:
        if re.search(rule.pattern, stage):
            factor, why = 1.0, []
            if (
                rule.pixels
                and spec.paper_size
                and params.get("image_size") not in (None, spec.paper_size)
            ):
                factor *= (spec.paper_size / params["image_size"]) ** 2
                why.append(f"x({spec.paper_size}/{params['image_size']})^2 px")
            if rule.epochs and params.get(rule.epochs) not in (None, spec.epochs[rule.epochs]):
                factor *= spec.epochs[rule.epochs] / params[rule.epochs]
                why.append(f"x{spec.epochs[rule.epochs]}/{params[rule.epochs]} epochs")
            return factor, " ".join(why)
    return 1.0, ""


def _downsample(
    samples: list[tuple[float, float, float]], start: float, keep: int = 240
) -> list[list[float]]:
    step = max(1, math.ceil(len(samples) / keep))
    return [[round(s[0] - start, 1), round(s[1], 1), round(s[2], 1)] for s in samples[::step]]


def _tag(scale: float, params: dict[str, Any]) -> str:
    parts = [f"s{scale:g}"]
    if "image_size" in params:
        parts.append(f"px{params['image_size']}")
    epochs = [v for k, v in params.items() if k.endswith("epochs")]
    if epochs:
        parts.append(f"e{max(epochs)}")
    return "-".join(parts)


def out_root() -> Path:
    return repo_root() / "results" / "rehearsal"


def check_request(nb: str, *, scale: float, size: int | None, epochs: int | None) -> Spec:
    """Fail in one line, before anything runs, on a request that cannot work."""
    if nb not in SPECS:
        raise SystemExit(f"error: no notebook {nb!r}; choose one of {', '.join(SPECS)}")
    spec = SPECS[nb]
    if not 0 < scale <= 1:
        raise SystemExit(
            f"error: --scale {scale} must be in (0, 1] (a fraction of the real dataset)"
        )
    if size is not None:
        if spec.paper_size is None:
            raise SystemExit(f"error: notebook {nb} has no image size; drop --image-size")
        if not spec.min_size <= size <= spec.paper_size:
            raise SystemExit(
                f"error: --image-size {size} must be in [{spec.min_size}, "
                f"{spec.paper_size}] for notebook {nb}"
            )
        if nb == "02" and size % 9:
            raise SystemExit(f"error: notebook 02 needs an image size divisible by 9, got {size}")
    if epochs is not None and epochs < 1:
        raise SystemExit(f"error: --epochs {epochs} must be at least 1")
    if importlib.util.find_spec("papermill") is None:  # run as `python -m papermill` below
        raise SystemExit("error: papermill is not installed in this environment; run `make setup`")
    return spec


def rehearse(
    nb: str, scale: float, *, size: int | None = None, epochs: int | None = None, keep: bool = False
) -> dict[str, Any]:
    """Run one rehearsal; returns (and writes) its record."""
    spec = check_request(nb, scale=scale, size=size, epochs=epochs)
    size = size or (spec.default_size if spec.paper_size else None)
    t0 = time.time()
    root = twin(nb, scale)
    twin_s = time.time() - t0
    work = cache_root() / "rehearsal" / "runs" / f"{nb}-s{scale:g}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    weights = None
    if spec.networks:
        from common.backbones import write_standin_weights
        from common.ensemble import alexnet_size

        weights = cache_root() / "rehearsal" / "weights"
        others = [name for name in spec.networks if name != "alexnet"]
        write_standin_weights(weights, others, [size])
        if "alexnet" in spec.networks:  # notebook 05 runs AlexNet at its own size
            write_standin_weights(weights, ["alexnet"], [alexnet_size(size)])
    params = notebook_params(nb, scale, root=root, size=size, epochs=epochs, weights=weights)
    env = {
        **os.environ,
        "REPRO_RESULTS_DIR": str(work / "results"),
        "REPRO_CACHE_DIR": str(work / "cache"),
        "REPRO_ALLOW_CPU": "1",
        "KERAS_HOME": str(work / "keras"),
        "REPRO_PROFILE": "paper",
    }
    out_nb = work / "executed.ipynb"
    work.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "papermill",
        "-k",
        "python3",
        "--log-output",
        "--no-progress-bar",
        str(notebooks_dir() / spec.notebook),
        str(out_nb),
    ]
    for key, value in params.items():
        cmd += ["-p" if not isinstance(value, str) else "-r", key, str(value)]
    print(f"rehearsal {nb} at scale {scale:g}: {params}", flush=True)
    log = open(work / "papermill.log", "w")
    start = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    sampler = MemorySampler(proc.pid)
    sampler.start()
    rc = proc.wait()
    wall = time.time() - start
    sampler.stop()
    log.close()
    if rc != 0:
        tail = (work / "papermill.log").read_text(errors="replace").splitlines()[-15:]
        raise SystemExit(
            f"error: notebook {nb} failed in the rehearsal (exit {rc}); log: "
            f"{work / 'papermill.log'}\n" + "\n".join(tail)
        )
    run_json = json.loads(next((work / "results").glob("*/rehearsal/run.json")).read_text())
    stages = stage_table(run_json, sampler.samples, wall)
    for row in stages:
        factor, why = projection_factor(nb, row["stage"], params)
        row["paper_factor"], row["paper_factor_why"] = round(factor, 3), why
    from common.data import load

    ds = load(
        spec.dataset, root=root, **({"merge": "paper_width"} if spec.dataset == "cumida" else {})
    )
    n = int(sum(params[k] for k in spec.extra["subset"])) if "subset" in spec.extra else len(ds)
    record = {
        "notebook": nb,
        "scale": scale,
        "n": n,
        "full_n": spec.full_n,
        "unit": spec.unit,
        "params": params,
        "reductions": {
            "image_size": [size, spec.paper_size] if size != spec.paper_size else None,
            "epochs": {k: [params[k], v] for k, v in spec.epochs.items() if params.get(k, v) != v},
        },
        "twin": {
            "root": str(root),
            "kwargs": json.loads(json.dumps(twin_kwargs(nb, scale), default=str)),
            "classes": ds.class_counts(),
            "patients": ds.n_patients,
            "seconds_to_write": round(twin_s, 1),
        },
        "machine": _machine(),
        "backend": run_json.get("backend"),
        "devices": run_json.get("devices"),
        "wall_s": round(wall, 1),
        "stages": stages,
        "data_source": run_json.get("data", {}).get("source"),
        "memory_timeline": {
            "columns": ["s", "rss_mb", "anon_mb"],
            "every_s": SAMPLE_EVERY_S,
            "rows": _downsample(sampler.samples, start),
        },
        "git": run_json.get("git", {}),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
    }
    dest = out_root() / nb / _tag(scale, params)
    dest.mkdir(parents=True, exist_ok=True)
    # committed files: paths inside the checkout are written relative to it
    from common.canonical import repo_relative

    (dest / "rehearsal.json").write_text(
        repo_relative(json.dumps(record, indent=1) + "\n", repo_root())
    )
    (dest / "row.md").write_text(repo_relative(markdown_row(record) + "\n", repo_root()))
    print(markdown_row(record))
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return record


def _machine() -> dict[str, Any]:
    import platform

    import psutil

    # the load averages at the end of a run (this run included): above the CPU count, something else
    # shared the CPU
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def markdown_row(record: dict[str, Any]) -> str:
    nb = next(r for r in record["stages"] if r["stage"] == "notebook")
    red = record["reductions"]
    reduced = (
        ", ".join(
            filter(
                None,
                [
                    f"{red['image_size'][0]} px (paper {red['image_size'][1]})"
                    if red["image_size"]
                    else "",
                    *(f"{k} {a} (paper {b})" for k, (a, b) in red["epochs"].items()),
                ],
            )
        )
        or "none"
    )
    return (
        f"| {record['notebook']} | {record['scale']:g} | {record['n']:,} {record['unit']} "
        f"| {nb['seconds']:.0f} s | {nb['peak_rss_mb'] / 1024:.2f} GB | "
        f"{nb['peak_anon_mb'] / 1024:.2f} GB | {reduced} | {record['machine']['cpus']} "
        f"CPU, {record['devices'] or 'cpu'} |"
    )


# -------------------------------------------------------------------- report
def load_records(*, root: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(root or out_root()).glob("*/*/rehearsal.json")):
        record = json.loads(path.read_text())
        out.setdefault(record["notebook"], []).append(record)
    return {nb: sorted(recs, key=lambda r: r["n"]) for nb, recs in sorted(out.items())}


def growth_exponent(n: list[float], t: list[float]) -> float | None:
    """Least-squares slope of log t on log n (None with fewer than two distinct sizes or a zero
    time)."""
    n, t = np.asarray(n, float), np.asarray(t, float)
    if len(set(n.tolist())) < 2 or (t <= 0).any():
        return None
    return float(np.polyfit(np.log(n), np.log(t), 1)[0])


def project_time(
    n: list[float], t: list[float], full_n: float, *, factor: float = 1.0
) -> dict[str, float | None]:
    """Growth exponent and projected time at ``full_n``.

    ``exponent``: least-squares slope of log t on log n (what the table reports). The
    projection separates a fixed part from a growing one: a least-squares line
    t = a + b n (a >= 0: building networks, tracing graphs, loading libraries) gives the
    fixed part a; the growing part is b n at full size, or, where the exponent exceeds
    1.15 (a superlinear stage), (t_largest - a) (full_n / n_largest) ** exponent. Only the
    growing part is multiplied by ``factor`` (paper image size and epochs)."""
    n_, t_ = np.asarray(n, float), np.asarray(t, float)
    k = growth_exponent(n, t)
    if k is None:
        return {"exponent": None, "fixed_s": None, "full_s": None, "full_paper_s": None}
    i = int(np.argmax(n_))
    slope, fixed = np.polyfit(n_, t_, 1)
    if fixed < 0 or slope < 0:
        fixed, slope = 0.0, t_[i] / n_[i]
    fixed = min(fixed, t_.min())
    growing = (
        (t_[i] - fixed) * (full_n / n_[i]) ** k if k > 1.15 else (t_[i] - fixed) / n_[i] * full_n
    )
    return {
        "exponent": k,
        "fixed_s": float(fixed),
        "full_s": float(fixed + growing),
        "full_paper_s": float(fixed + growing * factor),
    }


def project_memory(
    n: list[float], mb: list[float], full_n: float
) -> tuple[float | None, float | None]:
    """(MB per 1,000 samples, projected MB at ``full_n``) from a least-squares line."""
    n, mb = np.asarray(n, float), np.asarray(mb, float)
    if len(set(n.tolist())) < 2:
        return None, None
    slope, intercept = np.polyfit(n, mb, 1)
    return float(slope * 1000), float(max(intercept + slope * full_n, mb.max()))


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def stage_projections(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per stage (in notebook order): measured points, exponent, projected time (paper size
    and epochs) and memory at full N. Points must share the image size and epochs."""
    full_n = records[-1]["full_n"]
    names = [r["stage"] for r in records[-1]["stages"]]
    out = []
    for name in names:
        pts = [(rec["n"], row) for rec in records for row in rec["stages"] if row["stage"] == name]
        if not pts:
            continue
        n = [p[0] for p in pts]
        t = [p[1]["seconds"] for p in pts]
        factor = pts[-1][1].get("paper_factor", 1.0)
        fit = len(set(n)) >= MIN_SCALES
        proj = (
            project_time(n, t, full_n, factor=factor)
            if fit
            else dict.fromkeys(("exponent", "fixed_s", "full_s", "full_paper_s"))
        )
        anon = [p[1]["peak_anon_mb"] for p in pts]
        rss = [p[1]["peak_rss_mb"] for p in pts]
        slope, anon_full = (
            project_memory(n, anon, full_n) if fit and None not in anon else (None, None)
        )
        _, rss_full = project_memory(n, rss, full_n) if fit and None not in rss else (None, None)
        out.append(
            {
                "stage": name,
                "n": n,
                "seconds": t,
                "exponent": proj["exponent"],
                "fixed_s": proj["fixed_s"],
                "cpu_s_full": proj["full_s"],
                "paper_factor": factor,
                "paper_factor_why": pts[-1][1].get("paper_factor_why", ""),
                "cpu_s_full_paper": proj["full_paper_s"],
                "anon_mb_per_1000": slope,
                "anon_mb_full": anon_full,
                "rss_mb_full": rss_full,
            }
        )
    return out


def report(
    records: dict[str, list[dict[str, Any]]], *, stacking: Sequence[dict[str, Any]] = ()
) -> str:
    """The Markdown of "What the paper profile costs", from the rehearsal records and notebook 04's
    stacking
    benchmarks (:mod:`common.rehearse_stacking`)."""
    from common import rehearse_stacking

    lines = [
        "Generated by `python -m common.rehearse report --readme README.md` from the "
        "rehearsal files in `results/rehearsal/` (each made by `make rehearse NB=NN "
        "SCALE=S`); not typed. A rehearsal runs the notebook's `paper` profile with "
        "papermill on a **synthetic** twin with the real dataset's class proportions, "
        "patients and layout times the scale, from a cold cache, with local stand-in "
        "weight files instead of ImageNet downloads. Stated reductions (image size, "
        "epochs) are projected back: a CNN stage's time times (paper px / rehearsal px)² "
        "times (paper epochs / rehearsal epochs); at a small image size decoding weighs "
        "more than the convolutions, so the pixel factor over-states a CNN stage (an "
        "upper bound). Growth exponent: slope of log time on log N over the scales (below "
        "1 where a fixed start-up cost weighs at small N). Projection: a line time = "
        "fixed + per-sample x N through the points gives the fixed part; the growing part "
        "is per-sample x full N (or, above an exponent of 1.15, the largest point's "
        "growing part times (full N / N)^exponent), and only it takes the image-size and "
        f"epoch factors. Growth and projections need at least {MIN_SCALES} scales; with "
        "fewer, only the measured points are shown. Memory: peak resident set of the "
        "papermill process and its children, sampled every 0.5 s; **anon** excludes "
        "file-backed pages (memory-mapped feature banks, libraries), which the kernel "
        "reclaims; the 12 GB budget (Colab's free tier) is checked on anon. At the "
        "rehearsal's image size; a CNN's activations at 224 px live on the GPU.",
        "",
    ]
    devices = {str(r.get("devices") or "cpu") for recs in records.values() for r in recs}
    if all("gpu" not in d.lower() and "cuda" not in d.lower() for d in devices):
        lines += [
            "**GPU: no device was lent to the sessions that made these rehearsals, so no "
            "CNN stage was measured on a GPU and no GPU time is given** (CPU times are "
            "not converted into GPU times).",
            "",
        ]
    summary = [
        "| notebook | full N | scales rehearsed (N) | reductions | projected CPU time, "
        f"full N, paper settings | projected peak anon (rss) | ≤ {BUDGET_GB:.0f} GB |",
        "|---|---|---|---|---|---|---|",
    ]
    detail = []
    rows: dict[str, str] = {
        nb: f"| {nb} | {spec.full_n:,} {spec.unit} | not rehearsed yet | | | | |"
        for nb, spec in SPECS.items()
    }
    for nb, recs in records.items():
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in recs:  # one series per (image size, epochs) setting
            groups.setdefault(json.dumps(r["reductions"], sort_keys=True), []).append(r)
        main = max(groups.values(), key=len)
        stages = stage_projections(main)
        whole = next((s for s in stages if s["stage"] == "notebook"), None)
        parts = [s for s in stages if s["stage"] != "notebook"]
        projected = [s["cpu_s_full_paper"] for s in parts if s["cpu_s_full_paper"] is not None]
        cpu_full = sum(projected) if projected else None
        if (
            whole is not None
        ):  # the whole notebook at paper settings: the sum of its projected stages
            whole.update(cpu_s_full_paper=cpu_full, paper_factor_why="sum of the stages")
        red = main[-1]["reductions"]
        reduced = (
            "; ".join(
                filter(
                    None,
                    [
                        f"{red['image_size'][0]} px (paper {red['image_size'][1]})"
                        if red["image_size"]
                        else "",
                        *(f"{k} {a} (paper {b})" for k, (a, b) in red["epochs"].items()),
                    ],
                )
            )
            or "none"
        )
        anon_full = whole["anon_mb_full"] if whole else None
        rss_full = whole["rss_mb_full"] if whole else None
        ok = "n/a" if anon_full is None else ("yes" if anon_full / 1024 <= BUDGET_GB else "**no**")
        if len(main) < MIN_SCALES:
            ok = f"n/a (fewer than {MIN_SCALES} scales)"
        composed = composed_peak(recs, stacking) if SPECS[nb].composed_memory else None
        if SPECS[nb].budget_verdict:
            ok = SPECS[nb].budget_verdict
        if composed is not None:
            ok = (
                "yes (upper bound)"
                if composed["anon_mb"] / 1024 <= BUDGET_GB
                else "**no** (upper bound)"
            )
        sizes_n = [r["n"] for r in main]
        sizes = ", ".join(f"{n:,}" for n in sizes_n)
        time_cell = _hours(cpu_full)
        memory_cell = (
            f"{anon_full / 1024:.1f} GB ({rss_full / 1024:.1f} GB)"
            if anon_full is not None
            else "n/a"
        )
        if SPECS[
            nb
        ].budget_verdict:  # the projection alone is not to be read here: the caveat says why
            time_cell = (
                f"not read from these scales ({_hours(cpu_full)} by their fit; see its caveat)"
            )
            memory_cell = (
                f"not read from these scales ({memory_cell} by their fit)"
                if anon_full is not None
                else memory_cell
            )
            if composed is not None:
                memory_cell = composed["text"]
        rows[nb] = (
            f"| {nb} | {main[-1]['full_n']:,} {main[-1]['unit']} | {len(main)}: {sizes} | "
            f"{reduced} | {time_cell} | {memory_cell} | {ok} |"
        )
        detail += [
            f"**{nb}** ({SPECS[nb].notebook}; {main[-1]['machine']['cpus']} CPUs, "
            f"{main[-1]['machine']['memory_gb']} GB; rehearsed {main[-1]['when'][:10]})",
            "",
            "| stage | seconds at N = "
            + " / ".join(f"{x:,}" for x in sizes_n)
            + " | exponent | full N, this CPU | to paper settings | full N, paper settings "
            "| anon MB per 1,000 | peak anon at full N |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in stages:
            seconds = " / ".join(f"{x:.0f}" if x >= 10 else f"{x:.1f}" for x in s["seconds"])
            exponent = "n/a" if s["exponent"] is None else f"{s['exponent']:.2f}"
            slope = "n/a" if s["anon_mb_per_1000"] is None else f"{s['anon_mb_per_1000']:.0f}"
            peak = "n/a" if s["anon_mb_full"] is None else f"{s['anon_mb_full'] / 1024:.2f} GB"
            detail.append(
                f"| {s['stage']} | {seconds} | {exponent} | {_hours(s['cpu_s_full'])} | "
                f"{s['paper_factor_why'] or '-'} | {_hours(s['cpu_s_full_paper'])} | "
                f"{slope} | {peak} |"
            )
        detail += ["", budget_line(nb, parts, anon_full, composed=composed), ""] + (
            [f"Caveat, {nb}: {SPECS[nb].caveat}", ""] if SPECS[nb].caveat else []
        )
        detail += other_settings(nb, [r for r in recs if not any(r is m for m in main)])
    extra = [rehearse_stacking.report(list(stacking))] if stacking else []
    return "\n".join(lines + summary + list(rows.values()) + [""] + detail + extra).rstrip() + "\n"


STACKING_STAGES = (
    r"^stacking|^grouped_kfold"  # notebook 04's stages that fit stackers on fused rows
)


def composed_peak(
    recs: Sequence[dict[str, Any]], stacking: Sequence[dict[str, Any]]
) -> dict[str, Any] | None:
    """An upper bound on notebook 04's peak anon at full size, from measurements, or None unless
    there are both a rehearsal at the paper's image size and a stacking-stage run at the paper's
    largest row count (:mod:`common.rehearse_stacking`).

    The stacking stages and the rest do not overlap in time, so the bound is the larger of
    (a) the peak of every other stage at the paper's image size (fixed costs: networks, runtime,
    what training keeps, a fine-tune's child process; on a CPU its activations too, which a GPU
    holds instead) and (b) the kernel's peak during the stacking stages at that size plus the
    whole stacking stage at full width (measured in its own process, so its interpreter and the
    small-N stacking are counted twice)."""
    from common.rehearse_stacking import FULL_ROWS

    at_size = [r for r in recs if not r["reductions"]["image_size"]]
    full = [r for r in stacking if r.get("mode", "stage") == "stage" and r["rows"] >= FULL_ROWS]
    if not at_size or not full:
        return None

    def peak(record, stacking_stages):
        rows = [
            s
            for s in record["stages"]
            if s["stage"] != "notebook"
            and s["peak_anon_mb"] is not None
            and bool(re.search(STACKING_STAGES, s["stage"])) == stacking_stages
        ]
        return max((s["peak_anon_mb"] for s in rows), default=0.0)

    rest_mb = max(peak(r, False) for r in at_size)
    kernel_mb = max(peak(r, True) for r in at_size)
    stage = max(full, key=lambda r: r["peak_anon_mb"])
    anon_mb = max(rest_mb, kernel_mb + stage["peak_anon_mb"])
    size, n = at_size[-1]["params"].get("image_size"), max(r["n"] for r in at_size)
    return {
        "anon_mb": anon_mb,
        "rest_mb": rest_mb,
        "kernel_mb": kernel_mb,
        "stage_mb": stage["peak_anon_mb"],
        "n": n,
        "image_size": size,
        "rows": stage["rows"],
        "trees": stage["trees"],
        "text": f"{anon_mb / 1024:.1f} GB upper bound: the larger of {rest_mb / 1024:.1f} GB (the "
        f"other stages at {size} px, N = {n:,}, fine-tunes' child processes included) and "
        f"{kernel_mb / 1024:.1f} GB (the kernel during stacking at {size} px) + "
        f"{stage['peak_anon_mb'] / 1024:.1f} GB (the stacking stage at {stage['rows']:,} "
        "rows)",
    }


def _notebook_row(record: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in record["stages"] if r["stage"] == "notebook")


def other_settings(nb: str, recs: Sequence[dict[str, Any]]) -> list[str]:
    """Rehearsals outside the growth series (another image size or epoch count): one row each."""
    if not recs:
        return []
    lines = [
        f"Other settings, {nb} (single rehearsals outside the growth fit above):",
        "",
        "| N | reductions | wall | peak anon (rss) | largest stage by anon | machine | commit |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in recs:
        whole = _notebook_row(r)
        stages = [
            s
            for s in r["stages"]
            if s["stage"] not in ("notebook", "other") and s["peak_anon_mb"] is not None
        ]
        top = max(stages, key=lambda s: s["peak_anon_mb"]) if stages else None
        red = r["reductions"]
        size = r["params"].get("image_size")
        reduced = "; ".join(
            filter(
                None,
                [
                    f"{red['image_size'][0]} px (paper {red['image_size'][1]})"
                    if red["image_size"]
                    else f"{size} px (the paper's)"
                    if size
                    else "",
                    *(f"{k} {a} (paper {b})" for k, (a, b) in red["epochs"].items()),
                ],
            )
        )
        reduced = reduced or "none (the paper's settings)"
        lines.append(
            f"| {r['n']:,} | {reduced} | {_hours(whole['seconds'])} | "
            f"{whole['peak_anon_mb'] / 1024:.2f} GB ({whole['peak_rss_mb'] / 1024:.2f} GB) "
            "| "
            + (f"{top['stage']}: {top['peak_anon_mb'] / 1024:.2f} GB" if top else "n/a")
            + f" | {r['machine']['cpus']} CPU, {', '.join(r.get('devices') or ['cpu'])}, load "
            f"{'/'.join(str(x) for x in r['machine'].get('load_avg_1_5_15', [])) or 'n/a'} | "
            f"{str(r.get('git', {}).get('commit', ''))[:7] or 'n/a'} |"
        )
    return lines + [""]


def budget_line(
    nb: str,
    parts: list[dict[str, Any]],
    anon_full_mb: float | None,
    *,
    composed: dict[str, Any] | None = None,
) -> str:
    """The budgets, read from the projections: memory, growth, the longest stage against a
    session."""
    if all(s["exponent"] is None for s in parts):
        return f"Budgets, {nb}: not assessed (fewer than {MIN_SCALES} scales rehearsed)."
    fast = [
        f"{s['stage']} ({s['exponent']:.2f})"
        for s in parts
        if s["exponent"] is not None and s["exponent"] > 1.3
    ]
    timed = [s for s in parts if s["cpu_s_full_paper"] is not None]
    longest = max(timed, key=lambda s: s["cpu_s_full_paper"]) if timed else None
    memory = (
        "n/a"
        if anon_full_mb is None
        else f"{anon_full_mb / 1024:.1f} GB projected peak anon, "
        f"{'within' if anon_full_mb / 1024 <= BUDGET_GB else '**over**'} {BUDGET_GB:.0f} "
        "GB"
    )
    if SPECS[nb].budget_verdict:
        memory = f"memory {SPECS[nb].budget_verdict}"
    if composed is not None:
        within = "within" if composed["anon_mb"] / 1024 <= BUDGET_GB else "**over**"
        memory = f"{composed['text']}, {within} {BUDGET_GB:.0f} GB"
    growth = (
        "no stage grows faster than N^1.3"
        if not fast
        else "**faster than N^1.3**: " + ", ".join(fast)
    )
    session = (
        ""
        if longest is None
        else f"; longest stage {longest['stage']}: {_hours(longest['cpu_s_full_paper'])} on "
        "this CPU at paper settings "
        f"({'within' if longest['cpu_s_full_paper'] <= SESSION_HOURS * 3600 else 'over'} a "
        f"{SESSION_HOURS:.0f}-hour session)"
    )
    epochs = _paper_epochs(nb, longest["stage"]) if longest is not None else None
    if (
        epochs and longest["cpu_s_full_paper"] > SESSION_HOURS * 3600
    ):  # what a disconnect loses: one epoch
        epoch_s = longest["cpu_s_full_paper"] / epochs
        session += (
            f"; it resumes from its last finished epoch, and one of its {epochs} epochs "
            f"takes {_hours(epoch_s)} on this CPU "
            f"({'within' if epoch_s <= SESSION_HOURS * 3600 else 'over'} a session)"
        )
    return f"Budgets, {nb}: {memory}; {growth}{session}."


def _paper_epochs(nb: str, stage: str) -> int | None:
    """The paper's epoch count of a stage that trains (and so resumes per epoch), else None."""
    rule = next((r for r in SPECS[nb].stages if re.search(r.pattern, stage)), None)
    return SPECS[nb].epochs.get(rule.epochs) if rule is not None and rule.epochs else None


def write_readme(readme: Path, section: str) -> None:
    from common.canonical import CanonicalError, replace_section

    try:
        readme.write_text(
            replace_section(
                readme.read_text(),
                README_START,
                README_END,
                section,
                f"{readme} (under the heading 'What the paper profile costs')",
            )
        )
    except CanonicalError as exc:
        raise SystemExit(f"error: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        p = argparse.ArgumentParser(prog="python -m common.rehearse report")
        p.add_argument(
            "--readme",
            type=Path,
            default=None,
            help="also replace the README section between the markers",
        )
        p.add_argument("--root", type=Path, default=None)
        args = p.parse_args(argv[1:])
        records = load_records(root=args.root)
        if not records:
            raise SystemExit(
                f"error: no rehearsal files under {args.root or out_root()}; run `make "
                "rehearse NB=04 SCALE=0.01`"
            )
        from common import rehearse_stacking

        section = report(
            records,
            stacking=rehearse_stacking.load_records(
                root=args.root / "04-stacking" if args.root else None
            ),
        )
        (Path(args.root or out_root()) / "COSTS.md").write_text(section)
        if args.readme:
            write_readme(args.readme, section)
        print(section)
        return 0
    p = argparse.ArgumentParser(
        prog="python -m common.rehearse", description=__doc__.splitlines()[0]
    )
    p.add_argument("notebook", help="notebook number: " + ", ".join(SPECS))
    p.add_argument(
        "--scale", type=float, default=0.01, help="fraction of the real dataset (default 0.01)"
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="reduced image size in px (default: the notebook's smallest"
        " that all its networks build at); projected back to the paper's",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="the longest epoch parameter becomes this, the others shrink "
        "in proportion (projected back)",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the run folder (executed notebook, caches)"
    )
    args = p.parse_args(argv)
    rehearse(
        args.notebook.zfill(2), args.scale, size=args.image_size, epochs=args.epochs, keep=args.keep
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
