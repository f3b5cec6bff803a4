"""Paper 04 (Patel et al., AML subtypes): fused CNN features, row-wise z-score, PCA and
SVM + RF stacking, and the training rows that augmentation and oversampling add.

Reading of the paper (recorded in the notebook's Interpretation cells):

- MobileNetV2 (global average pooling, 1280), ResNet-101 ("pool5", 2048) and VGG-16
  ("fc7", 4096) features are z-scored **per row** (each image's vector, per network:
  the paper's MATLAB ``zscore(X, 0, 2)``), then concatenated (equations 5-6).
- PCA keeps a share of the variance (a parameter; the paper gives none).
- SVM (RBF, one-vs-rest probabilities) and RF (100 trees) are stacked with
  scikit-learn's ``StackingClassifier`` under a logistic-regression meta-learner on
  their out-of-fold class probabilities. The paper calls SVM and RF the
  "meta-learners" because its base models are the three CNNs; it does not say how the
  two are combined.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from common.balance import replicate_oversample


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
        raise ValueError(f"need one or more feature matrices with the same number of rows, got {[b.shape for b in blocks]}")
    return np.hstack([row_zscore(b) for b in blocks]).astype(np.float32)


def build_stacker(seed: int = 0, rf_trees: int = 100, inner_folds: int = 5):
    """SVM (RBF) and RF base learners under a logistic-regression meta-learner."""
    from sklearn.ensemble import RandomForestClassifier, StackingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    return StackingClassifier(
        estimators=[("svm", SVC(kernel="rbf", probability=True, random_state=seed)),
                    ("rf", RandomForestClassifier(n_estimators=rf_trees, random_state=seed, n_jobs=-1))],
        final_estimator=LogisticRegression(max_iter=2000), cv=inner_folds, stack_method="predict_proba", n_jobs=1)


def fit_predict(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, pca_variance: float | None,
                pca_fit: str = "train", seed: int = 0, rf_trees: int = 100, inner_folds: int = 5) -> dict:
    """PCA (optional) then the stacker; returns test probabilities and what was fitted.

    ``pca_fit``: ``train`` fits PCA on the training rows only; ``all`` on training and
    test rows together (the `published` reading of "X_TrainCombined and X_TestCombined
    processed by PCA"). Returns {"proba", "n_components", "model", "pca"}.
    """
    from sklearn.decomposition import PCA

    if pca_fit not in ("train", "all"):
        raise ValueError(f"pca_fit must be 'train' or 'all', got {pca_fit!r}")
    pca = None
    if pca_variance:
        if not 0 < pca_variance <= 1:
            raise ValueError(f"pca_variance must be in (0, 1], got {pca_variance}")
        pca = PCA(n_components=pca_variance if pca_variance < 1 else None, svd_solver="full", random_state=seed)
        pca.fit(np.vstack([X_train, X_test]) if pca_fit == "all" else X_train)
        X_train, X_test = pca.transform(X_train), pca.transform(X_test)
    counts = np.bincount(np.asarray(y_train))
    folds = int(min(inner_folds, counts[counts > 0].min()))
    if folds < 2:
        raise ValueError(f"a class has {counts[counts > 0].min()} training row(s); stacking needs at least 2 per class")
    model = build_stacker(seed, rf_trees, folds).fit(X_train, y_train)
    return {"proba": model.predict_proba(X_test), "n_components": None if pca is None else int(pca.n_components_),
            "model": model, "pca": pca}


def training_rows(train: np.ndarray, y: np.ndarray, augment: bool, oversample: bool, seed: int = 0) -> np.ndarray:
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
    for origin in origins[len(rows):]:
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
