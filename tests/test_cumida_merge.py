"""CuMiDa merge rules and patients, on a synthetic twin that carries every platform's probe ids
(HG-U133A, U133A_2, U133B, Plus 2 and two Agilent arrays), as paper 01's seven series do."""

import numpy as np
import pandas as pd
import pytest

from common.data import DataError, load, synth
from common.data.microarray import guess_platform, match_chip_samples, plan_compatible_merge
from common.data.synth import CUMIDA_PAPER_SERIES, CUMIDA_PLATFORMS, TRUTH_FILE, cumida_platform_ids

N_PER_CLASS, N_PROBES = 4, 120
U133A_FAMILY = {"GSE28497", "GSE22529_U133A", "GSE63270", "GSE14317"}


@pytest.fixture(scope="module")
def seven(tmp_path_factory):
    return synth.synth_cumida(
        tmp_path_factory.mktemp("cumida") / "seven",
        n_per_class=N_PER_CLASS,
        n_probes=N_PROBES,
        series=CUMIDA_PAPER_SERIES,
        platform_ids=True,
    )


def probe_ids(root, name):
    return list(pd.read_csv(root / f"Leukemia_{name}.csv", nrows=0).columns[2:])


# ------------------------------------------------------------------------ the twin's ids
def test_twin_ids_overlap_as_on_the_real_chips(seven):
    ids = {name: set(probe_ids(seven, name)) for name in CUMIDA_PAPER_SERIES}
    affx = {p for p in ids["GSE28497"] if p.startswith("AFFX-")}
    assert affx and ids["GSE28497"] <= ids["GSE63270"], "U133A's ids are a subset of Plus 2's"
    assert ids["GSE14317"] < ids["GSE28497"], "U133A_2 is U133A minus a few probe sets"
    assert ids["GSE22529_U133A"] & ids["GSE22529_U133B"] == affx, (
        "U133A and U133B share the AFFX controls only"
    )
    assert ids["GSE22529_U133B"] <= ids["GSE63270"]
    assert (
        not ids["GSE33615"] & ids["GSE28497"]
        and len(ids["GSE33615"] & ids["GSE71449"]) > N_PROBES // 2
    )
    assert probe_ids(seven, "GSE63270") == sorted(ids["GSE63270"]), (
        "columns in GEO's (sorted) order"
    )


def test_platform_is_guessed_from_the_ids():
    expected = {
        "HG-U133A": "HG-U133A",
        "HG-U133A_2": "HG-U133A",
        "HG-U133B": "HG-U133B",
        "HG-U133_Plus_2": "HG-U133 Plus 2",
        "Agilent-014850": "Agilent",
        "Agilent-041648": "Agilent",
    }
    for platform, ids in cumida_platform_ids(300).items():
        assert guess_platform(ids) == expected[platform], platform
    assert guess_platform(["p1", "p2"]) == "unknown"


# ---------------------------------------------------------------------- compatible merge
def test_compatible_merge_keeps_the_u133a_family_and_lists_the_rest(seven):
    ds = load("cumida", root=seven)
    shared = set(probe_ids(seven, "GSE14317"))  # U133A_2: the smallest U133A-family probe set
    assert set(ds.info["series_merged"]) == U133A_FAMILY
    assert set(ds.feature_names) == shared and ds.info["n_features"] == len(shared)
    n_affx = sum(p.startswith("AFFX-") for p in shared)
    assert ds.info["left_out"] == {"GSE22529_U133B": n_affx, "GSE33615": 0, "GSE71449": 0}
    assert ds.info["merge_rule"].startswith("compatible")
    assert len(ds) == N_PER_CLASS * sum(len(CUMIDA_PAPER_SERIES[s]) for s in U133A_FAMILY)
    assert set(ds.labels) == {lab for s in U133A_FAMILY for lab in CUMIDA_PAPER_SERIES[s]}
    row = ds.meta.index[ds.meta["series"] == "GSE63270"][
        0
    ]  # values follow the probe ids, not positions
    raw = pd.read_csv(seven / "Leukemia_GSE63270.csv").set_index("samples")
    np.testing.assert_allclose(
        ds.X[row], raw.loc[ds.meta.loc[row, "samples"], list(ds.feature_names)].to_numpy(float)
    )


def test_largest_series_first_and_subset_ids_join_whatever_comes_first():
    a, b, new = (
        [f"{200000 + i}_at" for i in range(50)],
        [f"{222400 + i}_at" for i in range(50)],
        ["1552256_a_at"],
    )
    sets = {"plus2": a + b + new, "u133a": a, "u133b": b}
    merged, shared, left = plan_compatible_merge(sets, {"plus2": 30, "u133a": 20, "u133b": 20})
    assert merged == ["plus2", "u133a"] and shared == a and left == {"u133b": 0}
    merged, shared, left = plan_compatible_merge(sets, {"plus2": 10, "u133a": 20, "u133b": 30})
    assert merged == ["u133b", "plus2"] and shared == b and left == {"u133a": 0}


def test_an_incompatible_series_named_explicitly_is_a_one_line_error(seven):
    with pytest.raises(DataError, match=r"GSE22529_U133B shares \d+ of its \d+ probe ids") as err:
        load("cumida", root=seven, series=["GSE22529_U133A", "GSE22529_U133B"])
    assert "\n" not in str(err.value)


def test_too_few_surviving_features_is_a_one_line_error_naming_series_and_count(seven):
    n = len(probe_ids(seven, "GSE14317"))
    with pytest.raises(
        DataError, match=rf"keeps {n} features, fewer than min_features={n + 1}"
    ) as err:
        load("cumida", root=seven, min_features=n + 1)
    assert "GSE28497" in str(err.value) and "\n" not in str(err.value)
    assert load("cumida", root=seven, min_features=n).info["n_features"] == n


# ------------------------------------------------------------------ paper_width merge
def test_paper_width_stacks_every_series_by_position(seven):
    width = 100
    ds = load("cumida", root=seven, merge="paper_width", width=width)
    assert ds.X.shape == (N_PER_CLASS * sum(map(len, CUMIDA_PAPER_SERIES.values())), width)
    assert set(ds.info["series_merged"]) == set(CUMIDA_PAPER_SERIES) and ds.info["left_out"] == {}
    assert ds.info["same_probe_fraction"] == 0.0, (
        "Agilent and Affymetrix columns never hold the same id"
    )
    row = ds.meta.index[ds.meta["series"] == "GSE33615"][0]
    raw = pd.read_csv(seven / "Leukemia_GSE33615.csv")
    np.testing.assert_allclose(ds.X[row], raw.iloc[0, 2 : 2 + width].to_numpy(float))
    assert ds.info["compatible"]["series"] and ds.info["compatible"]["n_features"] == len(
        probe_ids(seven, "GSE14317")
    )
    with pytest.raises(
        DataError, match=r"series GSE\S+ has \d+ probe columns, fewer than width=100000"
    ):
        load("cumida", root=seven, merge="paper_width", width=100000)


def test_series_table_counts_classes_and_samples_per_file(seven):
    table = pd.DataFrame(load("cumida", root=seven).info["series_table"]).set_index("series")
    for name, labels in CUMIDA_PAPER_SERIES.items():
        assert table.loc[name, "classes"] == len(labels) and table.loc[
            name, "samples"
        ] == N_PER_CLASS * len(labels)
        assert table.loc[name, "probes"] == len(probe_ids(seven, name))
    assert table.loc["GSE22529_U133B", "platform (guessed from ids)"] == "HG-U133B"
    assert not table.loc["GSE33615", "merged"] and table.loc["GSE63270", "merged"]


# --------------------------------------------------------------------------- patients
def test_the_two_chips_of_gse22529_are_paired_into_patients(seven):
    ds = load("cumida", root=seven, merge="paper_width", width=100)
    truth = pd.read_csv(seven / TRUTH_FILE).set_index("samples")["patient"]
    pairs = pd.DataFrame({"found": ds.patients, "true": truth.loc[ds.sample_ids].to_numpy()})
    assert (pairs.groupby("found")["true"].nunique() == 1).all() and (
        pairs.groupby("true")["found"].nunique() == 1
    ).all()
    n_pairs = N_PER_CLASS * len(CUMIDA_PAPER_SERIES["GSE22529_U133A"])
    assert ds.n_patients == len(ds) - n_pairs
    assert "paired by profile correlation" in ds.info["patients_rule"], (
        "GEO gives each chip its own GSM id"
    )
    assert (ds.meta["patient"].to_numpy() == ds.patients).all()
    assert load("cumida", root=seven).n_patients == len(load("cumida", root=seven)), (
        "U133B left out: one sample per patient"
    )


def chip(samples, labels, values, probes):
    return pd.concat(
        [pd.DataFrame({"samples": samples, "type": labels}), pd.DataFrame(values, columns=probes)],
        axis=1,
    )


def test_chips_pair_by_sample_id_when_the_ids_agree():
    rng = np.random.default_rng(0)
    first = chip(
        ["GSM1.CEL.gz", "GSM2.CEL.gz", "GSM3.CEL.gz"],
        ["CLL", "CLL", "normal"],
        rng.normal(size=(3, 2)),
        ["200000_at", "AFFX-BioB-5_at"],
    )
    second = chip(
        ["gsm3.cel", "GSM1.CEL.gz", "GSM2.CEL"],
        ["normal", "CLL", "CLL"],
        rng.normal(size=(3, 2)),
        ["222385_at", "AFFX-BioB-5_at"],
    )
    order, how = match_chip_samples(first, second, ("A", "B"))
    assert how == "by sample id" and order.tolist() == [1, 2, 0]


def test_chips_with_different_labels_are_refused():
    rng = np.random.default_rng(0)
    first = chip(["a", "b"], ["CLL", "normal"], rng.normal(size=(2, 3)), ["x", "y", "z"])
    second = chip(["c", "d"], ["CLL", "CLL"], rng.normal(size=(2, 3)), ["x", "y", "z"])
    with pytest.raises(DataError, match="should hold the same patients but their labels differ"):
        match_chip_samples(first, second, ("GSE1_U133A", "GSE1_U133B"))


def test_platform_twin_refuses_two_chips_with_other_labels(tmp_path):
    series = {"GSE22529_U133A": ["CLL", "normal"], "GSE22529_U133B": ["CLL"]}
    with pytest.raises(DataError, match="same patients"):
        synth.synth_cumida(
            tmp_path / "t", n_per_class=2, n_probes=60, series=series, platform_ids=True
        )
    assert set(CUMIDA_PLATFORMS) == set(CUMIDA_PAPER_SERIES), "every paper series has a platform"


def test_platform_twin_same_seed_same_bytes(tmp_path):
    def digest(root):
        return {p.name: p.read_bytes() for p in sorted(root.iterdir())}

    kwargs = dict(n_per_class=2, n_probes=60, series=CUMIDA_PAPER_SERIES, platform_ids=True)
    a = synth.synth_cumida(tmp_path / "a", seed=1, **kwargs)
    b = synth.synth_cumida(tmp_path / "b", seed=1, **kwargs)
    c = synth.synth_cumida(tmp_path / "c", seed=2, **kwargs)
    assert digest(a) == digest(b) and digest(a) != digest(c)
    assert (a / TRUTH_FILE).is_file() and "platform_ids: True" in (
        a / "SYNTHETIC_DATA.txt"
    ).read_text()
