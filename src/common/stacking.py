"""Paper 04 (Patel et al., AML subtypes): fused CNN features, row-wise z-score, PCA and
SVM + RF stacking, and the training rows that augmentation and oversampling add.

Paper id ``04_patel_aml`` (notebook, results folder and claims/04_patel_aml.yaml): H. Patel, H.
Shah, G. Patel and A. Patel, "Detection and Classification of Genetic Acute Myeloid Leukemia
Cells using Deep Learning Techniques", International Research Journal of Multidisciplinary
Technovation, 2025, https://doi.org/10.54392/irjmt2563; the full reference is in
claims/04_patel_aml.yaml.

Reading of the paper (recorded in the notebook's Interpretation cells):

- MobileNetV2 (global average pooling, 1280), ResNet-101 ("pool5", 2048) and VGG-16
  ("fc7", 4096) features are z-scored **per row** (each image's vector, per network:
  the paper's MATLAB ``zscore(X, 0, 2)``), then concatenated (equations 5-6).
- PCA keeps a share of the variance (a parameter; the paper gives none).
- SVM as MATLAB's ``fitcecoc`` trains it in the paper: "a distinct binary SVM
  classifier was trained for every class in order to differentiate it from every
  other class" (one-vs-rest coding), each a **linear** SVM (``fitcecoc``'s default
  learner; the paper names RBF only as something SVMs can use). Here: scikit-learn's
  ``LinearSVC``'s problem (one-vs-rest, squared hinge: the loss of liblinear's primal solver,
  where MATLAB uses the hinge), solved in chunks of rows (:mod:`common.linear_svm`), whose
  per-class decision values are the ECOC scores (usable for ROC curves) and which fits 142k
  rows without copying them, where an RBF ``SVC`` with Platt probabilities would take days.
- SVM and RF (100 trees) are stacked with scikit-learn's ``StackingClassifier`` under a
  logistic-regression meta-learner on their out-of-fold outputs (the SVM's decision
  values, the RF's class probabilities). The paper calls SVM and RF the
  "meta-learners" because its base models are the three CNNs; it does not say how the
  two are combined.

Memory at the real size (81,214 cells, 7,424 fused columns, up to ~142k oversampled
training rows): the feature bank stays on disk, memory-mapped float32
(:class:`FeatureBank`), with augmented copies only for the cells whose training rows use
them; each setting's fused matrix is gathered for its own rows only (:func:`fused_rows`);
PCA is fitted from a covariance matrix accumulated chunk by chunk (:func:`fit_pca`: d x d
memory, time linear in rows); each setting's outcome is cached (:func:`fit_rows`).
"""

from __future__ import annotations

import json
import mmap
import os
import pickle
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.balance import replicate_oversample
from common.isolate import call_in_child

# ------------------------------------------------------------ the notebook's profiles
#: Parameter values the three profiles share (each profile overrides some of them).
SHARED_PARAMS = dict(
    seed=0,
    data_root=None,
    difficulty=0.5,
    pca_variance=0.95,
    rf_trees=100,
    folds=5,
    vit_learning_rate=1e-4,
    batch_size=32,
    n_bootstrap=1000,
    fine_tune_cnns=False,
    cnn_epochs=50,
    cnn_learning_rate=1e-4,
)
#: The notebook's profiles: ``smoke`` (the test suite's seconds-long run on the synthetic twin),
#: ``demo`` (the synthetic twin on a CPU, frozen extractors without ImageNet weights), ``paper``
#: (the real set, ImageNet weights, the three CNNs fine-tuned before extraction, a GPU).
PROFILES = {
    "smoke": {
        **SHARED_PARAMS,
        "synthetic": True,
        "n_per_class": 21,
        "patients_per_class": 7,
        "image_size": 32,
        "pretrained": "none",
        "rf_trees": 25,
        "folds": 3,
        "vit_epochs": 1,
        "tsne_points": 200,
        "n_bootstrap": 200,
    },
    "demo": {
        **SHARED_PARAMS,
        "synthetic": True,
        "n_per_class": 64,
        "patients_per_class": 8,
        "image_size": 96,
        "pretrained": "none",
        "vit_epochs": 10,
        "vit_learning_rate": 1e-3,
        "tsne_points": 1000,
    },
    "paper": {
        **SHARED_PARAMS,
        "synthetic": False,
        "n_per_class": 0,
        "patients_per_class": 0,
        "image_size": 224,
        "pretrained": "imagenet",
        "vit_epochs": 50,
        "tsne_points": 3000,
        "fine_tune_cnns": True,
    },
}

#: Cells per class of the real AML-Cytomorphology_MLL_Helmholtz set (81,214 cells): the synthetic
#: twin, which has equal classes, is sub-sampled to these proportions (:func:`subsample_to_counts`).
REAL_COUNTS = {
    "control": 20305,
    "CBFB_MYH11": 17212,
    "NPM1": 17710,
    "RUNX1_RUNX1T1": 14403,
    "PML_RARA": 11584,
}


def subsample_to_counts(
    y: np.ndarray, classes: Sequence[str], counts: Mapping[str, int], *, seed: int
) -> np.ndarray:
    """The sorted indices of a seeded per-class sample of ``y`` (class indices into ``classes``)
    in the proportions of ``counts`` (class name -> count): the class with the largest count keeps
    all its cells, each other class ``round(its cells x its count / largest count)``."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    largest = max(counts.values())
    return np.sort(
        np.concatenate(
            [
                rng.choice(
                    np.flatnonzero(y == c),
                    int(round((y == c).sum() * counts[name] / largest)),
                    replace=False,
                )
                for c, name in enumerate(classes)
            ]
        )
    )


def row_zscore(X: np.ndarray) -> np.ndarray:
    """Each row minus its mean, over its standard deviation (rows of zeros stay zero)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D feature matrix (images, features), got shape {X.shape}")
    sd = X.std(axis=1, keepdims=True)
    return (X - X.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)


def fuse(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """Row-z-score each network's matrix, then concatenate them (equations 5-7)."""
    if not blocks or len({b.shape[0] for b in blocks}) != 1:
        raise ValueError(
            "need one or more feature matrices with the same number of rows, got "
            f"{[b.shape for b in blocks]}"
        )
    return np.hstack([row_zscore(b) for b in blocks]).astype(np.float32)


def build_stacker(*, seed: int = 0, rf_trees: int = 100, inner_folds: int = 5):
    """One-vs-rest linear SVMs (``fitcecoc``'s coding and default learner, see the module
    docstring) and RF base learners under a logistic-regression meta-learner."""
    from sklearn.ensemble import RandomForestClassifier, StackingClassifier
    from sklearn.linear_model import LogisticRegression

    from common.linear_svm import ChunkedLinearSVC

    # LinearSVC's primal problem (squared hinge, L2, columns standardised for the solver), solved
    # by common.linear_svm.ChunkedLinearSVC with liblinear's own method but on chunks of the rows:
    # LinearSVC copies its rows to float64 and liblinear to its own (index, value) pairs, 32 bytes
    # per value in all (measured), about 34 GB for the 142k x 7,424 rows of the settings without
    # PCA at the paper's size; this one copies nothing. With rows <= columns it runs
    # LinearSVC(dual="auto")'s dual, as before.
    svm = ChunkedLinearSVC(C=1.0, random_state=seed)
    return StackingClassifier(
        estimators=[
            ("svm", svm),
            ("rf", RandomForestClassifier(n_estimators=rf_trees, random_state=seed, n_jobs=-1)),
        ],
        final_estimator=LogisticRegression(max_iter=2000),
        cv=inner_folds,
        stack_method="auto",
        n_jobs=1,
    )


def _pca_components(pca_variance: float | None) -> float | None:
    if not 0 < pca_variance <= 1:
        raise ValueError(f"pca_variance must be in (0, 1], got {pca_variance}")
    return pca_variance if pca_variance < 1 else None


def fit_pca(
    blocks: Sequence[np.ndarray],
    *,
    n_components: float | int | None,
    seed: int = 0,
    chunk_rows: int = 4096,
):
    """PCA of the rows of ``blocks`` taken together, without stacking them: the eigendecomposition
    of their covariance matrix, accumulated ``chunk_rows`` rows at a time in float64.

    The same fit as ``PCA(svd_solver="full").fit(np.vstack(blocks))`` up to the components' signs
    (fixed by the same rule) and floating-point precision (tests/test_stacking.py), in d x d memory
    and time linear in rows: the training rows (up to ~142k) far outnumber the 7,424 columns, where
    the full SVD would hold several n x d copies. scikit-learn's ``svd_solver="covariance_eigh"`` is
    the same method but forms X.T @ X in the input's dtype (float32 here: less precise) on one array
    (a stacked copy of training and test rows for ``pca_fit="all"``). ``n_components``: a share of
    the variance in (0, 1) (the fewest components whose cumulated ratio exceeds it, as scikit-learn
    chooses), a count, or None (all). Returns a fitted scikit-learn ``PCA`` whose ``transform``
    works as usual; its arrays are float32 when every block is (transformed rows stay float32).
    With fewer rows than columns (the small profiles) the eigendecomposition of the d x d matrix
    would cost more than the SVD of the rows, so that case runs ``svd_solver="full"`` itself.
    """
    from scipy import linalg
    from scipy.linalg.blas import dsyrk
    from sklearn.decomposition import PCA
    from sklearn.utils.extmath import svd_flip

    blocks = [b for b in blocks if len(b)]
    if not blocks or any(b.ndim != 2 or b.shape[1] != blocks[0].shape[1] for b in blocks):
        raise ValueError(
            f"need 2-D blocks of rows with the same columns, got {[b.shape for b in blocks]}"
        )
    n, d = sum(len(b) for b in blocks), blocks[0].shape[1]
    if n < 2:
        raise ValueError("PCA needs at least 2 rows")
    if n < d:
        # fewer rows than columns (smoke, demo): the full SVD is the cheaper one, and rows are few
        return PCA(n_components=n_components, svd_solver="full", random_state=seed).fit(
            np.vstack(blocks) if len(blocks) > 1 else blocks[0]
        )
    dtype = np.float32 if all(b.dtype == np.float32 for b in blocks) else np.float64
    shift = np.asarray(blocks[0][:chunk_rows], dtype=np.float64).mean(
        axis=0
    )  # a provisional centre: small sums
    total = np.zeros(d)
    scatter = np.zeros(
        (d, d), order="F"
    )  # upper triangle of sum (x - shift)(x - shift)^T, updated in place
    for block in blocks:
        for start in range(0, len(block), chunk_rows):
            chunk = np.asarray(block[start : start + chunk_rows], dtype=np.float64) - shift
            total += chunk.sum(axis=0)
            scatter = dsyrk(1.0, chunk.T, beta=1.0, c=scatter, trans=0, lower=0, overwrite_c=1)
            del chunk
    offset = total / n
    scatter -= n * np.outer(offset, offset)
    scatter /= n - 1  # the covariance matrix (upper triangle)
    eigenvalues, eigenvectors = linalg.eigh(
        scatter, lower=False, overwrite_a=True, check_finite=False
    )
    del scatter
    variance = np.clip(
        eigenvalues[::-1], 0.0, None
    )  # descending; tiny negative round-off clipped as scikit-learn does
    _, components = svd_flip(
        None, np.ascontiguousarray(eigenvectors[:, ::-1].T), u_based_decision=False
    )
    del eigenvectors
    ratio = variance / variance.sum()
    if n_components is None:
        k = min(n, d)
    elif 0 < n_components < 1:
        k = int(np.searchsorted(np.cumsum(ratio), n_components, side="right")) + 1
    else:
        k = int(n_components)
    k = min(k, n, d)
    pca = PCA(n_components=n_components, svd_solver="covariance_eigh", random_state=seed)
    pca.n_features_in_, pca._fit_svd_solver, pca.n_samples_, pca.n_components_ = (
        d,
        "covariance_eigh",
        n,
        k,
    )
    pca.mean_ = (shift + offset).astype(dtype)
    pca.components_ = np.ascontiguousarray(components[:k], dtype=dtype)
    pca.explained_variance_ = variance[:k].astype(dtype)
    pca.explained_variance_ratio_ = ratio[:k].astype(dtype)
    pca.singular_values_ = np.sqrt(variance[:k] * (n - 1)).astype(dtype)
    pca.noise_variance_ = float(variance[k : min(n, d)].mean()) if k < min(n, d) else 0.0
    return pca


def _stack(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    seed: int,
    rf_trees: int,
    inner_folds: int,
):
    counts = np.bincount(np.asarray(y_train))
    folds = int(min(inner_folds, counts[counts > 0].min()))
    if folds < 2:
        raise ValueError(
            f"a class has {counts[counts > 0].min()} training row(s); "
            "stacking needs at least 2 per class"
        )
    model = build_stacker(seed=seed, rf_trees=rf_trees, inner_folds=folds).fit(X_train, y_train)
    return model, model.predict_proba(X_test)


def fit_predict(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    *,
    pca_variance: float | None,
    pca_fit: str = "train",
    seed: int = 0,
    rf_trees: int = 100,
    inner_folds: int = 5,
) -> dict:
    """PCA (optional, :func:`fit_pca`) then the stacker; returns test probabilities and what was
    fitted.

    ``pca_fit``: ``train`` fits PCA on the training rows only; ``all`` on training and
    test rows together (the `published` reading of "X_TrainCombined and X_TestCombined
    processed by PCA"; no stacked copy of the two is made). Returns {"proba",
    "n_components", "model", "pca"}.
    """
    if pca_fit not in ("train", "all"):
        raise ValueError(f"pca_fit must be 'train' or 'all', got {pca_fit!r}")
    pca = None
    if pca_variance:
        pca = fit_pca(
            [X_train, X_test] if pca_fit == "all" else [X_train],
            n_components=_pca_components(pca_variance),
            seed=seed,
        )
        X_train, X_test = pca.transform(X_train), pca.transform(X_test)
    model, proba = _stack(X_train, y_train, X_test, seed, rf_trees, inner_folds)
    return {
        "proba": proba,
        "n_components": None if pca is None else int(pca.n_components_),
        "model": model,
        "pca": pca,
    }


def training_rows(
    train: np.ndarray, y: np.ndarray, *, augment: bool, oversample: bool, seed: int = 0
) -> np.ndarray:
    """The training rows of one ablation setting, as (image index, copy) pairs (n, 2).

    Copy 0 is the image itself; copy k >= 1 its k-th augmented version. With
    ``augment`` every training image adds one augmented copy. With ``oversample`` the
    paper's replicating oversampler (full replications, then a random remainder, up to
    the largest class) runs on those rows, and each replicated row becomes the image's
    next augmented copy (identical copies when ``augment`` is off).
    """
    train = np.asarray(train)
    rows = [(int(i), 0) for i in train]
    if augment:
        rows += [(int(i), 1) for i in train]
    rows = np.asarray(rows, dtype=np.int64)
    if not oversample:
        return rows
    origins = replicate_oversample(np.asarray(y)[rows[:, 0]], seed=seed)
    used = {}
    for image, copy in rows:
        used[image] = max(used.get(image, 0), copy)
    out = list(map(tuple, rows))
    for origin in origins[len(rows) :]:
        image, copy = rows[origin]
        if augment:
            used[image] += 1
            copy = used[image]
        out.append((int(image), int(copy)))
    return np.asarray(out, dtype=np.int64)


def subset_counts(available: dict[int, int], wanted: dict[int, int]) -> dict[int, int]:
    """Table 7's per-class subset sizes, scaled down together when a class has fewer images."""
    scale = min(1.0, *(available.get(c, 0) / n for c, n in wanted.items() if n))
    return {c: int(np.floor(n * scale)) for c, n in wanted.items()}


def draw_subset(
    y: np.ndarray, pool: np.ndarray, wanted: Mapping[int, int], *, seed: int
) -> np.ndarray:
    """Table 7's subset: per class (in ``wanted``'s order) a seeded random draw of the cells of
    ``pool`` without replacement, ``wanted`` scaled down together where a class has fewer cells
    (:func:`subset_counts`)."""
    y, pool = np.asarray(y), np.asarray(pool)
    sizes = subset_counts({c: int((y[pool] == c).sum()) for c in wanted}, dict(wanted))
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [rng.choice(pool[y[pool] == c], n, replace=False) for c, n in sizes.items() if n]
    )


# ----------------------------------------------------------------- feature banks
#: Paper 04's augmentation (P218-222): rotation within +/-10 degrees, horizontal and vertical flips,
#: scaling 0.9-1.1 "along the X and Y axes" (one factor per axis).
AUGMENTATION = dict(
    rotation_deg=10,
    flip="horizontal_and_vertical",
    zoom=0.1,
    translate=0,
    zoom_axes_independent=True,
)


def augment_hook(copy: int, *, seed: int = 0):
    """The augmentation of augmented copy ``copy`` (>= 1): paper 04's transformations, seeded per
    copy."""
    from common import augment

    return augment.batch_hook(augment.build_augmenter(**AUGMENTATION, seed=seed * 1000 + copy))


@dataclass
class FeatureBank:
    """One network's features of the dataset's cells, per version: ``"original"`` (resized only),
    ``0`` (resized, then segmented) and augmented copies ``1..C``.

    ``cells[v]``: the sorted cell indices that version ``v`` holds (every cell for ``"original"``
    and ``0``, the training cells that use it for a copy); ``matrices[v]``: their
    (len(cells[v]), width) float32 features, memory-mapped read-only from the feature cache;
    ``keys[v]``: that cache entry's name (the bank's identity in :func:`fit_rows`' cache).
    """

    cells: dict
    matrices: dict
    keys: dict

    @property
    def width(self) -> int:
        return int(self.matrices[0].shape[1])

    @property
    def versions(self) -> list:
        return list(self.matrices)

    def rows(self, version, cells) -> np.ndarray:
        """The features of ``cells`` (dataset indices, any order) in ``version``: an in-memory
        float32 copy of those rows only. The mapped pages are released after reading (they stay in
        the operating system's page cache), so reading never leaves the bank resident in this
        process."""
        if version not in self.cells:
            raise KeyError(f"this bank has no version {version!r} (versions: {self.versions})")
        held, cells = self.cells[version], np.asarray(cells, dtype=np.int64).reshape(-1)
        at = np.minimum(np.searchsorted(held, cells), max(len(held) - 1, 0))
        if len(cells) and (not len(held) or np.any(held[at] != cells)):
            missing = cells[held[at] != cells] if len(held) else cells
            raise KeyError(
                f"version {version!r} was not extracted for cells {missing[:5].tolist()}... "
                "(extract_bank's rows did not include them)"
            )
        matrix = self.matrices[version]
        out = np.asarray(matrix[at], dtype=np.float32)
        _release_pages(matrix)
        return out


def _release_pages(matrix) -> None:
    """Drop a memory-mapped matrix's pages from this process (MADV_DONTNEED: read-only file pages
    are re-read from the page cache when touched again), so that the bank does not count in the
    resident memory of a process that reads all of it."""
    mapped = getattr(matrix, "_mmap", None)
    if mapped is not None and hasattr(mmap, "MADV_DONTNEED"):
        try:
            mapped.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass


def extract_bank(
    backbone,
    paths: Sequence[str],
    fingerprint: str,
    *,
    rows: np.ndarray,
    segment,
    size: int,
    seed: int = 0,
    batch_size: int = 32,
) -> FeatureBank:
    """The features from ``backbone`` that the (cell, copy) ``rows`` will read
    (:func:`training_rows`; the union over every training set that uses this bank), cached under
    the cache root and memory-mapped (float32): ``"original"`` (resized only, the ablation's
    baseline) and ``0`` (resized, then segmented) for every cell (test cells need only these), and
    augmented copy ``k`` (resized, augmented, then segmented: the paper's order, P372) only for the
    cells with a row of copy ``k``. The cache keys of ``"original"`` and ``0`` do not depend on
    ``rows``."""
    from common import features

    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
    paths = np.asarray([str(p) for p in paths])
    described = {"segment": "hsv-default", "size": size}
    every = np.arange(len(paths))
    versions = {
        "original": (every, dict(preprocessing={"size": size})),
        0: (every, dict(segment=segment, preprocessing=described)),
    }
    for k in sorted(int(c) for c in np.unique(rows[:, 1]) if c > 0):
        versions[k] = (
            np.unique(rows[rows[:, 1] == k, 0]),
            dict(
                segment=segment,
                augment=augment_hook(k, seed=seed),
                segment_after_augment=True,
                preprocessing={
                    **described,
                    "augment": f"{sorted(AUGMENTATION.items())} copy{k} seed{seed}",
                },
            ),
        )
    cells, matrices, keys = {}, {}, {}
    for version, (idx, kw) in versions.items():
        subset = paths[idx].tolist()
        keys[version] = features.cache_name(
            backbone,
            subset,
            fingerprint,
            preprocessing=kw["preprocessing"],
            segment_after_augment=kw.get("segment_after_augment", False),
        )[0]
        matrices[version] = features.extract_features(
            backbone, subset, fingerprint, batch_size=batch_size, mmap=True, **kw
        )
        cells[version] = idx
    return FeatureBank(cells, matrices, keys)


def fused_rows(
    bank: Mapping[str, FeatureBank],
    nets: Sequence[str],
    table_rows: np.ndarray,
    *,
    segmented: bool,
    out: np.ndarray | None = None,
    chunk_rows: int = 2048,
) -> np.ndarray:
    """The fused features (:func:`fuse`: each network's block z-scored per row, then the blocks
    concatenated, in ``nets`` order) of (cell, copy) rows (:func:`training_rows`): copy k reads
    version k of a segmented setting; an unsegmented setting reads ``"original"`` (copies are then
    identical). Rows are gathered from the memory-mapped ``bank`` (network -> :class:`FeatureBank`)
    ``chunk_rows`` at a time, in bank order, and written into one float32 matrix, ``out`` if given
    (shape (len(table_rows), total width)): the only allocation that grows with the rows."""
    table_rows = np.asarray(table_rows, dtype=np.int64).reshape(-1, 2)
    widths = [bank[net].width for net in nets]
    shape = (len(table_rows), sum(widths))
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ValueError(
            f"out must be a float32 array of shape {shape}, got {out.dtype} {out.shape}"
        )
    version_of = np.zeros(len(table_rows), dtype=np.int64) if not segmented else table_rows[:, 1]
    for code in np.unique(version_of):
        version = int(code) if segmented else "original"
        where = np.flatnonzero(version_of == code)
        where = where[np.argsort(table_rows[where, 0], kind="stable")]  # sequential reads
        for start in range(0, len(where), chunk_rows):
            at = where[start : start + chunk_rows]
            column = 0
            for net, width in zip(nets, widths):
                out[at, column : column + width] = row_zscore(
                    bank[net].rows(version, table_rows[at, 0])
                )
                column += width
    return out


# ------------------------------------------------------------------ fine-tuning
def validate_every_callback(val_feed, *, every: int = 30):
    """A Keras callback that evaluates ``val_feed`` every ``every`` mini-batches (the paper
    validates "After every 30 mini-batches", P374) and keeps (step, loss, accuracy) in
    ``.records``."""
    import keras

    class ValidateEvery(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.records: list[tuple[int, float, float]] = []
            self.step = 0

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            if self.step % every == 0:
                loss, accuracy = self.model.evaluate(val_feed, verbose=0)
                self.records.append((self.step, float(loss), float(accuracy)))

    return ValidateEvery()


def fine_tune_extractor(
    train: tuple[Sequence[str], np.ndarray],
    val: tuple[Sequence[str], np.ndarray],
    *,
    name: str,
    layer: str,
    num_classes: int,
    image_size: int,
    pretrained: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    segment,
    data_key: dict,
    seed: int = 0,
    validate_every: int = 30,
    validation_cells: int = 1000,
    label: str = "",
    paper: str = "04_patel_aml",
    isolate: bool = False,
):
    """Fine-tune backbone ``name`` as the paper trains its three CNNs, then return it as a
    feature extractor at ``layer`` (a :class:`~common.backbones.Backbone` whose weights id
    names the stored network) and the training history.

    The paper (P372-P384): the top layers replaced by a new classification layer, Adam,
    mini-batch 32, at most 50 epochs, learning rate 1e-4, shuffled every epoch, validated
    on augmented images every 30 mini-batches. Training cells are augmented on the fly and
    segmented after augmentation. Validation uses at most ``validation_cells`` validation
    cells (a fixed, seeded sample, augmented once): evaluating all 12k every 30 batches
    would cost more than the training itself. The network is kept in the model store.

    ``isolate``: train in a child process (:func:`common.isolate.call_in_child`) and load
    the stored network here, so that the memory TensorFlow keeps after a training (about
    a network's worth per fine-tune) goes back when the child ends.
    """
    import keras

    from common import modelstore
    from common.backbones import Backbone, build_backbone, fine_tune_model
    from common.data.stream import ImageBatches
    from common.progress import EpochLog

    val_paths, val_y = np.asarray(val[0]), np.asarray(val[1])
    if len(val_y) > validation_cells:
        pick = np.sort(
            np.random.default_rng(seed).choice(len(val_y), validation_cells, replace=False)
        )
        val_paths, val_y = val_paths[pick], val_y[pick]
    built: dict = {}

    def build():
        keras.utils.set_random_seed(seed)
        built["backbone"] = build_backbone(
            name, input_size=image_size, pretrained=pretrained, layer=layer, seed=seed
        )
        return fine_tune_model(
            built["backbone"],
            num_classes,
            trainable_layers=None,
            optimizer="adam",
            learning_rate=learning_rate,
        )

    def feed(paths, labels, copy, shuffle):
        return ImageBatches(
            paths,
            labels,
            batch_size=batch_size,
            image_size=(image_size, image_size),
            segment=segment,
            augment=augment_hook(copy, seed=seed),
            preprocess=built["backbone"].preprocess,
            shuffle=shuffle,
            seed=seed,
            segment_after_augment=True,
        )

    def fit(model, callbacks):
        check = validate_every_callback(feed(val_paths, val_y, 999, False), every=validate_every)
        history = model.fit(
            feed(train[0], train[1], 1, True),
            epochs=epochs,
            verbose=0,
            callbacks=[*callbacks, check, EpochLog(f"fine-tune {label or name}")],
        ).history
        return {
            **history,
            "validation_every_steps": [r[0] for r in check.records],
            "validation_loss": [r[1] for r in check.records],
            "validation_accuracy": [r[2] for r in check.records],
        }

    key = {
        "layer": layer,
        "image_size": image_size,
        "pretrained": str(pretrained),
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "seed": seed,
        "validate_every": validate_every,
        "validation_cells": validation_cells,
        "augmentation": sorted(AUGMENTATION.items()),
        "data": data_key,
        "code": modelstore.code_version(sys.modules[__name__], build_backbone, fine_tune_model),
    }
    stored = modelstore.entry(paper, f"{name}-{label}" if label else name, key)
    if isolate and not stored.complete():
        call_in_child(
            _fine_tune_and_store,
            train,
            val,
            name=name,
            layer=layer,
            num_classes=num_classes,
            image_size=image_size,
            pretrained=pretrained,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            segment=segment,
            data_key=data_key,
            seed=seed,
            validate_every=validate_every,
            validation_cells=validation_cells,
            label=label,
            paper=paper,
        )
    model, _, history, _ = modelstore.train_or_load(
        stored,
        build=build,
        fit=fit,
        outputs=lambda m: {"val": m.predict(feed(val_paths, None, 999, False), verbose=0)},
    )
    base = built["backbone"]
    extractor = keras.Model(model.input, base.model.output, name=f"{name}_{base.layer}_finetuned")
    return Backbone(
        name,
        extractor,
        base.preprocess,
        base.input_size,
        f"finetuned:{stored.dir.name}",
        base.layer,
    ), history


def _fine_tune_and_store(*args, **kwargs) -> None:
    """:func:`fine_tune_extractor` for its side effect (the network in the model store): a child's
    job."""
    fine_tune_extractor(*args, **kwargs)


# ------------------------------------------------------- one setting, cached
def fit_rows(
    bank: Mapping[str, FeatureBank],
    nets: Sequence[str],
    train_rows: np.ndarray,
    y: np.ndarray,
    test_cells: np.ndarray,
    *,
    segmented: bool,
    pca_variance: float | None,
    pca_fit: str = "train",
    seed: int = 0,
    rf_trees: int = 100,
    inner_folds: int = 5,
    keep_model: bool = False,
    label: str = "setting",
    cache: bool = True,
    chunk_rows: int = 2048,
    scratch_rows: int = 20_000,
    paper: str = "04_patel_aml",
    log: Callable[[str], None] = print,
) -> dict:
    """One setting of the stacking stage: the fused features (:func:`fused_rows`) of the (cell,
    copy) ``train_rows`` and of the ``test_cells`` (copy 0), :func:`fit_pca` on the rows
    ``pca_fit`` names, then the stacker, as :func:`fit_predict`. The fused matrices are freed once
    PCA has reduced them; without PCA, more than ``scratch_rows`` training rows are gathered into a
    file-backed scratch matrix under ``<cache root>/stacking/scratch`` (removed afterwards). ``y``:
    every cell's label.

    Returns {"proba", "n_components", "model", "pca", "reused"}; "model" and "pca" only with
    ``keep_model`` (else None: a fitted forest of 142k rows is large). With ``cache``, the outcome
    is stored under ``<cache root>/stacking/<paper>/<label>-<digest>/`` (test probabilities and
    component count in ``outputs.npz``, the fitted stacker and PCA in ``model.joblib`` with
    ``keep_model``, ``key.json`` written last; each file written to a temporary name, then
    renamed), keyed by the bank's feature cache keys, the networks, the rows, labels and test cells,
    every setting and the code version of this module: a rerun loads it and says so.
    """
    from common import modelstore
    from common.paths import cache_root

    if pca_fit not in ("train", "all"):
        raise ValueError(f"pca_fit must be 'train' or 'all', got {pca_fit!r}")
    nets = tuple(nets)
    train_rows = np.asarray(train_rows, dtype=np.int64).reshape(-1, 2)
    test_cells = np.asarray(test_cells, dtype=np.int64).reshape(-1)
    y_train = np.asarray(y)[train_rows[:, 0]]
    stored = None
    if cache:
        import sklearn

        read = sorted({0, *map(int, np.unique(train_rows[:, 1]))}) if segmented else ["original"]
        key = {
            "bank": {net: {str(v): bank[net].keys[v] for v in read} for net in nets},
            "networks": list(nets),
            "rows": modelstore.indices_digest(train_rows, test_cells),
            "labels": modelstore.indices_digest(y_train),
            "segmented": bool(segmented),
            "pca_variance": pca_variance,
            "pca_fit": pca_fit,
            "rf_trees": rf_trees,
            "seed": seed,
            "inner_folds": inner_folds,
            "sklearn": sklearn.__version__,
            "code": modelstore.code_version(sys.modules[__name__]),
        }
        stored = modelstore.entry(paper, label, key, root=cache_root() / "stacking")
        hit = _load_setting(stored.dir, stored.key, keep_model)
        if hit is not None:
            log(
                f"{label}: reusing the stacking result in {stored.dir} "
                "(same features, rows, settings and code)"
            )
            return hit
    scratch = None
    if not pca_variance and len(train_rows) > scratch_rows:
        # without PCA the stacker reads the fused rows themselves, up to 142,140 x 7,424 (3.9 GB)
        # at the paper's size: kept in a file-backed scratch matrix (page cache, which the kernel
        # can reclaim), not in anonymous memory; the stacker's inner folds still copy 4/5 of them
        # in memory (measured: python -m common.rehearse_stacking)
        folder = cache_root() / "stacking" / "scratch"
        folder.mkdir(parents=True, exist_ok=True)
        scratch = folder / f"{label}-{os.getpid()}.npy"
        out = np.lib.format.open_memmap(
            scratch,
            mode="w+",
            dtype=np.float32,
            shape=(len(train_rows), sum(bank[net].width for net in nets)),
        )
    else:
        out = None
    try:
        X_train = fused_rows(
            bank, nets, train_rows, segmented=segmented, out=out, chunk_rows=chunk_rows
        )
        X_test = fused_rows(
            bank,
            nets,
            np.stack([test_cells, np.zeros_like(test_cells)], axis=1),
            segmented=segmented,
            chunk_rows=chunk_rows,
        )
        pca = None
        if pca_variance:
            pca = fit_pca(
                [X_train, X_test] if pca_fit == "all" else [X_train],
                n_components=_pca_components(pca_variance),
                seed=seed,
            )
            X_train, X_test = (
                pca.transform(X_train),
                pca.transform(X_test),
            )  # the fused matrices are freed here
        model, proba = _stack(X_train, y_train, X_test, seed, rf_trees, inner_folds)
        del X_train, X_test, out
    finally:
        if scratch is not None:
            scratch.unlink(missing_ok=True)
    result = {
        "proba": proba,
        "n_components": None if pca is None else int(pca.n_components_),
        "model": model if keep_model else None,
        "pca": pca if keep_model else None,
        "reused": False,
    }
    if stored is not None:
        _save_setting(stored.dir, stored.key, result, keep_model)
    return result


def predict_cells(
    fitted: Mapping[str, Any], bank: Mapping[str, FeatureBank], cells: np.ndarray, *, nets
) -> np.ndarray:
    """Class probabilities of a fitted setting (a :func:`fit_rows` result with ``keep_model``) for
    the segmented, unaugmented ``cells``: their fused features, its PCA (if any), its stacker."""
    cells = np.asarray(cells, dtype=np.int64)
    X = fused_rows(
        bank, tuple(nets), np.stack([cells, np.zeros_like(cells)], axis=1), segmented=True
    )
    X = fitted["pca"].transform(X) if fitted["pca"] is not None else X
    return fitted["model"].predict_proba(X)


def fit_setting(
    bank: Mapping[str, FeatureBank],
    train_rows: np.ndarray,
    y: np.ndarray,
    test_cells: np.ndarray,
    *,
    setting: tuple[bool, bool, bool, bool],
    nets: Sequence[str],
    pca_fit: str,
    pca_variance: float,
    rf_trees: int,
    seed: int,
    label: str,
    keep_model: bool = False,
) -> dict:
    """One setting of Table 6 (or one network alone, Figure 13): :func:`fit_rows` on the networks
    ``nets`` with the setting's flags. ``setting`` is (segment, augment, oversample, PCA): augment
    and oversample are already in ``train_rows`` (:func:`training_rows`), segment picks the bank's
    segmented versions, and PCA keeps ``pca_variance`` of the variance only when the setting has it.
    The result is cached under ``label`` followed by the networks' names."""
    segmented, _, _, with_pca = setting
    nets = tuple(nets)
    return fit_rows(
        bank,
        nets,
        train_rows,
        y,
        test_cells,
        segmented=segmented,
        pca_variance=pca_variance if with_pca else None,
        pca_fit=pca_fit,
        seed=seed,
        rf_trees=rf_trees,
        keep_model=keep_model,
        label=f"{label}-{'+'.join(nets)}",
    )


# ------------------------------------------------------------------ the ViT baseline
def vit_baseline(
    paths: Sequence[str],
    y: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    test_idx: np.ndarray,
    *,
    fingerprint: str,
    label: str,
    num_classes: int,
    image_size: int,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    segment,
    seed: int,
    paper: str = "04_patel_aml",
) -> np.ndarray:
    """Figure 13's ViT (:func:`common.backbones.build_backbone`'s small ``vit``, from scratch)
    trained end to end on the cells ``train_idx`` (rows may repeat: the oversampled cells),
    segmented and augmented on the fly (rotation +/-10 degrees, flips, zoom 0.1), with the paper's
    policy (Adam, ``batch_size``, ``learning_rate``, ``epochs``) and ``val_idx`` for its curves;
    returns its class probabilities of the cells ``test_idx``. The network is kept in the model
    store as ``vit-<label>`` (keyed by its settings, the data ``fingerprint``, the rows and the
    code): a rerun reuses it, a killed session resumes from its last finished epoch."""
    import keras

    from common import augment, modelstore
    from common.backbones import build_backbone, fine_tune_model
    from common.data.stream import ImageBatches
    from common.imaging import hsv_segment
    from common.progress import EpochLog

    paths, y = np.asarray(paths), np.asarray(y)
    keras.utils.set_random_seed(seed)
    hook = augment.batch_hook(
        augment.build_augmenter(
            rotation_deg=10, flip="horizontal_and_vertical", zoom=0.1, translate=0, seed=seed
        )
    )
    shape = dict(batch_size=batch_size, image_size=(image_size, image_size), segment=segment)
    feed = ImageBatches(
        paths[train_idx], y[train_idx], augment=hook, shuffle=True, seed=seed, **shape
    )
    val = ImageBatches(paths[val_idx], y[val_idx], **shape)

    def build():
        return fine_tune_model(
            build_backbone("vit", input_size=image_size, seed=seed),
            num_classes,
            trainable_layers=None,
            optimizer="adam",
            learning_rate=learning_rate,
        )

    def fit(model, callbacks):
        return model.fit(
            feed,
            validation_data=val,
            epochs=epochs,
            callbacks=[*callbacks, EpochLog(f"vit {label}")],
            verbose=0,
        ).history

    def test(model):
        return {"test": model.predict(ImageBatches(paths[test_idx], None, **shape), verbose=0)}

    key = {
        "image_size": image_size,
        "vit_epochs": epochs,
        "vit_learning_rate": learning_rate,
        "batch_size": batch_size,
        "seed": seed,
        "data": fingerprint,
        "rows": modelstore.indices_digest(train_idx, val_idx, test_idx),
        "code": modelstore.code_version(build_backbone, fine_tune_model, augment, hsv_segment),
        "augment": "rot10 flips zoom0.1",
    }
    stored = modelstore.entry(paper, f"vit-{label}", key)
    return modelstore.train_or_load(stored, build, fit, test)[1]["test"]


def extractor_summary(backbone) -> dict:
    """One row of the architecture table: a feature extractor's network, the Keras layer its
    features come from, its input and feature sizes, its layer count and its parameters (up to
    that layer)."""
    model = backbone.model
    return {
        "network": backbone.name,
        "Keras layer": backbone.layer,  # the paper's names: gap, pool5, fc7
        "input": f"{backbone.input_size} x {backbone.input_size} x 3",
        "features": backbone.n_features,
        "layers": len(model.layers),
        "parameters": int(model.count_params()),
    }


def _atomic(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    with open(tmp, mode) as fh:
        write(fh)
    os.replace(tmp, path)


def _save_setting(folder: Path, key: dict, result: dict, keep_model: bool) -> None:
    import joblib

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "key.json").unlink(missing_ok=True)
    _atomic(
        folder / "outputs.npz",
        lambda fh: np.savez(
            fh,
            proba=result["proba"],
            n_components=-1 if result["n_components"] is None else result["n_components"],
        ),
    )
    if keep_model:
        _atomic(
            folder / "model.joblib",
            lambda fh: joblib.dump({"model": result["model"], "pca": result["pca"]}, fh),
        )
    _atomic(
        folder / "key.json",
        lambda fh: fh.write(json.dumps(key, indent=1, sort_keys=True)),
        mode="w",
    )


def _load_setting(folder: Path, key: dict, keep_model: bool) -> dict | None:
    import joblib

    try:
        if json.loads((folder / "key.json").read_text()) != key:
            return None
        with np.load(folder / "outputs.npz") as npz:
            proba, n_components = npz["proba"], int(npz["n_components"])
        fitted = (
            joblib.load(folder / "model.joblib") if keep_model else {"model": None, "pca": None}
        )
    except (OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError):
        return None
    return {
        "proba": proba,
        "n_components": None if n_components < 0 else n_components,
        **fitted,
        "reused": True,
    }
