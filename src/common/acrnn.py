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
