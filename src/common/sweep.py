"""Papermill sweeps over one notebook: plan, run (sharded, resumable), collect.

A sweep is a YAML file::

    notebook: notebooks/02_alhammadi_cae_cnn.ipynb   # relative to the repository (or the spec)
    name: cae-epochs          # optional: results go to <results>/sweeps/<name>/ (default: file
    stem)
    profile: smoke            # smoke | demo | paper
    fixed: {n_bootstrap: 200}                 # the same in every run
    grid: {cnn_epochs: [2, 4]}                # every combination of these ...
    settings: [{cnn_lr: 0.01}, {cnn_lr: 0.001}]   # ... and/or these explicit settings
    seeds: [0, 1]
    metric: {metric: accuracy, model: "cae+cnn", class: overall}   # what collect plots

The runs are the settings (the grid's product, each combined with every explicit
setting) times the seeds. Each run has a stable id built from its values, so the
same spec always plans the same ids, on every machine.

``run --shard i/n`` executes runs ``i, i+n, i+2n, ...`` (1-based) of the plan: n
Colab/Kaggle sessions can share one sweep. A run whose folder holds ``run.json``
(written as a notebook's last step) is complete and skipped, so a killed session
resumes where it stopped. A run that raises is recorded in ``failure.json`` in its
folder beside the executed notebook, and the other runs go on.

``run --executor serial|pool|submitit`` chooses where the runs execute
(:mod:`common.sweep_executors`): one after another here (the default), a pool of
processes here with one GPU each (``--workers``), or a Slurm job array through submitit
(its local executor where no Slurm exists). A spec may set their options::

    pool: {workers: 4}
    submitit: {partition: gpu, timeout_min: 600, gpus_per_job: 1, array_parallelism: 8}

All three write the same run folders and resume the same way; a run whose process died
without a result (killed, preempted, timed out) is recorded as interrupted and runs again.

``collect`` merges the completed runs' ``metrics.json`` into ``collected.csv`` and
``collected.md`` (mean, sd, 95% t-interval over seeds, per setting) and plots the
chosen metric against each varied parameter; it lists failed and missing runs.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import itertools
import json
import re
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.paths import atomic_write_text, read_yaml, repo_root, results_root

SPEC_KEYS = {
    "notebook",
    "name",
    "profile",
    "fixed",
    "grid",
    "settings",
    "seeds",
    "metric",
    "pool",
    "submitit",
}
#: Parameters the sweep itself sets in every run; a spec may not vary or fix them.
RESERVED = {"profile", "run", "seed"}
FAILURE_FILE = "failure.json"


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its id, setting (varied values), seed and all parameters."""

    id: str
    setting_id: str
    setting: dict
    seed: int
    parameters: dict


@dataclass
class Sweep:
    name: str
    notebook: Path
    paper: str
    profile: str
    fixed: dict
    varied: list[str]
    runs: list[PlannedRun]
    metric: dict
    spec: Path | None = None  # the spec file (pool and submitit workers load it again)
    executor_options: dict = field(default_factory=dict)  # the spec's pool:/submitit: mappings

    def root(self, *, results: Path | None = None) -> Path:
        """``<results>/sweeps/<name>``: every run of this sweep lives below it."""
        return Path(results or results_root()) / "sweeps" / self.name

    def run_dir(self, run: PlannedRun, *, results: Path | None = None) -> Path:
        return self.root(results=results) / self.paper / run.id


def notebook_parameters(path: Path) -> list[str]:
    """Names assigned in the notebook's ``parameters``-tagged cell (what papermill can set)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            tree = ast.parse(source)
            names = []
            for node in tree.body:
                targets = (
                    node.targets
                    if isinstance(node, ast.Assign)
                    else [node.target]
                    if isinstance(node, ast.AnnAssign)
                    else []
                )
                names += [t.id for t in targets if isinstance(t, ast.Name)]
            return names
    raise ValueError(f"{path} has no cell tagged 'parameters'; papermill cannot set its parameters")


def _slug(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "", text.replace(" ", "")) or "x"


def setting_id(setting: Mapping[str, Any]) -> str:
    """A readable, stable folder name for a setting, e.g. ``C-0.1_n_samples-60``.

    Long settings are shortened to a prefix plus a hash of the full values, so two
    settings never share an id.
    """
    if not setting:
        return "default"
    text = "_".join(f"{key}-{_slug(setting[key])}" for key in sorted(setting))
    if len(text) > 60:
        digest = hashlib.sha1(
            json.dumps(setting, sort_keys=True, default=str).encode()
        ).hexdigest()[:8]
        text = f"{text[:50]}~{digest}"
    return text


def _as_list(value: Any, what: str, spec: Path) -> list:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{spec}: {what} must be a non-empty list, got {value!r}")
    return value


def load_spec(path: Path | str) -> Sweep:
    """Read and validate a sweep spec; unknown keys or notebook parameters are errors."""
    path = Path(path)
    doc = read_yaml(path, "give an existing sweep spec (format: sweeps/README.md)")
    if not isinstance(doc, dict):
        raise ValueError(f"{path} must be a mapping with at least 'notebook' and 'seeds'")
    unknown = sorted(set(doc) - SPEC_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(SPEC_KEYS)}")
    if "notebook" not in doc:
        raise ValueError(
            f"{path}: 'notebook' is missing (the notebook to run, e.g. "
            "notebooks/01_kandi_microarray_hybrid.ipynb)"
        )
    notebook = Path(doc["notebook"])
    candidates = (
        [notebook] if notebook.is_absolute() else [repo_root() / notebook, path.parent / notebook]
    )
    notebook = next((c for c in candidates if c.is_file()), None)
    if notebook is None:
        raise FileNotFoundError(
            f"{path}: notebook {doc['notebook']!r} not found (looked in "
            f"{', '.join(map(str, candidates))})"
        )
    from common.notebooks import notebook_meta
    from common.runs import PROFILE_NAMES

    profile = doc.get("profile", "smoke")
    if profile not in PROFILE_NAMES:
        raise ValueError(f"{path}: profile {profile!r} is not one of {', '.join(PROFILE_NAMES)}")
    fixed = doc.get("fixed") or {}
    grid = doc.get("grid") or {}
    settings = doc.get("settings") or [{}]
    for what, value in (("fixed", fixed), ("grid", grid)):
        if not isinstance(value, dict):
            raise ValueError(f"{path}: {what} must be a mapping of parameter names to values")
    _as_list(settings, "settings", path)
    if not all(isinstance(s, dict) for s in settings):
        raise ValueError(
            f"{path}: every entry of settings must be a mapping of parameter names to values"
        )
    for key, values in grid.items():
        _as_list(values, f"grid.{key}", path)
    seeds = _as_list(doc.get("seeds", [0]), "seeds", path)
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds) or len(
        set(seeds)
    ) != len(seeds):
        raise ValueError(f"{path}: seeds must be distinct non-negative integers, got {seeds}")

    names = set(notebook_parameters(notebook))
    used = set(fixed) | set(grid) | {k for s in settings for k in s}
    reserved = sorted(used & RESERVED)
    if reserved:
        raise ValueError(
            f"{path}: {reserved} are set by the sweep itself (use 'profile:' and "
            "'seeds:'), not in fixed/grid/settings"
        )
    unknown = sorted(used - names)
    if unknown:
        raise ValueError(
            f"{path}: {notebook.name} has no parameter(s) {unknown}; its parameters are "
            f"{sorted(names - RESERVED)}"
        )
    overlap = sorted(set(fixed) & (set(grid) | {k for s in settings for k in s}))
    if overlap:
        raise ValueError(
            f"{path}: {overlap} are both fixed and varied; keep each parameter in one place"
        )

    combos = (
        [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else [{}]
    )
    expanded = [{**combo, **extra} for combo in combos for extra in settings]
    varied = sorted({k for s in expanded for k in s})
    runs, seen = [], set()
    for setting in expanded:
        sid = setting_id(setting)
        if sid in seen:
            raise ValueError(f"{path}: setting {setting} appears twice; remove the duplicate")
        seen.add(sid)
        for seed in seeds:
            runs.append(
                PlannedRun(
                    id=f"{sid}__seed-{seed}",
                    setting_id=sid,
                    setting=dict(setting),
                    seed=int(seed),
                    parameters={**fixed, **setting, "seed": int(seed)},
                )
            )
    metric = {"metric": "accuracy", "class": "overall", **(doc.get("metric") or {})}
    from common.sweep_executors import POOL_DEFAULTS, SUBMITIT_DEFAULTS

    executor_options = {}
    for key, allowed in (("pool", POOL_DEFAULTS), ("submitit", SUBMITIT_DEFAULTS)):
        given = doc.get(key) or {}
        if not isinstance(given, dict) or set(given) - set(allowed):
            raise ValueError(
                f"{path}: {key} must be a mapping with keys among {sorted(allowed)}, got {given!r}"
            )
        executor_options[key] = dict(given)
    return Sweep(
        name=str(doc.get("name") or path.stem),
        notebook=notebook,
        paper=notebook_meta(notebook)["paper"],
        profile=profile,
        fixed=dict(fixed),
        varied=varied,
        runs=runs,
        metric=metric,
        spec=path.resolve(),
        executor_options=executor_options,
    )


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"2/3"`` -> (2, 3); None -> (1, 1)."""
    if text is None:
        return 1, 1
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ValueError(f"shard {text!r} must be i/n with 1 <= i <= n, e.g. --shard 1/3")
    return int(match[1]), int(match[2])


def shard_runs(runs: Sequence[PlannedRun], shard: tuple[int, int]) -> list[PlannedRun]:
    """Runs ``i, i+n, ...`` (1-based) of the plan."""
    i, n = shard
    return [run for k, run in enumerate(runs) if k % n == i - 1]


def run_state(run_dir: Path) -> str:
    """``complete`` (run.json written), ``failed`` (the notebook raised: failure.json),
    ``interrupted`` (its process died without a result: failure.json says so) or ``pending``."""
    if (run_dir / "run.json").is_file():
        return "complete"
    if (run_dir / FAILURE_FILE).is_file():
        record = json.loads((run_dir / FAILURE_FILE).read_text())
        return "interrupted" if record.get("interrupted") else "failed"
    return "pending"


def plan_table(sweep: Sweep, *, results: Path | None = None) -> pd.DataFrame:
    """One row per planned run: id, shard-independent index, seed, setting, state."""
    rows = []
    for k, run in enumerate(sweep.runs, start=1):
        rows.append(
            {
                "#": k,
                "id": run.id,
                "seed": run.seed,
                **run.setting,
                "state": run_state(sweep.run_dir(run, results=results)),
            }
        )
    return pd.DataFrame(rows)


def run_one(
    sweep: Sweep, run: PlannedRun, *, results: Path | None = None, progress: bool = False
) -> str:
    """Execute one run of the sweep with papermill; return ``completed`` or ``failed``.

    A notebook that raises is recorded in ``failure.json`` (the error, its traceback, the
    executed notebook beside it). Every executor runs each run through this function.
    """
    from common.notebooks import run_notebook

    root = sweep.root(results=results)
    run_dir = sweep.run_dir(run, results=results)
    (run_dir / FAILURE_FILE).unlink(missing_ok=True)
    start = time.time()
    try:
        run_notebook(
            sweep.notebook,
            root,
            profile=sweep.profile,
            run=run.id,
            parameters=run.parameters,
            progress=progress,
        )
        if not (run_dir / "run.json").is_file():
            raise RuntimeError("the notebook finished without writing run.json")
    except Exception as exc:  # recorded, and the other runs go on
        error = (
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
        )
        _record_failure(
            run_dir, run, error, notebook=sweep.notebook.name, seconds=time.time() - start
        )
        print(f"    failed after {time.time() - start:.0f} s: {error}", flush=True)
        return "failed"
    return "completed"


def _record_failure(
    run_dir: Path,
    run: PlannedRun,
    error: str,
    *,
    notebook: str,
    seconds: float,
    interrupted: bool = False,
) -> None:
    atomic_write_text(
        run_dir / FAILURE_FILE,
        json.dumps(
            {
                "id": run.id,
                "error": error,
                "interrupted": interrupted,
                "traceback": "" if interrupted else traceback.format_exc()[-4000:],
                "executed_notebook": notebook,
                "seconds": round(seconds, 1),
            },
            indent=2,
        )
        + "\n",
    )


def settle(
    sweep: Sweep, run: PlannedRun, *, results: Path | None = None, exit_note: str = ""
) -> str:
    """The outcome of a run whose process has ended, read from its folder: ``completed``,
    ``failed``, or ``interrupted`` (no result: recorded so, and run again on resume)."""
    run_dir = sweep.run_dir(run, results=results)
    state = run_state(run_dir)
    if state == "complete":
        return "completed"
    if state in {"failed", "interrupted"}:
        return state
    run_dir.mkdir(parents=True, exist_ok=True)
    _record_failure(
        run_dir,
        run,
        f"interrupted: its process ended without a result ({exit_note or 'no exit status'})",
        notebook=sweep.notebook.name,
        seconds=0.0,
        interrupted=True,
    )
    return "interrupted"


def _write_sweep_json(sweep: Sweep, root: Path) -> None:
    atomic_write_text(
        root / "sweep.json",
        json.dumps(
            {
                "name": sweep.name,
                "notebook": str(sweep.notebook),
                "paper": sweep.paper,
                "profile": sweep.profile,
                "fixed": sweep.fixed,
                "varied": sweep.varied,
                "metric": sweep.metric,
                "runs": [{"id": r.id, "seed": r.seed, "setting": r.setting} for r in sweep.runs],
            },
            indent=2,
            default=str,
        )
        + "\n",
    )


def execute(
    sweep: Sweep,
    *,
    shard: tuple[int, int] = (1, 1),
    results: Path | None = None,
    retry_failed: bool = False,
    progress: bool = False,
    executor: str = "serial",
    options: dict | None = None,
) -> dict[str, list[str]]:
    """Run this shard's share of the sweep with ``executor``; return run ids by outcome
    (``skipped``, ``completed``, ``failed``, ``interrupted``).

    Complete runs are skipped; failed runs are skipped unless ``retry_failed``; pending and
    interrupted runs run. ``options`` override the spec's ``pool:`` or ``submitit:`` mapping.
    """
    from common import sweep_executors

    if executor not in sweep_executors.EXECUTORS:
        raise ValueError(
            f"executor {executor!r} is not one of {', '.join(sweep_executors.EXECUTORS)}"
        )
    results = Path(results or results_root()).resolve()
    root = sweep.root(results=results)
    _write_sweep_json(sweep, root)
    outcome: dict[str, list[str]] = {
        "skipped": [],
        "completed": [],
        "failed": [],
        "interrupted": [],
    }
    mine, todo = shard_runs(sweep.runs, shard), []
    for k, run in enumerate(mine, start=1):
        state = run_state(sweep.run_dir(run, results=results))
        if state == "complete" or (state == "failed" and not retry_failed):
            print(f"[{k}/{len(mine)}] {run.id}: {state}, skipped", flush=True)
            outcome["skipped"].append(run.id)
        else:
            todo.append(run)
    opts = {**sweep.executor_options.get(executor, {}), **(options or {})}
    if executor == "serial" or not todo:
        for k, run in enumerate(todo, start=1):
            print(f"[{k}/{len(todo)}] {run.id}: running ...", flush=True)
            start = time.time()
            result = run_one(sweep, run, results=results, progress=progress)
            if result == "completed":
                print(f"    done in {time.time() - start:.0f} s", flush=True)
            outcome[result].append(run.id)
        return outcome
    if executor == "pool":
        done = sweep_executors.run_pool(sweep, todo, results=results, workers=opts.get("workers"))
    else:
        done = sweep_executors.run_submitit(sweep, todo, results=results, options=opts)
    for run in todo:  # in plan order
        outcome[done[run.id]].append(run.id)
    return outcome


def _t_interval(values: np.ndarray) -> tuple[float, float, float, float]:
    from scipy import stats

    values = values[np.isfinite(values)]
    if len(values) == 0:
        return np.nan, np.nan, np.nan, np.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, np.nan, np.nan, np.nan
    sd = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.975, len(values) - 1) * sd / np.sqrt(len(values)))
    return mean, sd, mean - half, mean + half


def collect(sweep: Sweep, *, results: Path | None = None) -> dict[str, Any]:
    """Merge the completed runs into aggregated tables and a plot (written under the sweep root).

    Returns {"table": aggregated DataFrame, "runs": per-run rows, "failed": {id: error},
    "missing": [ids], "files": [paths written]}.
    """
    from common.evaluate import read_metrics

    root = sweep.root(results=results)
    per_run, failed, missing = [], {}, []
    for run in sweep.runs:
        run_dir = sweep.run_dir(run, results=results)
        state = run_state(run_dir)
        if state == "failed":
            failed[run.id] = json.loads((run_dir / FAILURE_FILE).read_text())["error"]
            continue
        if state != "complete":  # pending or interrupted: it runs on the next `sweep run`
            missing.append(run.id)
            continue
        metrics = read_metrics(run_dir)
        per_run.append(
            metrics.assign(
                run=run.id,
                setting=run.setting_id,
                seed=run.seed,
                **{
                    k: json.dumps(v) if isinstance(v, (list, dict)) else v
                    for k, v in run.setting.items()
                },
            )
        )
    if not per_run:
        raise ValueError(
            f"no run of sweep {sweep.name!r} is complete under {root}; run `python -m "
            "common.sweep run` first"
        )
    runs = pd.concat(per_run, ignore_index=True)
    keys = ["setting", *sweep.varied, "protocol", "model", "class", "metric"]
    rows = []
    for key, group in runs.groupby(keys, sort=False, dropna=False):
        mean, sd, low, high = _t_interval(group["value"].to_numpy(dtype=float))
        rows.append(
            {
                **dict(zip(keys, key)),
                "n_seeds": int(group["value"].notna().sum()),
                "mean": mean,
                "sd": sd,
                "ci_low": low,
                "ci_high": high,
            }
        )
    table = pd.DataFrame(rows)
    files = [
        atomic_write_text(root / "collected.csv", table.to_csv(index=False)),
        atomic_write_text(root / "runs.csv", runs.to_csv(index=False)),
    ]
    files.append(
        atomic_write_text(root / "collected.md", collected_markdown(sweep, table, failed, missing))
    )
    plot = plot_sweep(sweep, table, root / "collected.png")
    if plot is not None:
        files.append(plot)
    return {"table": table, "runs": runs, "failed": failed, "missing": missing, "files": files}


def chosen_rows(sweep: Sweep, table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the aggregated table for the spec's ``metric`` selection."""
    mask = pd.Series(True, index=table.index)
    for key, value in sweep.metric.items():
        if key not in table:
            raise ValueError(
                f"metric selection key {key!r} is not a column of the metrics (use metric, "
                "model, class, protocol)"
            )
        mask &= table[key].astype(str) == str(value)
    return table[mask]


def collected_markdown(
    sweep: Sweep, table: pd.DataFrame, failed: Mapping[str, str], missing: Sequence[str]
) -> str:
    shown = chosen_rows(sweep, table)
    lines = [
        f"# Sweep {sweep.name}: {sweep.notebook.name}, profile {sweep.profile}",
        "",
        f"{len(sweep.runs)} planned runs; {len(sweep.runs) - len(failed) - len(missing)} complete, "
        f"{len(failed)} failed, {len(missing)} not run yet. Fixed: {sweep.fixed or 'nothing'}. "
        f"Mean, sd and 95% t-interval over seeds per setting.",
        "",
        f"## {', '.join(f'{k} = {v}' for k, v in sweep.metric.items())}",
        "",
        shown.drop(columns=["setting"]).to_markdown(index=False, floatfmt=".4g")
        if len(shown)
        else "(no row matches the metric selection)",
        "",
    ]
    if failed:
        lines += [
            "## Failed runs",
            "",
            *[f"- `{rid}`: {error}" for rid, error in failed.items()],
            "",
        ]
    if missing:
        lines += ["## Not run yet", "", *[f"- `{rid}`" for rid in missing], ""]
    lines += [
        "Every metric of every setting is in `collected.csv`; each run's own rows in `runs.csv`.",
        "",
    ]
    return "\n".join(lines)


def plot_sweep(sweep: Sweep, table: pd.DataFrame, target: Path) -> Path | None:
    """The chosen metric (mean and 95% interval over seeds) against each varied parameter."""
    if not sweep.varied:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    shown = chosen_rows(sweep, table)
    if shown.empty:
        return None
    fig, axes = plt.subplots(
        1, len(sweep.varied), figsize=(5 * len(sweep.varied), 4), squeeze=False
    )
    for ax, param in zip(axes[0], sweep.varied):
        for protocol, part in shown.groupby("protocol"):
            part = (
                part.groupby(param, dropna=False)
                .agg(mean=("mean", "mean"), low=("ci_low", "min"), high=("ci_high", "max"))
                .reset_index()
            )
            x = [str(v) for v in part[param]]
            err = np.vstack([part["mean"] - part["low"], part["high"] - part["mean"]])
            ax.errorbar(
                x,
                part["mean"],
                yerr=np.where(np.isfinite(err), err, 0),
                marker="o",
                capsize=4,
                label=protocol,
            )
        ax.set_xlabel(param)
        ax.set_ylabel(sweep.metric.get("metric", "value"))
        ax.legend(title="protocol")
    fig.suptitle(f"Sweep {sweep.name} ({sweep.profile} profile): mean and 95% interval over seeds")
    fig.tight_layout()
    from common.plots import save_figure

    path = save_figure(fig, target.parent, target.name, source=_sweep_source(sweep, target.parent))
    plt.close(fig)
    return path


def _sweep_source(sweep: Sweep, root: Path) -> str | None:
    """The data source of the sweep's runs ('synthetic' stamps the plot), from their run.json."""
    sources = {
        json.loads(p.read_text()).get("data", {}).get("source")
        for p in root.glob(f"{sweep.paper}/*/run.json")
    }
    return "synthetic" if "synthetic" in sources else next(iter(sources), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.sweep",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("plan", "print the expanded runs with their ids and states"),
        ("run", "execute this shard's runs, skipping complete ones"),
        ("run-one", "execute one run of the plan by its id (what pool workers call)"),
        ("collect", "merge completed runs into tables and a plot"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("spec", type=Path)
        if name == "run-one":
            cmd.add_argument("run_id", help="a run id as `plan` prints it")
        cmd.add_argument(
            "--results",
            type=Path,
            default=None,
            help="results root (default $REPRO_RESULTS_DIR or results/)",
        )
        if name == "run":
            cmd.add_argument(
                "--shard", default=None, help="i/n: run runs i, i+n, ... of the plan (1-based)"
            )
            cmd.add_argument("--retry-failed", action="store_true", help="run failed runs again")
            cmd.add_argument(
                "--executor",
                choices=("serial", "pool", "submitit"),
                default="serial",
                help="where the runs execute (default serial; see sweeps/README.md)",
            )
            cmd.add_argument(
                "--workers",
                type=int,
                default=None,
                help="pool: runs at once (default: one per GPU, else 1)",
            )
            for option, kind, what in (
                ("cluster", str, "slurm | local (default: slurm where sbatch exists, else local)"),
                ("partition", str, "Slurm partition"),
                ("timeout-min", int, "time limit of one run's job, minutes (default 240)"),
                ("gpus-per-job", int, "GPUs per run's job (default 0)"),
                ("cpus-per-job", int, "CPUs per run's job (default 4)"),
                ("mem-gb", float, "memory per run's job, GB (default 16)"),
                ("array-parallelism", int, "runs at once (default 8)"),
            ):
                cmd.add_argument(f"--{option}", type=kind, default=None, help=f"submitit: {what}")
    args = parser.parse_args(argv)
    try:
        sweep = load_spec(args.spec)
        if args.command == "plan":
            table = plan_table(sweep, results=args.results)
            print(
                f"sweep {sweep.name}: {len(table)} runs of {sweep.notebook.name} (profile "
                f"{sweep.profile}) under {sweep.root(results=args.results)}"
            )
            print(table.to_string(index=False))
            return 0
        if args.command == "run-one":
            run = next((r for r in sweep.runs if r.id == args.run_id), None)
            if run is None:
                raise ValueError(
                    f"{args.spec}: no run {args.run_id!r} in the plan (`python -m common.sweep "
                    "plan` lists the ids)"
                )
            return 0 if run_one(sweep, run, results=args.results) == "completed" else 1
        if args.command == "run":
            if args.executor == "pool":
                options = {"workers": args.workers}
            elif args.executor == "submitit":
                from common.sweep_executors import SUBMITIT_DEFAULTS

                options = {key: getattr(args, key) for key in SUBMITIT_DEFAULTS}
            else:
                options = {}
            outcome = execute(
                sweep,
                shard=parse_shard(args.shard),
                results=args.results,
                retry_failed=args.retry_failed,
                executor=args.executor,
                options={k: v for k, v in options.items() if v is not None},
            )
            print(
                f"completed {len(outcome['completed'])}, skipped "
                f"{len(outcome['skipped'])}, failed {len(outcome['failed'])}, interrupted "
                f"{len(outcome['interrupted'])}"
            )
            return 1 if outcome["failed"] or outcome["interrupted"] else 0
        result = collect(sweep, results=args.results)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in result["files"]:
        print(f"wrote {path}")
    if result["failed"]:
        print(
            f"{len(result['failed'])} failed run(s): "
            + "; ".join(f"{k}: {v}" for k, v in result["failed"].items())
        )
    if result["missing"]:
        print(f"{len(result['missing'])} run(s) not run yet: {', '.join(result['missing'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
