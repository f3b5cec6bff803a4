"""Paper 04 (Patel et al., AML subtypes): fused CNN features, row-wise z-score, PCA and
SVM + RF stacking, and the training rows that augmentation and oversampling add.

Reading of the paper (recorded in the notebook's Interpretation cells):

- MobileNetV2 (global average pooling, 1280), ResNet-101 ("pool5", 2048) and VGG-16
  ("fc7", 4096) features are z-scored **per row** (each image's vector, per network:
  the paper's MATLAB ``zscore(X, 0, 2)``), then concatenated (equations 5-6).
- PCA keeps a share of the variance (a parameter; the paper gives none).
- SVM as MATLAB's ``fitcecoc`` trains it in the paper: "a distinct binary SVM
  classifier was trained for every class in order to differentiate it from every
  other class" (one-vs-rest coding), each a **linear** SVM (``fitcecoc``'s default
  learner; the paper names RBF only as something SVMs can use). Here: scikit-learn's
  ``LinearSVC`` (one-vs-rest), whose per-class decision values are the ECOC scores
  (usable for ROC curves) and which fits 142k rows in minutes, where an RBF ``SVC``
  with Platt probabilities would take days.
- SVM and RF (100 trees) are stacked with scikit-learn's ``StackingClassifier`` under a
  logistic-regression meta-learner on their out-of-fold outputs (the SVM's decision
  values, the RF's class probabilities). The paper calls SVM and RF the
  "meta-learners" because its base models are the three CNNs; it does not say how the
  two are combined.
"""
from __future__ import annotations

import sys
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
    """One-vs-rest linear SVMs (``fitcecoc``'s coding and default learner, see the module
    docstring) and RF base learners under a logistic-regression meta-learner."""
    from sklearn.ensemble import RandomForestClassifier, StackingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    # columns standardised for the solver: liblinear's coordinate descent fails to converge on the raw
    # fused features and then runs to max_iter (minutes per fit even on the smoke data)
    svm = make_pipeline(StandardScaler(), LinearSVC(C=1.0, random_state=seed, max_iter=2000))
    return StackingClassifier(
        estimators=[("svm", svm),
                    ("rf", RandomForestClassifier(n_estimators=rf_trees, random_state=seed, n_jobs=-1))],
        final_estimator=LogisticRegression(max_iter=2000), cv=inner_folds, stack_method="auto", n_jobs=1)


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


# ----------------------------------------------------------------- feature banks
#: Paper 04's augmentation (P218-222): rotation within +/-10 degrees, horizontal and vertical flips,
#: scaling 0.9-1.1 "along the X and Y axes" (one factor per axis).
AUGMENTATION = dict(rotation_deg=10, flip="horizontal_and_vertical", zoom=0.1, translate=0, zoom_axes_independent=True)


def augment_hook(copy: int, seed: int = 0):
    """The augmentation of augmented copy ``copy`` (>= 1): paper 04's transformations, seeded per copy."""
    from common import augment

    return augment.batch_hook(augment.build_augmenter(**AUGMENTATION, seed=seed * 1000 + copy))


def extract_bank(backbone, paths: Sequence[str], fingerprint: str, *, n_copies: int, segment, size: int, seed: int = 0,
                 batch_size: int = 32) -> dict:
    """Every version of every cell's features from ``backbone`` (cached under the cache root):
    ``"original"`` (resized only, the ablation's baseline), ``0`` (resized, then segmented) and
    ``1..n_copies`` (resized, augmented, then segmented: the paper's order, P372)."""
    from common import features

    extract = lambda **kw: features.extract_features(backbone, paths, fingerprint, batch_size=batch_size, **kw)  # noqa: E731
    described = {"segment": "hsv-default", "size": size}
    bank = {"original": extract(preprocessing={"size": size}), 0: extract(segment=segment, preprocessing=described)}
    for k in range(1, n_copies + 1):
        bank[k] = extract(segment=segment, augment=augment_hook(k, seed), segment_after_augment=True,
                          preprocessing={**described, "augment": f"{sorted(AUGMENTATION.items())} copy{k} seed{seed}"})
    return bank


# ------------------------------------------------------------------ fine-tuning
def validate_every_callback(val_feed, every: int = 30):
    """A Keras callback that evaluates ``val_feed`` every ``every`` mini-batches (the paper
    validates "After every 30 mini-batches", P374) and keeps (step, loss, accuracy) in ``.records``."""
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


def fine_tune_extractor(name: str, layer: str, train: tuple[Sequence[str], np.ndarray],
                        val: tuple[Sequence[str], np.ndarray], num_classes: int, *, image_size: int, pretrained: str,
                        epochs: int, batch_size: int, learning_rate: float, segment, data_key: dict, seed: int = 0,
                        validate_every: int = 30, validation_cells: int = 1000, label: str = "",
                        paper: str = "04_patel_aml"):
    """Fine-tune backbone ``name`` as the paper trains its three CNNs, then return it as a
    feature extractor at ``layer`` (a :class:`~common.backbones.Backbone` whose weights id
    names the stored network) and the training history.

    The paper (P372-P384): the top layers replaced by a new classification layer, Adam,
    mini-batch 32, at most 50 epochs, learning rate 1e-4, shuffled every epoch, validated
    on augmented images every 30 mini-batches. Training cells are augmented on the fly and
    segmented after augmentation. Validation uses at most ``validation_cells`` validation
    cells (a fixed, seeded sample, augmented once): evaluating all 12k every 30 batches
    would cost more than the training itself. The network is kept in the model store.
    """
    import keras

    from common import modelstore
    from common.backbones import Backbone, build_backbone, fine_tune_model
    from common.data.stream import ImageBatches
    from common.progress import EpochLog

    val_paths, val_y = np.asarray(val[0]), np.asarray(val[1])
    if len(val_y) > validation_cells:
        pick = np.sort(np.random.default_rng(seed).choice(len(val_y), validation_cells, replace=False))
        val_paths, val_y = val_paths[pick], val_y[pick]
    built: dict = {}

    def build():
        keras.utils.set_random_seed(seed)
        built["backbone"] = build_backbone(name, input_size=image_size, pretrained=pretrained, layer=layer, seed=seed)
        return fine_tune_model(built["backbone"], num_classes, trainable_layers=None, optimizer="adam",
                               learning_rate=learning_rate)

    def feed(paths, labels, copy, shuffle):
        return ImageBatches(paths, labels, batch_size=batch_size, image_size=(image_size, image_size), segment=segment,
                            augment=augment_hook(copy, seed), preprocess=built["backbone"].preprocess, shuffle=shuffle,
                            seed=seed, segment_after_augment=True)

    def fit(model, callbacks):
        check = validate_every_callback(feed(val_paths, val_y, 999, False), validate_every)
        history = model.fit(feed(train[0], train[1], 1, True), epochs=epochs, verbose=0,
                            callbacks=[*callbacks, check, EpochLog(f"fine-tune {label or name}")]).history
        return {**history, "validation_every_steps": [r[0] for r in check.records],
                "validation_loss": [r[1] for r in check.records], "validation_accuracy": [r[2] for r in check.records]}

    key = {"layer": layer, "image_size": image_size, "pretrained": str(pretrained), "epochs": epochs,
           "batch_size": batch_size, "learning_rate": learning_rate, "seed": seed, "validate_every": validate_every,
           "validation_cells": validation_cells, "augmentation": sorted(AUGMENTATION.items()), "data": data_key,
           "code": modelstore.code_version(sys.modules[__name__], build_backbone, fine_tune_model)}
    stored = modelstore.entry(paper, f"{name}-{label}" if label else name, key)
    model, _, history, _ = modelstore.train_or_load(
        stored, build=build, fit=fit, outputs=lambda m: {"val": m.predict(feed(val_paths, None, 999, False), verbose=0)})
    base = built["backbone"]
    extractor = keras.Model(model.input, base.model.output, name=f"{name}_{base.layer}_finetuned")
    return Backbone(name, extractor, base.preprocess, base.input_size, f"finetuned:{stored.dir.name}", base.layer), history


def features_for_rows(fused: dict, table_rows: np.ndarray, segmented: bool) -> np.ndarray:
    """The fused features of (cell, copy) rows (:func:`training_rows`): copy k reads version k of a
    segmented setting; an unsegmented setting reads ``"original"`` (copies are then identical)."""
    table_rows = np.asarray(table_rows)
    if not segmented:
        return fused["original"][table_rows[:, 0]]
    out = np.empty((len(table_rows), fused[0].shape[1]), dtype=np.float32)
    for copy in np.unique(table_rows[:, 1]):
        hit = table_rows[:, 1] == copy
        out[hit] = fused[int(copy)][table_rows[hit, 0]]
    return out
