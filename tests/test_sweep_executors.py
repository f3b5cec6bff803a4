"""Sweep executors: the pool (one GPU id per worker) and submitit's local executor, including
a job killed half-way that the next `sweep run` resumes. The runs execute the harness fixture
notebook (logistic regression on iris), so the executors, not model training, are timed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common import sweep, sweep_executors

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "harness_notebook.ipynb"


def write_spec(tmp_path, **doc):
    doc = {"notebook": str(FIXTURE), "profile": "smoke", **doc}
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    "value, expected",
    [("0,2", ["0", "2"]), ("3", ["3"]), ("", []), ("-1", []), (" 1 , 4 ", ["1", "4"])],
)
def test_visible_gpus_follow_cuda_visible_devices(value, expected):
    assert sweep_executors.visible_gpus(env={"CUDA_VISIBLE_DEVICES": value}) == expected


def test_pool_slots_give_each_worker_a_gpu_and_share_them_round_robin():
    assert sweep_executors.pool_slots(gpus=["0", "1"]) == ["0", "1"]
    assert sweep_executors.pool_slots(workers=3, gpus=["0", "1"]) == ["0", "1", "0"]
    assert sweep_executors.pool_slots(gpus=[]) == [None]
    assert sweep_executors.pool_slots(workers=2, gpus=[]) == [None, None]
    with pytest.raises(ValueError, match="at least 1"):
        sweep_executors.pool_slots(workers=0, gpus=[])


def test_spec_executor_options_are_validated(tmp_path):
    plan = sweep.load_spec(
        write_spec(tmp_path, pool={"workers": 2}, submitit={"partition": "gpu"}, seeds=[0])
    )
    assert plan.executor_options == {"pool": {"workers": 2}, "submitit": {"partition": "gpu"}}
    with pytest.raises(ValueError, match="submitit must be a mapping with keys among"):
        sweep.load_spec(write_spec(tmp_path, submitit={"partition": "gpu", "gpus": 1}))
    with pytest.raises(ValueError, match="executor 'cloud'"):
        sweep.execute(plan, results=tmp_path / "r", executor="cloud")


def test_pool_runs_every_run_once_each_on_its_workers_gpu(tmp_path):
    results = tmp_path / "results"
    plan = sweep.load_spec(write_spec(tmp_path, fixed={"n_samples": 60}, seeds=[0, 1, 2]))
    done = sweep_executors.run_pool(plan, plan.runs, results=results, workers=2, gpus=["5", "6"])
    assert done == {r.id: "completed" for r in plan.runs}
    given = [
        json.loads((plan.run_dir(r, results=results) / "run.json").read_text())[
            "cuda_visible_devices"
        ]
        for r in plan.runs
    ]
    assert set(given) == {"5", "6"}, f"each run gets its worker's GPU id, got {given}"
    # the same folders as the serial runner: a serial rerun finds them complete
    outcome = sweep.execute(plan, results=results)
    assert outcome["skipped"] == [r.id for r in plan.runs] and not outcome["completed"]


def test_submitit_local_job_killed_half_way_is_recorded_and_resumes(tmp_path):
    results = tmp_path / "results"
    spec = write_spec(
        tmp_path,
        name="harness-submitit",
        settings=[{"sleep_s": 0}, {"sleep_s": 15}],
        fixed={"n_samples": 60},
        seeds=[0],
        submitit={"cluster": "local", "array_parallelism": 1, "timeout_min": 10},
    )
    plan = sweep.load_spec(spec)
    quick, slow = plan.runs
    proc = subprocess.Popen(
        [sys.executable, "-m", "common.sweep", "run", str(spec), "--results", str(results)]
        + ["--executor", "submitit"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # the slow run's job is submitted once the quick one is done (one at a time): kill it
    # a few seconds into its run, as Slurm kills a job that is cancelled or preempted
    job_pid, lines = None, []
    for line in proc.stdout:
        lines.append(line)
        if f"{slow.id}: local job" in line:
            job_pid = int(line.split("local job")[1])
            break
    assert job_pid, "".join(lines)
    deadline = time.time() + 120
    while not plan.run_dir(slow, results=results).is_dir() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(3)
    os.kill(job_pid, signal.SIGINT)  # what submitit's job.cancel() sends a local job
    out = "".join(lines) + proc.stdout.read()
    assert proc.wait(timeout=120) == 1, out
    assert "completed 1, skipped 0, failed 0, interrupted 1" in out, out
    assert sweep.run_state(plan.run_dir(quick, results=results)) == "complete"
    assert sweep.run_state(plan.run_dir(slow, results=results)) == "interrupted"
    record = json.loads((plan.run_dir(slow, results=results) / sweep.FAILURE_FILE).read_text())
    assert record["interrupted"] and "interrupted" in record["error"]
    first = (plan.run_dir(quick, results=results) / "run.json").stat().st_mtime_ns

    # the next `sweep run` resumes: the complete run is skipped, the interrupted one runs again
    outcome = sweep.execute(plan, results=results, executor="submitit")
    assert outcome == {
        "skipped": [quick.id],
        "completed": [slow.id],
        "failed": [],
        "interrupted": [],
    }
    assert (plan.run_dir(quick, results=results) / "run.json").stat().st_mtime_ns == first
    assert (plan.root(results=results) / "submitit").is_dir(), "submitit's logs stay with the sweep"
    collected = sweep.collect(plan, results=results)
    assert not collected["missing"] and not collected["failed"]


def test_slurm_gets_one_job_array_with_the_specs_resources(tmp_path, monkeypatch):
    # a stand-in sbatch (and srun, which submitit looks for) records what would be submitted
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(
        f'#!/bin/sh\ncp "$1" {tmp_path}/submitted.sh\necho "Submitted batch job 4242"\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    plan = sweep.load_spec(
        write_spec(
            tmp_path,
            grid={"C": [0.1, 1.0]},
            seeds=[0, 1, 2],
            submitit={"partition": "gpu", "gpus_per_job": 1, "timeout_min": 600},
        )
    )
    options = {**plan.executor_options["submitit"], "cluster": "slurm", "array_parallelism": 3}
    executor = sweep_executors.submitit_executor(
        tmp_path / "submitit" / "%j", options, name="sweep-x"
    )
    jobs = sweep_executors.submit_array(executor, plan, plan.runs, results=tmp_path / "r")
    assert [run.id for _, run in jobs] == [r.id for r in plan.runs]
    assert [job.job_id for job, _ in jobs] == [f"4242_{k}" for k in range(6)]
    script = (tmp_path / "submitted.sh").read_text()
    for line in (
        "#SBATCH --array=0-5%3",
        "#SBATCH --partition=gpu",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --time=600",
        "#SBATCH --job-name=sweep-x",
        "#SBATCH --cpus-per-task=4",
    ):
        assert line in script, f"{line} missing from:\n{script}"
