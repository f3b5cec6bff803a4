"""CNN backbones of papers 03, 04 and 05, plus AlexNet and a small Vision Transformer.

``build_backbone(name, ...)`` returns a :class:`Backbone`: a Keras model from
images to features (or class scores with ``include_top``), the matching
``preprocess_input`` and an identity string for the feature cache.

``pretrained``: ``imagenet`` (keras.applications weights; offline this fails at
once with a one-line message saying how to pre-download the file), ``none``
(random initialisation from ``seed``), a path to a local weights file, or a folder of
local weights files, one per network and input size (:func:`weights_file_in`; the
rehearsal, :mod:`common.rehearse`, writes such a folder with :func:`write_standin_weights`
to stand in for the ImageNet downloads).

Feature layers: ``gap`` (global average pooling of the last convolutional block,
the default), ``pool5`` (ResNet's name for the same), ``fc2``/``fc7`` (VGG-16 and
AlexNet's second fully connected layer, which needs the full 224 x 224 / 227 x 227
network), or any layer name of the model.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

APPLICATIONS = {
    # name: (constructor, preprocess module, default input size)
    "efficientnetv2m": ("EfficientNetV2M", "efficientnet_v2", 480),
    "mobilenetv2": ("MobileNetV2", "mobilenet_v2", 224),
    "resnet50": ("ResNet50", "resnet", 224),
    "resnet101": ("ResNet101", "resnet", 224),
    "vgg16": ("VGG16", "vgg16", 224),
    "densenet121": ("DenseNet121", "densenet", 224),
    "densenet201": ("DenseNet201", "densenet", 224),
    "inceptionv3": ("InceptionV3", "inception_v3", 299),
}
CUSTOM = {"alexnet": 227, "vit": 224}
NAMES = tuple(APPLICATIONS) + tuple(CUSTOM)
FC_ALIASES = {"fc7": "fc2"}  # paper 04 calls VGG-16's second dense layer fc7


@dataclass
class Backbone:
    """A built backbone: ``model`` maps a preprocessed batch (B, H, W, 3) to features or scores."""

    name: str
    model: keras.Model
    preprocess: Callable[[np.ndarray], np.ndarray]
    input_size: int
    weights_id: str
    layer: str

    @property
    def n_features(self) -> int:
        return int(np.prod(self.model.output.shape[1:]))

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one image's features: (d,) or (H, W, C) for a spatial layer."""
        return tuple(int(d) for d in self.model.output.shape[1:])


# --------------------------------------------------------------------- AlexNet
class LocalResponseNormalization(layers.Layer):
    """AlexNet's across-channel LRN: x / (k + alpha/n * sum_{n neighbours} x^2)^beta."""

    def __init__(
        self,
        depth_radius: int = 2,
        k: float = 2.0,
        alpha: float = 1e-4,
        beta: float = 0.75,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.depth_radius, self.k, self.alpha, self.beta = depth_radius, k, alpha, beta

    def call(self, x):
        sq = ops.square(x)
        channels = x.shape[-1]
        pad = ops.pad(sq, [[0, 0], [0, 0], [0, 0], [self.depth_radius, self.depth_radius]])
        window = sum(pad[..., i : i + channels] for i in range(2 * self.depth_radius + 1))
        return x / ops.power(self.k + self.alpha * window, self.beta)

    def get_config(self):
        return {
            **super().get_config(),
            "depth_radius": self.depth_radius,
            "k": self.k,
            "alpha": self.alpha,
            "beta": self.beta,
        }


def alexnet(*, input_size: int = 227, include_top: bool = True, classes: int = 1000) -> keras.Model:
    """AlexNet (Krizhevsky et al. 2012) on one device: 5 conv layers (96, 256, 384, 384, 256)
    with LRN after the first two, three max-pools, then fc 4096-4096-classes with dropout 0.5."""
    inp = keras.Input((input_size, input_size, 3))
    x = layers.Conv2D(96, 11, strides=4, activation="relu", name="conv1")(inp)
    x = LocalResponseNormalization(name="lrn1")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = layers.Conv2D(256, 5, padding="same", activation="relu", name="conv2")(x)
    x = LocalResponseNormalization(name="lrn2")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv4")(x)
    x = layers.Conv2D(256, 3, padding="same", activation="relu", name="conv5")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(4096, activation="relu", name="fc1")(x)
        x = layers.Dropout(0.5)(x)
        x = layers.Dense(4096, activation="relu", name="fc2")(x)
        x = layers.Dropout(0.5)(x)
        x = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inp, x, name="alexnet")


# ------------------------------------------------------------------ small ViT
class Patches(layers.Layer):
    """Split images into flattened patches with a strided convolution-free reshape."""

    def __init__(self, patch_size: int, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = patch_size

    def call(self, images):
        patches = ops.image.extract_patches(images, size=self.patch_size)
        n = patches.shape[1] * patches.shape[2]
        return ops.reshape(patches, (-1, n, patches.shape[-1]))

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size}


class PositionEmbedding(layers.Layer):
    """Learned position embedding added to the patch projections."""

    def build(self, input_shape):
        self.pos = self.add_weight(
            shape=(1, input_shape[1], input_shape[2]), initializer="random_normal", name="pos"
        )

    def call(self, x):
        return x + self.pos


def vit(
    *,
    input_size: int = 224,
    patch_size: int = 16,
    dim: int = 64,
    depth: int = 4,
    heads: int = 4,
    mlp_dim: int = 128,
    include_top: bool = True,
    classes: int = 1000,
    dropout: float = 0.1,
) -> keras.Model:
    """A small Vision Transformer in the style of the keras-io example (trained from scratch)."""
    if input_size % patch_size:
        raise ValueError(f"input_size {input_size} must be a multiple of patch_size {patch_size}")
    inp = keras.Input((input_size, input_size, 3))
    x = layers.Rescaling(1 / 255.0)(inp)
    x = Patches(patch_size, name="patches")(x)
    x = layers.Dense(dim, name="patch_projection")(x)
    x = PositionEmbedding(name="position_embedding")(x)
    for i in range(depth):
        h = layers.LayerNormalization(epsilon=1e-6)(x)
        h = layers.MultiHeadAttention(heads, dim // heads, dropout=dropout, name=f"attention_{i}")(
            h, h
        )
        x = layers.Add()([x, h])
        h = layers.LayerNormalization(epsilon=1e-6)(x)
        h = layers.Dense(mlp_dim, activation="gelu")(h)
        h = layers.Dropout(dropout)(h)
        h = layers.Dense(dim)(h)
        x = layers.Add()([x, h])
    x = layers.LayerNormalization(epsilon=1e-6, name="encoded")(x)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    if include_top:
        x = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inp, x, name="vit")


# ------------------------------------------------------------- ImageNet files
KERAS_WEIGHTS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"
#: name -> (folder on the server, file stem as keras.applications names it)
IMAGENET_FILES = {
    "efficientnetv2m": ("efficientnet_v2", "efficientnetv2-m"),
    "mobilenetv2": ("mobilenet_v2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224"),
    "resnet50": ("resnet", "resnet50_weights_tf_dim_ordering_tf_kernels"),
    "resnet101": ("resnet", "resnet101_weights_tf_dim_ordering_tf_kernels"),
    "vgg16": ("vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels"),
    "densenet121": ("densenet", "densenet121_weights_tf_dim_ordering_tf_kernels"),
    "densenet201": ("densenet", "densenet201_weights_tf_dim_ordering_tf_kernels"),
    "inceptionv3": ("inception_v3", "inception_v3_weights_tf_dim_ordering_tf_kernels"),
}


def imagenet_weights_file(name: str, *, include_top: bool = False) -> tuple[str, str]:
    """(file name, URL) of the ImageNet weights keras.applications loads for ``name``.

    MobileNetV2's file is the 224-px one (Keras takes it for any other input size too).
    """
    if name not in IMAGENET_FILES:
        raise ValueError(
            f"keras.applications has no ImageNet weights for {name!r}; use 'none' or a "
            "local weights file"
        )
    folder, stem = IMAGENET_FILES[name]
    if name == "mobilenetv2":
        filename = f"{stem}.h5" if include_top else f"{stem}_no_top.h5"
    else:
        filename = f"{stem}.h5" if include_top else f"{stem}_notop.h5"
    return filename, f"{KERAS_WEIGHTS_BASE}{folder}/{filename}"


def keras_weights_dir() -> Path:
    """Where keras.applications looks for (and downloads) weight files: ``$KERAS_HOME/models``."""
    return Path(os.environ.get("KERAS_HOME") or os.path.expanduser("~/.keras")) / "models"


# -------------------------------------------------------------------- builders
def _file_id(path: Path) -> str:
    return "file:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _imagenet_error(name: str, exc: Exception) -> RuntimeError:
    url = re.search(r"https?://\S+?\.h5", str(exc))
    where = (
        Path(keras.config.keras_home() if hasattr(keras.config, "keras_home") else "~/.keras")
        / "models"
    )
    hint = (
        f"download {url.group(0)} on a machine with internet into {where}/"
        if url
        else f"place the weights file in {where}/"
    )
    return RuntimeError(
        f"ImageNet weights for {name} cannot be downloaded here (offline): {hint}, "
        "or pass pretrained='none' or a local weights file"
    )


def _preprocess_for(name: str) -> Callable[[np.ndarray], np.ndarray]:
    if name in APPLICATIONS:
        module = getattr(keras.applications, APPLICATIONS[name][1])
        fn = module.preprocess_input
        return lambda batch: np.asarray(
            fn(np.array(batch, dtype=np.float32, copy=True)), dtype=np.float32
        )
    if name == "alexnet":
        return lambda batch: np.asarray(batch, dtype=np.float32) / 127.5 - 1.0
    return lambda batch: np.asarray(batch, dtype=np.float32)  # ViT rescales inside the model


def weights_file_in(folder: str | Path, name: str, size: int, full: bool) -> Path:
    """The weights file for network ``name`` at ``size`` px inside a weights folder:
    ``<name>-<size>px.weights.h5``, or ``<name>-<size>px-full.weights.h5`` for the whole
    network with its fully connected layers (VGG-16 and AlexNet's ``fc7``, or ``include_top``)."""
    return Path(folder) / f"{name}-{int(size)}px{'-full' if full else ''}.weights.h5"


def _needs_full(name: str, layer: str, include_top: bool) -> bool:
    return include_top or (
        layer != "gap" and name in ("vgg16", "alexnet")
    )  # fc layers need the full net


def _base_model(name: str, size: int, full: bool, classes: int, imagenet: bool) -> keras.Model:
    """The network before any layer cut: the whole classifier when ``full``, else its
    convolutional part (global-average-pooled for keras.applications)."""
    if name in APPLICATIONS:
        constructor = getattr(keras.applications, APPLICATIONS[name][0])
        kwargs = {
            "include_top": full,
            "input_shape": (size, size, 3),
            "weights": "imagenet" if imagenet else None,
        }
        if full:
            kwargs["classes"] = classes
        else:
            kwargs["pooling"] = "avg"
        try:
            return constructor(**kwargs)
        except Exception as exc:
            if "URL fetch failure" in str(exc) or "urlopen" in str(exc).lower():
                raise _imagenet_error(name, exc) from None
            raise
    if name == "alexnet":
        model = alexnet(input_size=size, include_top=full, classes=classes)
        return (
            model
            if full
            else keras.Model(
                model.input, layers.GlobalAveragePooling2D(name="gap")(model.output), name="alexnet"
            )
        )
    return vit(input_size=size, include_top=full, classes=classes)


def write_standin_weights(folder: str | Path, names, sizes, *, seed: int = 0) -> list[Path]:
    """Write randomly initialised weights files in the layout of :func:`weights_file_in`
    (both variants of VGG-16 and AlexNet), so that ``pretrained=<folder>`` loads a local
    file where a run would download ImageNet weights: same architecture, same cost, no
    network. Returns the files written (existing ones are kept)."""
    written = []
    for name in names:
        for size in sorted(set(int(s) for s in sizes)):
            for full in (False, True) if name in ("vgg16", "alexnet") else (False,):
                path = weights_file_in(folder, name, size, full)
                if not path.is_file():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    keras.utils.set_random_seed(seed)
                    _base_model(name, size, full, 1000, imagenet=False).save_weights(path)
                    keras.backend.clear_session()
                written.append(path)
    return written


def build_backbone(
    name: str,
    *,
    input_size: int | None = None,
    pretrained: str | Path = "none",
    include_top: bool = False,
    layer: str = "gap",
    classes: int = 1000,
    seed: int = 0,
    spatial: bool = False,
) -> Backbone:
    """Build backbone ``name`` (see :data:`NAMES`); see the module docstring for the options.

    ``include_top=True`` returns the whole classifier (``classes`` outputs); otherwise
    the model outputs the features of ``layer``, globally average-pooled unless
    ``spatial=True`` keeps a convolutional layer's (H, W, C) map (``layer`` then
    reads ``<name>:grid`` in the cache key).
    """
    if name not in NAMES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(NAMES)}")
    layer = FC_ALIASES.get(layer, "gap" if layer == "pool5" else layer)
    size = int(input_size or (APPLICATIONS[name][2] if name in APPLICATIONS else CUSTOM[name]))
    full = _needs_full(name, layer, include_top)
    weights_path = None
    if str(pretrained) not in ("imagenet", "none"):
        weights_path = Path(pretrained)
        if weights_path.is_dir():
            weights_path = weights_file_in(weights_path, name, size, full)
        if not weights_path.is_file():
            raise FileNotFoundError(
                f"weights file {weights_path} does not exist; pass 'imagenet', 'none' or "
                "an existing file"
            )
    if str(pretrained) == "imagenet" and name in CUSTOM:
        raise ValueError(
            f"keras.applications has no ImageNet weights for {name}; use pretrained='none' "
            "or a local weights file"
        )
    keras.utils.set_random_seed(seed)
    model = _base_model(name, size, full, classes, imagenet=str(pretrained) == "imagenet")
    if weights_path is not None:
        try:
            model.load_weights(weights_path)
        except Exception as exc:
            raise ValueError(
                f"cannot load {weights_path} into {name} ({type(exc).__name__}); it was "
                "saved from a different architecture or input size"
            ) from None
    if not include_top and layer != "gap":
        try:
            out = model.get_layer(layer).output
        except ValueError:
            raise ValueError(
                f"{name} has no layer {layer!r}; use 'gap', 'fc2'/'fc7' (VGG-16, AlexNet) "
                "or a layer name"
            ) from None
        if len(out.shape) == 4 and not spatial:
            out = layers.GlobalAveragePooling2D(name=f"{layer}_gap")(out)
        model = keras.Model(model.input, out, name=f"{name}_{layer}")
    weights_id = (
        _file_id(weights_path)
        if weights_path
        else ("imagenet" if str(pretrained) == "imagenet" else f"none-seed{seed}")
    )
    layer_id = "top" if include_top else (f"{layer}:grid" if spatial and layer != "gap" else layer)
    return Backbone(name, model, _preprocess_for(name), size, weights_id, layer_id)


OPTIMIZERS = {
    "adam": lambda lr: keras.optimizers.Adam(lr),
    "sgd": lambda lr: keras.optimizers.SGD(lr, momentum=0.9),
    "rmsprop": lambda lr: keras.optimizers.RMSprop(lr),
}


def fine_tune_model(
    backbone: Backbone,
    num_classes: int,
    *,
    trainable_layers: int | None = 0,
    dropout: float = 0.0,
    hidden: int | None = None,
    optimizer: str = "adam",
    learning_rate: float = 1e-4,
) -> keras.Model:
    """A classifier on a feature backbone: [Dense(hidden, relu)] -> Dropout -> Dense(num_classes,
    softmax).

    ``trainable_layers``: 0 freezes the whole backbone, N unfreezes its last N
    layers, None trains everything. Compiled with the paper's ``optimizer``
    (adam / sgd with momentum 0.9 / rmsprop) and ``learning_rate``, sparse
    categorical cross-entropy and accuracy.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    if backbone.layer == "top":
        raise ValueError("build the backbone with include_top=False to put a new head on it")
    base = backbone.model
    base.trainable = True
    if trainable_layers is not None:
        cut = len(base.layers) - trainable_layers
        for i, lay in enumerate(base.layers):
            lay.trainable = i >= cut
    x = base.output
    if hidden:
        x = layers.Dense(hidden, activation="relu", name="head_hidden")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    out = layers.Dense(num_classes, activation="softmax", name="head")(x)
    model = keras.Model(base.input, out, name=f"{backbone.name}_classifier")
    model.compile(
        optimizer=OPTIMIZERS[optimizer](learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
