"""Grad-CAM (Selvaraju et al. 2017) on every Keras backend.

The model is cut at ``layer``: ``features`` maps images to that layer's activations
A (B, h, w, k) and ``head`` maps A to class scores. The gradient of the class score
with respect to A is the one backend-specific step (TensorFlow GradientTape, JAX
``jax.grad``, PyTorch autograd); the rest is shared: channel weights = spatial mean
of the gradients, heatmap = ReLU(sum_k w_k A_k), scaled to [0, 1] per image and
resized to the input size.
"""

from __future__ import annotations

import keras
import numpy as np


def last_conv_layer(model: keras.Model) -> str:
    """Name of the last layer with a 4-D output (the usual Grad-CAM target)."""
    for layer in reversed(model.layers):
        shape = getattr(layer, "output", None)
        if shape is not None and len(getattr(shape, "shape", ())) == 4:
            return layer.name
    raise ValueError(f"{model.name} has no layer with a 4-D (B, H, W, C) output to explain")


def _split(model: keras.Model, layer: str) -> tuple[keras.Model, keras.Model]:
    try:
        target = model.get_layer(layer).output
    except ValueError:
        raise ValueError(
            f"{model.name} has no layer {layer!r}; try {last_conv_layer(model)!r}"
        ) from None
    if len(target.shape) != 4:
        raise ValueError(
            f"layer {layer!r} outputs shape {target.shape}; Grad-CAM needs a (B, H, W, C) layer"
        )
    return keras.Model(model.input, target), keras.Model(target, model.output)


def _gradients(head: keras.Model, activations: np.ndarray, class_index: np.ndarray) -> np.ndarray:
    """d score[class_index] / d activations, per sample, on the active backend."""
    backend = keras.backend.backend()
    onehot = np.eye(head.output.shape[-1], dtype=np.float32)[class_index]
    if backend == "tensorflow":
        import tensorflow as tf

        a = tf.convert_to_tensor(activations)
        with tf.GradientTape() as tape:
            tape.watch(a)
            score = tf.reduce_sum(head(a, training=False) * onehot)
        return tape.gradient(score, a).numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def score(a):
            return jnp.sum(head(a, training=False) * onehot)

        return np.asarray(jax.grad(score)(jnp.asarray(activations)))
    if backend == "torch":
        import torch

        device = head.weights[0].value.device if head.weights else "cpu"
        a = torch.tensor(activations, requires_grad=True, device=device)
        score = (head(a, training=False) * torch.as_tensor(onehot, device=a.device)).sum()
        score.backward()
        return a.grad.detach().cpu().numpy()
    raise ValueError(
        f"Grad-CAM needs gradients, which the {backend!r} backend lacks; set KERAS_BACKEND "
        "to tensorflow, jax or torch"
    )


def grad_cam(
    model: keras.Model, images: np.ndarray, *, layer: str | None = None, class_index=None
) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (B, H, W) in [0, 1] and the explained class per image.

    ``images``: a preprocessed batch (B, H, W, 3) as the model expects it.
    ``class_index``: an int, one int per image, or None for the predicted class.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be a batch (B, H, W, C), got shape {images.shape}")
    features, head = _split(model, layer or last_conv_layer(model))
    activations = np.asarray(
        keras.ops.convert_to_numpy(features(images, training=False)), dtype=np.float32
    )
    if class_index is None:
        scores = keras.ops.convert_to_numpy(head(activations, training=False))
        class_index = np.argmax(scores, axis=-1)
    class_index = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (images.shape[0],))
    grads = _gradients(head, activations, class_index)
    weights = grads.mean(axis=(1, 2), keepdims=True)
    cam = np.maximum((weights * activations).sum(axis=-1), 0.0)
    peak = cam.reshape(cam.shape[0], -1).max(axis=1)[:, None, None]
    cam = np.where(peak > 0, cam / np.where(peak > 0, peak, 1.0), 0.0)
    resized = keras.ops.convert_to_numpy(
        keras.ops.image.resize(cam[..., None], images.shape[1:3], interpolation="bilinear")
    )
    return np.clip(resized[..., 0], 0.0, 1.0).astype(np.float32), class_index


def overlay(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.4) -> np.ndarray:
    """Blend a heatmap (H, W) in [0, 1] over an RGB uint8 image with the jet colour map."""
    import matplotlib

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[:2] != heatmap.shape:
        raise ValueError(
            f"need an RGB uint8 image matching the heatmap {heatmap.shape}, got "
            f"{image.dtype} {image.shape}"
        )
    colours = matplotlib.colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3]
    blended = np.clip((1 - alpha) * image / 255.0 + alpha * colours, 0, 1)
    return (blended * 255).round().astype(np.uint8)
