"""``python -m common.rehearse_stacking --rows R [--trees T] [--pca V]``: notebook 04's stacking
stage at the real width.

The rehearsals of notebook 04 (``common.rehearse``) run at scales where a setting's training rows
are fewer than the
7,424 fused feature columns, so its stacking stage runs the small-N branches and says nothing about
the paper's size
(up to 142,140 training rows: 70 % of 81,214 cells, one augmented copy each, oversampled to the
largest class). This
benchmark runs that stage's own code path, :func:`common.stacking.fit_rows` (fused rows gathered
from a memory-mapped
bank, optional PCA, the stacker: ``ChunkedLinearSVC`` and a random forest under a logistic
regression), at R training
rows of the real widths (MobileNetV2 1,280 + ResNet-101 2,048 + VGG-16 4,096) and 12,182 x R /
142,140 test rows, on
**synthetic** features (a class-dependent 64-dimensional signal through a random basis per network,
rectified, plus
noise: CNN features are non-negative and strongly correlated), in a fresh process whose resident
memory is sampled
every 0.5 s (anonymous and total). It times the fused rows, every fit of the SVM and of the forest
(five inner folds
and the final fit each) and the whole stage, and writes
``results/rehearsal/04-stacking/r<R>-t<T>[-pca<V>]/stacking.json``
and ``row.md``; ``python -m common.rehearse report`` puts them in the README's cost section.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common.paths import repo_root
from common.rehearse import MemorySampler, _hours, _machine, growth_exponent

WIDTHS = {"mobilenetv2": 1280, "resnet101": 2048, "vgg16": 4096}
FULL_ROWS = 142_140  # the largest no-PCA setting's training rows at the paper's size
FULL_TEST = 12_182  # 15 % of 81,214 cells
PAPER_TREES = 100
CLASS_SHARES = np.array([20305, 17212, 17710, 14403, 11584]) / 81214
LATENT = 64


def write_bank(folder: Path, rows: int, *, seed: int = 0, chunk: int = 4096) -> dict[str, Any]:
    """A copy-0 bank of ``rows`` training cells and their test cells, one float32 .npy per network
    (written in
    chunks: the generator never holds the bank)."""
    rng = np.random.default_rng(seed)
    test = max(5, round(FULL_TEST * rows / FULL_ROWS))
    n = rows + test
    y = rng.choice(len(CLASS_SHARES), size=n, p=CLASS_SHARES)
    centres = rng.normal(size=(len(CLASS_SHARES), LATENT))
    for net, width in WIDTHS.items():
        basis = rng.normal(size=(LATENT, width)) / np.sqrt(LATENT)
        out = np.lib.format.open_memmap(
            folder / f"{net}.npy", mode="w+", dtype=np.float32, shape=(n, width)
        )
        for start in range(0, n, chunk):
            part = y[start : start + chunk]
            latent = 0.5 * centres[part] + rng.normal(size=(len(part), LATENT))
            out[start : start + chunk] = np.maximum(
                latent @ basis + 0.3 * rng.normal(size=(len(part), width)), 0
            )
        out.flush()
        del out
    np.save(folder / "y.npy", y)
    return {"train": rows, "test": test}


CHILD = r"""
import json, pickle, sys, time
from pathlib import Path
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from common import stacking as S
from common.linear_svm import ChunkedLinearSVC

folder, rows, trees = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
pca, mode, cap = json.loads(sys.argv[4]), sys.argv[6], json.loads(sys.argv[7])
spans = []
def timed(cls, name):
    fit = cls.fit
    def wrapper(self, X, y, *a, **kw):
        if name == "svm" and cap:
            # a memory run: the solver's arrays are allocated in its first steps
            self.max_iter = cap
        start = time.time()
        out = fit(self, X, y, *a, **kw)
        if name == "svm":
            extra = {"newton": self.n_iter_, "converged": self.converged_}
        else:
            extra = {"model_mb": len(pickle.dumps(self, protocol=5)) / 2**20}
        spans.append({"what": name, "rows": int(X.shape[0]), "columns": int(X.shape[1]),
                      "start": start, "seconds": time.time() - start, **extra})
        print(f"{name}: {X.shape[0]:,} rows, {spans[-1]['seconds']:.0f} s", file=sys.stderr,
              flush=True)
        return out
    cls.fit = wrapper
timed(ChunkedLinearSVC, "svm")
timed(RandomForestClassifier, "rf")
y = np.load(folder / "y.npy")
bank = {}
for net in json.loads(sys.argv[5]):
    matrix = np.load(folder / f"{net}.npy", mmap_mode="r")
    cells = np.arange(len(matrix))
    bank[net] = S.FeatureBank({0: cells}, {0: matrix}, {0: net})
train = np.stack([np.arange(rows), np.zeros(rows, dtype=np.int64)], axis=1)
test = np.arange(rows, len(y))
start = time.time()
if mode == "stage":
    result = S.fit_rows(bank, tuple(bank), train, y, test, segmented=True, pca_variance=pca,
                        pca_fit="train", seed=0, rf_trees=trees, cache=False)
    n_components = result["n_components"]
    accuracy = float((result["proba"].argmax(1) == y[test]).mean())
else:  # one fit of each base learner on all the rows, as the stacker builds them
    from sklearn.base import clone
    X = S.fused_rows(bank, tuple(bank), train, segmented=True)
    for name, learner in S.build_stacker(rf_trees=trees).estimators:
        clone(learner).fit(X, y[:rows])
    n_components, accuracy = None, None
lines = Path("/proc/self/status").read_text().splitlines()
status = dict(line.split(":", 1) for line in lines if ":" in line)
print(json.dumps({"start": start, "seconds": time.time() - start, "fits": spans,
                  "n_components": n_components, "vmhwm_mb": int(status["VmHWM"].split()[0]) / 1024,
                  "accuracy": accuracy}))
"""


def out_root() -> Path:
    return repo_root() / "results" / "rehearsal" / "04-stacking"


def tag(
    rows: int,
    trees: int,
    pca: float | None,
    *,
    mode: str = "stage",
    svm_max_iter: int | None = None,
) -> str:
    return (
        f"r{rows}-t{trees}"
        + (f"-pca{pca:g}" if pca else "")
        + ("" if mode == "stage" else f"-{mode}")
        + (f"-svm{svm_max_iter}" if svm_max_iter else "")
    )


MODES = {
    "stage": "the whole stage (the stacker fits each base learner on 5 inner folds and once on all "
    "rows)",
    "fits": "one fit of each base learner on all the rows (their times and growth)",
}


def run(
    rows: int,
    *,
    trees: int = 100,
    pca: float | None = None,
    mode: str = "stage",
    svm_max_iter: int | None = None,
    root: Path | None = None,
) -> dict[str, Any]:
    """Write the bank, run the stage (``mode="stage"``) or one fit of each base learner (``"fits"``)
    in a child process
    while sampling its memory, write the record. ``svm_max_iter`` caps the SVM's Newton steps: a
    memory run, whose
    times are not the stage's (stated in its row)."""
    if rows < 50:
        raise SystemExit(
            f"error: --rows {rows} is too few; use at least 50 (the paper's largest "
            f"setting: {FULL_ROWS:,})"
        )
    if trees < 1:
        raise SystemExit(f"error: --trees {trees} must be at least 1 (the paper's forest: 100)")
    if mode not in MODES:
        raise SystemExit(f"error: --mode {mode!r} is not one of {', '.join(MODES)}")
    if pca is not None and not 0 < pca <= 1:
        raise SystemExit(f"error: --pca {pca} must be a share of variance in (0, 1]")
    with tempfile.TemporaryDirectory(
        prefix="stacking-bench-", dir=os.environ.get("REPRO_CACHE_DIR")
    ) as tmp:
        folder = Path(tmp)
        started = time.time()
        sizes = write_bank(folder, rows)
        print(
            f"bank: {sizes['train']:,} training + {sizes['test']:,} test rows x "
            f"{sum(WIDTHS.values()):,} columns ({time.time() - started:.0f} s)",
            flush=True,
        )
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                str(folder),
                str(rows),
                str(trees),
                json.dumps(pca),
                json.dumps(list(WIDTHS)),
                mode,
                json.dumps(svm_max_iter),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        sampler = MemorySampler(child.pid)
        sampler.start()
        out, _ = child.communicate()
        sampler.stop()
        if child.returncode != 0:
            raise SystemExit(
                f"error: the stacking stage failed (exit {child.returncode}); see its output above"
            )
    measured = json.loads(out.strip().splitlines()[-1])
    samples = sampler.samples
    record = {
        "kind": "stacking",
        "mode": mode,
        "svm_max_iter": svm_max_iter,
        "rows": rows,
        "test_rows": sizes["test"],
        "columns": sum(WIDTHS.values()),
        "trees": trees,
        "pca_variance": pca,
        "seconds": measured["seconds"],
        "fits": measured["fits"],
        "n_components": measured["n_components"],
        "accuracy_synthetic": measured["accuracy"],
        "peak_rss_mb": max((s[1] for s in samples), default=None),
        "peak_anon_mb": max((s[2] for s in samples), default=None),
        "vmhwm_mb": measured["vmhwm_mb"],
        "fused_mb": rows * sum(WIDTHS.values()) * 4 / 2**20,
        "machine": _machine(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "data": "synthetic features",
    }
    dest = Path(root or out_root()) / tag(rows, trees, pca, mode=mode, svm_max_iter=svm_max_iter)
    dest.mkdir(parents=True, exist_ok=True)
    from common.canonical import repo_relative  # committed: paths inside the checkout relative
    from common.paths import repo_root

    (dest / "stacking.json").write_text(
        repo_relative(json.dumps(record, indent=1) + "\n", repo_root())
    )
    (dest / "row.md").write_text(repo_relative(markdown_row(record) + "\n", repo_root()))
    print(markdown_row(record))
    return record


def _sum(record: dict[str, Any], what: str) -> float:
    return sum(f["seconds"] for f in record["fits"] if f["what"] == what)


def markdown_row(record: dict[str, Any]) -> str:
    svm = [f for f in record["fits"] if f["what"] == "svm"]
    rf = [f for f in record["fits"] if f["what"] == "rf"]
    newton = "/".join(str(f["newton"]) for f in svm)
    capped = (
        f", capped at {record['svm_max_iter']}: a memory run" if record.get("svm_max_iter") else ""
    )
    return (
        f"| {record['rows']:,} x {record['columns']:,} | {record.get('mode', 'stage')} | "
        f"{record['trees']} | "
        f"{'none' if not record['pca_variance'] else record['pca_variance']} | "
        f"{_sum(record, 'svm'):.0f} s ({len(svm)} fit{'s' * (len(svm) != 1)}, Newton steps "
        f"{newton}{capped}) | {_sum(record, 'rf'):.0f} s ({len(rf)} "
        f"fit{'s' * (len(rf) != 1)}) | {record['seconds']:.0f} s | "
        f"{record['fused_mb'] / 1024:.2f} GB | {record['peak_anon_mb'] / 1024:.2f} GB | "
        f"{record['peak_rss_mb'] / 1024:.2f} GB | {record['machine']['cpus']} CPU, load "
        f"{'/'.join(f'{x:g}' for x in record['machine'].get('load_avg_1_5_15', [])) or 'n/a'} "
        "|"
    )


def load_records(*, root: Path | None = None) -> list[dict[str, Any]]:
    folder = Path(root or out_root())
    return sorted(
        (json.loads(p.read_text()) for p in folder.glob("*/stacking.json")),
        key=lambda r: (r.get("mode", "stage"), r["pca_variance"] or 0, r["trees"], r["rows"]),
    )


def setting_seconds(one_fit_s: float, exponent: float, *, folds: int = 5) -> float:
    """A stage's time from one fit on all rows: the stacker fits each base learner once on all rows
    and once per
    inner fold on (folds - 1) / folds of them."""
    return one_fit_s * (1 + folds * ((folds - 1) / folds) ** exponent)


def report(records: list[dict[str, Any]]) -> str:
    """The README subsection on notebook 04's stacking stage at the real width, from the records."""
    if not records:
        return ""
    lines = [
        "**04, the stacking stage at the real width** (`python -m "
        "common.rehearse_stacking --rows R --trees T [--mode fits] [--svm-max-iter K]`: "
        "`stacking.fit_rows` (mode `stage`) or one fit of each base learner (mode `fits`) "
        "on R training rows of **synthetic** features, 1,280 + 2,048 + 4,096 columns, a "
        "setting without PCA as in four of Table 6's five; a fresh process, memory "
        "sampled every 0.5 s; load: the load averages over 1/5/15 minutes at the end, "
        "above the CPU count when something else shared the CPU).",
        "",
        "| training rows x columns | mode | trees | PCA | SVM | forest | stage | fused "
        "rows | peak anon | peak rss | machine |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [markdown_row(r) for r in records]
    stages = [r for r in records if r.get("mode", "stage") == "stage" and not r["pca_variance"]]
    if stages:
        top = max(stages, key=lambda r: r["rows"])
        lines += [
            "",
            f"Peak memory of the stage at {top['rows']:,} rows "
            f"({top['rows'] / FULL_ROWS:.0%} of the paper's largest setting): "
            f"{top['peak_anon_mb'] / 1024:.1f} GB anon, {top['peak_rss_mb'] / 1024:.1f} GB "
            f"rss, with {top['trees']} trees (a fitted forest grows with its trees).",
        ]
    fits = [r for r in records if r.get("mode") == "fits" and not r["pca_variance"]]
    for trees in sorted({r["trees"] for r in fits}):
        recs = sorted((r for r in fits if r["trees"] == trees), key=lambda r: r["rows"])
        if len(recs) < 2:
            continue
        n = [r["rows"] for r in recs]
        parts = []
        for what, label in (
            ("svm", "SVM"),
            (
                "rf",
                f"forest of {PAPER_TREES} trees"
                + (
                    ""
                    if trees == PAPER_TREES
                    else f" (measured with {trees}: its trees are independent fits, so time x "
                    f"{PAPER_TREES}/{trees})"
                ),
            ),
        ):
            t = [_sum(r, what) for r in recs]
            exponent = growth_exponent(n, t)
            if exponent is None:
                continue
            full = (
                t[-1]
                * (FULL_ROWS / n[-1]) ** max(exponent, 1.0)
                * (PAPER_TREES / trees if what == "rf" else 1.0)
            )
            parts.append(
                f"{label}: one fit ~ N^{exponent:.2f}, {_hours(full)} at {FULL_ROWS:,} rows, "
                f"{_hours(setting_seconds(full, max(exponent, 1.0)))} per setting (6 fits)"
            )
        lines += [
            "",
            f"Time over {len(recs)} sizes ({', '.join(f'{x:,}' for x in n)} rows), "
            "projected on this CPU (power law from the largest size, at least linear): "
            + "; ".join(parts)
            + ".",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m common.rehearse_stacking", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "--rows",
        type=int,
        required=True,
        help=f"training rows (the paper's largest setting: {FULL_ROWS:,})",
    )
    p.add_argument("--trees", type=int, default=100, help="random-forest trees (the paper's: 100)")
    p.add_argument(
        "--pca", type=float, default=None, help="share of variance PCA keeps (default: no PCA)"
    )
    p.add_argument("--mode", default="stage", help="; ".join(f"{k}: {v}" for k, v in MODES.items()))
    p.add_argument(
        "--svm-max-iter", type=int, default=None, help="cap the SVM's Newton steps (a memory run)"
    )
    args = p.parse_args(argv)
    run(args.rows, trees=args.trees, pca=args.pca, mode=args.mode, svm_max_iter=args.svm_max_iter)
    return 0


if __name__ == "__main__":
    sys.exit(main())
