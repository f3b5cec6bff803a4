"""Paper 02 (AL-Hammadi): convolutional autoencoder (CAE) and the 1-D CNN on its code.

Paper id ``02_alhammadi`` (notebook, results folder and claims/02_alhammadi.yaml): M. M.
AL-Hammadi, "Computer-Aided Diagnosis of Acute Lymphoblastic Leukemia Using a Novel CAE-CNN
Framework", 2024 (venue and DOI not printed in the paper); the full reference is in
claims/02_alhammadi.yaml.

Pure Keras 3 (runs on TensorFlow, JAX and PyTorch). The CAE's encoder is three
3x3 convolutions (9, 27, 27 filters) with Leaky ReLU and 3x3 average pooling
between them, so a 450 px image becomes a 50 x 50 x 27 = 67,500-value code; the
decoder mirrors it with depth-to-space (block 3) upsampling. The codes are written
to disk in chunks and streamed back in batches: at 450 px one code is 270 kB.

The paper's sizes are MATLAB's "learnables" (trainable parameters only,
:func:`learnable_count`), and its reconstruction correlation is "for lymphoblastic
cells" (:func:`correlations_by_class` keeps the classes apart).
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import keras
import numpy as np
import pandas as pd
from keras import layers, ops

POOL = 3  # average pooling and depth-to-space block size: 450 -> 150 -> 50

# The notebook's profiles (``smoke``, ``demo``, ``paper``); the values all three share first.
PROFILE_SHARED = dict(
    seed=0,
    data_root=None,
    difficulty=0.5,
    cae_batch=6,
    cnn_batch=16,
    learning_rate=1e-3,
    drop_factor=0.1,
    drop_period=10,
    test_fraction=0.2,
)
PROFILES = {
    "smoke": {
        **PROFILE_SHARED,
        "synthetic": True,
        "n_per_class": 24,
        "patients_per_class": 3,
        "image_size": 54,
        "cae_epochs": 1,
        "cnn_epochs": 2,
        "n_bootstrap": 200,
    },
    "demo": {
        **PROFILE_SHARED,
        "synthetic": True,
        "n_per_class": 120,
        "patients_per_class": 6,
        "image_size": 72,
        "cae_epochs": 10,
        "cnn_epochs": 15,
        "n_bootstrap": 1000,
    },
    "paper": {
        **PROFILE_SHARED,
        "synthetic": False,
        "n_per_class": 0,
        "patients_per_class": 0,
        "image_size": 450,
        "cae_epochs": 30,
        "cnn_epochs": 15,
        "n_bootstrap": 1000,
    },
}
# The parameters that :func:`fit_round` takes from the notebook's resolved parameters.
FIT_OPTIONS = (
    "image_size",
    "cae_epochs",
    "cae_batch",
    "cnn_epochs",
    "cnn_batch",
    "learning_rate",
    "drop_factor",
    "drop_period",
)


@keras.saving.register_keras_serializable(package="common")
class DepthToSpace(layers.Layer):
    """Rearrange (H, W, C*b*b) into (H*b, W*b, C), TensorFlow's DCR order."""

    def __init__(self, block_size: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.block_size = int(block_size)

    def call(self, x):
        b = self.block_size
        _, h, w, c = x.shape
        x = ops.reshape(x, (-1, h, w, b, b, c // (b * b)))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, h * b, w * b, c // (b * b)))

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        b = self.block_size
        return (n, None if h is None else h * b, None if w is None else w * b, c // (b * b))

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


def code_shape(image_size: int) -> tuple[int, int, int]:
    """The encoder's output (height, width, channels) for a square image of ``image_size`` px."""
    if image_size % (POOL * POOL):
        raise ValueError(
            f"image_size {image_size} must be divisible by 9 (two 3x3 poolings, two depth-to-space "
            "steps); 450 is the paper's, 54/72/108 are small valid sizes"
        )
    return (image_size // 9, image_size // 9, 27)


def build_cae(
    *, image_size: int = 450, learning_rate: float = 1e-3
) -> tuple[keras.Model, keras.Model]:
    """The CAE of Fig. 3; returns ``(cae, encoder)``; MSE, Adam(``learning_rate``).

    At 450 px the learnable parameters per convolution are 252, 2214, 6588, 6588,
    252, 30 (15,924), as the paper's Fig. 3 lists them (3 x 3 kernels: 252 = 3*3*3*9 + 9).
    Pooling is average pooling, as Fig. 3 lists it (the text says max pooling).
    """
    h, w, c = code_shape(image_size)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Conv2D(9, 3, padding="same", name="enc_conv1")(inputs)
    x = layers.LeakyReLU(name="enc_lrelu1")(x)
    x = layers.AveragePooling2D(POOL, name="enc_pool1")(x)
    x = layers.Conv2D(27, 3, padding="same", name="enc_conv2")(x)
    x = layers.LeakyReLU(name="enc_lrelu2")(x)
    x = layers.AveragePooling2D(POOL, name="enc_pool2")(x)
    x = layers.Conv2D(27, 3, padding="same", name="enc_conv3")(x)
    x = layers.LeakyReLU(name="enc_lrelu3")(x)
    code = layers.Flatten(name="code")(x)
    y = layers.Reshape((h, w, c), name="unflatten")(code)
    y = layers.Conv2D(27, 3, padding="same", name="dec_conv1")(y)
    y = layers.LeakyReLU(name="dec_lrelu1")(y)
    y = DepthToSpace(POOL, name="dec_d2s1")(y)  # 27 channels -> 3, x3 size
    y = layers.Conv2D(9, 3, padding="same", name="dec_conv2")(y)
    y = layers.LeakyReLU(name="dec_lrelu2")(y)
    y = DepthToSpace(POOL, name="dec_d2s2")(y)  # 9 channels -> 1, x3 size
    y = layers.Conv2D(3, 3, padding="same", name="dec_conv3")(y)
    outputs = layers.LeakyReLU(name="dec_lrelu3")(y)
    cae = keras.Model(inputs, outputs, name="cae")
    cae.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return cae, keras.Model(inputs, code, name="cae_encoder")


def build_code_cnn(
    code_length: int,
    *,
    num_classes: int = 2,
    kernel_size: int = 32,
    filters: Sequence[int] = (40, 80),
    dropout: float = 0.5,
    bn_momentum: float = 0.9,
) -> keras.Model:
    """The 1-D CNN of Fig. 4: per block Conv1D(kernel 32) -> BatchNorm -> ReLU ->
    LayerNorm -> Dropout 0.5 (40 then 80 filters); global average pooling; dense; softmax.

    ``bn_momentum`` 0.9 instead of Keras' 0.99: the paper's toolbox (MATLAB) finalizes
    batch-norm statistics over the training set; with 0.99 and a few hundred steps the
    moving averages are still near their initial values and inference predicts one class.
    """
    inputs = keras.Input((code_length, 1), name="code")
    x = inputs
    for i, n in enumerate(filters, start=1):
        x = layers.Conv1D(n, kernel_size, padding="same", name=f"conv{i}")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
        x = layers.LayerNormalization(name=f"ln{i}")(x)
        x = layers.Dropout(dropout, name=f"drop{i}")(x)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    x = layers.Dense(num_classes, name="fc")(x)
    outputs = layers.Softmax(name="softmax")(x)
    return keras.Model(inputs, outputs, name="code_cnn")


def learnable_count(model: keras.Model) -> int:
    """Trainable parameters only, what MATLAB calls "learnables" (the paper's Figs. 3 and 4).

    Keras' ``count_params()`` also counts non-trainable weights: each BatchNormalization
    layer's moving mean and variance (2 per channel; 240 in the 1-D CNN's 40 + 80 channels).
    """
    return int(sum(math.prod(weight.shape) for weight in model.trainable_weights))


def learnables_by_layer(model: keras.Model) -> dict[str, int]:
    """``{layer name: trainable parameters}`` for the layers that have any, in model order."""
    counts = {layer.name: learnable_count(layer) for layer in model.layers}
    return {name: n for name, n in counts.items() if n}


def correlations_by_class(
    correlations: Sequence[float], labels: Sequence[int], *, class_names: Sequence[str]
) -> dict[str, np.ndarray]:
    """Split per-image reconstruction correlations by class.

    ``correlations[i]`` belongs to the image with class index ``labels[i]`` (0..K-1, the
    order of ``class_names``). Returns ``{class name: values, ..., "overall": all values}``
    with NaNs (constant images, see :func:`reconstruction_correlations`) left out.
    """
    correlations, labels = np.asarray(correlations, dtype=float), np.asarray(labels)
    if correlations.shape != labels.shape:
        raise ValueError(
            f"{correlations.shape[0]} correlations for {labels.shape[0]} labels; pass the "
            "labels of the images the correlations were computed on, in the same order"
        )
    unknown = sorted(set(labels.tolist()) - set(range(len(class_names))))
    if unknown:
        raise ValueError(f"label(s) {unknown} have no entry in class_names {list(class_names)}")
    finite = np.isfinite(correlations)
    split = {name: correlations[finite & (labels == k)] for k, name in enumerate(class_names)}
    return {**split, "overall": correlations[finite]}


def dataset_counts(labels: Sequence[str], subjects: Sequence[str]) -> dict[str, dict[str, int]]:
    """Images and distinct subjects, overall and per class: ``{"overall": {"images": n,
    "subjects": m}, <class>: {...}}``. A subject is counted under every class it has images of."""
    table = pd.DataFrame(
        {"label": np.asarray(labels, dtype=str), "subject": np.asarray(subjects, dtype=str)}
    )
    if len(table) == 0:
        raise ValueError("no images to count; load the dataset first")
    counts = {"overall": {"images": len(table), "subjects": table["subject"].nunique()}}
    for label, part in table.groupby("label", sort=True):
        counts[str(label)] = {"images": len(part), "subjects": part["subject"].nunique()}
    return counts


def step_decay(*, initial: float = 1e-3, factor: float = 0.1, period: int = 10):
    """Piecewise-constant learning rate: ``initial * factor ** (epoch // period)``."""
    return lambda epoch, lr=None: float(initial * factor ** (epoch // period))


class ImagesOnly(keras.utils.PyDataset):
    """(x, x) batches of images in [0, 1] from an :class:`~common.data.stream.ImageBatches` (CAE
    training)."""

    def __init__(self, batches: keras.utils.PyDataset, **kwargs: Any):
        super().__init__(**kwargs)
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        item = self.batches[index]
        x = (item[0] if isinstance(item, tuple) else item) / 255.0
        return x, x

    def on_epoch_end(self) -> None:
        self.batches.on_epoch_end()


def encode_to_disk(
    encoder: keras.Model, batches: keras.utils.PyDataset, path: Path | str
) -> np.memmap:
    """Encode every batch (images 0-255, in order) and write the codes to a float32
    ``.npy`` memmap at ``path``, one batch at a time; returns it opened read-only."""
    path = Path(path)
    n = len(batches.paths)
    length = int(np.prod(encoder.output.shape[1:]))
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, length))
    start = 0
    for i in range(len(batches)):
        item = batches[i]
        x = (item[0] if isinstance(item, tuple) else item) / 255.0
        codes = np.asarray(encoder.predict_on_batch(x), dtype=np.float32)
        out[start : start + len(codes)] = codes
        start += len(codes)
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


class CodeBatches(keras.utils.PyDataset):
    """Batches of (code[..., None], label) read from an on-disk code matrix."""

    def __init__(
        self,
        codes: np.ndarray,
        labels: np.ndarray | None,
        *,
        batch_size: int = 16,
        shuffle: bool = False,
        seed: int = 0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.codes, self.labels = codes, None if labels is None else np.asarray(labels)
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        n = self.codes.shape[0]
        return (
            np.random.default_rng([self.seed, self.epoch]).permutation(n)
            if self.shuffle
            else np.arange(n)
        )

    def __len__(self) -> int:
        return math.ceil(self.codes.shape[0] / self.batch_size)

    def __getitem__(self, index: int):
        idx = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])
        x = np.asarray(self.codes[idx], dtype=np.float32)[..., None]
        return x if self.labels is None else (x, self.labels[idx])

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()


def reconstruction_correlations(cae: keras.Model, batches: keras.utils.PyDataset) -> np.ndarray:
    """Pearson correlation between each image (in [0, 1]) and its reconstruction, batch by batch."""
    values = []
    for i in range(len(batches)):
        item = batches[i]
        x = (item[0] if isinstance(item, tuple) else item) / 255.0
        r = np.asarray(cae.predict_on_batch(x))
        a = x.reshape(len(x), -1) - x.reshape(len(x), -1).mean(axis=1, keepdims=True)
        b = r.reshape(len(r), -1) - r.reshape(len(r), -1).mean(axis=1, keepdims=True)
        denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
        values.append(
            np.where(denom > 0, (a * b).sum(axis=1) / np.where(denom > 0, denom, 1), np.nan)
        )
    return np.concatenate(values)


def fit_round(
    train_paths: Sequence[str],
    train_y: np.ndarray,
    test_paths: Sequence[str],
    test_y: np.ndarray,
    workdir: Path | str,
    *,
    data_key: Mapping[str, Any],
    image_size: int,
    cae_epochs: int,
    cae_batch: int = 6,
    cnn_epochs: int = 15,
    cnn_batch: int = 16,
    learning_rate: float = 1e-3,
    drop_factor: float = 0.1,
    drop_period: int = 10,
    extra_tests: dict[str, tuple[Sequence[str], np.ndarray]] | None = None,
    seed: int = 0,
    name: str = "round",
) -> dict[str, Any]:
    """Train the CAE on the training images, write train/test codes to ``workdir``,
    train the 1-D CNN on the training codes; return probabilities and histories.

    ``correlations`` holds one original-vs-reconstruction Pearson r per test image, in
    the order of ``test_paths`` (both classes: split them with :func:`correlations_by_class`).

    Images stream from disk in batches; codes are written and read in batches.
    ``extra_tests`` are further held-out sets ({name: (paths, labels)}) scored by the same model.
    Both networks are kept under the cache root (:mod:`common.modelstore`), keyed by
    every option, ``data_key`` (dataset fingerprint and which rows trained and test
    them) and the code of this module: a rerun reuses them, a killed one resumes.
    """
    from common import modelstore
    from common.data.stream import ImageBatches
    from common.progress import EpochLog

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    size = (image_size, image_size)
    options = dict(
        image_size=image_size,
        cae_epochs=cae_epochs,
        cae_batch=cae_batch,
        cnn_epochs=cnn_epochs,
        cnn_batch=cnn_batch,
        learning_rate=learning_rate,
        drop_factor=drop_factor,
        drop_period=drop_period,
        seed=seed,
        extra_tests=sorted(extra_tests or {}),
    )
    key = {
        **options,
        "data": dict(data_key),
        "code": modelstore.code_version(sys.modules[__name__]),
    }
    built: dict[str, keras.Model] = {}

    def build() -> keras.Model:
        keras.utils.set_random_seed(seed)
        built["cae"], built["encoder"] = build_cae(
            image_size=image_size, learning_rate=learning_rate
        )
        return built["cae"]

    def fit_cae(model: keras.Model, callbacks: list) -> dict:
        feed = ImagesOnly(
            ImageBatches(
                train_paths, batch_size=cae_batch, image_size=size, shuffle=True, seed=seed
            )
        )
        return model.fit(
            feed, epochs=cae_epochs, callbacks=[*callbacks, EpochLog(f"{name} CAE")], verbose=0
        ).history

    cae, kept, cae_history, _ = modelstore.train_or_load(
        modelstore.entry("02_alhammadi", f"{name}-cae", key),
        build=build,
        fit=fit_cae,
        outputs=lambda m: {
            "correlations": reconstruction_correlations(
                m, ImageBatches(test_paths, batch_size=32, image_size=size)
            )
        },
    )
    encoder = built["encoder"]

    code_length = int(np.prod(code_shape(image_size)))
    sets = {
        "train": train_paths,
        "test": test_paths,
        **{part: paths for part, (paths, _) in (extra_tests or {}).items()},
    }

    # A part's codes are encoded only when the CNN is trained or scored, not when it is reused.
    @functools.cache
    def codes_of(part: str) -> np.ndarray:
        return encode_to_disk(
            encoder,
            ImageBatches(sets[part], batch_size=32, image_size=size),
            workdir / f"{part}_codes.npy",
        )

    def build_cnn() -> keras.Model:
        keras.utils.set_random_seed(seed)
        cnn = build_code_cnn(code_length)
        cnn.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return cnn

    def fit_cnn(model: keras.Model, callbacks: list) -> dict:
        schedule = keras.callbacks.LearningRateScheduler(
            step_decay(initial=learning_rate, factor=drop_factor, period=drop_period)
        )
        return model.fit(
            CodeBatches(codes_of("train"), train_y, batch_size=cnn_batch, shuffle=True, seed=seed),
            epochs=cnn_epochs,
            callbacks=[*callbacks, schedule, EpochLog(f"{name} CNN")],
            verbose=0,
        ).history

    def scores(model: keras.Model) -> dict[str, np.ndarray]:
        return {
            part: model.predict(CodeBatches(codes_of(part), None, batch_size=64), verbose=0)
            for part in sets
        }

    cnn, proba, cnn_history, _ = modelstore.train_or_load(
        modelstore.entry("02_alhammadi", f"{name}-cnn", key),
        build=build_cnn,
        fit=fit_cnn,
        outputs=scores,
    )
    codes_of.cache_clear()
    # A round's codes (270 kB an image at 450 px) are not needed once its CNN is scored.
    for part in sets:
        (workdir / f"{part}_codes.npy").unlink(missing_ok=True)
    return {
        "proba": proba,
        "cae": cae,
        "encoder": encoder,
        "cnn": cnn,
        "cae_history": cae_history,
        "cnn_history": cnn_history,
        "correlations": kept["correlations"],
        "code_length": code_length,
    }


def fit_rotations(
    paths: np.ndarray,
    labels: np.ndarray,
    *,
    folds: np.ndarray,
    subjects: np.ndarray,
    workdir: Path | str,
    fingerprint: str,
    seed: int,
    extra_tests: dict[str, tuple[Sequence[str], np.ndarray]] | None = None,
    stage: Any = None,
    **fit_options: Any,
) -> dict[str, Any]:
    """The ``leak_free`` protocol: one :func:`fit_round` per fold, trained on the other folds.

    Fold ``k``'s round is named ``fold<k>``, seeded ``seed + k`` and works in
    ``workdir/fold<k>``; ``fit_options`` (:data:`FIT_OPTIONS`) go to every round. The folds
    must be subject-disjoint (``subjects`` per image), else ValueError before any training.
    ``stage`` (e.g. ``run.stage``) wraps each round as ``stage("leak_free_fold<k>")``.

    Returns ``proba`` and ``correlations``: each image's out-of-fold scores and reconstruction
    r, in input order; ``extra_proba``: ``{name: [scores of each rotation's model]}`` for
    ``extra_tests``; ``rotations``: ``[(train rows, test rows)]`` per fold; ``per_fold``: one
    row per fold (test fold, train and test images, accuracy).
    """
    from common.modelstore import indices_digest

    labels = np.asarray(labels)
    proba = np.zeros((len(labels), 2))
    correlations = np.full(len(labels), np.nan)
    extra_proba: dict[str, list[np.ndarray]] = {name: [] for name in extra_tests or {}}
    rotations, per_fold = [], []
    for k in np.unique(folds):
        test_k = np.flatnonzero(folds == k)
        train_k = np.flatnonzero(folds != k)
        if set(subjects[train_k]) & set(subjects[test_k]):
            raise ValueError(f"fold {k} shares subjects with the other folds; C-NMC's do not")
        rotations.append((train_k, test_k))
    for train_k, test_k in rotations:
        k = folds[test_k[0]]
        with stage(f"leak_free_fold{k}") if stage else contextlib.nullcontext():
            out = fit_round(
                paths[train_k],
                labels[train_k],
                paths[test_k],
                labels[test_k],
                Path(workdir) / f"fold{k}",
                data_key={"fingerprint": fingerprint, "rows": indices_digest(train_k, test_k)},
                name=f"fold{k}",
                extra_tests=extra_tests,
                seed=seed + int(k),
                **fit_options,
            )
        proba[test_k], correlations[test_k] = out["proba"]["test"], out["correlations"]
        for name, scores in extra_proba.items():
            scores.append(out["proba"][name])
        per_fold.append(
            {
                "test fold": int(k),
                "train images": len(train_k),
                "test images": len(test_k),
                "accuracy": float((out["proba"]["test"].argmax(1) == labels[test_k]).mean()),
            }
        )
    return {
        "proba": proba,
        "correlations": correlations,
        "extra_proba": extra_proba,
        "rotations": rotations,
        "per_fold": per_fold,
    }


class ScoredSet(NamedTuple):
    """One model's scores on one set of images, for :func:`score_sets`."""

    protocol: str  # "published" or "leak_free"
    model: str  # the model's name in metrics.csv and predictions.csv
    split: str  # "test", "train", "out-of-fold", "prelim"
    y: np.ndarray  # true class indices
    proba: np.ndarray  # one row of class scores per image
    rows: np.ndarray  # the images' rows in the dataset (their sample ids and subjects)
    fold: np.ndarray | None = None  # the fold each image was tested in (out-of-fold sets)


def score_sets(
    scored: Sequence[ScoredSet],
    *,
    dataset: Any,
    class_names: Sequence[str],
    n_bootstrap: int,
    seed: int,
) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Metric rows and per-image prediction rows of each scored set, in the order given.

    Returns the metrics (:func:`common.evaluate.evaluate_models`, with bootstrap CIs) as one
    table, and one prediction table (:func:`common.evaluate.prediction_rows`) per set for
    :func:`common.evaluate.write_predictions`; sample ids and subjects come from ``dataset``.
    """
    from common import evaluate

    metrics, predictions = [], []
    for item in scored:
        proba = {item.model: item.proba}
        metrics.append(
            evaluate.evaluate_models(
                item.y,
                proba,
                class_names,
                protocol=item.protocol,
                n_bootstrap=n_bootstrap,
                seed=seed,
            )
        )
        predictions.append(
            evaluate.prediction_rows(
                item.y,
                proba,
                class_names,
                item.protocol,
                samples=evaluate.dataset_samples(dataset, index=item.rows),
                split=item.split,
                fold=item.fold,
            )
        )
    return pd.concat(metrics, ignore_index=True), predictions


def measurements(
    correlations: Mapping[str, Mapping[str, np.ndarray]],
    *,
    architecture: Mapping[str, float],
    cnn_learnables: int,
    counts: Mapping[str, Mapping[str, int]],
) -> list[pd.DataFrame]:
    """The numbers beside the scores that claims are compared with, under each protocol.

    ``correlations``: ``{protocol: {class: per-image r}}`` (:func:`correlations_by_class`);
    per protocol, in this order: the mean r per class (model ``cae``), the CAE's
    ``architecture`` numbers, the CNN's learnables (model ``cnn``) and the dataset's
    ``counts`` per class (:func:`dataset_counts`, model ``dataset``).
    """
    from common import evaluate

    tables = []
    for protocol, by_class in correlations.items():
        tables += [
            evaluate.measurement_rows({"pearson_r_mean": values.mean()}, protocol, "cae", cls=cls)
            for cls, values in by_class.items()
        ]
        tables += [
            evaluate.measurement_rows(architecture, protocol, "cae"),
            evaluate.measurement_rows({"learnable_parameters": cnn_learnables}, protocol, "cnn"),
        ]
        tables += [
            evaluate.measurement_rows(n, protocol, "dataset", cls=cls) for cls, n in counts.items()
        ]
    return tables
