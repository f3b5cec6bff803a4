"""Sweeps: spec validation, stable plans, sharding, resume after a kill, failures, collect.

The runs execute the harness fixture notebook (logistic regression on iris, a few
seconds each) so that the sweep machinery, not model training, is what is timed.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from common import evaluate, notebooks, report, sweep

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "harness_notebook.ipynb"
FIXTURE_CLAIMS = REPO / "tests" / "fixtures" / "claims"


def write_spec(tmp_path, **doc):
    doc = {"notebook": str(FIXTURE), "profile": "smoke", **doc}
    path = tmp_path / f"{doc.pop('file', 'spec')}.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def test_plan_expands_grid_and_settings_times_seeds_with_stable_ids(tmp_path):
    spec = write_spec(
        tmp_path,
        grid={"C": [0.1, 10.0]},
        settings=[{"n_samples": 60}, {"n_samples": 90}],
        seeds=[0, 1],
    )
    plan = sweep.load_spec(spec)
    assert len(plan.runs) == 2 * 2 * 2
    assert plan.varied == ["C", "n_samples"]
    ids = [r.id for r in plan.runs]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "C-0.1_n_samples-60__seed-0"
    assert ids == [r.id for r in sweep.load_spec(spec).runs], "the same spec plans the same ids"
    assert plan.runs[0].parameters == {"C": 0.1, "n_samples": 60, "seed": 0}


def test_shards_partition_the_plan(tmp_path):
    plan = sweep.load_spec(write_spec(tmp_path, grid={"C": [0.1, 1.0, 10.0]}, seeds=[0, 1, 2]))
    shards = [sweep.shard_runs(plan.runs, (i, 4)) for i in range(1, 5)]
    assert sorted(r.id for s in shards for r in s) == sorted(r.id for r in plan.runs)
    assert sum(len(s) for s in shards) == len(plan.runs) == 9
    for bad in ("0/3", "4/3", "x", "1-3"):
        with pytest.raises(ValueError, match="i/n"):
            sweep.parse_shard(bad)


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"grid": {"epochz": [1, 2]}}, r"has no parameter\(s\) \['epochz'\]"),
        ({"fixed": {"learning_rte": 0.1}}, r"learning_rte"),
        ({"grid": {"seed": [1, 2]}}, r"set by the sweep itself"),
        ({"grid": {"C": [1.0]}, "fixed": {"C": 2.0}}, r"both fixed and varied"),
        ({"seeds": [0, 0]}, r"distinct"),
        ({"grids": {"C": [1.0]}}, r"unknown key"),
        ({"profile": "fast"}, r"profile 'fast'"),
        ({"grid": {"C": []}}, r"non-empty list"),
    ],
)
def test_bad_specs_are_rejected_before_anything_runs(tmp_path, doc, message):
    spec = write_spec(tmp_path, **doc)
    with pytest.raises(ValueError, match=message):
        sweep.load_spec(spec)
    assert sweep.main(["run", str(spec), "--results", str(tmp_path / "results")]) == 2
    assert not (tmp_path / "results").exists(), "nothing may be written for a rejected spec"


def test_every_notebook_exposes_its_parameters_to_sweeps(tmp_path):
    for path in notebooks.discover(directory=REPO / "notebooks"):
        names = sweep.notebook_parameters(path)
        assert {"profile", "run", "seed"} <= set(names), path.name
        # a sweep over any real parameter plans; a misspelt one is refused
        real = next(n for n in names if n not in sweep.RESERVED)
        plan = sweep.load_spec(
            write_spec(tmp_path, notebook=str(path), fixed={real: None}, seeds=[0, 1])
        )
        assert len(plan.runs) == 2
        with pytest.raises(ValueError, match="no parameter"):
            sweep.load_spec(write_spec(tmp_path, notebook=str(path), grid={real + "_typo": [1]}))


def _metric(run_dir, protocol="published", model="logreg", metric="accuracy"):
    rows = evaluate.read_metrics(run_dir)
    hit = rows[
        (rows["protocol"] == protocol)
        & (rows["model"] == model)
        & (rows["class"] == "overall")
        & (rows["metric"] == metric)
    ]
    return float(hit["value"].iloc[0])


def test_sweep_resumes_after_a_kill_collects_and_reports(tmp_path):
    results = tmp_path / "results"
    spec = write_spec(
        tmp_path,
        name="harness-C",
        grid={"C": [0.05, 10.0]},
        fixed={"n_samples": 90, "sleep_s": 2},
        seeds=[0, 1],
        metric={"metric": "accuracy", "model": "logreg", "class": "overall"},
    )
    plan = sweep.load_spec(spec)
    dirs = [plan.run_dir(r, results=results) for r in plan.runs]

    # a session that is killed while its second run is executing
    env = {**os.environ, "REPRO_RESULTS_DIR": str(tmp_path / "elsewhere")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "common.sweep", "run", str(spec), "--results", str(results)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.time() + 240
    while not (dirs[0] / "run.json").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)  # the second run has started its kernel
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (dirs[0] / "run.json").is_file(), proc.stdout.read().decode()[-2000:]
    assert not (dirs[1] / "run.json").is_file(), "the kill was meant to land inside the second run"
    assert [sweep.run_state(d) for d in dirs] == ["complete", "pending", "pending", "pending"]
    first_written = (dirs[0] / "run.json").stat().st_mtime_ns

    # the next session resumes: the completed run is skipped, the rest run
    outcome = sweep.execute(plan, results=results)
    assert outcome == {
        "skipped": [plan.runs[0].id],
        "completed": [r.id for r in plan.runs[1:]],
        "failed": [],
        "interrupted": [],
    }
    assert (dirs[0] / "run.json").stat().st_mtime_ns == first_written, (
        "a complete run must not be re-executed"
    )
    assert all((d / FIXTURE.name).is_file() for d in dirs), "each run keeps its executed notebook"
    seeds = [json.loads((d / "run.json").read_text())["params"]["seed"] for d in dirs]
    assert seeds == [0, 1, 0, 1]

    collected = sweep.collect(plan, results=results)
    table = collected["table"]
    chosen = sweep.chosen_rows(plan, table)
    assert set(chosen["protocol"]) == {"published", "leak_free"}
    for setting, run_dirs in (("C-0.05", dirs[:2]), ("C-10.0", dirs[2:])):
        values = np.array([_metric(d) for d in run_dirs])
        row = chosen[(chosen["setting"] == setting) & (chosen["protocol"] == "published")].iloc[0]
        half = stats.t.ppf(0.975, 1) * values.std(ddof=1) / np.sqrt(2)
        assert row["n_seeds"] == 2
        assert row["mean"] == pytest.approx(values.mean(), abs=1e-12)
        assert row["sd"] == pytest.approx(values.std(ddof=1), abs=1e-12)
        assert row["ci_low"] == pytest.approx(values.mean() - half, abs=1e-12)
    # C=0.05 over-regularises iris: a real difference the collected table must show
    means = chosen[chosen["protocol"] == "published"].set_index("C")["mean"]
    assert means[0.05] < means[10.0]
    root = plan.root(results=results)
    assert {"collected.csv", "collected.md", "collected.png", "runs.csv", "sweep.json"} <= {
        p.name for p in root.iterdir()
    }
    assert "4 planned runs; 4 complete, 0 failed" in (root / "collected.md").read_text()

    # the reviewer report builds from the sweep's runs and every link resolves
    built = report.build_report(results=root, directory=FIXTURE_CLAIMS)
    assert built["runs"] == 4
    assert report.broken_links(built["html"]) == []
    text = built["markdown"].read_text()
    assert text.count("## 00_harness · run") == 4
    assert "5-fold stratified cross-validation" in text, (
        "the protocol descriptions from run.json are shown"
    )


def test_failures_are_recorded_and_do_not_stop_the_other_runs(tmp_path, capsys):
    results = tmp_path / "results"
    spec = write_spec(tmp_path, settings=[{"fail": True}, {"fail": False}], seeds=[3])
    plan = sweep.load_spec(spec)
    assert sweep.main(["run", str(spec), "--results", str(results)]) == 1
    failed_dir, ok_dir = (plan.run_dir(r, results=results) for r in plan.runs)
    failure = json.loads((failed_dir / sweep.FAILURE_FILE).read_text())
    assert "fail=True: this run was asked to fail" in failure["error"]
    assert (failed_dir / FIXTURE.name).is_file(), "the executed notebook of a failed run is kept"
    assert sweep.run_state(ok_dir) == "complete"
    # a rerun leaves the failure alone unless asked to retry it
    assert sweep.execute(plan, results=results)["skipped"] == [r.id for r in plan.runs]
    assert sweep.main(["collect", str(spec), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "1 failed run(s)" in out and plan.runs[0].id in out
    assert "## Failed runs" in (plan.root(results=results) / "collected.md").read_text()


def test_collect_without_complete_runs_says_what_to_do(tmp_path):
    plan = sweep.load_spec(write_spec(tmp_path, seeds=[0]))
    with pytest.raises(ValueError, match="run `python -m common.sweep run` first"):
        sweep.collect(plan, results=tmp_path / "results")


def test_the_example_specs_in_sweeps_plan():
    specs = sorted((REPO / "sweeps").glob("*.yaml"))
    assert specs, "sweeps/ holds example specs"
    for spec in specs:
        plan = sweep.load_spec(spec)
        assert plan.runs and plan.varied, spec.name
