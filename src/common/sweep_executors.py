"""Where a sweep's runs execute: ``serial`` (one after another in this process), ``pool``
(several at once on this machine, one GPU each where GPUs exist) or ``submitit`` (a Slurm job
array through the submitit library, or submitit's local executor where no Slurm exists).

Every executor runs the same function on each run (:func:`common.sweep.run_one`), so the
run folders, ``failure.json`` records and ``collect`` are the same whichever ran them. A run
whose process died without a result (killed, preempted, out of memory, timed out) is
recorded as *interrupted*: unlike a notebook that raised, it runs again on the next
``sweep run`` without ``--retry-failed``.

The repository does not schedule anything itself: the pool is a thread pool over one
subprocess per run, and cluster scheduling, arrays, time limits and requeueing are
submitit's and Slurm's.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

EXECUTORS = ("serial", "pool", "submitit")
#: Options a spec's ``submitit:`` mapping (or the command line) may give, with their defaults.
SUBMITIT_DEFAULTS: dict[str, Any] = {
    "cluster": None,  # None: Slurm where `sbatch` exists, else submitit's local executor
    "partition": None,  # Slurm partition (None: the cluster's default)
    "timeout_min": 240,  # wall-clock limit of one run's job
    "gpus_per_job": 0,  # GPUs per run; a paper profile wants 1 (or more: see the README)
    "cpus_per_job": 4,
    "mem_gb": 16,  # a paper profile peaks at 12 GB at most (README: "What the paper profile costs")
    "array_parallelism": 8,  # runs at once (Slurm's array throttle; the local executor's too)
}
POOL_DEFAULTS: dict[str, Any] = {"workers": None}  # None: one per visible GPU, else 1 on CPU


def visible_gpus(*, env: Mapping[str, str] | None = None) -> list[str]:
    """The GPU ids this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else what
    ``nvidia-smi`` lists, else none (a machine without NVIDIA GPUs)."""
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env:
        ids = [g.strip() for g in env["CUDA_VISIBLE_DEVICES"].split(",")]
        return [g for g in ids if g and g != "-1"]
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return (
        [line.strip() for line in out.stdout.splitlines() if line.strip()]
        if out.returncode == 0
        else []
    )


def pool_slots(
    *, workers: int | None = None, gpus: Sequence[str] | None = None
) -> list[str | None]:
    """One entry per worker: the GPU id it runs on (``None`` on CPU). Workers default to one
    per visible GPU, else 1; with more workers than GPUs, GPUs are shared round-robin."""
    gpus = list(visible_gpus() if gpus is None else gpus)
    count = workers if workers is not None else (len(gpus) or 1)
    if count < 1:
        raise ValueError(f"--workers must be at least 1, got {count}")
    return [gpus[k % len(gpus)] if gpus else None for k in range(count)]


def run_pool(
    sweep: Any,
    runs: Sequence[Any],
    *,
    results: Path,
    workers: int | None = None,
    gpus: Sequence[str] | None = None,
) -> dict[str, str]:
    """Run ``runs`` in a pool of worker slots, each run in its own ``python -m common.sweep
    run-one`` process whose ``CUDA_VISIBLE_DEVICES`` is its slot's GPU. Returns id -> outcome."""
    from common.sweep import settle

    slots = pool_slots(workers=workers, gpus=gpus)
    where = ", ".join(f"GPU {g}" for g in slots) if slots[0] is not None else "CPU"
    print(f"pool: {len(slots)} worker(s) ({where})", flush=True)
    free: queue.Queue = queue.Queue()
    for slot in slots:
        free.put(slot)

    def one(run: Any) -> tuple[str, str]:
        gpu = free.get()
        try:
            env = dict(os.environ)
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpu
            run_dir = sweep.run_dir(run, results=results)
            run_dir.mkdir(parents=True, exist_ok=True)
            print(f"  {run.id}: running on {'GPU ' + gpu if gpu else 'CPU'} ...", flush=True)
            start = time.time()
            with open(run_dir / "pool.log", "w") as log:
                code = subprocess.run(
                    [sys.executable, "-m", "common.sweep", "run-one", str(sweep.spec), run.id]
                    + ["--results", str(results)],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ).returncode
            outcome = settle(sweep, run, results=results, exit_note=f"exit code {code}")
            print(f"  {run.id}: {outcome} after {time.time() - start:.0f} s", flush=True)
            return run.id, outcome
        finally:
            free.put(gpu)

    with ThreadPoolExecutor(max_workers=len(slots)) as pool:
        return dict(pool.map(one, runs))


class SweepJob:
    """What one submitit job runs: one run of the sweep (picklable: a spec path and an id).

    On Slurm, a job that reaches its time limit or is preempted is requeued by submitit
    (``checkpoint``): the run starts again from its beginning; the notebooks' model caches
    keep what finished.
    """

    def __init__(self, spec: Path, run_id: str, results: Path) -> None:
        self.spec, self.run_id, self.results = Path(spec), run_id, Path(results)

    def __call__(self) -> str:
        from common.sweep import load_spec, run_one

        sweep = load_spec(self.spec)
        run = next(r for r in sweep.runs if r.id == self.run_id)
        return run_one(sweep, run, results=self.results)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(SweepJob(self.spec, self.run_id, self.results))


def submitit_executor(folder: Path, options: Mapping[str, Any], *, name: str) -> Any:
    """A configured ``submitit.AutoExecutor`` for ``options`` (see SUBMITIT_DEFAULTS)."""
    import submitit

    unknown = sorted(set(options) - set(SUBMITIT_DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown submitit option(s) {unknown}; allowed: {sorted(SUBMITIT_DEFAULTS)}"
        )
    opts = {**SUBMITIT_DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    executor = submitit.AutoExecutor(folder=folder, cluster=opts["cluster"])
    params: dict[str, Any] = {
        "name": name,
        "timeout_min": int(opts["timeout_min"]),
        "gpus_per_node": int(opts["gpus_per_job"]),
        "cpus_per_task": int(opts["cpus_per_job"]),
        "mem_gb": float(opts["mem_gb"]),
        "slurm_array_parallelism": int(opts["array_parallelism"]),
    }
    if opts["partition"]:
        params["slurm_partition"] = opts["partition"]
    if executor.cluster == "local":
        # the local executor knows no memory or CPU request, and starts whatever it is given
        params = {k: params[k] for k in ("name", "timeout_min", "gpus_per_node")}
        if not visible_gpus():
            params["gpus_per_node"] = 0
    executor.update_parameters(**params)
    return executor


def submit_array(executor: Any, sweep: Any, runs: Sequence[Any], *, results: Path) -> list:
    """Submit ``runs`` as one Slurm job array (submitit's batch); return (job, run) pairs."""
    with executor.batch():
        jobs = [(executor.submit(SweepJob(sweep.spec, run.id, results)), run) for run in runs]
    for job, run in jobs:
        print(f"  {run.id}: slurm job {job.job_id}", flush=True)
    return jobs


def run_submitit(
    sweep: Any,
    runs: Sequence[Any],
    *,
    results: Path,
    options: Mapping[str, Any] | None = None,
    poll_s: float = 2.0,
) -> dict[str, str]:
    """Submit ``runs`` through submitit and wait for them. On Slurm they go as one job array
    (``array_parallelism`` at once); the local executor gets at most that many at a time.
    Logs and submitit's pickles go to ``<sweep root>/submitit/``. Returns id -> outcome."""
    from common.sweep import settle

    options = dict(options or {})
    folder = sweep.root(results=results) / "submitit"
    executor = submitit_executor(folder / "%j", options, name=f"sweep-{sweep.name}")
    limit = int(options.get("array_parallelism") or SUBMITIT_DEFAULTS["array_parallelism"])
    print(
        f"submitit: {executor.cluster} executor, {len(runs)} run(s), logs in {folder}", flush=True
    )
    # Slurm throttles the array itself; the local executor is given at most `limit` at a time
    if executor.cluster == "slurm":
        waiting, todo = submit_array(executor, sweep, runs, results=results), []
    else:
        waiting, todo = [], list(runs)
    outcomes: dict[str, str] = {}
    while waiting or todo:
        while todo and len(waiting) < limit:
            run = todo.pop(0)
            waiting.append((executor.submit(SweepJob(sweep.spec, run.id, results)), run))
            print(f"  {run.id}: local job {waiting[-1][0].job_id}", flush=True)
        for job, run in [item for item in waiting if item[0].done()]:
            waiting.remove((job, run))
            try:
                job.result()
                note = "job finished"
            except Exception as exc:  # a killed, timed-out or crashed job: recorded below
                note = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
            outcomes[run.id] = settle(sweep, run, results=results, exit_note=note)
            print(f"  {run.id}: {outcomes[run.id]}", flush=True)
        if waiting or todo:
            time.sleep(poll_s)
    return outcomes
