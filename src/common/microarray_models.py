"""Paper 01 (Kandi et al.): the autoencoder, the four classifiers on its codes, prediction,
and the leave-one-series-out check.

Paper id ``01_kandi`` (notebook, results folder and claims/01_kandi.yaml): Kandi et al.,
"Analysis of LEUKEMIA classification using Microarray Data with Deep Learning models" (venue,
year and DOI not printed in the paper); the full reference is in claims/01_kandi.yaml.

Every layer is the paper's (section 2.4, Figures 1, 7, 8); pure Keras 3, so the
models run on TensorFlow, JAX or PyTorch. The 256-value codes are reshaped to
(16, 16, 1) for the CNN, (16, 16) for the RNN and (256,) for the MLP; the hybrid
takes both image and sequence views of the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import pandas as pd
from keras import layers

CODE_SIZE = 256
CLASSIFIERS = ("cnn", "rnn", "mlp", "hybrid")

# The notebook's profiles (``smoke``, ``demo``, ``paper``); the values all three share first.
PROFILE_SHARED = dict(
    seed=0,
    label_column="mol.biol",
    data_root=None,
    batch_size=32,
    test_fraction=0.2,
    logreg_C=0.01,
    eager=False,
    merge="paper_width",
    merge_width=16382,
    min_features=10000,
    loso_models=["hybrid"],
    synthetic=False,
    min_class_size=5,
    ae_epochs=50,
    epochs=30,
    folds=5,
    n_bootstrap=1000,
)
PROFILES = {
    "smoke": {
        **PROFILE_SHARED,
        "dataset": "cumida",
        "synthetic": True,
        "min_class_size": 4,
        "ae_epochs": 3,
        "epochs": 3,
        "folds": 2,
        "n_bootstrap": 200,
        "eager": True,
        "merge_width": 200,
        "min_features": 100,
        "loso_models": [],
    },
    "demo": {**PROFILE_SHARED, "dataset": "bioc_all"},  # the paper's settings on Bioconductor ALL
    "paper": {**PROFILE_SHARED, "dataset": "cumida"},
}
# The parameters that :func:`published_round`, :func:`leak_free_rounds` and
# :func:`leave_one_series_out` pass on to :func:`fit_and_score`.
FIT_OPTIONS = ("ae_epochs", "epochs", "batch_size", "logreg_C", "eager")


def build_autoencoder(
    n_features: int, *, code_size: int = CODE_SIZE, learning_rate: float = 1e-3
) -> tuple[keras.Model, keras.Model]:
    """Dense(code, ReLU) encoder, Dense(n_features, sigmoid) decoder; MSE, Adam.

    Returns ``(autoencoder, encoder)``. The paper's decoder is "a dense layer with 256
    neurons" with a sigmoid whose output is compared with the input (P161); a 256-wide
    output cannot be compared with a 16,382-wide input, so the decoder here is one
    sigmoid layer as wide as the input (P179: the sigmoid bounds the reconstructed
    values). It cannot reach standardized values outside [0, 1]: its MSE floor is
    :func:`sigmoid_mse_floor`, and the paper's losses (about 0.52) sit near it.
    """
    inputs = keras.Input((n_features,), name="expression")
    code = layers.Dense(code_size, activation="relu", name="encoder")(inputs)
    outputs = layers.Dense(n_features, activation="sigmoid", name="decoder")(code)
    autoencoder = keras.Model(inputs, outputs, name="autoencoder")
    autoencoder.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return autoencoder, keras.Model(inputs, code, name="encoder")


def _classifier(
    inputs: Any, x: Any, num_classes: int, name: str, loss: str = "categorical_crossentropy"
) -> keras.Model:
    """Softmax output on ``x``; Adam and the paper's loss."""
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name=name)
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    return model


def build_cnn(num_classes: int) -> keras.Model:
    """Fig. 7: Conv32-Pool-Drop.25-Conv64-Pool-Drop.25-Flatten-Dense128-Drop.5-softmax."""
    inputs = keras.Input((16, 16, 1), name="code_image")
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Dropout(0.25)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    return _classifier(inputs, x, num_classes, "cnn")


def build_rnn(num_classes: int) -> keras.Model:
    """SimpleRNN(128, ReLU), Dropout 0.05, softmax."""
    inputs = keras.Input((16, 16), name="code_sequence")
    x = layers.SimpleRNN(128, activation="relu")(inputs)
    x = layers.Dropout(0.05)(x)
    return _classifier(inputs, x, num_classes, "rnn")


def build_mlp(num_classes: int) -> keras.Model:
    """Dense 512 ReLU, Dense 256 ReLU, Dropout 0.05, Dropout 0.05, softmax (as listed)."""
    inputs = keras.Input((CODE_SIZE,), name="code")
    x = layers.Dense(512, activation="relu")(inputs)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(0.05)(x)
    x = layers.Dropout(0.05)(x)
    return _classifier(inputs, x, num_classes, "mlp")


def build_hybrid(num_classes: int) -> keras.Model:
    """Fig. 8: CNN branch (Conv32, Pool, Flatten) and LSTM branch (LSTM32, LSTM32),
    concatenated, Dense 64 ReLU, Dense 32 ReLU, softmax; sparse categorical cross-entropy."""
    image = keras.Input((16, 16, 1), name="code_image")
    sequence = keras.Input((16, 16), name="code_sequence")
    a = layers.Conv2D(32, 3, activation="relu")(image)
    a = layers.MaxPooling2D(2)(a)
    a = layers.Flatten()(a)
    b = layers.LSTM(32, return_sequences=True)(sequence)
    b = layers.LSTM(32)(b)
    x = layers.Concatenate()([a, b])
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dense(32, activation="relu")(x)
    return _classifier(
        [image, sequence], x, num_classes, "hybrid", loss="sparse_categorical_crossentropy"
    )


BUILDERS = {"cnn": build_cnn, "rnn": build_rnn, "mlp": build_mlp, "hybrid": build_hybrid}


def build_classifier(name: str, num_classes: int) -> keras.Model:
    if name not in BUILDERS:
        raise ValueError(f"unknown classifier {name!r}; choose one of {', '.join(BUILDERS)}")
    return BUILDERS[name](num_classes)


def architecture_table(n_features: int, num_classes: int) -> pd.DataFrame:
    """The autoencoder (for ``n_features`` inputs) and the four classifiers (for
    ``num_classes`` classes) as built here: one row per layer (model, layer, type, output
    shape, parameters), then each model's total. The counts are Keras' ``count_params()``
    (these networks have no non-trainable weights)."""
    autoencoder, _ = build_autoencoder(n_features)
    models = [autoencoder, *(build_classifier(name, num_classes) for name in CLASSIFIERS)]
    rows = []
    for model in models:
        for layer in model.layers:
            shape = layer.output.shape if hasattr(layer, "output") else ()
            rows.append(
                {
                    "model": model.name,
                    "layer": layer.name,
                    "type": type(layer).__name__,
                    "output shape": str(tuple(shape[1:])),
                    "parameters": int(layer.count_params()),
                }
            )
        rows.append(
            {
                "model": model.name,
                "layer": "total",
                "type": "",
                "output shape": "",
                "parameters": int(model.count_params()),
            }
        )
    return pd.DataFrame(rows)


def model_inputs(name: str, codes: np.ndarray) -> Any:
    """The codes in the shape(s) classifier ``name`` takes."""
    codes = np.asarray(codes, dtype="float32")
    if codes.ndim != 2 or codes.shape[1] != CODE_SIZE:
        raise ValueError(f"codes must have shape (n, {CODE_SIZE}), got {codes.shape}")
    image = codes.reshape(-1, 16, 16, 1)
    sequence = codes.reshape(-1, 16, 16)
    return {"cnn": image, "rnn": sequence, "mlp": codes, "hybrid": [image, sequence]}[name]


def model_targets(name: str, y: np.ndarray, num_classes: int) -> np.ndarray:
    """Integer labels for the hybrid (sparse loss), one-hot for the others."""
    y = np.asarray(y, dtype="int64")
    return y if name == "hybrid" else keras.utils.to_categorical(y, num_classes)


def fit_classifier(
    name: str,
    codes: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    epochs: int,
    *,
    batch_size: int = 32,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
    eager: bool = False,
) -> tuple[keras.Model, dict]:
    """Build and train classifier ``name`` on codes; return the model and its history.

    ``eager=True`` skips graph compilation: same arithmetic, faster for the tiny
    smoke-profile data, slower for real sizes."""
    keras.utils.set_random_seed(seed)
    model = build_classifier(name, num_classes)
    model.run_eagerly = eager
    val = None
    if validation is not None:
        val = (model_inputs(name, validation[0]), model_targets(name, validation[1], num_classes))
    history = model.fit(
        model_inputs(name, codes),
        model_targets(name, y, num_classes),
        epochs=epochs,
        batch_size=batch_size,
        validation_data=val,
        verbose=0,
        shuffle=True,
    )
    return model, history.history


def reconstruction_errors(autoencoder: keras.Model, X: np.ndarray) -> np.ndarray:
    """Per-sample mean squared reconstruction error."""
    X = np.asarray(X, dtype="float32")
    return np.mean((autoencoder.predict(X, verbose=0) - X) ** 2, axis=1)


@dataclass
class SubtypePredictor:
    """Raw expression rows in, subtype labels out: scaler -> encoder -> classifier.

    ``feature_names`` is the probe order the scaler was fitted on; new data must
    carry the same probes in the same order (a DataFrame is reordered by name when
    it has them all; an array must match the count).
    """

    feature_names: Sequence[str]
    scaler: Any
    encoder: keras.Model
    classifier: keras.Model
    classifier_name: str
    classes: Sequence[str]
    info: dict = field(default_factory=dict)

    def _matrix(self, X: Any) -> np.ndarray:
        names = [str(name) for name in self.feature_names]
        if hasattr(X, "columns"):
            cols = [str(c) for c in X.columns]
            missing = [c for c in names if c not in set(cols)]
            if missing:
                raise ValueError(
                    f"new samples lack {len(missing)} of the {len(names)} probes the model was "
                    f"trained on (first: {missing[0]!r}); supply the same platform's probes"
                )
            if cols != names:
                X = X.loc[:, names]
            return X.to_numpy(dtype=float)
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != len(names):
            raise ValueError(
                f"new samples have {X.shape[-1]} features, the model was trained on "
                f"{len(names)} probes; pass a DataFrame with probe-id columns or an array "
                "in the training probe order"
            )
        return X

    def predict_proba(self, X: Any) -> np.ndarray:
        X = self._matrix(X)
        if not np.all(np.isfinite(X)):
            raise ValueError(
                "new samples hold NaN or infinite expression values; impute or drop them first"
            )
        codes = self.encoder.predict(self.scaler.transform(X).astype("float32"), verbose=0)
        return self.classifier.predict(model_inputs(self.classifier_name, codes), verbose=0)

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[self.predict_proba(X).argmax(axis=1)]


def predict_subtype(predictor: SubtypePredictor, X: Any) -> np.ndarray:
    """Labels for new raw expression rows (see :class:`SubtypePredictor`)."""
    return predictor.predict(X)


# ------------------------------------------------------------------ the pipeline
def fit_autoencoder(
    X: np.ndarray,
    epochs: int,
    *,
    batch_size: int = 32,
    validation: np.ndarray | float = 0.2,
    seed: int = 0,
    eager: bool = False,
) -> tuple[keras.Model, keras.Model, dict]:
    """Train the autoencoder on standardized rows ``X``; ``validation`` is a held-out
    matrix or a fraction of ``X`` (taken after a seeded shuffle; 20% is our choice: the
    paper monitors a validation loss, P163, without saying on what). Returns
    (autoencoder, encoder, history)."""
    keras.utils.set_random_seed(seed)
    X = np.asarray(X, dtype="float32")
    if isinstance(validation, float):
        order = np.random.default_rng(seed).permutation(len(X))
        n_val = max(1, int(round(validation * len(X))))
        X, X_val = X[order[n_val:]], X[order[:n_val]]
    else:
        X_val = np.asarray(validation, dtype="float32")
    autoencoder, encoder = build_autoencoder(X.shape[1])
    autoencoder.run_eagerly = eager
    history = autoencoder.fit(
        X,
        X,
        epochs=epochs,
        batch_size=batch_size,
        validation_data=(X_val, X_val),
        verbose=0,
        shuffle=True,
    )
    return autoencoder, encoder, history.history


def logistic_baseline(
    X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, *, C: float = 0.01, seed: int = 0
) -> np.ndarray:
    """L2-regularized multinomial logistic regression on standardized genes; test probabilities."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    return clf.fit(X_train, y_train).predict_proba(X_test)


def fit_and_score(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    num_classes: int,
    *,
    ae_epochs: int,
    epochs: int,
    batch_size: int = 32,
    models: Sequence[str] = CLASSIFIERS,
    ae_validation: np.ndarray | float = 0.2,
    logreg_C: float = 0.01,
    seed: int = 0,
    X_autoencoder: np.ndarray | None = None,
    eager: bool = False,
) -> dict[str, Any]:
    """One train/test round on already standardized (and, if asked, balanced) rows.

    The autoencoder is fitted on ``X_autoencoder`` (default: the training rows),
    every classifier on the training codes; returns test probabilities per model
    (plus ``logreg`` on the genes), the autoencoder, the encoder, its history and
    the fitted classifiers.
    """
    X_ae = X_train if X_autoencoder is None else X_autoencoder
    autoencoder, encoder, ae_history = fit_autoencoder(
        X_ae, ae_epochs, batch_size=batch_size, validation=ae_validation, seed=seed, eager=eager
    )
    codes_train = encoder.predict(np.asarray(X_train, dtype="float32"), verbose=0)
    codes_test = encoder.predict(np.asarray(X_test, dtype="float32"), verbose=0)
    proba, fitted = {}, {}
    classes_present = np.unique(y_train)
    if classes_present.size != num_classes:
        raise ValueError(
            f"the training rows hold {classes_present.size} of {num_classes} classes; "
            "lower the number of folds or raise the minimum class size"
        )
    for i, name in enumerate(models):
        model, _ = fit_classifier(
            name,
            codes_train,
            y_train,
            num_classes,
            epochs,
            batch_size=batch_size,
            seed=seed + i,
            eager=eager,
        )
        proba[name] = model.predict(model_inputs(name, codes_test), verbose=0)
        fitted[name] = model
    proba["logreg"] = logistic_baseline(X_train, y_train, X_test, C=logreg_C, seed=seed)
    return {
        "proba": proba,
        "autoencoder": autoencoder,
        "encoder": encoder,
        "ae_history": ae_history,
        "classifiers": fitted,
    }


def published_round(
    X: np.ndarray,
    y: np.ndarray,
    *,
    smote: bool,
    test_fraction: float = 0.2,
    seed: int = 0,
    **fit_kw: Any,
) -> dict[str, Any]:
    """The paper's order: StandardScaler on all samples, SMOTE on all samples (if
    ``smote``), autoencoder on all (balanced) rows, then a stratified split; the
    classifiers train on the training codes and are scored on the test codes."""
    from sklearn.preprocessing import StandardScaler

    from common.splits import make_split

    scaler = StandardScaler().fit(X)
    Xs = scaler.transform(X)
    split = make_split(
        y,
        "published",
        X=Xs,
        balance="smote" if smote else None,
        paper_order=("scale", "balance", "split"),
        fractions=(1 - test_fraction, test_fraction),
        smote_fallback="reduce_k",
        seed=seed,
    )
    yb = split.samples["y"].to_numpy()
    out = fit_and_score(
        split.X[split.train],
        yb[split.train],
        split.X[split.test],
        int(np.max(y)) + 1,
        X_autoencoder=split.X,
        seed=seed,
        **fit_kw,
    )
    # autoencoder_rows: the split's rows the autoencoder was fitted on (all of them), for the
    # leakage sheet
    return {
        **out,
        "split": split,
        "y_test": yb[split.test],
        "scaler": scaler,
        "X_all": split.X,
        "autoencoder_rows": np.arange(len(split.X)),
    }


def leak_free_rounds(
    X: np.ndarray,
    y: np.ndarray,
    *,
    smote: bool,
    folds: int = 5,
    groups: np.ndarray | None = None,
    seed: int = 0,
    **fit_kw: Any,
) -> dict[str, Any]:
    """Split first (stratified k-fold, patient-grouped when ``groups`` is given); in
    every fold the scaler, SMOTE and the autoencoder see the training fold only.

    Returns the pooled out-of-fold ``y_test`` and ``proba`` per model, each sample's
    ``fold``, and the first fold's fitted pieces (``first``) for prediction on new data.
    """
    from sklearn.preprocessing import StandardScaler

    from common.balance import smote as smote_resample
    from common.splits import stratified_kfold

    num_classes = int(np.max(y)) + 1
    fold_of = np.full(len(y), -1)
    proba: dict[str, np.ndarray] = {}
    first = None
    for k, (train, test) in enumerate(stratified_kfold(y, k=folds, groups=groups, seed=seed)):
        scaler = StandardScaler().fit(X[train])
        X_tr, y_tr = scaler.transform(X[train]), y[train]
        if smote:
            X_tr, y_tr, _ = smote_resample(X_tr, y_tr, seed=seed, fallback="reduce_k")
        out = fit_and_score(
            X_tr, y_tr, scaler.transform(X[test]), num_classes, seed=seed + k, **fit_kw
        )
        for name, p in out["proba"].items():
            proba.setdefault(name, np.zeros((len(y), num_classes)))[test] = p
        fold_of[test] = k
        if first is None:
            first = {**out, "scaler": scaler, "train": train, "test": test}
    return {"y_test": np.asarray(y), "proba": proba, "fold": fold_of, "first": first}


def leave_one_series_out(
    X: np.ndarray,
    y: np.ndarray,
    studies: Sequence[str],
    *,
    smote: bool,
    models: Sequence[str] = CLASSIFIERS,
    seed: int = 0,
    **fit_kw: Any,
) -> dict[str, Any]:
    """Hold out one study (GEO series; both chips of a series together) at a time.

    The scaler, SMOTE and the autoencoder see the other studies only. A class that
    no other study holds cannot be learnt: its held-out samples are not ``scorable``
    and the models' probabilities for unseen classes are 0. ``models=()`` runs the
    logistic-regression baseline alone (no autoencoder). Returns ``y_test`` (every
    sample), ``proba`` per model (the held-out study's rows), ``scorable`` and ``study``.
    """
    from sklearn.preprocessing import StandardScaler

    from common.balance import smote as smote_resample

    y, studies = np.asarray(y), np.asarray(studies, dtype=str)
    if np.unique(studies).size < 2:
        raise ValueError("leave-one-series-out needs samples from at least two series")
    num_classes = int(np.max(y)) + 1
    proba: dict[str, np.ndarray] = {}
    scorable = np.zeros(len(y), dtype=bool)
    for k, study in enumerate(np.unique(studies)):
        test, train = studies == study, studies != study
        seen = np.unique(y[train])
        scaler = StandardScaler().fit(X[train])
        X_tr, y_tr = scaler.transform(X[train]), np.searchsorted(seen, y[train])
        if smote:
            X_tr, y_tr, _ = smote_resample(X_tr, y_tr, seed=seed, fallback="reduce_k")
        X_te = scaler.transform(X[test])
        if models:
            out = fit_and_score(
                X_tr, y_tr, X_te, seen.size, models=models, seed=seed + k, **fit_kw
            )["proba"]
        else:
            out = {
                "logreg": logistic_baseline(
                    X_tr, y_tr, X_te, C=fit_kw.get("logreg_C", 0.01), seed=seed
                )
            }
        for name, p in out.items():
            proba.setdefault(name, np.zeros((len(y), num_classes)))[np.ix_(test, seen)] = p
        scorable[test] = np.isin(y[test], seen)
    return {"y_test": y, "proba": proba, "scorable": scorable, "study": studies}


def scored_samples(dataset: Any, result: dict[str, Any], *, protocol: str) -> dict[str, Any]:
    """Who each scored row of ``result`` is, as keyword arguments of
    :func:`common.evaluate.prediction_rows` (``samples``, ``split`` and, for ``leak_free``,
    ``fold``).

    ``leak_free`` (a :func:`leak_free_rounds` result) scores every sample of ``dataset`` out
    of fold. ``published`` (a :func:`published_round` result) scores its split's test rows;
    a SMOTE row among them has no patient and is named after the sample it was drawn from
    (``sample``: ``"<kind> from <sample id>"``, ``sample_id``: ``"<kind>-<row>"``).
    """
    from common.evaluate import dataset_samples

    if protocol == "leak_free":
        return dict(samples=dataset_samples(dataset), split="out-of-fold", fold=result["fold"])
    if protocol != "published":
        raise ValueError(f"unknown protocol {protocol!r}; choose published or leak_free")
    split = result["split"]
    rows = split.samples.iloc[split.test]
    known = dataset_samples(dataset, index=rows["origin"].to_numpy())
    made = (rows["kind"] != "original").to_numpy()
    known.loc[made, "sample"] = [
        f"{k} from {s}" for k, s in zip(rows["kind"][made], known["sample_id"][made])
    ]
    known.loc[made, "sample_id"] = [
        f"{k}-{i}" for k, i in zip(rows["kind"][made], split.test[made])
    ]
    known.loc[made, "patient"] = ""
    return dict(samples=known, split="test")


def accuracy_with_ci(
    y_true: np.ndarray, y_pred: np.ndarray, *, n_bootstrap: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """Accuracy and its 95% percentile-bootstrap interval (NaN for no samples)."""
    correct = np.asarray(y_true) == np.asarray(y_pred)
    if correct.size == 0:
        return np.nan, np.nan, np.nan
    draws = np.random.default_rng(seed).integers(0, correct.size, (n_bootstrap, correct.size))
    low, high = (
        np.percentile(correct[draws].mean(axis=1), [2.5, 97.5]) if n_bootstrap else (np.nan, np.nan)
    )
    return float(correct.mean()), float(low), float(high)


def loso_summary(
    loso: dict[str, Any], pooled_proba: dict[str, np.ndarray], models: Sequence[str]
) -> pd.DataFrame:
    """Per held-out study (and ``all``): samples, scorable samples, and each model's accuracy on the
    scorable samples, left out (``leave-one-series-out``) and in the pooled cross-validation."""
    rows = []
    y, studies, scorable = loso["y_test"], loso["study"], loso["scorable"]
    for study in [*np.unique(studies), "all"]:
        in_study = np.ones(len(y), dtype=bool) if study == "all" else studies == study
        mask = in_study & scorable
        row = {
            "held-out series": study,
            "samples": int(in_study.sum()),
            "scorable": int(mask.sum()),
        }
        for name in models:
            for label, proba in (
                ("leave-one-series-out", loso["proba"][name]),
                ("pooled CV", pooled_proba[name]),
            ):
                row[f"{name} {label}"] = (
                    float(np.mean(proba[mask].argmax(1) == y[mask])) if mask.any() else np.nan
                )
        rows.append(row)
    return pd.DataFrame(rows)


def sigmoid_mse_floor(X: np.ndarray) -> float:
    """The smallest mean squared error any output bounded to [0, 1] can reach on ``X``
    (every value clipped to [0, 1]): the floor a sigmoid decoder faces on standardized data."""
    X = np.asarray(X, dtype=float)
    return float(np.mean((X - np.clip(X, 0.0, 1.0)) ** 2))


def loso_metric_rows(
    loso: dict[str, Any],
    pooled_proba: dict[str, np.ndarray],
    models: Sequence[str],
    *,
    suffix: str = "+SMOTE",
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Tidy metric rows (``accuracy_scorable``, with 95% bootstrap intervals) on the scorable
    samples: protocol ``leave_one_series_out`` and, on the same samples, ``leak_free`` (pooled
    CV)."""
    from common.evaluate import ROW_COLUMNS

    y, mask = loso["y_test"], loso["scorable"]
    rows = []
    for name in models:
        for protocol, proba in (
            ("leave_one_series_out", loso["proba"][name]),
            ("leak_free", pooled_proba[name]),
        ):
            value, low, high = accuracy_with_ci(
                y[mask], proba[mask].argmax(1), n_bootstrap=n_bootstrap, seed=seed
            )
            rows.append(
                {
                    "protocol": protocol,
                    "model": f"{name}{suffix}",
                    "class": "overall",
                    "metric": "accuracy_scorable",
                    "value": value,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return pd.DataFrame(rows, columns=ROW_COLUMNS)
