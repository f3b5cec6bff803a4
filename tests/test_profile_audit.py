"""Duplicate-profile audit: planted duplicates found across series, none where there are none,
GSE22529's chip pairs kept together by the leak_free split, and duplicate_patients by hand."""

import json

import numpy as np
import pandas as pd
import pytest

from common import splits
from common.data import DataError, load, synth
from common.data.core import build_dataset
from common.data.profile_audit import (
    DEFAULT_THRESHOLD,
    audit_profiles,
    audited_patients,
    connected_groups,
    duplicate_patients,
    plant_duplicates,
    planted_recall,
    planted_table,
    with_audited_patients,
)
from common.data.synth import CUMIDA_PAPER_SERIES, TRUTH_FILE

N_PER_CLASS, N_PROBES = 6, 200


@pytest.fixture(scope="module")
def seven(tmp_path_factory):
    return synth.synth_cumida(
        tmp_path_factory.mktemp("cumida") / "seven",
        n_per_class=N_PER_CLASS,
        n_probes=N_PROBES,
        series=CUMIDA_PAPER_SERIES,
        platform_ids=True,
    )


def never_split(groups, parts):
    """True when no group of sample indices has members in two of ``parts`` (index arrays)."""
    where = {}
    for k, part in enumerate(parts):
        for i in np.asarray(part).tolist():
            where.setdefault(i, set()).add(k)
    return all(len(set().union(*(where[i] for i in group))) == 1 for group in groups)


# ------------------------------------------------------------------- planted duplicates
def test_planted_duplicates_in_other_series_are_found_at_the_threshold(seven):
    ds = load(
        "cumida", root=seven
    )  # compatible merge: four series on shared probe ids, one comparable block
    planted_ds, planted = plant_duplicates(
        ds, n=8, noise=0.5, scale=1.1, shift=0.5, batch_sd=0.5, seed=3
    )
    series = planted_ds.meta["series"].to_numpy()
    assert all(series[a] != series[b] for a, b in planted), "every copy sits in another series"
    audit = audit_profiles(planted_ds)
    assert planted_recall(audit, planted) == {"planted": 8, "found": 8, "false_pairs": 0}
    assert all(
        p["series"][0] != p["series"][1] and p["correlation"] >= DEFAULT_THRESHOLD
        for p in audit["pairs"]
    )
    patients = audited_patients(planted_ds, audit)
    assert all(patients[a] == patients[b] for a, b in planted)
    assert len(set(patients.tolist())) == len(planted_ds) - len(planted)


def test_planted_table_loses_copies_as_noise_grows(seven):
    table = planted_table(
        load("cumida", root=seven), noises=(0.5, 3.0), n=6, batch_sd=0.5, seed=1
    ).set_index("noise")
    assert table.loc[0.5, "found"] == 6 and table.loc[0.5, "lowest"] >= DEFAULT_THRESHOLD
    # noise sd 3 is twice the twin's between-patient sd: no longer the same RNA, and not reported
    assert table.loc[3.0, "found"] == 0 and table.loc[3.0, "lowest"] < DEFAULT_THRESHOLD
    assert (table["false_pairs"] == 0).all() and (table["across_series"] == 6).all()


def test_a_sample_re_deposited_in_another_csv_is_found_and_kept_on_one_side(seven, tmp_path):
    """Planted at the file level (independent of plant_duplicates): a GSE28497 sample copied into
    GSE63270 under a new GSM id and another label, rescaled and noisy."""
    root = tmp_path / "cumida"
    root.mkdir()
    for path in seven.iterdir():
        (root / path.name).write_bytes(path.read_bytes())
    source = pd.read_csv(root / "Leukemia_GSE28497.csv")
    target = pd.read_csv(root / "Leukemia_GSE63270.csv")
    rng = np.random.default_rng(0)
    copy = target.iloc[[0]].copy()
    shared = [c for c in source.columns[2:] if c in target.columns]
    copy[shared] = (
        1.1 * source.loc[[5], shared].to_numpy() + 0.4 + rng.normal(0, 0.3, (1, len(shared)))
    )
    copy["samples"], copy["type"] = "GSM999999.CEL.gz", "normal"
    pd.concat([target, copy], ignore_index=True).to_csv(root / "Leukemia_GSE63270.csv", index=False)
    ds = load("cumida", root=root)
    audit = audit_profiles(ds)
    assert [sorted(p["samples"]) for p in audit["pairs"]] == [
        sorted([source.loc[5, "samples"], "GSM999999.CEL.gz"])
    ]
    assert audit["pairs"][0]["labels"] == [source.loc[5, "type"], "normal"] or audit["pairs"][0][
        "labels"
    ] == ["normal", source.loc[5, "type"]]
    grouped = with_audited_patients(ds, audit)
    pair = audit["groups"][0]["index"]
    assert (
        grouped.patients[pair[0]] == grouped.patients[pair[1]]
        and ds.patients[pair[0]] != ds.patients[pair[1]]
    )
    assert (grouped.meta["patient"].to_numpy() == grouped.patients).all()
    for seed in range(
        5
    ):  # whole groups move: a grouped split never separates the pair, whatever the seed
        split = splits.make_split(
            grouped.y, "leak_free", fractions=(0.6, 0.2, 0.2), groups=grouped.patients, seed=seed
        )
        assert never_split([pair], [split.train, split.val, split.test])


# ----------------------------------------------------------------------- no duplicates
def test_no_pair_on_a_twin_without_duplicates(seven):
    for merge, kwargs in (("compatible", {}), ("paper_width", {"width": 150})):
        ds = load("cumida", root=seven, merge=merge, **kwargs)
        audit = audit_profiles(ds)
        assert audit["pairs"] == [] and audit["groups"] == []
        # the twin's distinct patients share only class markers: measured highest 0.19-0.20 on a
        # larger twin
        assert audit["highest_correlation"] < 0.5
        assert with_audited_patients(ds, audit) is ds, "nothing found, nothing changed"
    assert audit["n_blocks"] > 1, (
        "paper_width: only series with the same probe ids in their columns are compared"
    )


def test_real_all_and_golub_hold_no_duplicates(debian_data):
    # the real sets are one sample per patient; their highest correlations are 0.76 (ALL) and 0.59
    # (Golub)
    for name, highest in (("bioc_all", 0.76), ("golub", 0.59)):
        audit = audit_profiles(load(name, root=debian_data))
        assert audit["pairs"] == [] and audit["n_samples"] == {"bioc_all": 128, "golub": 38}[name]
        assert audit["highest_correlation"] == pytest.approx(
            highest, abs=0.005
        )  # two decimals, as documented


# -------------------------------------------------------------------- GSE22529's chips
def test_gse22529_chip_pairs_are_matched_and_never_split(seven):
    ds = load("cumida", root=seven, merge="paper_width", width=150)
    audit = audit_profiles(ds)
    truth = pd.read_csv(seven / TRUTH_FILE).set_index("samples")["patient"]
    n_pairs = N_PER_CLASS * len(CUMIDA_PAPER_SERIES["GSE22529_U133A"])
    assert (
        len(audit["chip_pairs"]) == n_pairs
        and "paired by profile correlation" in audit["patients_rule"]
    )
    assert all(len(pair) == 2 and truth[pair[0]] == truth[pair[1]] for pair in audit["chip_pairs"])
    index = {s: i for i, s in enumerate(ds.sample_ids)}
    groups = [[index[s] for s in pair] for pair in audit["chip_pairs"]]
    patients = audited_patients(ds, audit)
    for seed in range(3):
        folds = splits.stratified_kfold(
            ds.y, k=2, groups=patients, seed=seed
        )  # what notebook 01's leak_free rounds use
        assert never_split(groups, [test for _, test in folds])
        split = splits.make_split(ds.y, "leak_free", groups=patients, seed=seed)
        assert never_split(groups, [split.train, split.test])
    published = [splits.make_split(ds.y, "published", groups=patients, seed=s) for s in range(3)]
    assert not all(never_split(groups, [p.train, p.test]) for p in published), (
        "image-level splits do separate pairs"
    )


def test_comparable_series_follow_the_probe_ids_in_the_columns(seven):
    groups = load("cumida", root=seven, merge="paper_width", width=150).info["comparable_series"]
    together = next(g for g in groups if "GSE28497" in g)
    assert (
        "GSE22529_U133A" in together
        and "GSE22529_U133B" not in together
        and "GSE63270" not in together
    )
    assert load("cumida", root=seven).info["comparable_series"] == [
        load("cumida", root=seven).info["series_merged"]
    ]


# ------------------------------------------------------------------- duplicate_patients
@pytest.mark.parametrize(
    "patients,groups,expected",
    [
        (["a", "b", "c", "d"], [], ["a", "b", "c", "d"]),
        (["a", "b", "c", "d"], [[1, 2]], ["a", "b", "b", "d"]),
        (
            ["a", "b", "c", "d"],
            [[2, 1]],
            ["a", "b", "b", "d"],
        ),  # order within a group is irrelevant
        (
            ["a", "a", "b", "c", "d"],
            [[1, 2], [3, 4]],
            ["a", "a", "a", "c", "c"],
        ),  # sample 0 follows its patient
        (["p", "q", "p", "r"], [[1, 2], [3, 0]], ["p", "p", "p", "p"]),  # linked through patient p
        (["x", "y", "z"], [[0, 1], [1, 2]], ["x", "x", "x"]),  # overlapping groups chain
        (["x", "y", "z", "y"], [[2, 3]], ["x", "y", "y", "y"]),  # the first sample's id wins
    ],
)
def test_duplicate_patients_by_hand(patients, groups, expected):
    given = np.array(patients)
    assert duplicate_patients(given, groups).tolist() == expected
    assert given.tolist() == patients, "the input is not modified"


def test_connected_groups_leave_singletons_out():
    assert connected_groups(6, [(0, 3), (3, 5), (1, 2)]) == [[0, 3, 5], [1, 2]]
    assert connected_groups(3, []) == []


# ---------------------------------------------------------------------- the record
def same_id_dataset():
    rng = np.random.default_rng(1)
    ids = ["GSM1.CEL.gz", "GSM2.CEL.gz", "GSM3.CEL.gz", "gsm1.cel", "GSM4.CEL.gz", "GSM5.CEL.gz"]
    meta = pd.DataFrame({"series": ["S1"] * 3 + ["S2"] * 3})
    return build_dataset(
        "cumida",
        ".",
        ids,
        ["a", "b", "a", "a", "b", "a"],
        patients=[f"p{i}" for i in range(6)],
        X=rng.normal(size=(6, 50)),
        meta=meta,
        source="synthetic",
    )


def test_one_sample_id_in_two_series_is_a_pair_whatever_its_correlation():
    ds = same_id_dataset()
    audit = audit_profiles(ds)
    assert [(p["index"], p["reason"], p["correlation"]) for p in audit["pairs"]] == [
        ([0, 3], "same sample id", None)
    ]
    assert audited_patients(ds, audit).tolist() == ["p0", "p1", "p2", "p0", "p4", "p5"]


def test_the_audit_is_json_with_a_one_line_summary(seven):
    audit = audit_profiles(load("cumida", root=seven, merge="paper_width", width=150))
    assert json.loads(json.dumps(audit)) == audit
    assert {
        "dataset",
        "source",
        "n_samples",
        "method",
        "threshold",
        "pairs",
        "groups",
        "chip_pairs",
        "summary",
    } <= set(audit)
    assert (
        "\n" not in audit["summary"]
        and "0 pair(s)" in audit["summary"]
        and "synthetic" in audit["summary"]
    )


def test_bad_requests_are_one_line_errors(seven):
    ds = load("cumida", root=seven)
    with pytest.raises(DataError, match="unknown profile correlation 'cosine'"):
        audit_profiles(ds, method="cosine")
    with pytest.raises(DataError, match="threshold must be a correlation"):
        audit_profiles(ds, threshold=1.5)
    images = synth.synth_aria_all(
        seven.parent / "aria", n_per_class=2, patients_per_class=1, size=32
    )
    with pytest.raises(DataError, match="no expression matrix"):
        audit_profiles(load("aria_all", root=images))
