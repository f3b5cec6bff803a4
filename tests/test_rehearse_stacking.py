"""common.rehearse_stacking: notebook 04's stacking stage at the real width, measured in a sampled
child process."""

import json

import pytest

from common import rehearse_stacking as RS


def test_a_small_run_writes_its_record_and_row(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    record = RS.run(120, trees=3, root=tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "r120-t3" / "stacking.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["columns"] == 7424 and saved["test_rows"] == round(12182 * 120 / 142140)
    fits = [f["what"] for f in saved["fits"]]
    assert fits.count("svm") == fits.count("rf") == 6, (
        "the stacker fits each base learner on 5 inner folds and once on all"
    )
    assert saved["peak_anon_mb"] > 0 and saved["fused_mb"] == pytest.approx(120 * 7424 * 4 / 2**20)
    assert (
        (tmp_path / "out" / "r120-t3" / "row.md")
        .read_text()
        .startswith("| 120 x 7,424 | stage | 3 | none |")
    )
    assert all(f["model_mb"] > 0 for f in saved["fits"] if f["what"] == "rf")
    assert not list((tmp_path / "cache").iterdir()), "the synthetic bank is removed"


def test_fits_mode_fits_each_learner_once_and_a_cap_is_stated(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path))
    record = RS.run(100, trees=2, mode="fits", svm_max_iter=1, root=tmp_path / "out")
    assert [f["what"] for f in record["fits"]] == ["svm", "rf"] and record["fits"][0]["rows"] == 100
    assert "capped at 1: a memory run" in RS.markdown_row(record)
    assert (tmp_path / "out" / "r100-t2-fits-svm1" / "stacking.json").exists()


def test_bad_requests_fail_in_one_line():
    with pytest.raises(SystemExit, match="--rows 10 is too few"):
        RS.run(10)
    with pytest.raises(SystemExit, match="--trees 0"):
        RS.run(100, trees=0)
    with pytest.raises(SystemExit, match="--mode 'all'"):
        RS.run(100, mode="all")


def _record(rows, mode, svm_s, rf_s, anon_mb=3000.0):
    fits = [
        {"what": "svm", "seconds": svm_s, "newton": 9},
        {"what": "rf", "seconds": rf_s, "model_mb": 1.0},
    ]
    return {
        "mode": mode,
        "svm_max_iter": None,
        "rows": rows,
        "columns": 7424,
        "trees": 100,
        "pca_variance": None,
        "seconds": svm_s + rf_s + 5,
        "fits": fits,
        "fused_mb": rows * 7424 * 4 / 2**20,
        "peak_anon_mb": anon_mb,
        "peak_rss_mb": anon_mb + 300,
        "machine": {"cpus": 2, "load_avg_1_5_15": [2.1, 2.0, 1.5]},
    }


def test_report_projects_one_fit_per_learner_to_a_setting():
    records = [
        _record(10_000, "fits", 100, 200),
        _record(20_000, "fits", 200, 400),
        _record(142_140, "stage", 50, 60, anon_mb=9000),
    ]
    text = RS.report(records)
    assert "| 10,000 x 7,424 | fits | 100 | none |" in text and "| 2 CPU, load 2.1/2/1.5 |" in text
    assert "at 142,140 rows (100% of the paper's largest setting): 8.8 GB anon" in text
    # linear growth: 200 s at 20k -> 1,421 s at 142,140 rows; a setting: 1 + 5 x 0.8 = 5 fits' worth
    assert "SVM: one fit ~ N^1.00, 24 min at 142,140 rows, 118 min per setting (6 fits)" in text


def test_a_forest_measured_with_fewer_trees_is_scaled_to_the_papers_100():
    records = [_record(10_000, "fits", 100, 20), _record(20_000, "fits", 200, 40)]
    for r in records:
        r["trees"] = 10
    text = RS.report(records)
    # 40 s at 20k rows with 10 trees -> 284 s at 142,140 rows -> x 10 trees: 2,843 s = 47 min
    assert (
        "forest of 100 trees (measured with 10: its trees are independent fits, so time x "
        "100/10): one fit ~ N^1.00, 47 min at 142,140 rows" in text
    )


def test_setting_time_counts_the_five_inner_folds():
    assert RS.setting_seconds(100.0, 1.0) == pytest.approx(500.0)
    assert RS.setting_seconds(100.0, 2.0) == pytest.approx(100 * (1 + 5 * 0.64))
