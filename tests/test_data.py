import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from common.data import DataError, load, synth
from common.data.images import cnmc_subject
from common.data.stream import load_image

SMALL = {"n_per_class": 8, "patients_per_class": 2, "size": 48}


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    base = tmp_path_factory.mktemp("twins")
    return {
        "cnmc": synth.synth_cnmc(base / "cnmc", n_per_class=12, patients_per_class=3, size=48),
        "aria_all": synth.synth_aria_all(base / "aria", **SMALL),
        "aml_mll": synth.synth_aml_mll(base / "aml", n_per_class=6, patients_per_class=2, size=48),
        "cumida": synth.synth_cumida(base / "cumida", n_per_class=5, n_probes=100),
    }


# ----------------------------------------------------------------- synthetic twins
@pytest.mark.parametrize("dataset", ["cnmc", "aria_all", "aml_mll", "cumida"])
def test_synth_same_seed_same_bytes(tmp_path, dataset):
    kwargs = {"n_per_class": 4, "seed": 3} | (
        {} if dataset == "cumida" else {"patients_per_class": 2, "size": 32}
    )
    a = synth.synth(dataset, tmp_path / "a", **kwargs)
    b = synth.synth(dataset, tmp_path / "b", **kwargs)
    c = synth.synth(dataset, tmp_path / "c", **{**kwargs, "seed": 4})
    assert tree_digest(a) == tree_digest(b)
    assert tree_digest(a) != tree_digest(c)


def test_synth_refuses_a_non_empty_folder_and_bad_knobs(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        synth.synth("cnmc", tmp_path / "x", **SMALL)
    with pytest.raises(DataError, match="difficulty"):
        synth.synth("aria_all", tmp_path / "y", difficulty=1.5)
    with pytest.raises(DataError, match="exceeds"):
        synth.synth("aml_mll", tmp_path / "z", n_per_class=2, patients_per_class=3)
    assert not (tmp_path / "y").exists() and not (tmp_path / "z").exists(), "nothing half-written"


# ------------------------------------------------------------------------ loaders
def test_cnmc_loader_on_twin(twins):
    ds = load("cnmc", root=twins["cnmc"])
    assert ds.source == "synthetic"
    train = ds.meta["split"] == "train"
    assert ds.class_counts() == {"all": 15, "hem": 15}  # 12 train + 3 prelim per class
    assert sorted(ds.meta.loc[train, "fold"].unique()) == [0, 1, 2]
    # folds are subject-disjoint
    by_fold = [
        set(ds.patients[train.to_numpy() & (ds.meta["fold"] == k).to_numpy()]) for k in range(3)
    ]
    assert all(not (by_fold[i] & by_fold[j]) for i in range(3) for j in range(i + 1, 3))
    # lower-case healthy subjects are case-normalised; H prefix = healthy
    assert "H3" in set(ds.patients) and not any(p.startswith("h") for p in ds.patients)
    hem = ds.labels == "hem"
    assert all(p.startswith("H") for p in ds.patients[hem]) and not any(
        p.startswith("H") for p in ds.patients[~hem]
    )
    prelim = ds.subset((ds.meta["split"] == "prelim").to_numpy())
    assert len(prelim) == 6 and set(Path(p).name for p in prelim.paths) == {
        f"{i}.bmp" for i in range(1, 7)
    }
    assert ds.info["n_unlabelled_test"] == 2 and not ds.problems


def test_cnmc_subject_parsing():
    assert cnmc_subject("UID_h3_1_1_hem.bmp") == "H3"
    assert cnmc_subject("UID_57_29_1_all.bmp") == "57"
    with pytest.raises(DataError, match="does not follow"):
        cnmc_subject("cell_1.bmp")


def test_aria_loader_has_no_patients(twins):
    for variant in ("Original", "Segmented"):
        ds = load("aria_all", root=twins["aria_all"], variant=variant)
        assert ds.patients is None and ds.n_patients is None
        assert ds.class_counts() == {c: 8 for c in ("Benign", "Early", "Pre", "Pro")}
        assert Path(ds.paths[0]).parts[-3] == variant
    seg = load_image(load("aria_all", root=twins["aria_all"], variant="Segmented").paths[0])
    assert (seg.sum(axis=2) < 30).mean() > 0.3, "segmented images have a black background"


def test_aml_loader_merges_metadata_with_decimal_commas(twins):
    ds = load("aml_mll", root=twins["aml_mll"])
    assert ds.n_patients == 10 and len(ds) == 30
    assert ds.meta["age"].dtype == float and ds.meta["age"].between(20, 80).all()
    assert (ds.meta["bag_label"] == ds.labels).all(), "every cell carries its patient's label"


def test_cumida_merges_on_shared_probes(twins):
    ds = load("cumida", root=twins["cumida"])
    per_series = ds.info["probes_per_series"]
    assert set(per_series) == {"GSE28497", "GSE22529_U133A", "GSE63270"}
    assert ds.X.shape == (5 * 11, ds.info["n_features"]) and ds.info["n_features"] < min(
        per_series.values()
    )
    assert ds.info["labels_by_series"]["GSE63270"] == ["AML", "normal"]
    assert set(ds.meta["series"]) == set(per_series)
    one = load("cumida", root=twins["cumida"], series=["GSE28497"])
    assert one.X.shape == (35, per_series["GSE28497"])


def test_fingerprint_changes_with_the_files(tmp_path):
    root = synth.synth("aria_all", tmp_path / "a", **SMALL)
    before = load("aria_all", root=root).fingerprint
    next((root / "Original" / "Pro").glob("*.jpg")).unlink()
    assert load("aria_all", root=root).fingerprint != before


def test_patient_signature_leaks_through_image_level_splits(tmp_path):
    """At difficulty 1 the classes look alike: grouped CV is near chance, image-level CV is not."""
    root = synth.synth_cnmc(
        tmp_path / "c", n_per_class=48, patients_per_class=6, size=48, seed=1, difficulty=1.0
    )
    ds = load("cnmc", root=root)
    train = ds.subset((ds.meta["split"] == "train").to_numpy())
    feats = []
    for p in train.paths:
        im = load_image(p).astype(float) / 255
        cell = im.mean(axis=2) > 0.05
        feats.append([*im[cell].mean(0), *im[cell].std(0), cell.mean()])
    X = np.array(feats)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    grouped = cross_val_score(clf, X, train.y, groups=train.patients, cv=GroupKFold(3)).mean()
    image_level = cross_val_score(
        clf, X, train.y, cv=StratifiedKFold(3, shuffle=True, random_state=0)
    ).mean()
    patient_id = cross_val_score(
        clf, X, train.patients, cv=StratifiedKFold(3, shuffle=True, random_state=0)
    ).mean()
    # 12 patients: chance 1/12; measured about 0.98 on this seed
    assert patient_id > 0.6
    # measured grouped 0.38 vs image-level 0.75: leave room for seed noise, keep the gap
    assert image_level - grouped > 0.15


# ----------------------------------------------------------- real microarray sets
def test_bioc_all_real_shapes_and_counts(debian_data):
    ds = load("bioc_all", root=debian_data)
    assert ds.source == "embedded-real" and ds.X.shape == (128, 12625)
    assert ds.class_counts() == {
        "B": 5,
        "B1": 19,
        "B2": 36,
        "B3": 23,
        "B4": 12,
        "T": 5,
        "T1": 1,
        "T2": 15,
        "T3": 10,
        "T4": 2,
    }
    assert ds.meta["mol.biol"].value_counts().to_dict() == {
        "NEG": 74,
        "BCR/ABL": 37,
        "ALL1/AF4": 10,
        "E2A/PBX1": 5,
        "NUP-98": 1,
        "p15/p16": 1,
    }
    assert np.isfinite(ds.X).all() and 2 < ds.X.mean() < 12, "RMA values are log2 intensities"
    assert load("bioc_all", root=debian_data, label="lineage").class_counts() == {"B": 95, "T": 33}
    with pytest.raises(DataError, match="not a phenotype column"):
        load("bioc_all", root=debian_data, label="colour")


def test_golub_real_shapes_and_counts(debian_data):
    ds = load("golub", root=debian_data)
    assert ds.X.shape == (38, 3051) and ds.class_counts() == {"ALL": 27, "AML": 11}
    assert ds.feature_names[0].startswith("AFFX") and ds.source == "embedded-real"


# --------------------------------------------------------------------- bad input
def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "common.data", *args], capture_output=True, text=True, timeout=120
    )


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_cli_missing_root(tmp_path):
    assert_one_line_error(
        cli("inspect", "cnmc", "--root", str(tmp_path / "nope")), "nope", "does not exist"
    )


def test_cli_empty_and_unknown_class_folders(tmp_path):
    root = synth.synth("aria_all", tmp_path / "a", **SMALL)
    for f in (root / "Original" / "Pre").iterdir():
        f.unlink()
    assert_one_line_error(cli("inspect", "aria_all", "--root", str(root)), "Pre", "empty")
    root2 = synth.synth("aml_mll", tmp_path / "b", n_per_class=2, patients_per_class=1, size=32)
    (root2 / "data" / "APL_variant").mkdir()
    assert_one_line_error(
        cli("inspect", "aml_mll", "--root", str(root2)), "APL_variant", "expected only"
    )


def test_cli_corrupt_image(tmp_path):
    root = synth.synth("cnmc", tmp_path / "c", **SMALL)
    victim = sorted((root / "C-NMC_Leukemia" / "training_data" / "fold_0" / "all").glob("*.bmp"))[0]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated
    assert_one_line_error(
        cli("inspect", "cnmc", "--root", str(root)), victim.name, "--check-images"
    )
    proc = cli("inspect", "cnmc", "--root", str(root), "--check-images", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report) == {"dataset", "n_samples", "classes", "n_patients", "problems"}
    assert len(report["problems"]) == 1 and victim.name in report["problems"][0]


def test_cli_prelim_csv_rows_must_match_files(tmp_path):
    root = synth.synth("cnmc", tmp_path / "c", **SMALL)
    csv = root / "C-NMC_Leukemia" / "validation_data" / "C-NMC_test_prelim_phase_data_labels.csv"
    table = pd.read_csv(csv)
    table.loc[0, "new_names"] = "999.bmp"
    table.to_csv(csv, index=False)
    assert_one_line_error(cli("inspect", "cnmc", "--root", str(root)), "999.bmp", "matches no file")


@pytest.mark.parametrize(
    "content,fragment",
    [
        (
            "samples,type,1007_s_at\nGSM1.CEL.gz,AML,7.1\nGSM2.CEL.gz,AML,\n",
            "missing or non-numeric",
        ),
        ("sample,label,1007_s_at\nGSM1.CEL.gz,AML,7.1\n", "lacks column"),
    ],
)
def test_cli_bad_cumida_csv(tmp_path, content, fragment):
    (tmp_path / "Leukemia_GSE1.csv").write_text(content)
    assert_one_line_error(
        cli("inspect", "cumida", "--root", str(tmp_path)), "Leukemia_GSE1.csv", fragment
    )


def test_cli_inspect_json_is_exactly_one_object(twins):
    proc = cli("inspect", "aml_mll", "--root", str(twins["aml_mll"]), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report == {
        "dataset": "aml_mll",
        "n_samples": 30,
        "classes": {c: 6 for c in ("CBFB_MYH11", "NPM1", "PML_RARA", "RUNX1_RUNX1T1", "control")},
        "n_patients": 10,
        "problems": [],
    }


def test_cli_synth_then_inspect_and_list(tmp_path):
    out = tmp_path / "aria"
    proc = cli(
        "synth",
        "aria_all",
        "--out",
        str(out),
        "--n-per-class",
        "3",
        "--patients-per-class",
        "1",
        "--size",
        "32",
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        json.loads(cli("inspect", "aria_all", "--root", str(out), "--json").stdout)["n_samples"]
        == 12
    )
    listing = cli("list").stdout
    assert all(
        name in listing for name in ("cumida", "bioc_all", "golub", "cnmc", "aria_all", "aml_mll")
    )


def test_cli_fetch_offline_prints_manual_steps(tmp_path):
    proc = cli("fetch", "aml_mll", "--root", str(tmp_path / "aml"))
    assert proc.returncode == 1
    assert "Manual steps" in proc.stdout and str(tmp_path / "aml") in proc.stdout


def test_load_or_fetch_fetches_debian_sets_only_when_missing(tmp_path, monkeypatch):
    import common.data as D

    calls = []
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(
        D, "fetch_debian", lambda dest: calls.append(dest) or dest.mkdir(parents=True)
    )
    with pytest.raises(D.DataError):  # fetched (here: an empty folder), then loaded: nothing there
        D.load_or_fetch("golub")
    assert calls == [tmp_path / "raw" / "debian"]
    with pytest.raises(D.DataError):
        D.load_or_fetch("golub")
    assert len(calls) == 1, "an existing folder is not fetched again"
