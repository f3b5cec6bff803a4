"""Paper 03 (Vinurajan et al., OADLS-ALDC): the attention convolutional recurrent network
(ACRNN) of section 3.4, the RMSProp hyperparameter search of section 3.5, the comparison
models of Table 3 that can be trained here (a plain CNN and a CNN with an ECA module), and
the tables and figure values of Tables 2-3 and Figures 6-7 and 10-11.

Paper id ``03_vinurajan`` (notebook, results folder and claims/03_vinurajan.yaml): I. Vinurajan,
K. P. SanalKumar and S. Anu H Nair, "Optimal Attention based Deep Learning with Segmentation
Approach for Automated Leukemia Detection and Classification", 2023 (venue and DOI not printed
in the paper); the full reference is in claims/03_vinurajan.yaml.

The ACRNN, as section 3.4 lists it (pure Keras 3, every backend):

- l1-l2: Conv 32 filters (3, 5), stride 1; max-pool (4, 3)
- l3-l4: Conv 64 filters (3, 1); max-pool (4, 1)
- l5-l6: Conv 128 filters (1, 5); max-pool (1, 3)
- l7-l8: Conv 256 filters (3, 3); max-pool (2, 2)
- batch normalisation after every convolution, then ReLU; L2 1e-4 on every weight
- the final map (H', W', 256) read as a sequence of T = W' regional feature maps delta_t
  (column t: H' regions of 256 channels; the (1, 5) "time" kernels of l5-l6 run along W)
- l9: Bi-GRU of 256 units (tanh) whose input at step t is the attention of equations 4-6,
  epsilon_t = g(delta_t, h_{t-1}) = sum_ij lambda_t,ij delta_t,ij with
  lambda_t = softmax(tanh(delta_t W_delta + h_{t-1} W_h) W_a): the previous GRU state
  queries the regions of the current map (each direction has its own attention, E = 256)
- l10: Bi-GRU of 256 units (tanh) over l9's outputs; its final states (2 x 256)
- dense softmax on l10's output: "the features are inputted to the Bi-GRU layer ...
  Lastly, this feature is fed into an FC layer with the softmax" (section 3.4).

Pools use ``padding="same"`` so that any grid at least 1 x 1 after pooling works
(:func:`pooled_grid` gives the final H' x W').
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import product
from typing import Any

import keras
import numpy as np
import pandas as pd
from keras import layers, ops, regularizers

L2 = 1e-4
#: (filters, kernel, pool) of the four convolution pairs l1-l8, as section 3.4 lists them
CONV_PAIRS = (
    (32, (3, 5), (4, 3)),
    (64, (3, 1), (4, 1)),
    (128, (1, 5), (1, 3)),
    (256, (3, 3), (2, 2)),
)
GRU_UNITS = 256
#: The paper id: the model store's folder and the results folder
PAPER_ID = "03_vinurajan"
#: Table 3's comparison models that can be trained here; :data:`END_TO_END` are trained on the
#: images, the others are frozen ImageNet feature extractors under a trained softmax layer
BASELINES = ("cnn", "cnn_eca", "vit", "vgg16", "densenet121", "mobilenetv2", "inceptionv3")
END_TO_END = ("cnn", "cnn_eca", "vit")
#: the frozen-feature softmax heads train this many times the end-to-end models' epochs
HEAD_EPOCH_FACTOR = 5

# The notebook's profiles (``smoke``, ``demo``, ``paper``); the values all three share first.
PROFILE_SHARED = dict(
    seed=0,
    data_root=None,
    difficulty=0.5,
    subset_normal=0,
    subset_all=0,
    subset_seed=0,
    feature_layer="block2e_add",
    deeper_layer="block3e_add",
    batch_size=32,
    learning_rates=[1e-3, 1e-4],
    rhos=[0.9, 0.99],
    test_fraction=0.2,
    val_fraction=0.15,
    eager=False,
)
PROFILES = {
    "smoke": {
        **PROFILE_SHARED,
        "synthetic": True,
        "n_per_class": 20,
        "patients_per_class": 4,
        "image_size": 96,
        "pretrained": "none",
        "epochs": 2,
        "deeper_epochs": 1,
        "learning_rates": [1e-3],
        "baselines": ["cnn", "cnn_eca"],
        "baseline_epochs": 1,
        "n_bootstrap": 200,
        "eager": True,
    },
    "demo": {
        **PROFILE_SHARED,
        "synthetic": True,
        "n_per_class": 80,
        "patients_per_class": 8,
        "image_size": 128,
        "pretrained": "none",
        "epochs": 10,
        "deeper_epochs": 10,
        "baselines": list(BASELINES),
        "baseline_epochs": 5,
        "n_bootstrap": 1000,
    },
    "paper": {
        **PROFILE_SHARED,
        "synthetic": False,
        "n_per_class": 0,
        "patients_per_class": 0,
        "subset_normal": 1927,
        "subset_all": 1948,
        "image_size": 224,
        "pretrained": "imagenet",
        "epochs": 30,
        "deeper_epochs": 30,
        "baselines": list(BASELINES),
        "baseline_epochs": 10,
        "n_bootstrap": 1000,
    },
}


class RegionAttention(layers.Layer):
    """Equations 4-6: attention of a query state ``h`` (E) over the regions of a map ``delta``
    (H', W', C). W_delta is C x C, W_h is E x C, W_a is C x 1, as the paper gives them.

    Returns epsilon (C,) and, with ``return_weights``, lambda (H' * W').
    """

    def __init__(self, l2: float = L2, **kwargs):
        super().__init__(**kwargs)
        self.l2 = l2

    def build(self, input_shape):
        (_, h, w, c), (_, e) = input_shape
        reg = regularizers.L2(self.l2)
        self.w_delta = self.add_weight(
            name="W_delta", shape=(c, c), initializer="glorot_uniform", regularizer=reg
        )
        self.w_h = self.add_weight(
            name="W_h", shape=(e, c), initializer="glorot_uniform", regularizer=reg
        )
        self.w_a = self.add_weight(
            name="W_a", shape=(c, 1), initializer="glorot_uniform", regularizer=reg
        )

    def call(self, inputs, return_weights: bool = False):
        delta, h = inputs
        regions = ops.reshape(
            delta, (-1, delta.shape[1] * delta.shape[2], delta.shape[3])
        )  # (B, R, C)
        zeta = ops.matmul(
            ops.tanh(
                ops.matmul(regions, self.w_delta) + ops.expand_dims(ops.matmul(h, self.w_h), 1)
            ),
            self.w_a,
        )  # (B, R, 1)
        # softmax over the regions; with a single region lambda is 1 (written out: Keras warns on a
        # size-1 softmax)
        lam = ops.softmax(zeta, axis=1) if regions.shape[1] != 1 else ops.ones_like(zeta)
        epsilon = ops.sum(lam * regions, axis=1)  # (B, C)
        return (epsilon, ops.squeeze(lam, -1)) if return_weights else epsilon

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


@keras.saving.register_keras_serializable(package="common.acrnn")
class AttentionGRUCell(layers.Layer):
    """One step of the first Bi-GRU layer (l9) with the attention of equations 4-6 in front:
    epsilon_t = g(delta_t, h_{t-1}), then h_t = GRU(epsilon_t, h_{t-1}).

    The step's input is the t-th regional feature map flattened, ``regions * channels``
    values; the state and the output are h_t (``units``). Wrap it in ``layers.RNN``.
    """

    def __init__(self, units: int, regions: int, channels: int, l2: float = L2, **kwargs):
        super().__init__(**kwargs)
        self.units, self.regions, self.channels, self.l2 = (
            int(units),
            int(regions),
            int(channels),
            l2,
        )
        self.state_size = self.units
        self.output_size = self.units
        reg = regularizers.L2(l2)
        self.attention = RegionAttention(l2, name="attention")
        self.gru = layers.GRUCell(
            self.units,
            activation="tanh",
            kernel_regularizer=reg,
            recurrent_regularizer=reg,
            bias_regularizer=reg,
            name="gru",
        )

    def build(self, input_shape):
        self.attention.build([(None, self.regions, 1, self.channels), (None, self.units)])
        self.gru.build((None, self.channels))
        self.built = True

    def call(self, inputs, states, training=False):
        h_prev = states[0] if isinstance(states, (list, tuple)) else states
        delta = ops.reshape(inputs, (-1, self.regions, 1, self.channels))  # the t-th regional map
        epsilon = self.attention([delta, h_prev])  # equations 4-6
        h, _ = self.gru(epsilon, [h_prev], training=training)
        return h, [h]

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "regions": self.regions,
            "channels": self.channels,
            "l2": self.l2,
        }


def pooled_grid(height: int, width: int) -> tuple[int, int]:
    """(H', W') of the ACRNN's last map for an input grid of ``height`` x ``width``: each of the
    four ``same`` poolings divides by its stride, rounding up."""
    for _, _, (ph, pw) in CONV_PAIRS:
        height, width = -(-height // ph), -(-width // pw)
    return height, width


def build_acrnn(
    input_shape: Sequence[int], *, num_classes: int = 2, l2: float = L2, name: str = "acrnn"
) -> keras.Model:
    """The ACRNN of section 3.4 on a (H, W, C) feature grid (see the module docstring):
    convolutions -> attention inside the first Bi-GRU -> second Bi-GRU -> softmax."""
    reg = regularizers.L2(l2)
    inputs = keras.Input(tuple(input_shape), name="feature_grid")
    x = inputs
    k = 1
    for filters, kernel, pool in CONV_PAIRS:
        for _ in range(2):
            x = layers.Conv2D(
                filters,
                kernel,
                padding="same",
                kernel_regularizer=reg,
                bias_regularizer=reg,
                name=f"l{k}_conv",
            )(x)
            x = layers.BatchNormalization(
                gamma_regularizer=reg, beta_regularizer=reg, name=f"l{k}_bn"
            )(x)
            x = layers.ReLU(name=f"l{k}_relu")(x)
            k += 1
        x = layers.MaxPooling2D(pool, strides=pool, padding="same", name=f"pool_{k - 2}_{k - 1}")(x)
    h_, w_, c_ = x.shape[1:]  # (H', W', 256): the regional feature maps
    seq = layers.Permute((2, 1, 3), name="columns_as_time")(x)  # T = W' steps, each an H' x 1 map
    seq = layers.Reshape((w_, h_ * c_), name="regional_maps")(seq)
    cell = AttentionGRUCell(GRU_UNITS, h_, c_, l2, name="attention_gru")
    # unrolled: T = W' is a handful of steps (4 at 224 px), and the unrolled graph compiles faster
    # than a loop
    seq = layers.Bidirectional(
        layers.RNN(cell, return_sequences=True, unroll=True), name="l9_bigru"
    )(seq)
    gru = dict(
        activation="tanh", kernel_regularizer=reg, recurrent_regularizer=reg, bias_regularizer=reg
    )
    state = layers.Bidirectional(layers.GRU(GRU_UNITS, **gru), name="l10_bigru")(seq)  # (2 x 256)
    outputs = layers.Dense(
        num_classes,
        activation="softmax",
        kernel_regularizer=reg,
        bias_regularizer=reg,
        name="softmax",
    )(state)
    return keras.Model(inputs, outputs, name=name)


def spatial_maps(
    name: str,
    layer_names: Sequence[str],
    *,
    input_size: int,
    pretrained: str = "none",
    seed: int = 0,
) -> dict:
    """Feature-map backbones (:class:`~common.backbones.Backbone`, ``spatial=True``) of ``name`` at
    several layers from one build: the network is built up to the last of ``layer_names`` (list them
    from shallow to deep) and the others are read from inside it, with the same weights and cache
    keys
    as building each on its own. Returns {layer: Backbone}."""
    import dataclasses

    from common.backbones import build_backbone

    layer_names = list(dict.fromkeys(layer_names))
    deepest = build_backbone(
        name,
        input_size=input_size,
        pretrained=pretrained,
        layer=layer_names[-1],
        spatial=True,
        seed=seed,
    )
    maps = {}
    for layer in layer_names[:-1]:
        try:
            tensor = deepest.model.get_layer(layer).output
        except ValueError:
            raise ValueError(
                f"{name} up to {layer_names[-1]!r} has no layer {layer!r}; "
                "list the layers from shallow to deep"
            ) from None
        model = keras.Model(deepest.model.input, tensor, name=f"{name}_{layer}")
        maps[layer] = dataclasses.replace(deepest, model=model, layer=f"{layer}:grid")
    maps[layer_names[-1]] = deepest
    return maps


# ----------------------------------------------------------- comparison models
class ECA(layers.Layer):
    """Efficient channel attention (Wang et al. 2020): global average pool, a 1-D convolution
    of size ``k`` across channels, sigmoid, channel-wise rescaling."""

    def __init__(self, k: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.k = k
        self.conv = layers.Conv1D(1, k, padding="same", use_bias=False)

    def call(self, x):
        s = ops.mean(x, axis=(1, 2))[..., None]  # (B, C, 1)
        w = ops.sigmoid(self.conv(s))[:, None, :, 0]  # (B, 1, C)
        return x * ops.expand_dims(w, 1)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


def build_image_cnn(
    input_size: int, *, num_classes: int = 2, eca: bool = False, name: str | None = None
) -> keras.Model:
    """Table 3's "CNN model" (and, with ``eca``, "CNN-ECA module"): the cited works give no
    layers, so both are the same small stack (3 x [Conv 3x3 32/64/128, BN, ReLU, max-pool 2]),
    global average pooling and a softmax; the ECA variant adds an ECA block after each stage."""
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(1 / 255.0)(inputs)
    for i, filters in enumerate((32, 64, 128), start=1):
        x = layers.Conv2D(filters, 3, padding="same", name=f"conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = layers.ReLU()(x)
        if eca:
            x = ECA(3, name=f"eca{i}")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=name or ("cnn_eca" if eca else "cnn"))


def feature_head(n_features: int, *, num_classes: int = 2, name: str = "head") -> keras.Model:
    """A softmax layer on frozen backbone features (Table 3's ImageNet baselines here)."""
    inputs = keras.Input((n_features,), name="features")
    x = layers.BatchNormalization(name="standardise")(inputs)
    return keras.Model(inputs, layers.Dense(num_classes, activation="softmax")(x), name=name)


# ------------------------------------------------------------- RMSProp search
def compile_rmsprop(model: keras.Model, learning_rate: float, rho: float) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate, rho=rho),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def fit_on_grid(
    model: keras.Model,
    grid: np.ndarray,
    y: np.ndarray,
    *,
    train: np.ndarray,
    val: np.ndarray,
    epochs: int,
    batch_size: int,
    eager: bool = False,
    callbacks: Sequence[Any] = (),
    label: str = "acrnn",
) -> dict:
    """Train a compiled ``model`` on ``grid[train]`` (validated on ``grid[val]``) with one progress
    line per epoch; ``eager`` runs Keras eagerly (faster only for tiny smoke data). Returns the
    history."""
    from common.progress import EpochLog

    model.run_eagerly = bool(eager)
    optimizer = model.optimizer
    log = EpochLog(
        f"{label} lr {float(optimizer.learning_rate.numpy()):g} rho {float(optimizer.rho):g}"
    )
    return model.fit(
        grid[train],
        y[train],
        validation_data=(grid[val], y[val]),
        epochs=epochs,
        batch_size=batch_size,
        callbacks=[*callbacks, log],
        verbose=0,
    ).history


def positive_precision(y_true: np.ndarray, proba: np.ndarray, *, positive: int = 1) -> float:
    """Equation 11, P = TP / (TP + FP) for the positive class; 0 when nothing is predicted
    positive."""
    pred = np.asarray(proba).argmax(1)
    called = pred == positive
    return float((np.asarray(y_true)[called] == positive).mean()) if called.any() else 0.0


def rmsprop_search(
    build: Callable[[], keras.Model],
    fit: Callable[..., dict],
    predict_val: Callable[[keras.Model], np.ndarray],
    y_val: np.ndarray,
    learning_rates: Sequence[float],
    rhos: Sequence[float],
    *,
    seed: int = 0,
    positive: int = 1,
    store: Callable[[float, float], Any] | None = None,
) -> tuple[keras.Model, dict, list[dict]]:
    """Section 3.5: train one model per (learning rate, rho) and keep the one whose
    validation precision (equations 10-11) is highest (ties: higher validation accuracy,
    then the earlier candidate).

    ``build()`` returns a fresh model, ``fit(model)`` trains it and returns its history,
    ``predict_val(model)`` gives validation probabilities. Returns (best model, its
    history, one row per candidate).

    ``store(lr, rho)``, when given, returns the :class:`~common.modelstore.StoredModel`
    of that candidate: each candidate is then trained once and kept with its validation
    probabilities (``fit(model, callbacks)`` receives the resumable backup).
    """
    from common import modelstore

    best, best_key, best_history, best_index, rows = None, None, None, -1, []
    for k, (lr, rho) in enumerate(product(learning_rates, rhos)):
        keras.utils.set_random_seed(seed)
        if store is None:
            model = compile_rmsprop(build(), lr, rho)
            history = fit(model)
            proba = predict_val(model)
        else:
            model, kept, history, _ = modelstore.train_or_load(
                store(lr, rho),
                build=lambda lr=lr, rho=rho: compile_rmsprop(build(), lr, rho),
                fit=fit,
                outputs=lambda m: {"val": predict_val(m)},
            )
            proba = kept["val"]
        precision = positive_precision(y_val, proba, positive=positive)
        accuracy = float((proba.argmax(1) == np.asarray(y_val)).mean())
        rows.append(
            {"learning_rate": lr, "rho": rho, "val_precision": precision, "val_accuracy": accuracy}
        )
        key = (precision, accuracy)
        if best_key is None or key > best_key:
            best, best_key, best_history, best_index = model, key, history, k
    for k, row in enumerate(rows):
        row["selected"] = k == best_index
    return best, best_history, rows


def balanced_subset(y: np.ndarray, counts: dict[int, int], *, seed: int = 0) -> np.ndarray:
    """Indices of a seeded random subset with ``counts[c]`` images of class c (sorted).

    Paper 03's Table 1 uses 1,927 normal and 1,948 ALL images of the Kaggle C-NMC
    release without saying which: this draws them uniformly without replacement per
    class with ``numpy.random.default_rng(seed)``.
    """
    rng = np.random.default_rng(seed)
    picked = []
    for cls, n in counts.items():
        pool = np.flatnonzero(np.asarray(y) == cls)
        if n > pool.size:
            raise ValueError(
                f"class {cls} has {pool.size} images, fewer than the {n} asked for; lower the count"
            )
        picked.append(rng.choice(pool, size=n, replace=False))
    return np.sort(np.concatenate(picked))


# ------------------------------------------------------- Tables 2-3, Figures 6-7 and 10-11
TABLE_METRICS = ("accuracy", "precision", "sensitivity", "specificity", "f1")


def _metric_row(keyed: pd.DataFrame, protocol: str, model: str, cls: str, metric: str) -> pd.Series:
    """One tidy metric row; the class-mean ('macro') row stands for a class average, plain accuracy
    for 'Overall'."""
    if cls == "Overall":
        cls = "overall" if metric == "accuracy" else "macro"
    try:
        return keyed.loc[(protocol, model, cls, metric)]
    except KeyError:
        raise ValueError(
            f"no {metric} row for model {model!r}, class {cls!r} under {protocol!r}; "
            "evaluate it first"
        ) from None


def per_class_values(
    rows: pd.DataFrame,
    *,
    model: str,
    protocol: str,
    classes: Sequence[str],
    metrics: Sequence[str] = TABLE_METRICS,
) -> pd.DataFrame:
    """Table 2's numbers in percent: one row per metric, one column per class and 'Overall'
    (plain accuracy; class means of the other metrics, as the paper's Overall column is)."""
    keyed = rows.set_index(["protocol", "model", "class", "metric"]).sort_index()
    columns = [*classes, "Overall"]
    return pd.DataFrame(
        {
            c: [100 * float(_metric_row(keyed, protocol, model, c, m)["value"]) for m in metrics]
            for c in columns
        },
        index=list(metrics),
    )


def per_class_table(
    rows: pd.DataFrame,
    *,
    model: str,
    protocol: str,
    classes: Sequence[str],
    metrics: Sequence[str] = TABLE_METRICS,
) -> pd.DataFrame:
    """Table 2's layout: one row per class and an 'Overall' row, one column per metric, cells
    "value [95% CI]" in percent (Overall: plain accuracy, class means of the others)."""
    from common.evaluate import format_value

    keyed = rows.set_index(["protocol", "model", "class", "metric"]).sort_index()
    table = []
    for c in [*classes, "Overall"]:
        cells = {m: _metric_row(keyed, protocol, model, c, m) for m in metrics}
        table.append(
            {
                "class": c,
                **{
                    m: format_value(r["value"], ci_low=r["ci_low"], ci_high=r["ci_high"])
                    for m, r in cells.items()
                },
            }
        )
    return pd.DataFrame(table)


def comparison_values(
    rows: pd.DataFrame,
    *,
    models: Sequence[str],
    protocol: str,
    metrics: Sequence[str] = TABLE_METRICS,
) -> pd.DataFrame:
    """Table 3's numbers in percent for Figures 10-11: one row per metric, one column per model
    (plain accuracy; class means of the other metrics)."""
    keyed = rows.set_index(["protocol", "model", "class", "metric"]).sort_index()
    return pd.DataFrame(
        {
            name: [
                100 * float(_metric_row(keyed, protocol, name, "Overall", m)["value"])
                for m in metrics
            ]
            for name in models
        },
        index=list(metrics),
    )


# ----------------------------------------------------------------- the run's plan
def starting_weights(baselines: Sequence[str], *, pretrained: str = "imagenet") -> dict[str, str]:
    """Each network's starting weights, as :func:`common.preflight.preflight` checks them:
    EfficientNetV2M and the ImageNet comparison models start from ``pretrained``, the ACRNN and
    the end-to-end models (:data:`END_TO_END`) from random weights. Raises ValueError for a
    baseline that is not one of :data:`BASELINES`."""
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; choose from {list(BASELINES)}")
    return {
        "efficientnetv2m": pretrained,
        "acrnn": "none",
        **{b: "none" if b in END_TO_END else pretrained for b in baselines},
    }


def bytes_per_image(image_size: int) -> int:
    """Disk bytes one image needs at ``image_size`` px: the pre-processed PNG (at most 3 bytes a
    pixel), EfficientNetV2M's stage-2 (1/4 size, 48 channels) and stage-3 (1/8 size, 80 channels)
    maps in float32, and a comparison model's pooled features (up to 5,000 float32 values)."""
    side = int(image_size)
    return 3 * side**2 + 4 * 48 * (side // 4) ** 2 + 4 * 80 * (side // 8) ** 2 + 4 * 5000


def table1_counts(
    y: np.ndarray, subjects: Sequence[str], *, classes: Sequence[str]
) -> pd.DataFrame:
    """Table 1's layout: images and subjects per class (``y`` indexes ``classes``), in the order
    of ``classes``, and a 'Total' row."""
    named = pd.Series(np.asarray(y)).map(dict(enumerate(classes)))
    table = pd.DataFrame(
        {
            "images": named.value_counts(),
            "subjects": pd.Series(np.asarray(subjects)).groupby(named.values).nunique(),
        }
    )
    table = table.reindex(list(classes))
    table.loc["Total"] = [len(y), len(set(subjects))]
    return table


# ------------------------------------------------- the ACRNN on a feature grid, one split
def search_on_grid(
    grid: np.ndarray,
    y: np.ndarray,
    rows: Sequence[np.ndarray],
    *,
    learning_rates: Sequence[float] = (1e-3, 1e-4),
    rhos: Sequence[float] = (0.9, 0.99),
    epochs: int = 30,
    batch_size: int = 32,
    eager: bool = False,
    seed: int = 0,
    key: dict | None = None,
    name: str = "acrnn",
    label: str = "acrnn",
    paper: str = PAPER_ID,
) -> tuple[keras.Model, dict, list[dict]]:
    """:func:`rmsprop_search` of a fresh ACRNN on ``grid`` for one split ``rows`` = (train,
    validation, test) indices: each candidate trained with :func:`fit_on_grid` on the training
    rows (progress lines start with ``label``), scored on the validation rows and kept in the
    model store as ``<name>-lr<lr>-rho<rho>`` under ``key`` plus a digest of ``rows``.
    Returns (best model, its history, one row per candidate)."""
    from common import modelstore

    train, val, test = rows
    stored_key = {**(key or {}), "rows": modelstore.indices_digest(train, val, test)}
    fit = _grid_fit(grid, y, rows, epochs=epochs, batch_size=batch_size, eager=eager, label=label)
    return rmsprop_search(
        lambda: build_acrnn(grid.shape[1:]),
        fit,
        lambda m: m.predict(grid[val], verbose=0),
        y[val],
        learning_rates,
        rhos,
        seed=seed,
        store=lambda lr, rho: modelstore.entry(paper, f"{name}-lr{lr:g}-rho{rho:g}", stored_key),
    )


def train_selected_on_grid(
    grid: np.ndarray,
    y: np.ndarray,
    rows: Sequence[np.ndarray],
    *,
    rmsprop: dict,
    epochs: int = 30,
    batch_size: int = 32,
    eager: bool = False,
    seed: int = 0,
    key: dict | None = None,
    name: str = "acrnn",
    label: str = "acrnn",
    paper: str = PAPER_ID,
) -> np.ndarray:
    """A fresh ACRNN on ``grid`` trained once with an RMSProp setting already chosen
    (``rmsprop``: a row of :func:`search_on_grid` with ``learning_rate`` and ``rho``) on the
    training rows of ``rows`` = (train, validation, test), kept in the model store as ``name``
    under ``key`` plus the rows' digest and the setting. Returns its test probabilities."""
    from common import modelstore

    train, val, test = rows
    stored = modelstore.entry(
        paper,
        name,
        {**(key or {}), "rows": modelstore.indices_digest(train, val, test), "rmsprop": rmsprop},
    )
    keras.utils.set_random_seed(seed)
    return modelstore.train_or_load(
        stored,
        build=lambda: compile_rmsprop(
            build_acrnn(grid.shape[1:]), rmsprop["learning_rate"], rmsprop["rho"]
        ),
        fit=_grid_fit(
            grid, y, rows, epochs=epochs, batch_size=batch_size, eager=eager, label=label
        ),
        outputs=lambda m: {"test": m.predict(grid[test], verbose=0)},
    )[1]["test"]


def _grid_fit(
    grid: np.ndarray,
    y: np.ndarray,
    rows: Sequence[np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    eager: bool,
    label: str,
) -> Callable[..., dict]:
    """``fit(model, callbacks)`` for the model store: :func:`fit_on_grid` on the training
    rows of ``rows``, validated on its validation rows."""
    train, val, _ = rows

    def fit(model: keras.Model, callbacks: Sequence[Any] = ()) -> dict:
        return fit_on_grid(
            model,
            grid,
            y,
            train=train,
            val=val,
            epochs=epochs,
            batch_size=batch_size,
            eager=eager,
            callbacks=callbacks,
            label=label,
        )

    return fit


# -------------------------------------------------- Table 3's models trained here
def image_batches(
    paths: Sequence[str],
    labels: np.ndarray | None = None,
    *,
    image_size: int = 224,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
):
    """:class:`~common.data.stream.ImageBatches` of square ``image_size`` px images (with
    ``labels``, or images only when None)."""
    from common.data.stream import ImageBatches

    return ImageBatches(
        paths,
        labels,
        batch_size=batch_size,
        image_size=(image_size, image_size),
        shuffle=shuffle,
        seed=seed,
    )


def compiled(model: keras.Model, *, rmsprop: dict, eager: bool = False) -> keras.Model:
    """``model`` compiled with RMSProp at the setting ``rmsprop`` (``learning_rate``, ``rho``),
    run eagerly when ``eager``."""
    compile_rmsprop(model, rmsprop["learning_rate"], rmsprop["rho"])
    model.run_eagerly = bool(eager)
    return model


def kept(
    build: Callable[[], keras.Model],
    fit: Callable[[keras.Model, list], dict],
    predict: Callable[[keras.Model], np.ndarray],
    *,
    name: str,
    key: dict,
    paper: str = PAPER_ID,
) -> np.ndarray:
    """The test probabilities ``predict(model)`` of network ``name``, trained once (``build()``,
    then ``fit(model, callbacks)``) and kept with them in the model store under ``key``."""
    from common import modelstore

    stored = modelstore.entry(paper, name, key)
    return modelstore.train_or_load(stored, build, fit, lambda m: {"test": predict(m)})[1]["test"]


def train_image_model(
    name: str,
    paths: np.ndarray,
    y: np.ndarray,
    rows: Sequence[np.ndarray],
    *,
    rmsprop: dict,
    image_size: int = 224,
    epochs: int = 10,
    batch_size: int = 32,
    eager: bool = False,
    seed: int = 0,
    key: dict | None = None,
    label: str | None = None,
    paper: str = PAPER_ID,
) -> np.ndarray:
    """An end-to-end comparison model (:data:`END_TO_END`: ``cnn``, ``cnn_eca``, ``vit``) trained
    on the images ``paths[train]`` of ``rows`` = (train, validation, test) with RMSProp at
    ``rmsprop``, kept as ``<name>-<label>`` under ``key`` (plus the rows' digest, the setting and
    ``epochs``). Returns its test probabilities."""
    from common.backbones import build_backbone, fine_tune_model
    from common.progress import EpochLog

    if name not in END_TO_END:
        raise ValueError(f"{name!r} is not trained end to end; choose from {list(END_TO_END)}")
    train, val, test = rows
    batches = dict(image_size=image_size, batch_size=batch_size, seed=seed)

    def build() -> keras.Model:
        if name == "vit":
            vit = build_backbone("vit", input_size=image_size, seed=seed)
            return compiled(
                fine_tune_model(vit, 2, trainable_layers=None), rmsprop=rmsprop, eager=eager
            )
        model = build_image_cnn(image_size, eca=name == "cnn_eca")
        return compiled(model, rmsprop=rmsprop, eager=eager)

    def fit(model: keras.Model, callbacks: list) -> dict:
        return model.fit(
            image_batches(paths[train], y[train], shuffle=True, **batches),
            epochs=epochs,
            callbacks=[*callbacks, EpochLog(f"{name} {label}" if label else name)],
            verbose=0,
        ).history

    keras.utils.set_random_seed(seed)
    return kept(
        build,
        fit,
        lambda m: m.predict(image_batches(paths[test], **batches), verbose=0),
        **_baseline_entry(name, label, key, rows, rmsprop=rmsprop, epochs=epochs, paper=paper),
    )


def train_feature_head(
    features: np.ndarray,
    y: np.ndarray,
    rows: Sequence[np.ndarray],
    *,
    rmsprop: dict,
    name: str = "head",
    epochs: int = 10,
    batch_size: int = 32,
    eager: bool = False,
    seed: int = 0,
    key: dict | None = None,
    label: str | None = None,
    paper: str = PAPER_ID,
) -> np.ndarray:
    """A softmax layer (:func:`feature_head`, named ``<name>_head``) on frozen ``features``,
    trained on the training rows of ``rows`` = (train, validation, test) for
    :data:`HEAD_EPOCH_FACTOR` x ``epochs`` epochs with RMSProp at ``rmsprop``, kept as
    ``<name>-<label>`` under ``key`` (plus the rows' digest, the setting and ``epochs``).
    Returns its test probabilities."""

    train, val, test = rows

    def fit(model: keras.Model, callbacks: list) -> dict:
        return model.fit(
            features[train],
            y[train],
            epochs=epochs * HEAD_EPOCH_FACTOR,
            batch_size=batch_size,
            callbacks=callbacks,
            verbose=0,
        ).history

    keras.utils.set_random_seed(seed)
    return kept(
        lambda: compiled(
            feature_head(features.shape[1], name=f"{name}_head"), rmsprop=rmsprop, eager=eager
        ),
        fit,
        lambda m: m.predict(features[test], verbose=0),
        **_baseline_entry(name, label, key, rows, rmsprop=rmsprop, epochs=epochs, paper=paper),
    )


def _baseline_entry(
    name: str,
    label: str | None,
    key: dict | None,
    rows: Sequence[np.ndarray],
    *,
    rmsprop: dict,
    epochs: int,
    paper: str,
) -> dict:
    """:func:`kept`'s name, key and paper for a comparison model: ``<name>-<label>``, keyed by
    ``key`` plus the rows' digest, the RMSProp setting and the epochs."""
    from common import modelstore

    return {
        "name": f"{name}-{label}" if label else name,
        "key": {
            **(key or {}),
            "rows": modelstore.indices_digest(*rows),
            "rmsprop": rmsprop,
            "baseline_epochs": epochs,
        },
        "paper": paper,
    }


def train_baseline(
    name: str,
    paths: np.ndarray,
    y: np.ndarray,
    split: dict[str, Sequence[np.ndarray]],
    *,
    settings: dict[str, dict],
    fingerprint: str = "",
    preprocessing: dict | None = None,
    image_size: int = 224,
    pretrained: str = "imagenet",
    epochs: int = 10,
    batch_size: int = 32,
    eager: bool = False,
    seed: int = 0,
    key: dict | None = None,
    paper: str = PAPER_ID,
) -> dict[str, np.ndarray]:
    """Table 3's comparison model ``name`` under every protocol of ``split`` (protocol ->
    (train, validation, test)), each with that protocol's RMSProp setting ``settings[protocol]``:
    end-to-end models with :func:`train_image_model`; the others as ``pretrained`` feature
    extractors (features cached by ``fingerprint`` and ``preprocessing``, extracted once for all
    protocols) under :func:`train_feature_head`. Returns {protocol: test probabilities}."""
    options = dict(epochs=epochs, batch_size=batch_size, eager=eager, seed=seed, key=key)
    if name in END_TO_END:
        return {
            protocol: train_image_model(
                name,
                paths,
                y,
                rows,
                rmsprop=settings[protocol],
                image_size=image_size,
                label=protocol,
                paper=paper,
                **options,
            )
            for protocol, rows in split.items()
        }
    from common import features as feature_cache
    from common.backbones import build_backbone

    backbone = build_backbone(name, input_size=image_size, pretrained=pretrained, seed=seed)
    feats = feature_cache.extract_features(
        backbone, paths, fingerprint, batch_size=batch_size, preprocessing=preprocessing
    )
    return {
        protocol: train_feature_head(
            feats,
            y,
            rows,
            rmsprop=settings[protocol],
            name=name,
            label=protocol,
            paper=paper,
            **options,
        )
        for protocol, rows in split.items()
    }


# --------------------------------------------------------- scored images and tables
def scored(
    y: np.ndarray,
    proba: dict[str, np.ndarray],
    idx: np.ndarray,
    *,
    dataset: Any,
    dataset_rows: np.ndarray,
    classes: Sequence[str],
    protocol: str,
    split: str = "test",
) -> pd.DataFrame:
    """One row per image ``idx`` and model of ``proba`` (name -> probabilities of the images
    ``idx``) for ``predictions.csv``; ``dataset_rows[idx]`` are the images' rows in ``dataset``
    (their sample ids, file names and subjects)."""
    from common import evaluate

    return evaluate.prediction_rows(
        np.asarray(y)[idx],
        proba,
        classes,
        protocol,
        samples=evaluate.dataset_samples(dataset, index=np.asarray(dataset_rows)[idx]),
        split=split,
    )


def sensitivity_table(
    rows: pd.DataFrame, *, layer_models: dict[str, tuple[str, Sequence[int]]]
) -> pd.DataFrame:
    """The feature-layer sensitivity table: :func:`common.evaluate.paper_table` of ``rows`` with
    each model's EfficientNetV2M layer, its map per image and the ACRNN's pooled regions;
    ``layer_models`` maps a layer to (the model's name in ``rows``, its map shape (H, W, C))."""
    from common.evaluate import paper_table

    table = paper_table(rows)
    layer_of = {name: layer for layer, (name, _) in layer_models.items()}
    maps = {name: " x ".join(map(str, shape)) for name, shape in layer_models.values()}
    regions = {
        name: "{} x {}".format(*pooled_grid(*shape[:2])) for name, shape in layer_models.values()
    }
    table.insert(2, "EfficientNetV2M layer", table["model"].map(layer_of))
    table.insert(3, "map per image", table["model"].map(maps))
    table.insert(4, "ACRNN regions", table["model"].map(regions))
    return table
