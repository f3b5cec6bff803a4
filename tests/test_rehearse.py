"""The rehearsal's pieces: scaled twins, memory sampling, stage attribution, projections, the README
table."""

from __future__ import annotations

import subprocess
import sys

import pytest

from common import rehearse as R
from common.data import load
from common.data.synth import synth_aml_mll, synth_cnmc
from common.paths import repo_root


def test_twin_keeps_the_real_proportions_patients_and_minimums():
    kw = R.twin_kwargs("04", 0.01)
    assert kw["n_per_class"] == {
        "control": 203,
        "CBFB_MYH11": 172,
        "NPM1": 177,
        "RUNX1_RUNX1T1": 144,
        "PML_RARA": 116,
    }
    assert (
        min(kw["patients_per_class"].values()) == 8
    )  # the 15% patient-level test part needs every class
    kw = R.twin_kwargs("02", 0.1)
    assert kw["n_per_class"] == {"all": 727, "hem": 339} and kw["n_prelim"] == {
        "all": 122,
        "hem": 65,
    }
    assert kw["patients_per_class"] == {
        "all": 6,
        "hem": 6,
    }  # the minimum for grouped test, validation and folds
    cumida = R.twin_kwargs("01", 1.0)["n_per_class"]
    assert sum(cumida["GSE28497"].values()) == 281 and cumida["GSE63270"] == round(
        101 / 2
    )  # split evenly


def test_counts_per_class_reach_the_files(tmp_path):
    counts, patients = (
        {"control": 7, "CBFB_MYH11": 5, "NPM1": 4, "RUNX1_RUNX1T1": 3, "PML_RARA": 2},
        {"control": 3, "CBFB_MYH11": 2, "NPM1": 2, "RUNX1_RUNX1T1": 1, "PML_RARA": 1},
    )
    ds = load(
        "aml_mll",
        root=synth_aml_mll(
            tmp_path / "aml", n_per_class=counts, patients_per_class=patients, size=16
        ),
    )
    assert ds.class_counts() == counts
    assert ds.n_patients == sum(patients.values())
    ds = load(
        "cnmc",
        root=synth_cnmc(
            tmp_path / "cnmc",
            n_per_class={"all": 9, "hem": 6},
            patients_per_class={"all": 3, "hem": 3},
            n_prelim={"all": 4, "hem": 2},
            size=16,
        ),
    )
    assert ds.class_counts() == {"all": 9 + 4, "hem": 6 + 2}


def test_bad_requests_fail_in_one_line_before_anything_runs():
    with pytest.raises(SystemExit, match="--scale 2.0 must be in"):
        R.check_request("04", scale=2.0, size=None, epochs=None)
    with pytest.raises(SystemExit, match="image size divisible by 9"):
        R.check_request("02", scale=0.1, size=50, epochs=None)
    with pytest.raises(SystemExit, match="must be in \\[75, 224\\]"):
        R.check_request(
            "03", scale=0.1, size=32, epochs=None
        )  # InceptionV3 does not build below 75 px
    with pytest.raises(SystemExit, match="no notebook '07'"):
        R.check_request("07", scale=0.1, size=None, epochs=None)


def test_every_reduced_parameter_exists_in_its_notebook():
    """The rehearsal passes these to papermill; a renamed parameter would silently be ignored."""
    import json

    for nb, spec in R.SPECS.items():
        cells = json.loads((repo_root() / "notebooks" / spec.notebook).read_text())["cells"]
        parameters = "".join(
            next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))[
                "source"
            ]
        )
        names = {line.split("=")[0].strip() for line in parameters.splitlines() if "=" in line}
        wanted = set(
            R.notebook_params(
                nb,
                0.1,
                root=repo_root(),
                size=spec.default_size if spec.paper_size else None,
                epochs=1,
                weights=repo_root(),
            )
        )
        assert wanted <= names, f"notebook {nb} lacks parameters {wanted - names}"


def test_sampler_sees_a_child_process_memory():
    code = "import time, numpy as np; a = np.ones(300 * 2**20 // 8); time.sleep(2.5)"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {code!r}])",
        ]
    )
    sampler = R.MemorySampler(parent.pid, every=0.1)
    sampler.start()
    parent.wait()
    sampler.stop()
    peak_anon = max(s[2] for s in sampler.samples)
    # 300 MB of ones in the grandchild; the two interpreters and numpy add tens of MB
    assert 300 <= peak_anon < 600, peak_anon


def test_stage_table_attributes_samples_to_spans():
    t0 = 1000.0
    run_json = {
        "timings_s": {"a": 2.0, "b": 1.0, "total": 5.0},
        "stage_spans": [
            {"stage": "a", "start": t0 + 1, "end": t0 + 2},
            {"stage": "b", "start": t0 + 3, "end": t0 + 4},
            {"stage": "a", "start": t0 + 4.5, "end": t0 + 5.5},
        ],
    }
    samples = [
        (t0 + 0.5, 100, 90),
        (t0 + 1.5, 500, 400),
        (t0 + 3.5, 300, 250),
        (t0 + 5.0, 700, 600),
        (t0 + 6, 150, 120),
    ]
    rows = {r["stage"]: r for r in R.stage_table(run_json, samples, wall_s=7.0)}
    assert rows["a"]["peak_anon_mb"] == 600 and rows["b"]["peak_anon_mb"] == 250
    assert rows["other"]["peak_anon_mb"] == 120 and rows["other"]["seconds"] == 4.0
    assert rows["notebook"]["peak_rss_mb"] == 700


def test_projection_separates_fixed_cost_and_takes_factors_on_the_growing_part():
    n = [100, 200, 400]
    linear = [30 + 0.5 * x for x in n]  # 30 s of start-up, 0.5 s per sample
    p = R.project_time(n, linear, 10_000, factor=4.0)
    assert p["exponent"] < 1  # the fixed part bends the log-log slope down
    assert p["fixed_s"] == pytest.approx(30) and p["full_s"] == pytest.approx(30 + 0.5 * 10_000)
    assert p["full_paper_s"] == pytest.approx(30 + 4 * 0.5 * 10_000)
    quadratic = [1e-3 * x**2 for x in n]  # a t-SNE on every sample would look like this
    p = R.project_time(n, quadratic, 4000)
    assert p["exponent"] == pytest.approx(2, abs=1e-6) and p["full_s"] > 100 * quadratic[-1] * 0.9
    slope, full = R.project_memory(n, [1000 + 2 * x for x in n], 10_000)
    assert slope == pytest.approx(2000) and full == pytest.approx(21_000)


def test_paper_factor_follows_pixels_and_epochs():
    params = {"image_size": 32, "cnn_epochs": 1, "vit_epochs": 1}
    assert R.projection_factor("04", "fine_tune_vgg16_published", params)[0] == pytest.approx(
        49 * 50
    )
    assert R.projection_factor("04", "features_vgg16", params)[0] == pytest.approx(49)
    assert R.projection_factor("04", "stacking_published", params)[0] == 1.0


def test_readme_section_is_generated_from_the_rehearsal_files():
    records = R.load_records()
    assert records, (
        "no rehearsal files under results/rehearsal/: run make rehearse, then make rehearsal-report"
    )
    text = (repo_root() / "README.md").read_text()
    section = text.split(R.README_START, 1)[1].split(R.README_END, 1)[0]
    from common import rehearse_stacking

    expected = R.report(records, stacking=rehearse_stacking.load_records())
    assert section.strip() == expected.strip(), (
        "README's cost table differs from `make rehearsal-report`'s"
    )


def test_epochs_shrink_in_proportion():
    params = R.notebook_params("03", 0.1, root=repo_root(), size=96, epochs=3, weights=None)
    assert (params["epochs"], params["deeper_epochs"], params["baseline_epochs"]) == (3, 3, 1)
    assert (
        params["subset_normal"] == 193 and params["subset_all"] == 195
    )  # the paper's subset, scaled


def test_no_growth_fit_from_fewer_than_three_scales():
    def record(n, seconds):
        stages = [
            {
                "stage": "s",
                "seconds": seconds,
                "peak_rss_mb": 100.0 + n,
                "peak_anon_mb": 90.0 + n,
                "paper_factor": 1.0,
            }
        ]
        return {"n": n, "full_n": 10_000, "stages": stages}

    two = R.stage_projections([record(100, 10.0), record(200, 20.0)])
    assert (
        two[0]["exponent"] is None
        and two[0]["cpu_s_full_paper"] is None
        and two[0]["seconds"] == [10.0, 20.0]
    )
    three = R.stage_projections([record(100, 10.0), record(200, 20.0), record(400, 40.0)])
    assert three[0]["exponent"] == pytest.approx(1.0) and three[0][
        "cpu_s_full_paper"
    ] == pytest.approx(1000.0)


def _record_04(n, size, anon_mb, stacking_mb=None):
    """A minimal rehearsal record of notebook 04 at image size ``size`` (224 = the paper's, no
    reduction)."""
    stacking_mb = anon_mb / 2 if stacking_mb is None else stacking_mb
    stages = [
        {
            "stage": "fine_tune_vgg16_published",
            "seconds": 5.0,
            "peak_rss_mb": anon_mb + 50,
            "peak_anon_mb": anon_mb,
        },
        {
            "stage": "stacking_published",
            "seconds": 2.0,
            "peak_rss_mb": stacking_mb + 50,
            "peak_anon_mb": stacking_mb,
        },
        {"stage": "notebook", "seconds": 9.0, "peak_rss_mb": anon_mb + 60, "peak_anon_mb": anon_mb},
    ]
    reductions = {
        "image_size": None if size == 224 else [size, 224],
        "epochs": {"cnn_epochs": [1, 50]},
    }
    return {
        "notebook": "04",
        "n": n,
        "full_n": 81_214,
        "unit": "cells",
        "stages": stages,
        "reductions": reductions,
        "params": {"image_size": size},
        "machine": {"cpus": 2, "load_avg_1_5_15": [1.0, 1.0, 1.0]},
        "devices": ["cpu:0"],
        "git": {"commit": "abcdef0123"},
    }


def test_composed_peak_is_the_larger_of_the_other_stages_and_stacking_at_full_width():
    """Notebook 04's full-size memory: the stacking stages (the kernel at 224 px plus the stacking
    stage at the
    paper's rows) or every other stage at 224 px, whichever is larger; none without both kinds of
    run, and a
    stacking run on fewer rows does not count."""
    from common.rehearse_stacking import FULL_ROWS

    small = [_record_04(325, 32, 4000.0)]
    paper = [_record_04(160, 224, 6000.0, 2000.0), _record_04(200, 224, 6500.0, 3000.0)]
    stage = [
        {"mode": "stage", "rows": FULL_ROWS, "peak_anon_mb": 4900.0, "trees": 2},
        {"mode": "stage", "rows": 40_000, "peak_anon_mb": 9999.0, "trees": 2},
    ]
    assert (
        R.composed_peak(small, stage) is None and R.composed_peak(small + paper, stage[1:]) is None
    )
    composed = R.composed_peak(small + paper, stage)
    assert (
        composed["anon_mb"] == 3000.0 + 4900.0
        and composed["rest_mb"] == 6500.0
        and composed["rows"] == FULL_ROWS
    )
    big_rest = R.composed_peak([_record_04(200, 224, 9000.0, 1000.0)], stage)
    assert big_rest["anon_mb"] == 9000.0  # the fine-tune, not stacking, decides
    line = R.budget_line(
        "04", [{"stage": "s", "exponent": 1.0, "cpu_s_full_paper": 10.0}], None, composed=composed
    )
    assert "7.7 GB upper bound" in line and "within 12 GB" in line


def test_other_settings_lists_the_rehearsals_outside_the_growth_series():
    rows = R.other_settings("04", [_record_04(160, 224, 6000.0)])
    assert "| 160 | 224 px (the paper's); cnn_epochs 1 (paper 50) |" in rows[4]
    assert "fine_tune_vgg16_published: 5.86 GB" in rows[4] and "abcdef0" in rows[4]
    assert R.other_settings("04", []) == []


def test_budget_line_says_what_a_disconnect_loses_for_a_stage_over_a_session():
    """A training stage longer than a session resumes per epoch: the line gives one epoch's time."""
    over = [
        {"stage": "fine_tune_vgg16_published", "exponent": 1.0, "cpu_s_full_paper": 50 * 3600.0}
    ]
    assert "one of its 50 epochs takes 60 min on this CPU (within a session)" in R.budget_line(
        "04", over, 1000.0
    )
    inside = [{"stage": "fine_tune_vgg16_published", "exponent": 1.0, "cpu_s_full_paper": 3600.0}]
    assert "resumes" not in R.budget_line("04", inside, 1000.0)
