"""Near-duplicate audit (common.data.audit, python -m common.data audit)."""

import json
import subprocess
import sys
import types

import numpy as np
import pytest

from common.data import DataError, audit, load, synth
from common.data.__main__ import main


@pytest.fixture(scope="module")
def planted_aria(tmp_path_factory):
    """A 4 x 40-image Aria twin at the real size (224 px) with a copy of a quarter of its images
    (six kinds in turn: resized, JPEG, h/v flip, crop, all combined)."""
    root = synth.synth_aria_all(
        tmp_path_factory.mktemp("aria") / "aria", n_per_class=40, patients_per_class=4, seed=3
    )
    table = audit.plant_duplicates(load("aria_all", root=root), fraction=0.25, seed=3)
    return root, table


@pytest.fixture(scope="module")
def planted_cnmc(tmp_path_factory):
    """A small C-NMC twin (cells on black: the trimmed, 'framed' path) with planted copies in its
    folds."""
    root = synth.synth_cnmc(
        tmp_path_factory.mktemp("cnmc") / "cnmc",
        n_per_class=48,
        patients_per_class=4,
        size=256,
        seed=3,
    )
    table = audit.plant_duplicates(load("cnmc", root=root), fraction=0.25, seed=3)
    return root, table


@pytest.mark.parametrize("name", ["aria_all", "cnmc"])
def test_planted_duplicates_are_found_without_false_pairs(
    name, planted_aria, planted_cnmc, tmp_path
):
    root, table = {"aria_all": planted_aria, "cnmc": planted_cnmc}[name]
    ds = load(name, root=root)
    assert len(table) == 40 if name == "aria_all" else len(table) == 24
    assert set(table["kind"]) == set(audit.PLANT_KINDS)
    result = audit.audit_images(ds, cache_dir=tmp_path, progress=False)
    score = audit.score_planted(ds, np.asarray(result["pairs"]))
    # targets of the issue: recall >= 0.95, false pairs <= 1%. On the full-size Aria twin the chosen
    # thresholds gave recall 1.0 and no false pair (data/README.md); here at most 2 of 40 (1 of 24)
    # planted pairs may be missed, and no false pair is allowed (a handful of reported pairs: 1% of
    # them is < 1)
    assert score["recall"] >= 0.95, score
    assert score["false_pair_rate"] <= 0.01, score
    assert score["n_planted"] == len(table) and result["n_groups"] >= score["n_found"] - 1


def test_score_counts_false_pairs_and_misses(planted_aria):
    root, table = planted_aria
    ds = load("aria_all", root=root)
    index = {p: i for i, p in enumerate(ds.sample_ids)}
    truth = [(index[a], index[b]) for a, b in zip(table["original"], table["copy"])]
    strangers = [(i, j) for i in range(3) for j in range(3, 6)]  # originals of different draws
    strangers = [p for p in strangers if p not in truth][:3]
    score = audit.score_planted(ds, np.array(truth[:-4] + strangers))
    assert score["n_found"] == len(truth) - 4 and score["recall"] == pytest.approx(
        1 - 4 / len(truth)
    )
    assert score["n_false"] == 3 and score["false_pair_rate"] == pytest.approx(
        3 / (len(truth) - 4 + 3)
    )


def test_flipped_copy_is_close_and_a_stranger_is_not(planted_aria):
    root, table = planted_aria
    flip = table[table["kind"] == "hflip"].iloc[0]
    original, _ = audit.image_signatures(root / flip["original"])
    copy, _ = audit.image_signatures(root / flip["copy"])
    other, _ = audit.image_signatures(root / table.iloc[-1]["original"])
    pairs = audit.near_duplicate_pairs(
        np.stack([original, copy, other]), threshold=audit.DEFAULT_THRESHOLD
    )
    assert pairs[:, :2].tolist() == [[0, 1]]
    plain = audit.popcount(original[0] ^ copy[0]).sum()
    assert pairs[0, 2] < plain, "the flip is only matched through the flipped variant"


def test_unreadable_image_is_listed_not_fatal(tmp_path):
    root = synth.synth_aria_all(tmp_path / "a", n_per_class=5, patients_per_class=1, size=64)
    victim = sorted((root / "Original" / "Pre").glob("*.jpg"))[1]
    victim.write_bytes(victim.read_bytes()[:100])
    result = audit.audit_images(
        load("aria_all", root=root), cache_dir=tmp_path / "cache", progress=False
    )
    assert result["n_images"] == 20 and result["n_readable"] == 19
    assert [u["path"] for u in result["unreadable"]] == [str(victim)] and result["unreadable"][0][
        "reason"
    ]
    assert "1 unreadable" in result["summary"]
    json.dumps(result)  # JSON-able


def test_cache_is_reused(planted_aria, tmp_path, monkeypatch):
    root, _ = planted_aria
    ds = load("aria_all", root=root)
    first = audit.audit_images(ds, cache_dir=tmp_path, progress=False)
    assert first["cache"]["hashed"] == len(ds) and first["cache"]["reused"] == 0
    calls = []
    real = audit.image_signatures
    monkeypatch.setattr(audit, "image_signatures", lambda path: calls.append(path) or real(path))
    second = audit.audit_images(ds, cache_dir=tmp_path, progress=False)
    assert calls == [] and second["cache"]["reused"] == len(ds)
    assert second["pairs"] == first["pairs"] and second["groups"] == first["groups"]
    subset = ds.subset(
        np.arange(len(ds)) % 2 == 0
    )  # same fingerprint, fewer paths: still no hashing
    audit.audit_images(subset, cache_dir=tmp_path, progress=False)
    assert calls == []


def test_cross_split_duplicates_hand_made():
    groups = [[0, 5], [1, 2, 7], [3, 4]]
    out = audit.cross_split_duplicates(groups, train_idx=[0, 1, 3, 4, 6], test_idx=[2, 5, 7, 8])
    assert out["n_test"] == 4 and out["n_test_with_train_duplicate"] == 3 and out["share"] == 0.75
    assert out["test_indices"] == [2, 5, 7] and out["pairs"] == [[0, 5], [1, 2], [1, 7]]
    # a pair array [i, j, distance] is joined into groups first: 1-2 and 2-7 put 7 with 1
    pairs = np.array([[0, 5, 3], [1, 2, 9], [2, 7, 4]])
    assert audit.cross_split_duplicates(pairs, [1], [7])["pairs"] == [[1, 7]]
    assert audit.cross_split_duplicates(groups, [0, 1], [3])["n_test_with_train_duplicate"] == 0


def test_pseudo_patients_hand_made():
    labels = audit.pseudo_patients(6, [[1, 4], [2, 3]])
    assert labels[1] == labels[4] and labels[2] == labels[3] and labels[1] != labels[2]
    assert len(set(labels)) == 4
    patients = ["A", "A", "B", "C", "D", "E"]
    merged = audit.pseudo_patients(6, [[1, 4], [3, 5]], patients=patients)
    assert merged.tolist() == ["A+D", "A+D", "B", "C+E", "A+D", "C+E"]
    from sklearn.model_selection import GroupKFold

    for train, test in GroupKFold(3).split(np.zeros(6), groups=merged):
        assert not set(merged[train]) & set(merged[test])
        assert not ({1, 4} & set(train) and {1, 4} & set(test)), (
            "a cluster never straddles the split"
        )
    with pytest.raises(DataError, match="one id per sample"):
        audit.pseudo_patients(6, [], patients=["A"])
    with pytest.raises(DataError, match="outside"):
        audit.pseudo_patients(3, [[1, 3]])


def test_contact_sheet_says_synthetic(planted_aria, tmp_path):
    root, _ = planted_aria
    ds = load("aria_all", root=root)
    fig = audit.contact_sheet(ds, [[0, 1], [2, 3, 4]])
    texts = [t.get_text() for t in fig.texts]
    assert "synthetic data" in texts and "synthetic" in fig._suptitle.get_text()
    path = audit.save_contact_sheet(ds, {"groups": [[0, 1]]}, tmp_path / "sheet.png")
    assert path.is_file() and path.stat().st_size > 1000
    assert audit.save_contact_sheet(ds, {"groups": []}, tmp_path / "none.png") is None


# ------------------------------------------------------------------------------ CLI
def test_cli_audit_writes_json_figure_and_one_summary_line(
    planted_aria, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    root, table = planted_aria
    out, png = tmp_path / "audit.json", tmp_path / "sheet.png"
    assert (
        main(["audit", "aria_all", "--root", str(root), "--json", str(out), "--figure", str(png)])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    report = json.loads(out.read_text())
    assert lines[0] == report["summary"] and report["n_images"] == 160 + len(table)
    assert report["source"] == "synthetic" and report["threshold"] == audit.DEFAULT_THRESHOLD
    assert png.is_file() and str(png) in "\n".join(lines)


def cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "common.data", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_cli_unknown_dataset_is_one_line():
    proc = cli("audit", "aria")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("error: unknown dataset 'aria'; choose one of")


def test_cli_empty_and_unreadable_datasets_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    root = synth.synth_aria_all(tmp_path / "a", n_per_class=2, patients_per_class=1, size=32)
    for f in (root / "Original").rglob("*.jpg"):
        f.write_bytes(b"not an image")
    assert main(["audit", "aria_all", "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: none of the 8 images") and len(err.splitlines()) == 1
    for f in (root / "Original").rglob("*.jpg"):
        f.unlink()
    assert main(["audit", "aria_all", "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: class folder") and "empty" in err and len(err.splitlines()) == 1


def test_cli_microarray_goes_to_the_profile_audit(tmp_path, monkeypatch, capsys):
    seen = []
    fake = types.ModuleType("common.data.profile_audit")
    fake.audit_profiles = lambda ds: (
        seen.append(ds) or {"summary": f"profiles of {ds.name}: {len(ds)} samples"}
    )
    monkeypatch.setitem(sys.modules, "common.data.profile_audit", fake)
    root = synth.synth_cumida(tmp_path / "c", n_per_class=3, n_probes=60)
    out = tmp_path / "p.json"
    assert main(["audit", "cumida", "--root", str(root), "--json", str(out)]) == 0
    assert len(seen) == 1 and seen[0].X is not None
    assert capsys.readouterr().out.splitlines()[0] == "profiles of cumida: 33 samples"
    assert json.loads(out.read_text())["summary"].startswith("profiles of cumida")
