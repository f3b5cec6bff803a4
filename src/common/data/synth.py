"""Synthetic twins: generated data written in each real dataset's exact on-disk layout.

The real loaders read these trees unchanged; a ``SYNTHETIC_DATA.txt`` marker at the
root makes them report ``source = "synthetic"`` so that every table and figure made
from them says so.

Images are stained single cells: a round-ish cell with cytoplasm and a darker
nucleus, on a black background (``cnmc``) or a smear-like one (``aria_all``,
``aml_mll``). Classes differ in morphology (nucleus-to-cytoplasm ratio, contour
irregularity, chromatin texture, nucleoli, granules, an Auer-rod-like streak for
PML_RARA). Every patient has its own stain and size signature, so image-level
splits leak patient identity the way they do on the real data. ``difficulty`` in
[0, 1] pulls every class towards the average morphology: 0 keeps the classes far
apart, 1 makes them identical (chance accuracy).

Same arguments, same bytes: every random draw comes from ``seed``.
"""

from __future__ import annotations

import shutil
import string
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from common.data.core import SYNTHETIC_MARKER, DataError
from common.data.images import AML_CLASSES, ARIA_CLASSES, CNMC_DIR, CNMC_PRELIM_CSV, CNMC_PRELIM_DIR

TRUTH_FILE = (
    "SYNTHETIC_TRUTH.csv"  # generator's ground truth (patient per image); loaders never read it
)


@dataclass(frozen=True)
class Morphology:
    """Class-dependent cell appearance (all relative, unitless)."""

    cell_radius: float = 0.30  # cell radius / image size
    nc_ratio: float = 0.70  # nucleus radius / cell radius
    irregularity: float = 0.05  # amplitude of nuclear contour harmonics
    chromatin: float = 0.30  # chromatin texture contrast
    nucleoli: float = 0.0  # mean number of nucleoli
    granules: float = 0.0  # mean number of cytoplasmic granules
    auer_rod: float = 0.0  # probability of an Auer-rod-like streak


MORPHOLOGY = {
    "cnmc": {
        "all": Morphology(
            cell_radius=0.26, nc_ratio=0.86, irregularity=0.10, chromatin=0.18, nucleoli=2.0
        ),
        "hem": Morphology(
            cell_radius=0.22, nc_ratio=0.72, irregularity=0.03, chromatin=0.45, nucleoli=0.2
        ),
    },
    "aria_all": {
        "Benign": Morphology(
            cell_radius=0.20, nc_ratio=0.70, irregularity=0.03, chromatin=0.45, granules=3
        ),
        "Early": Morphology(
            cell_radius=0.23, nc_ratio=0.84, irregularity=0.07, chromatin=0.30, nucleoli=1.0
        ),
        "Pre": Morphology(
            cell_radius=0.25, nc_ratio=0.80, irregularity=0.12, chromatin=0.22, nucleoli=2.0
        ),
        "Pro": Morphology(
            cell_radius=0.27, nc_ratio=0.90, irregularity=0.18, chromatin=0.15, nucleoli=3.0
        ),
    },
    "aml_mll": {
        "control": Morphology(
            cell_radius=0.24, nc_ratio=0.50, irregularity=0.25, chromatin=0.50, granules=25
        ),
        "CBFB_MYH11": Morphology(
            cell_radius=0.30,
            nc_ratio=0.68,
            irregularity=0.10,
            chromatin=0.25,
            granules=30,
            nucleoli=1,
        ),
        "NPM1": Morphology(
            cell_radius=0.28, nc_ratio=0.78, irregularity=0.20, chromatin=0.20, nucleoli=2.5
        ),
        "PML_RARA": Morphology(
            cell_radius=0.30,
            nc_ratio=0.62,
            irregularity=0.15,
            chromatin=0.25,
            granules=45,
            auer_rod=0.8,
        ),
        "RUNX1_RUNX1T1": Morphology(
            cell_radius=0.29,
            nc_ratio=0.72,
            irregularity=0.08,
            chromatin=0.30,
            granules=10,
            nucleoli=1.5,
        ),
    },
}


@dataclass(frozen=True)
class Patient:
    """A patient's signature: stain (RGB gains), brightness and cell size."""

    pid: str
    stain: tuple[float, float, float]
    brightness: float
    size: float


def make_patient(pid: str, rng: np.random.Generator) -> Patient:
    return Patient(
        pid,
        tuple(float(g) for g in rng.normal(1.0, 0.07, 3)),
        float(rng.normal(0.0, 0.05)),
        float(rng.normal(1.0, 0.08)),
    )


def blend(class_m: Morphology, mean_m: Morphology, difficulty: float) -> Morphology:
    """Pull ``class_m`` towards ``mean_m`` by ``difficulty`` in [0, 1]."""
    return replace(
        class_m,
        **{
            f.name: (1 - difficulty) * getattr(class_m, f.name)
            + difficulty * getattr(mean_m, f.name)
            for f in fields(Morphology)
        },
    )


def mean_morphology(styles: dict[str, Morphology]) -> Morphology:
    return Morphology(
        **{
            f.name: float(np.mean([getattr(m, f.name) for m in styles.values()]))
            for f in fields(Morphology)
        }
    )


def _contour(
    theta: np.ndarray, radius: float, amplitude: float, rng: np.random.Generator
) -> np.ndarray:
    """Radius at each angle: a circle with random low harmonics of total ``amplitude``."""
    r = np.ones_like(theta)
    for k in range(2, 7):
        r += (
            amplitude / (k - 1) * rng.normal(0, 0.8) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        )
    return radius * r


def render_cell(
    size: int, m: Morphology, patient: Patient, rng: np.random.Generator, background: str
) -> tuple[np.ndarray, np.ndarray]:
    """One RGB uint8 image (size, size, 3) and its cell mask (size, size) bool."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = size / 2 + rng.normal(0, size * 0.03, 2)
    cell_r = size * m.cell_radius * patient.size * rng.normal(1.0, 0.05)
    theta = np.arctan2(yy - cy, xx - cx)
    rho = np.hypot(yy - cy, xx - cx)
    cell = rho < _contour(theta, cell_r, 0.04, rng)
    ny, nx = cy + rng.normal(0, cell_r * 0.06), cx + rng.normal(0, cell_r * 0.06)
    n_theta = np.arctan2(yy - ny, xx - nx)
    n_rho = np.hypot(yy - ny, xx - nx)
    nucleus = (
        n_rho < _contour(n_theta, cell_r * min(m.nc_ratio, 0.95), m.irregularity, rng)
    ) & cell

    if background == "black":
        img = np.zeros((size, size, 3), np.float32)
    else:  # smear: pale pink field with a few red cells and grain
        img = np.empty((size, size, 3), np.float32)
        img[:] = (0.92, 0.84, 0.84)
        for _ in range(rng.poisson(3)):
            ry, rx, rr = rng.uniform(0, size), rng.uniform(0, size), size * rng.uniform(0.08, 0.14)
            disc = np.hypot(yy - ry, xx - rx) < rr
            img[disc] = (0.88, 0.62, 0.62)
        img += ndimage.gaussian_filter(rng.normal(0, 0.03, (size, size)), 2)[..., None]
    img[cell] = (0.74, 0.70, 0.90)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), max(1.0, size / 90))
    texture /= texture.std() + 1e-8
    dark = np.array((0.36, 0.20, 0.55), np.float32)
    img[nucleus] = dark * (1 + m.chromatin * 0.6 * texture[nucleus])[:, None]
    for _ in range(rng.poisson(m.nucleoli)):
        r = rng.uniform(0, cell_r * m.nc_ratio * 0.6)
        a = rng.uniform(0, 2 * np.pi)
        spot = np.hypot(yy - (ny + r * np.sin(a)), xx - (nx + r * np.cos(a))) < size * 0.018
        img[spot & nucleus] = (0.60, 0.50, 0.78)
    cytoplasm = cell & ~nucleus
    cyt_y, cyt_x = np.nonzero(cytoplasm)
    if cyt_y.size:
        for _ in range(rng.poisson(m.granules)):
            i = rng.integers(cyt_y.size)
            dot = np.hypot(yy - cyt_y[i], xx - cyt_x[i]) < max(1.0, size * 0.008)
            img[dot & cell] = (0.55, 0.15, 0.35)
        if rng.random() < m.auer_rod:
            i = rng.integers(cyt_y.size)
            a = rng.uniform(0, np.pi)
            dist = np.abs((yy - cyt_y[i]) * np.cos(a) - (xx - cyt_x[i]) * np.sin(a))
            along = np.abs((yy - cyt_y[i]) * np.sin(a) + (xx - cyt_x[i]) * np.cos(a))
            img[(dist < max(1.0, size * 0.006)) & (along < size * 0.08) & cell] = (0.70, 0.10, 0.25)
    img = ndimage.gaussian_filter(img, sigma=(0.7, 0.7, 0))
    # stain uptake tints the cell fully; illumination tints the background a third as much
    stain = np.asarray(patient.stain, np.float32)
    soft = ndimage.gaussian_filter(cell.astype(np.float32), 1.5)[..., None]
    img = img * (soft * stain + (1 - soft) * (1 + 0.3 * (stain - 1))) + patient.brightness
    img += rng.normal(0, 0.015, img.shape)
    if background == "black":
        img[~ndimage.binary_dilation(cell, iterations=1)] = 0.0
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), cell


def _styles(dataset: str, difficulty: float) -> dict[str, Morphology]:
    if not 0.0 <= difficulty <= 1.0:
        raise DataError(f"difficulty must be in [0, 1], got {difficulty}")
    styles = MORPHOLOGY[dataset]
    mean = mean_morphology(styles)
    return {c: blend(m, mean, difficulty) for c, m in styles.items()}


def _per_class(value, label: str) -> int:
    """``value`` for one class: an int applies to every class, a mapping gives each its own."""
    if isinstance(value, Mapping):
        if label not in value:
            raise DataError(
                f"no count for class {label!r} in {dict(value)}; give every class a count"
            )
        return int(value[label])
    return int(value)


def _split_counts(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _check_sizes(n_per_class: int, patients_per_class: int, size: int) -> None:
    if n_per_class < 1 or patients_per_class < 1:
        raise DataError(
            f"n_per_class ({n_per_class}) and patients_per_class ({patients_per_class}) "
            "must be at least 1"
        )
    if patients_per_class > n_per_class:
        raise DataError(
            f"patients_per_class ({patients_per_class}) exceeds n_per_class "
            f"({n_per_class}); every patient needs an image"
        )
    if size < 16:
        raise DataError(f"size {size} is too small to draw a cell; use 16 or more")


class _Staging:
    """Write into a temporary folder next to ``out``; move into place only when complete."""

    def __init__(self, out: Path):
        self.out = Path(out)

    def __enter__(self) -> Path:
        if self.out.exists() and any(self.out.iterdir()):
            raise DataError(
                f"{self.out} exists and is not empty; choose a new --out folder or delete it"
            )
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=".synth-", dir=self.out.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            if self.out.exists():
                self.out.rmdir()
            self.tmp.rename(self.out)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _marker(root: Path, dataset: str, **params) -> None:
    lines = [
        f"Synthetic twin of '{dataset}' written by common.data.synth; not real data.",
        *(f"{k}: {v}" for k, v in sorted(params.items())),
    ]
    (root / SYNTHETIC_MARKER).write_text("\n".join(lines) + "\n")


def _save(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".bmp": "BMP", ".jpg": "JPEG", ".tif": "TIFF"}[path.suffix]
    Image.fromarray(img).save(path, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))


# ------------------------------------------------------------------------ writers
def synth_cnmc(
    out: Path,
    *,
    n_per_class: int | Mapping[str, int] = 30,
    patients_per_class: int | Mapping[str, int] = 6,
    size: int = 450,
    seed: int = 0,
    difficulty: float = 0.5,
    n_prelim: int | Mapping[str, int] | None = None,
) -> Path:
    """C-NMC twin: three subject-disjoint folds, a labelled prelim set (renamed files + CSV),
    and a few unlabelled final-phase images.

    ``n_per_class``, ``patients_per_class`` and ``n_prelim`` (prelim images per class, from one
    further subject; default a quarter of the class) take an int or a count per class
    (``all``, ``hem``), e.g. the real set's proportions for a rehearsal."""
    for label in ("all", "hem"):
        _check_sizes(_per_class(n_per_class, label), _per_class(patients_per_class, label), size)
    styles = _styles("cnmc", difficulty)
    truth = []
    with _Staging(out) as tmp:
        base = tmp / CNMC_DIR
        prelim_rows, prelim_imgs = [], []
        for ci, label in enumerate(("all", "hem")):
            n_class, n_patients = (
                _per_class(n_per_class, label),
                _per_class(patients_per_class, label),
            )
            prelim = max(1, n_class // 4) if n_prelim is None else _per_class(n_prelim, label)
            subjects = [
                f"H{i + 1}" if label == "hem" else str(i + 1) for i in range(n_patients + 1)
            ]
            # some healthy subjects are written lower-case, as on the real data
            subjects = [
                s.lower() if label == "hem" and i % 3 == 2 else s for i, s in enumerate(subjects)
            ]
            counts = _split_counts(n_class, n_patients) + [
                prelim
            ]  # the last subject is kept for the prelim set
            for si, (subject, count) in enumerate(zip(subjects, counts)):
                patient = make_patient(subject, np.random.default_rng([seed, 1, ci, si]))
                for k in range(count):
                    rng = np.random.default_rng([seed, 2, ci, si, k])
                    img, _ = render_cell(size, styles[label], patient, rng, "black")
                    name = f"UID_{subject}_{k + 1}_{rng.integers(1, 20)}_{label}.bmp"
                    if si < n_patients:
                        rel = Path("training_data") / f"fold_{si % 3}" / label / name
                        _save(img, base / rel)
                        truth.append((str(Path(CNMC_DIR) / rel), subject.upper()))
                    else:
                        prelim_rows.append((name, 1 if label == "all" else 0))
                        prelim_imgs.append((img, subject.upper()))
        order = np.random.default_rng([seed, 3]).permutation(len(prelim_rows))
        csv_rows = []
        for new_idx, i in enumerate(order, start=1):
            (name, lab), (img, subject) = prelim_rows[i], prelim_imgs[i]
            _save(img, base / CNMC_PRELIM_DIR / f"{new_idx}.bmp")
            csv_rows.append({"Patient_ID": name, "new_names": f"{new_idx}.bmp", "labels": lab})
            truth.append((str(Path(CNMC_DIR) / CNMC_PRELIM_DIR / f"{new_idx}.bmp"), subject))
        pd.DataFrame(csv_rows).to_csv(base / CNMC_PRELIM_CSV, index=False)
        for k in range(2):
            patient = make_patient("X", np.random.default_rng([seed, 4, k]))
            img, _ = render_cell(
                size, styles["all"], patient, np.random.default_rng([seed, 5, k]), "black"
            )
            _save(img, base / "testing_data" / "C-NMC_test_final_phase_data" / f"{k + 1}.bmp")
        pd.DataFrame(truth, columns=["path", "patient"]).to_csv(tmp / TRUTH_FILE, index=False)
        _marker(
            tmp,
            "cnmc",
            n_per_class=n_per_class,
            patients_per_class=patients_per_class,
            size=size,
            seed=seed,
            difficulty=difficulty,
            **({"n_prelim": n_prelim} if n_prelim is not None else {}),
        )
    return Path(out)


def synth_aria_all(
    out: Path,
    *,
    n_per_class: int | Mapping[str, int] = 30,
    patients_per_class: int | Mapping[str, int] = 6,
    size: int = 224,
    seed: int = 0,
    difficulty: float = 0.5,
) -> Path:
    """Aria ALL twin: ``Original/`` (smear background) and ``Segmented/`` (background black).

    File names carry no patient id, as on the real data; the generator's patients
    are only in ``SYNTHETIC_TRUTH.csv``. Counts: an int, or one per class.
    """
    for label in ARIA_CLASSES:
        _check_sizes(_per_class(n_per_class, label), _per_class(patients_per_class, label), size)
    styles = _styles("aria_all", difficulty)
    truth = []
    with _Staging(out) as tmp:
        for ci, label in enumerate(ARIA_CLASSES):
            prefix = "WBC-Benign" if label == "Benign" else f"WBC-Malignant-{label}"
            k = 0
            for pi, count in enumerate(
                _split_counts(_per_class(n_per_class, label), _per_class(patients_per_class, label))
            ):
                patient = make_patient(f"{label}{pi}", np.random.default_rng([seed, 1, ci, pi]))
                for _ in range(count):
                    k += 1
                    img, mask = render_cell(
                        size,
                        styles[label],
                        patient,
                        np.random.default_rng([seed, 2, ci, pi, k]),
                        "smear",
                    )
                    name = f"{prefix}-{k:03d}.jpg"
                    segmented = np.where(mask[..., None], img, 0).astype(np.uint8)
                    _save(img, tmp / "Original" / label / name)
                    _save(segmented, tmp / "Segmented" / label / name)
                    truth += [
                        (f"Original/{label}/{name}", patient.pid),
                        (f"Segmented/{label}/{name}", patient.pid),
                    ]
        pd.DataFrame(truth, columns=["path", "patient"]).to_csv(tmp / TRUTH_FILE, index=False)
        _marker(
            tmp,
            "aria_all",
            n_per_class=n_per_class,
            patients_per_class=patients_per_class,
            size=size,
            seed=seed,
            difficulty=difficulty,
        )
    return Path(out)


def _pseudonyms(n: int, rng: np.random.Generator) -> list[str]:
    names: list[str] = []
    while len(names) < n:
        name = "".join(rng.choice(list(string.ascii_uppercase), 3))
        if name not in names:
            names.append(name)
    return names


def synth_aml_mll(
    out: Path,
    *,
    n_per_class: int | Mapping[str, int] = 30,
    patients_per_class: int | Mapping[str, int] = 4,
    size: int = 144,
    seed: int = 0,
    difficulty: float = 0.5,
) -> Path:
    """AML-Cytomorphology_MLL_Helmholtz twin: ``data/<class>/<patient>/*.tif`` and a metadata CSV
    (semicolon-free, comma-separated, ages with decimal commas in quotes). Counts: an int, or one
    per class."""
    for label in AML_CLASSES:
        _check_sizes(_per_class(n_per_class, label), _per_class(patients_per_class, label), size)
    styles = _styles("aml_mll", difficulty)
    per_class_patients = [_per_class(patients_per_class, label) for label in AML_CLASSES]
    names = _pseudonyms(sum(per_class_patients), np.random.default_rng([seed, 9]))
    meta = []
    with _Staging(out) as tmp:
        for ci, label in enumerate(AML_CLASSES):
            counts = _split_counts(_per_class(n_per_class, label), per_class_patients[ci])
            for pi, count in enumerate(counts):
                pid = names[sum(per_class_patients[:ci]) + pi]
                prng = np.random.default_rng([seed, 1, ci, pi])
                patient = make_patient(pid, prng)
                for k in range(count):
                    img, _ = render_cell(
                        size,
                        styles[label],
                        patient,
                        np.random.default_rng([seed, 2, ci, pi, k]),
                        "smear",
                    )
                    _save(img, tmp / "data" / label / pid / f"image_{k:04d}.tif")
                meta.append(
                    {
                        "patient_id": pid,
                        "sex_1f_2m": int(prng.integers(1, 3)),
                        "age": f"{prng.uniform(20, 80):.1f}".replace(".", ","),
                        "bag_label": label,
                        "instance_count": count,
                    }
                )
        pd.DataFrame(meta).to_csv(tmp / "metadata.csv", index=False)
        _marker(
            tmp,
            "aml_mll",
            n_per_class=n_per_class,
            patients_per_class=patients_per_class,
            size=size,
            seed=seed,
            difficulty=difficulty,
        )
    return Path(out)


CUMIDA_SERIES = {
    "GSE28497": [
        "B-CELL_ALL",
        "B-CELL_ALL_ETV6-RUNX1",
        "B-CELL_ALL_HYPERDIP",
        "B-CELL_ALL_T-ALL",
        "B-CELL_ALL_TCF3-PBX1",
        "B-CELL_ALL_HYPO",
        "B-CELL_ALL_MLL",
    ],
    "GSE22529_U133A": ["CLL", "normal"],
    "GSE63270": ["AML", "normal"],
}
# The 13 classes of paper 01's Table 3 over its seven series (Table 2). Which series holds which
# label is a plausible guess from the series descriptions (ATL in GSE14317 and GSE33615, JMML in
# GSE71449; Table 2 gives GSE71449 four classes, the fourth is unknown); GSE22529_U133B repeats
# GSE22529_U133A's patients on the second chip of the set.
CUMIDA_PAPER_SERIES = {
    **CUMIDA_SERIES,
    "GSE22529_U133B": ["CLL", "normal"],
    "GSE14317": ["ATL", "normal"],
    "GSE33615": ["ATL", "normal"],
    "GSE71449": ["JMML_LIN28_high", "JMML_LIN28_low", "normal"],
}
# Platform of each series (GEO: GPL96, GPL96, GPL97, GPL570, GPL571, GPL4133, GPL19197; the two
# Agilent ones come from public code that lists the series' GEO platforms, not verified here).
CUMIDA_PLATFORMS = {
    "GSE28497": "HG-U133A",
    "GSE22529_U133A": "HG-U133A",
    "GSE22529_U133B": "HG-U133B",
    "GSE63270": "HG-U133_Plus_2",
    "GSE14317": "HG-U133A_2",
    "GSE33615": "Agilent-014850",
    "GSE71449": "Agilent-041648",
}
# Probe sets per platform on the real files (GSE71449's count is unknown: assumed like GSE33615's).
PLATFORM_PROBES = {
    "HG-U133A": 22283,
    "HG-U133A_2": 22277,
    "HG-U133B": 22645,
    "HG-U133_Plus_2": 54675,
    "Agilent-014850": 33579,
    "Agilent-041648": 33579,
}
AFFX_CONTROLS = [
    f"AFFX-{name}{sep}{pos}_at"
    for name, sep in (
        ("BioB", "-"),
        ("BioC", "-"),
        ("BioDn", "-"),
        ("CreX", "-"),
        ("DapX", "-"),
        ("LysX", "-"),
        ("PheX", "-"),
        ("ThrX", "-"),
        ("TrpnX", "-"),
        ("HUMGAPDH/M33197", "_"),
        ("HSAC07/X00351", "_"),
        ("HUMISGF3A/M97935", "_"),
    )
    for pos in ("5", "M", "3")
]


def _affy_ids(first: int, last: int, count: int, suffixes: tuple[str, ...]) -> list[str]:
    """``count`` Affymetrix ids spread over [first, last], e.g. ``200000_s_at``, ``200001_at``."""
    numbers = np.linspace(first, last, count).round().astype(int)
    return [f"{n}{suffixes[i % len(suffixes)]}" for i, n in enumerate(numbers)]


def cumida_platform_ids(n_probes: int, *, seed: int = 0) -> dict[str, dict[str, int]]:
    """Probe ids of each CuMiDa platform, scaled so that HG-U133A has ``n_probes``: {platform: {id:
    gene}}.

    As on the real chips: U133A's ids lie in 200000..222384 plus the AFFX controls,
    U133A_2 is U133A minus a few ids, U133B's lie in 222385..244889 (other genes) and
    shares only the AFFX controls with U133A, Plus 2 carries U133A and U133B and new
    ids from 1552256; the Agilent arrays use ``A_23_P``/``A_33_P`` ids for a subset of
    the same genes and no AFFX controls. ``gene`` indexes the generator's gene space.
    """
    scale = n_probes / PLATFORM_PROBES["HG-U133A"]
    n_affx = min(len(AFFX_CONTROLS), max(12, round(68 * scale)))
    n_a = n_probes - n_affx
    n_b = round(PLATFORM_PROBES["HG-U133B"] * scale) - n_affx
    n_new = round((PLATFORM_PROBES["HG-U133_Plus_2"] - 22283 - 22645 + 62) * scale)
    affx = {p: g for g, p in enumerate(AFFX_CONTROLS[:n_affx])}
    gene = n_affx
    a = {
        p: gene + i
        for i, p in enumerate(_affy_ids(200000, 222384, n_a, ("_s_at", "_at", "_at", "_x_at")))
    }
    gene += n_a
    b = {p: gene + i for i, p in enumerate(_affy_ids(222385, 244889, n_b, ("_at", "_x_at", "_at")))}
    gene += n_b
    new = {
        p: gene + i
        for i, p in enumerate(_affy_ids(1552256, 1570653, n_new, ("_a_at", "_at", "_s_at")))
    }
    genes = np.arange(n_affx, gene + n_new)
    rng = np.random.default_rng([seed, 7])
    n_agilent = min(genes.size, round(PLATFORM_PROBES["Agilent-014850"] * scale))
    agilent44 = np.sort(rng.choice(genes, n_agilent, replace=False))
    others = np.setdiff1d(genes, agilent44)
    agilent60 = np.sort(
        np.concatenate(
            [
                rng.choice(agilent44, int(0.8 * n_agilent), replace=False),
                rng.choice(others, min(others.size, int(0.2 * n_agilent)), replace=False),
            ]
        )
    )
    on_44k = set(agilent44.tolist())
    drop = max(1, round(6 * scale))
    return {
        "HG-U133A": {**a, **affx},
        "HG-U133A_2": {**dict(list(a.items())[:-drop]), **affx},
        "HG-U133B": {**b, **affx},
        "HG-U133_Plus_2": {**a, **b, **new, **affx},
        "Agilent-014850": {f"A_23_P{100001 + g}": int(g) for g in agilent44},
        "Agilent-041648": {
            (f"A_23_P{100001 + g}" if g in on_44k else f"A_33_P{3200000 + g}"): int(g)
            for g in agilent60
        },
    }


def _write_cumida_platforms(
    root: Path, series: dict[str, list[str]], n_per_class, n_probes: int, seed: int, shift: float
) -> None:
    """The platform-faithful twin: every series on its real platform's probe ids (sorted, as GEO
    orders them);
    the chips of one series (``<GSE>_U133A``/``_U133B``) hold the same patients, rows shuffled, own
    GSM ids."""
    unknown = sorted(set(series) - set(CUMIDA_PLATFORMS))
    if unknown:
        raise DataError(
            f"no platform known for series {unknown}; choose among {sorted(CUMIDA_PLATFORMS)}"
        )
    platforms = cumida_platform_ids(n_probes, seed=seed)
    n_genes = 1 + max(max(ids.values()) for ids in platforms.values())
    n_affx = sum(1 for p in platforms["HG-U133A"] if p.startswith("AFFX"))
    rng = np.random.default_rng([seed, 0])
    markers = {
        lab: rng.choice(np.arange(n_affx, n_genes), 20, replace=False)
        for lab in sorted({lab for labels in series.values() for lab in labels})
    }
    affinity = rng.normal(0, 0.5, n_genes)
    patients: dict[
        str, tuple[np.ndarray, list[str], list[str]]
    ] = {}  # study -> (expression, labels, patient ids)
    truth = []
    for si, (name, labels) in enumerate(series.items()):
        srng = np.random.default_rng([seed, 1, si])
        study = name.split("_", 1)[0]
        counts = [_series_count(n_per_class, name, lab) for lab in labels]
        row_labels_ = [lab for lab, n in zip(labels, counts) for _ in range(n)]
        if study in patients and patients[study][1] != row_labels_:
            raise DataError(
                f"series {name} repeats study {study} with other labels {labels}; two chips of one "
                "series hold the same patients, so give them the same labels"
            )
        if (
            study not in patients
        ):  # a new study: draw its patients (gene space, AFFX controls per patient)
            prng = np.random.default_rng([seed, 2, si])
            expression = prng.normal(7.0, 1.5, (len(row_labels_), n_genes))
            expression[:, :n_affx] = prng.normal(9.0, 1.0, (len(expression), n_affx))
            for lab in labels:
                expression[np.ix_(np.array(row_labels_) == lab, markers[lab])] += shift
            patients[study] = (
                expression,
                row_labels_,
                [f"{study}-P{k + 1:03d}" for k in range(len(expression))],
            )
        expression, row_labels, row_patients = patients[study]
        first_chip = next(n for n in series if n.split("_", 1)[0] == study)
        order = (
            np.arange(len(expression)) if name == first_chip else srng.permutation(len(expression))
        )
        ids = sorted(platforms[CUMIDA_PLATFORMS[name]])
        genes = np.array([platforms[CUMIDA_PLATFORMS[name]][p] for p in ids])
        noise = srng.normal(0, 0.25, (len(order), genes.size))
        values = expression[np.ix_(order, genes)] + affinity[genes] + srng.normal(0, 0.3) + noise
        samples = [f"GSM{srng.integers(100000, 999999)}.CEL.gz" for _ in order]
        table = pd.DataFrame(np.round(values, 5), columns=ids)
        table.insert(0, "type", [row_labels[k] for k in order])
        table.insert(0, "samples", samples)
        table.to_csv(root / f"Leukemia_{name}.csv", index=False)
        truth += [
            {"series": name, "samples": s, "patient": row_patients[k]}
            for s, k in zip(samples, order)
        ]
    pd.DataFrame(truth).to_csv(root / TRUTH_FILE, index=False)


def _series_count(n_per_class, series: str, label: str) -> int:
    """Samples of ``label`` in ``series``: an int for all, or {series: int | {label: int}}."""
    if isinstance(n_per_class, Mapping):
        if series not in n_per_class:
            raise DataError(f"no sample count for series {series!r}; give every series a count")
        return _per_class(n_per_class[series], label)
    return int(n_per_class)


def synth_cumida(
    out: Path,
    *,
    n_per_class: int | Mapping[str, int | Mapping[str, int]] = 12,
    n_probes: int = 400,
    seed: int = 0,
    difficulty: float = 0.5,
    series: dict[str, list[str]] | None = None,
    platform_ids: bool = False,
) -> Path:
    """CuMiDa twin: one ``Leukemia_<series>.csv`` per series, with the real label strings.

    Default: series draw different but overlapping probe sets from one pool (about 80%
    of ``n_probes`` each, in their own order) and have a batch offset; each class shifts
    the mean of its own 20 marker probes by an amount that falls with ``difficulty``.
    ``platform_ids=True``: every series carries its real platform's probe-id pattern
    (:func:`cumida_platform_ids`, HG-U133A scaled to ``n_probes``), two chips of one
    series hold the same patients, and ``SYNTHETIC_TRUTH.csv`` records each sample's patient;
    ``n_per_class`` may then give each series its own count, or a count per class.
    """
    if not 0.0 <= difficulty <= 1.0:
        raise DataError(f"difficulty must be in [0, 1], got {difficulty}")
    smallest = min(
        (
            _series_count(n_per_class, name, lab)
            for name, labels in (series or CUMIDA_SERIES).items()
            for lab in labels
        ),
        default=0,
    )
    if smallest < 1 or n_probes < 40:
        raise DataError(
            f"need n_per_class >= 1 and n_probes >= 40, got {n_per_class} and {n_probes}"
        )
    if isinstance(n_per_class, Mapping) and not platform_ids:
        raise DataError(
            "counts per series need platform_ids=True (the older twin takes one n_per_class)"
        )
    series = series or CUMIDA_SERIES
    shift = 2.5 * (1 - difficulty)
    if platform_ids:
        with _Staging(out) as tmp:
            _write_cumida_platforms(tmp, series, n_per_class, n_probes, seed, shift)
            _marker(
                tmp,
                "cumida",
                n_per_class=n_per_class,
                n_probes=n_probes,
                seed=seed,
                difficulty=difficulty,
                platform_ids=True,
            )
        return Path(out)
    rng = np.random.default_rng([seed, 0])
    pool = [f"{1000 + i}_at" if i % 3 else f"{1000 + i}_s_at" for i in range(n_probes)]
    all_labels = sorted({lab for labels in series.values() for lab in labels})
    markers = {lab: rng.choice(n_probes, 20, replace=False) for lab in all_labels}
    with _Staging(out) as tmp:
        for si, (name, labels) in enumerate(series.items()):
            srng = np.random.default_rng([seed, 1, si])
            keep = np.sort(srng.choice(n_probes, int(0.8 * n_probes), replace=False))
            order = srng.permutation(keep)
            rows = []
            for lab in labels:
                base = srng.normal(7.0, 1.5, (n_per_class, n_probes)) + srng.normal(0, 0.3)
                base[:, markers[lab]] += shift
                for k in range(n_per_class):
                    rows.append(
                        [
                            f"GSM{srng.integers(100000, 999999)}.CEL.gz",
                            lab,
                            *np.round(base[k, order], 5),
                        ]
                    )
            table = pd.DataFrame(rows, columns=["samples", "type", *[pool[i] for i in order]])
            table.to_csv(tmp / f"Leukemia_{name}.csv", index=False)
        _marker(
            tmp,
            "cumida",
            n_per_class=n_per_class,
            n_probes=n_probes,
            seed=seed,
            difficulty=difficulty,
        )
    return Path(out)


WRITERS = {
    "cnmc": synth_cnmc,
    "aria_all": synth_aria_all,
    "aml_mll": synth_aml_mll,
    "cumida": synth_cumida,
}


def synth(dataset: str, out: Path, **kwargs) -> Path:
    """Write the synthetic twin of ``dataset`` to ``out`` (see the per-dataset writers)."""
    if dataset not in WRITERS:
        raise DataError(f"no synthetic twin for {dataset!r}; choose one of {sorted(WRITERS)}")
    return WRITERS[dataset](Path(out), **kwargs)


def cached_twin(dataset: str, *, root: Path | None = None, **kwargs) -> Path:
    """The synthetic twin of ``dataset`` under ``<cache root>/synthetic/<dataset>-<hash of
    kwargs>``,
    written once and reused: the same parameters give the same files at the same paths,
    so feature caches keyed on paths hit on a rerun. ``root`` overrides the cache folder.
    """
    import hashlib
    import json

    from common.paths import cache_root

    digest = hashlib.sha256(json.dumps(kwargs, sort_keys=True, default=str).encode()).hexdigest()[
        :12
    ]
    out = Path(root or cache_root() / "synthetic") / f"{dataset}-{digest}"
    if (
        out / SYNTHETIC_MARKER
    ).is_file():  # complete: writers move the folder into place only when done
        return out
    return synth(dataset, out, **kwargs)
