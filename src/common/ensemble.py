"""Paper 05 (Patel et al., ALL subtypes): fine-tuned networks and the weighted threshold ensemble.

Paper id ``05_patel_all`` (notebook, results folder and claims/05_patel_all.yaml): H. Patel, A.
Patel, G. Patel and H. Shah, "Identification and Classification of Acute Lymphocytic Leukemia
Using Weighted Ensemble Neural Networks", 2025 (venue and DOI not printed in the paper); the
full reference is in claims/05_patel_all.yaml.

Equation 8 of the paper: the ensemble's class scores are the weighted sum of the base
networks' class probabilities; its prediction is the arg-max, and when the winning
score is below a threshold gamma there is no confident prediction (an abstention).

Scoring (one rule, :func:`abstention_metrics`): every metric is on ALL images, an
abstention being an extra outcome, "no confident prediction", that is wrong for the
image's true class and predicts no class. For class c it is a false negative when the
image is of class c (sensitivity and one-vs-rest accuracy fall) and a true negative
otherwise (the image was not called c); it is never a false positive, so precision
counts confident predictions only. Overall accuracy = confident and correct / all
images. Coverage and the accuracy on the covered images are secondary rows.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common import evaluate

#: The paper's five weight sets, as (DenseNet-201, ResNet-50) (P232).
WEIGHT_SETS = ((0.5, 0.5), (0.6, 0.4), (0.4, 0.6), (0.3, 0.7), (0.7, 0.3))
#: The paper's two thresholds gamma (P232).
THRESHOLDS = (0.7, 0.8)
#: The predicted "class" of an image whose winning weighted score is below gamma.
ABSTAIN = "no confident prediction"
#: The two networks the paper's ensemble combines, in the order of its weight sets (P76, P232).
PAPER_NETWORKS = ("densenet201", "resnet50")

#: Parameter values the three profiles share (each profile overrides some of them).
SHARED_PARAMS = dict(
    seed=0,
    data_root=None,
    batch_size=32,
    learning_rate=1e-4,
    test_fraction=0.35,
    val_fraction=0.15,
    eager=False,
    bn_momentum=None,
    alexnet_weights=None,
)
#: The notebook's profiles: ``smoke`` (seconds, synthetic twin), ``demo`` (synthetic twin,
#: networks from scratch on a CPU), ``paper`` (the paper's settings on the real data, a GPU).
PROFILES = {
    "smoke": {
        **SHARED_PARAMS,
        "synthetic": True,
        "n_per_class": 16,
        "image_size": 32,
        "pretrained": "none",
        "epochs": 1,
        "baselines": ["mobilenetv2"],
        "n_bootstrap": 200,
        "eager": True,
        "bn_momentum": 0.9,
    },
    "demo": {
        **SHARED_PARAMS,
        "synthetic": True,
        "n_per_class": 48,
        "image_size": 32,
        "pretrained": "none",
        "epochs": 10,
        "learning_rate": 1e-3,
        "bn_momentum": 0.9,
        "baselines": ["alexnet", "vgg16", "mobilenetv2"],
        "n_bootstrap": 1000,
    },
    "paper": {
        **SHARED_PARAMS,
        "synthetic": False,
        "n_per_class": 0,
        "image_size": 224,
        "pretrained": "imagenet",
        "epochs": 10,
        "baselines": ["alexnet", "vgg16", "mobilenetv2"],
        "n_bootstrap": 1000,
    },
}


def weighted_scores(probas: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """sum_i w_i p_i over base networks (each (n, K) probabilities)."""
    if len(probas) != len(weights):
        raise ValueError(f"{len(weights)} weights for {len(probas)} networks")
    shapes = {np.shape(p) for p in probas}
    if len(shapes) != 1:
        raise ValueError(f"the networks' probability arrays differ in shape: {sorted(shapes)}")
    return sum(float(w) * np.asarray(p, dtype=float) for w, p in zip(weights, probas))


def threshold_predict(scores: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Arg-max prediction and the mask of confident (covered) samples: max score >= gamma."""
    scores = np.asarray(scores)
    return scores.argmax(axis=1), scores.max(axis=1) >= gamma


def abstention_confusion(
    y_true: Sequence[int], pred: Sequence[int], covered: Sequence[bool], *, num_classes: int
) -> np.ndarray:
    """Counts on all images, shape (K, K + 1): rows the true class, columns the predicted
    class, the last column the abstentions (``covered`` False). Labels are 0..K-1."""
    y_true, pred, covered = np.asarray(y_true), np.asarray(pred), np.asarray(covered, dtype=bool)
    if not y_true.shape == pred.shape == covered.shape or y_true.ndim != 1:
        raise ValueError(
            f"y_true {y_true.shape}, pred {pred.shape} and covered {covered.shape} "
            "must be 1-D and of one shape"
        )
    outside = sorted(
        {int(v) for v in np.concatenate([y_true, pred[covered]]) if not 0 <= v < num_classes}
    )
    if outside:
        raise ValueError(
            f"label(s) {outside} outside 0..{num_classes - 1}; pass labels as class indices"
        )
    outcome = np.where(covered, pred, num_classes)
    cells = y_true.astype(np.int64) * (num_classes + 1) + outcome
    return np.bincount(cells, minlength=num_classes * (num_classes + 1)).reshape(
        num_classes, num_classes + 1
    )


def abstention_metrics(cm: np.ndarray, class_names: Sequence[str]) -> dict[tuple[str, str], float]:
    """{(class, metric): value} from an :func:`abstention_confusion` matrix, by the rule of the
    module docstring.

    The matrix gets an empty row for the abstention outcome, which makes it square with the
    counts above (abstentions: false negatives of their true class, no class's false
    positives), so :mod:`common.evaluate`'s arithmetic applies unchanged; the abstention's own
    entries are then dropped and the macro averages taken over the real classes only.
    """
    names = [str(n) for n in class_names]
    k = len(names)
    cm = np.asarray(cm, dtype=float)
    if cm.shape != (k, k + 1):
        raise ValueError(
            f"confusion matrix shape {cm.shape} is not (classes, classes + 1) = {(k, k + 1)}"
        )
    square = np.vstack([cm, np.zeros((1, k + 1))])
    values = evaluate._metrics_from_confusion(square, [*names, ABSTAIN])
    out = {
        key: value
        for key, value in values.items()
        if key[0] in names or key[0] in ("overall", "weighted")
    }
    for metric in evaluate.CLASS_METRICS:  # weighted: the abstention's weight is 0 already
        per_class = np.array([out[(name, metric)] for name in names])
        out[("macro", metric)] = (
            float(np.nanmean(per_class)) if np.isfinite(per_class).any() else np.nan
        )
    return out


def _all_image_values(
    y: np.ndarray, scores: np.ndarray, gamma: float, names: list[str], with_scores: bool = True
) -> dict[tuple[str, str], float]:
    """Label metrics on all images, AUC of the weighted scores (threshold-free), coverage and
    covered-only accuracy."""
    pred, covered = threshold_predict(scores, gamma)
    values = abstention_metrics(
        abstention_confusion(y, pred, covered, num_classes=len(names)), names
    )
    if with_scores:
        values.update(evaluate._auc_values(np.eye(len(names), dtype=int)[y], scores, names))
    values[("overall", "coverage")] = float(covered.mean())
    values[("overall", "accuracy_covered")] = (
        float((pred == y)[covered].mean()) if covered.any() else np.nan
    )
    values[("overall", "abstentions")] = float((~covered).sum())
    return values


def score_all_images(
    y_true: Sequence[int],
    scores: np.ndarray,
    gamma: float,
    class_names: Sequence[str],
    *,
    protocol: str,
    model: str,
    n_bootstrap: int = 0,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Metric rows (:data:`common.evaluate.ROW_COLUMNS`) of the ensemble at threshold ``gamma``
    on ALL images.

    ``scores``: (n, K) weighted class scores (:func:`weighted_scores`), labels 0..K-1.
    Per-class, macro and weighted accuracy, precision, sensitivity, specificity, F1 and
    support follow :func:`abstention_metrics`; ``overall`` accuracy counts an abstention as
    an error; AUC and average precision use the scores (no threshold). Secondary rows, class
    ``overall``: ``coverage`` (share confidently predicted), ``accuracy_covered`` (accuracy
    on those only), ``abstentions`` (a count). ``n_bootstrap`` > 0 adds percentile-bootstrap
    intervals (resampling images) to every row but average precision and the count.
    """
    y, _, scores, labels = evaluate.check_inputs(
        y_true, y_score=scores, labels=range(len(class_names))
    )
    names = evaluate._names(labels, class_names)
    values = _all_image_values(y, scores, gamma, names, with_scores=False)
    values.update(evaluate._score_values(y, scores, labels, names))
    cis: dict[tuple[str, str], tuple[float, float]] = {}
    if n_bootstrap:
        rng = np.random.default_rng(seed)
        draws: dict[tuple[str, str], list[float]] = {}
        for _ in range(n_bootstrap):
            idx = rng.integers(0, y.size, size=y.size)
            for key, value in _all_image_values(y[idx], scores[idx], gamma, names).items():
                draws.setdefault(key, []).append(value)
        for key, sample in draws.items():
            sample = np.asarray(sample, dtype=float)
            sample = sample[np.isfinite(sample)]
            if sample.size and key[1] not in ("support", "abstentions"):
                cis[key] = tuple(
                    float(v)
                    for v in np.percentile(sample, [100 * alpha / 2, 100 * (1 - alpha / 2)])
                )
    no_ci = (np.nan, np.nan)
    rows = [
        {
            "protocol": protocol,
            "model": model,
            "class": cls,
            "metric": metric,
            "value": value,
            "ci_low": cis.get((cls, metric), no_ci)[0],
            "ci_high": cis.get((cls, metric), no_ci)[1],
        }
        for (cls, metric), value in values.items()
    ]
    return pd.DataFrame(rows, columns=evaluate.ROW_COLUMNS)


def prediction_table(
    y_true: Sequence[int],
    scores: np.ndarray,
    gamma: float,
    class_names: Sequence[str],
    *,
    protocol: str,
    model: str,
    samples: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """``predictions.csv`` rows (:func:`common.evaluate.prediction_rows`) of the ensemble at
    threshold ``gamma``: its weighted ``scores`` as the score columns, and as the predicted
    class the arg-max, or :data:`ABSTAIN` where the winning score is below ``gamma``."""
    pred, covered = threshold_predict(scores, gamma)
    named = np.where(covered, np.asarray(class_names, dtype=object)[pred], ABSTAIN)
    return evaluate.prediction_rows(
        y_true, {model: scores}, class_names, protocol, samples=samples, y_pred={model: named}
    )


def grid(
    y: np.ndarray,
    probas: Sequence[np.ndarray],
    *,
    weight_sets: Sequence[Sequence[float]] = WEIGHT_SETS,
    thresholds: Sequence[float] = THRESHOLDS,
) -> pd.DataFrame:
    """Every (weights, gamma): ``accuracy`` on all images (an abstention is an error), then
    the secondary ``coverage`` and ``accuracy_covered`` (accuracy on the confident images only)."""
    y = np.asarray(y)
    rows = []
    for weights, gamma in itertools.product(weight_sets, thresholds):
        pred, covered = threshold_predict(weighted_scores(probas, weights), gamma)
        correct = (pred == y) & covered
        rows.append(
            {
                "weights": tuple(float(w) for w in weights),
                "gamma": float(gamma),
                "accuracy": float(correct.mean()),
                "coverage": float(covered.mean()),
                "accuracy_covered": float(correct.sum() / covered.sum())
                if covered.any()
                else np.nan,
            }
        )
    return pd.DataFrame(rows)


def select(table: pd.DataFrame, *, by: str = "accuracy") -> pd.Series:
    """The best row of :func:`grid` by ``by`` (default: accuracy on all images, so abstaining
    is never rewarded); ties go to higher coverage, then to the first listed."""
    if by not in table.columns:
        raise ValueError(f"cannot select by {by!r}; choose one of {list(table.columns)}")
    order = table.assign(_i=np.arange(len(table))).sort_values(
        [by, "coverage", "_i"], ascending=[False, False, True]
    )
    return order.iloc[0].drop("_i")


def setting_name(weights: Sequence[float], gamma: float) -> str:
    """A grid setting's model name in the metric rows, e.g. ``ensemble w=0.7/0.3 g=0.7``."""
    return f"ensemble w={weights[0]:g}/{weights[1]:g} g={gamma:g}"


def grid_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`grid` for display: each setting's name (:func:`setting_name`) first, the
    columns renamed to say what they score (accuracy on all images; the secondary ones)."""
    named = table.assign(
        setting=[setting_name(w, g) for w, g in zip(table["weights"], table["gamma"])]
    )
    return named[
        ["setting", "weights", "gamma", "accuracy", "coverage", "accuracy_covered"]
    ].rename(
        columns={
            "accuracy": "accuracy (all test images)",
            "coverage": "coverage (secondary)",
            "accuracy_covered": "accuracy on covered images (secondary)",
        }
    )


def dataset_table(
    counts: Mapping[str, int], *, patients: Mapping[str, int] | None = None
) -> pd.DataFrame:
    """The paper's Table 1 from the loaded data: images (and patients) per class and the total.

    Without ``patients`` (the Kaggle ALL images carry no patient ids) the column says so.
    """
    rows = [{"type": name, "images": int(n)} for name, n in counts.items()]
    rows.append({"type": "Total", "images": int(sum(counts.values()))})
    table = pd.DataFrame(rows)
    if patients is None:
        table["patients"] = "not in the data (no patient ids)"
    else:
        table["patients"] = [int(patients[name]) for name in counts] + [
            int(sum(patients[name] for name in counts))
        ]
    return table


def count_rows(
    counts: Mapping[str, int],
    *,
    metric: str,
    protocol: str = "published",
    model: str = "dataset",
) -> pd.DataFrame:
    """Metric rows (unit: count) for images per class plus their total (class ``overall``),
    so claims such as Table 1's counts sit beside the run's."""
    values = {
        **{str(name): float(n) for name, n in counts.items()},
        "overall": float(sum(counts.values())),
    }
    return pd.concat(
        [
            evaluate.measurement_rows({metric: n}, protocol, model, cls=cls)
            for cls, n in values.items()
        ],
        ignore_index=True,
    )


def split_counts(
    y: np.ndarray, parts: Mapping[str, np.ndarray], class_names: Sequence[str]
) -> pd.DataFrame:
    """Images per class (rows) in each part of the split (columns; ``parts`` maps a part's
    name to its row indices into ``y``, labels 0..K-1); a class absent from a part counts 0."""
    names = dict(enumerate(class_names))
    return (
        pd.DataFrame(
            {part: pd.Series(y[idx]).map(names).value_counts() for part, idx in parts.items()}
        )
        .fillna(0)
        .astype(int)
    )


def corrected_images(
    y: np.ndarray,
    base_preds: Mapping[str, np.ndarray],
    ensemble_pred: np.ndarray,
    covered: np.ndarray,
    paths: Sequence[str],
    class_names: Sequence[str],
    *,
    negative: str = "Benign",
) -> pd.DataFrame:
    """Images one base network got wrong and the ensemble (confidently) got right.

    ``fp_to_tn``: a ``negative`` (benign) image a base network called leukemic;
    ``fn_to_tp``: a leukemic image a base network missed (called benign or another subtype).
    """
    y = np.asarray(y)
    neg = list(class_names).index(negative)
    rows = []
    right = (np.asarray(ensemble_pred) == y) & np.asarray(covered)
    for network, pred in base_preds.items():
        for i in np.flatnonzero((np.asarray(pred) != y) & right):
            rows.append(
                {
                    "path": str(paths[i]),
                    "name": Path(str(paths[i])).name,
                    "network": network,
                    "true": class_names[y[i]],
                    "base_prediction": class_names[pred[i]],
                    "kind": "fp_to_tn" if y[i] == neg else "fn_to_tp",
                }
            )
    return pd.DataFrame(
        rows, columns=["path", "name", "network", "true", "base_prediction", "kind"]
    )


def copy_corrected(table: pd.DataFrame, run_dir: Path | str) -> dict[str, int]:
    """Copy the corrected images into ``fp_to_tn/`` and ``fn_to_tp/`` under ``run_dir``
    (named ``<network>__<file>``), write ``corrected_images.csv``; return the counts."""
    run_dir = Path(run_dir)
    for kind in ("fp_to_tn", "fn_to_tp"):
        folder = run_dir / kind
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    copied = []
    for _, row in table.iterrows():
        dest = run_dir / row["kind"] / f"{row['network']}__{row['name']}"
        shutil.copy2(row["path"], dest)
        copied.append(str(dest.relative_to(run_dir)))
    table.assign(copy=copied).to_csv(run_dir / "corrected_images.csv", index=False)
    return {kind: int((table["kind"] == kind).sum()) for kind in ("fp_to_tn", "fn_to_tp")}


def alexnet_size(image_size: int) -> int:
    """AlexNet's input: 227 where the others take 224 (as the paper), and at least 96 px,
    below which its three poolings leave nothing."""
    return 227 if image_size == 224 else max(image_size, 96)


def network_names(baselines: Sequence[str]) -> list[str]:
    """The networks to fine-tune: the paper's two (:data:`PAPER_NETWORKS`), then each of
    ``baselines`` not already among them, in the order given."""
    return [*PAPER_NETWORKS, *[b for b in baselines if b not in PAPER_NETWORKS]]


def network_weights(name: str, *, pretrained: str, alexnet_weights: str | None = None) -> str:
    """What network ``name`` starts from.

    keras.applications networks: ``pretrained`` (``imagenet``, ``none`` or a weights
    file). AlexNet has no Keras ImageNet weights: under ``imagenet`` it starts from the
    local file ``alexnet_weights`` when one is given, else from scratch (``none``).
    """
    from common.backbones import CUSTOM

    if name in CUSTOM and str(pretrained) == "imagenet":
        return str(alexnet_weights) if alexnet_weights else "none"
    return str(pretrained)


def model_label(name: str, weights: str) -> str:
    """The network's name in tables: bare when it starts from ImageNet weights as in the paper,
    else with its start in brackets (``alexnet [from scratch]``, ``alexnet [weights: a.h5]``)."""
    if str(weights) == "imagenet":
        return name
    start = "from scratch" if str(weights) == "none" else f"weights: {Path(str(weights)).name}"
    return f"{name} [{start}]"


def build_classifier(
    name: str,
    num_classes: int,
    *,
    image_size: int,
    pretrained: str,
    learning_rate: float,
    seed: int = 0,
    eager: bool = False,
    bn_momentum: float | None = None,
) -> Any:
    """Backbone ``name`` with a new softmax head, every layer trainable, Adam and cross-entropy.

    ``bn_momentum`` (e.g. 0.9) replaces Keras' 0.99 in every BatchNormalization layer:
    trained from scratch for a few dozen steps, running statistics at 0.99 are still
    near their initial values and the network predicts one class at test time.
    ``eager=True`` skips graph compilation (same arithmetic; faster only for tiny data).
    """
    import keras

    from common.backbones import build_backbone, fine_tune_model

    keras.utils.set_random_seed(seed)
    size = alexnet_size(image_size) if name == "alexnet" else image_size
    backbone = build_backbone(name, input_size=size, pretrained=pretrained, seed=seed)
    model = fine_tune_model(
        backbone, num_classes, trainable_layers=None, optimizer="adam", learning_rate=learning_rate
    )
    if bn_momentum is not None:
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = float(bn_momentum)
    model.run_eagerly = eager
    model._repro_preprocess, model._repro_size = backbone.preprocess, size
    return model


def _stage(layer_name: str) -> str:
    """The stage of a keras.applications DenseNet or ResNet layer, from its name."""
    first = layer_name.split("_")[0]
    if first.startswith("input"):
        return "input"
    if first in ("zero", "conv1", "pool1"):
        return "stem (7x7 conv, 3x3 max-pool)"
    if first.startswith("conv"):
        return f"{first} blocks"
    if first.startswith("pool"):
        return f"{first} (transition)"
    if first in ("bn", "relu"):
        return "final BatchNorm, ReLU"
    if first == "avg":
        return "global average pooling"
    return "new head (Dense, softmax)" if first == "head" else layer_name


def architecture_table(name: str, num_classes: int, *, image_size: int) -> pd.DataFrame:
    """Network ``name`` as :func:`build_classifier` builds it, one row per stage (the stem,
    each block stage, DenseNet's transitions, the pooling and the new softmax head): its
    blocks, Keras layers, output shape and parameters, then the total.

    Built without pretrained weights: a start changes the weights, not the architecture.
    """
    model = build_classifier(
        name, num_classes, image_size=image_size, pretrained="none", learning_rate=1e-4
    )
    rows: dict[str, dict[str, Any]] = {}
    for layer in model.layers:
        row = rows.setdefault(_stage(layer.name), {"blocks": set(), "layers": 0, "parameters": 0})
        if "_block" in layer.name:
            row["blocks"].add(layer.name.split("_")[1])
        row["layers"] += 1
        row["parameters"] += int(layer.count_params())
        row["output shape"] = str(tuple(layer.output.shape[1:]))
    table = pd.DataFrame(
        [
            {"network": name, "stage": stage, **row, "blocks": len(row["blocks"]) or ""}
            for stage, row in rows.items()
        ]
    )
    total = {"network": name, "stage": "total", "blocks": "", "layers": len(model.layers)}
    total.update({"parameters": int(model.count_params()), "output shape": ""})
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    return table[["network", "stage", "blocks", "layers", "output shape", "parameters"]]


def fit_classifier(
    model: Any,
    train: tuple[Sequence[str], np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    segment: Callable | None = None,
    augment: Callable | None = None,
    seed: int = 0,
    callbacks: Sequence[Any] = (),
    name: str | None = None,
) -> dict:
    """Train a :func:`build_classifier` model on streamed, shuffled batches; one line per epoch."""
    from common.data.stream import ImageBatches
    from common.progress import EpochLog

    size = model._repro_size
    feed = ImageBatches(
        train[0],
        train[1],
        batch_size=batch_size,
        image_size=(size, size),
        segment=segment,
        augment=augment,
        preprocess=model._repro_preprocess,
        shuffle=True,
        seed=seed,
    )
    log = EpochLog(name or model.name)
    return model.fit(feed, epochs=epochs, callbacks=[*callbacks, log], verbose=0).history


def fine_tune(
    name: str,
    train: tuple[Sequence[str], np.ndarray],
    num_classes: int,
    *,
    image_size: int,
    pretrained: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    checkpoint_dir: Path | str,
    segment: Callable | None = None,
    augment: Callable | None = None,
    seed: int = 0,
    eager: bool = False,
    bn_momentum: float | None = None,
    callbacks: Sequence[Any] = (),
) -> tuple[Any, dict]:
    """Fine-tune backbone ``name`` (all layers, Adam, cross-entropy) on streamed batches.

    Progress is backed up every epoch under ``checkpoint_dir`` (Keras BackupAndRestore),
    so an interrupted run resumes where it stopped when called again. See
    :func:`trained_network` for the version that also keeps the finished network.
    """
    import keras

    model = build_classifier(
        name,
        num_classes,
        image_size=image_size,
        pretrained=pretrained,
        learning_rate=learning_rate,
        seed=seed,
        eager=eager,
        bn_momentum=bn_momentum,
    )
    # deleted when training completes, so only an interrupted run finds (and resumes from) it
    backup = keras.callbacks.BackupAndRestore(
        str(Path(checkpoint_dir) / name), delete_checkpoint=True
    )
    history = fit_classifier(
        model,
        train,
        epochs=epochs,
        batch_size=batch_size,
        segment=segment,
        augment=augment,
        seed=seed,
        callbacks=[backup, *callbacks],
        name=name,
    )
    return model, history


def trained_network(
    name: str,
    train: tuple[Sequence[str], np.ndarray],
    evaluate_on: Mapping[str, Sequence[str]],
    num_classes: int,
    *,
    data_key: Mapping[str, Any],
    hooks: Mapping[str, Any],
    image_size: int,
    pretrained: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    segment: Callable | None = None,
    augment: Callable | None = None,
    seed: int = 0,
    eager: bool = False,
    bn_momentum: float | None = None,
    paper: str = "05_patel_all",
) -> tuple[dict[str, np.ndarray], dict, bool]:
    """Fine-tune ``name`` once and keep it (:mod:`common.modelstore`): its class
    probabilities on each image list of ``evaluate_on`` (e.g. validation and test), the
    history, and whether a stored network was reused.

    The store's key is every option here, ``data_key`` (dataset fingerprint and which
    rows trained it), ``hooks`` (a description of ``segment`` and ``augment``, which
    cannot be hashed) and the code version of the builder.
    """
    from common import backbones, modelstore

    options = dict(
        image_size=image_size,
        pretrained=str(pretrained),
        learning_rate=learning_rate,
        seed=seed,
        eager=eager,
        bn_momentum=bn_momentum,
    )
    start = (
        backbones._file_id(Path(pretrained)) if Path(str(pretrained)).is_file() else str(pretrained)
    )  # a file by content
    key = {
        **options,
        "pretrained": start,
        "epochs": epochs,
        "batch_size": batch_size,
        "num_classes": num_classes,
        "data": dict(data_key),
        "hooks": dict(hooks),
        "code": modelstore.code_version(backbones, build_classifier, fit_classifier),
    }
    stored = modelstore.entry(paper, name, key)
    _, outputs, history, reused = modelstore.train_or_load(
        stored,
        build=lambda: build_classifier(name, num_classes, **options),
        fit=lambda model, callbacks: fit_classifier(
            model,
            train,
            epochs=epochs,
            batch_size=batch_size,
            segment=segment,
            augment=augment,
            seed=seed,
            callbacks=callbacks,
            name=name,
        ),
        outputs=lambda model: {
            part: predict_images(model, paths, segment=segment)
            for part, paths in evaluate_on.items()
        },
    )
    return outputs, history, reused


def predict_images(
    model: Any, paths: Sequence[str], *, segment: Callable | None = None, batch_size: int = 32
) -> np.ndarray:
    """Class probabilities of a :func:`fine_tune` model on images streamed from disk."""
    from common.data.stream import ImageBatches

    size = model._repro_size
    feed = ImageBatches(
        paths,
        None,
        batch_size=batch_size,
        image_size=(size, size),
        segment=segment,
        preprocess=model._repro_preprocess,
    )
    return np.asarray(model.predict(feed, verbose=0))
