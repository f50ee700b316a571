"""Predictions on the same test images through a Keras model and through a .tflite in LiteRT.

Both read uint8 images; the Keras model gets them normalized as in training
(``factory.training.data.normalize``), the .tflite whatever its input tensor takes: uint8 pixels
as they are, int8 ``pixel - 128``, float32 normalized; in every case exactly what an app
must do. Outputs are compared by argmax: dequantization and softmax are monotonic, so
they pick the same class.
"""

from __future__ import annotations

import os

import numpy as np

from factory.training.data import OFFSET, SCALE, normalize


def quantization(detail: dict) -> dict:
    """dtype, shape, scale and zero point of a LiteRT input or output tensor detail."""
    scale, zero_point = detail["quantization"]
    return {"dtype": np.dtype(detail["dtype"]).name, "shape": [int(d) for d in detail["shape"]],
            "scale": float(scale), "zero_point": int(zero_point)}


def pixel_shift(scale: float, zero_point: int) -> int | None:
    """``k`` when quantizing a normalized pixel is exactly ``pixel + k`` (input scale == SCALE), else None."""
    if abs(scale - SCALE) > 1e-9 * SCALE:
        return None
    return int(round(OFFSET / SCALE)) + zero_point


def quantize_images(images: np.ndarray, detail: dict) -> np.ndarray:
    """uint8 pixels as the model's input tensor wants them (int8, uint8 or float32)."""
    q = quantization(detail)
    if q["dtype"] == "float32":
        return normalize(images).numpy()
    info = np.iinfo(q["dtype"])
    shift = pixel_shift(q["scale"], q["zero_point"])
    if shift is not None:
        return np.clip(images.astype(np.int32) + shift, info.min, info.max).astype(q["dtype"])
    x = normalize(images).numpy()
    return np.clip(np.round(x / q["scale"]) + q["zero_point"], info.min, info.max).astype(q["dtype"])


def tflite_predict(content: bytes, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Raw outputs of a .tflite for uint8 images, batched by resizing the input tensor."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=os.cpu_count())
    index = interpreter.get_input_details()[0]["index"]
    outputs, size = [], None
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        if len(batch) != size:
            size = len(batch)
            interpreter.resize_tensor_input(index, [size, *images.shape[1:]])
            interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(index, quantize_images(batch, detail))
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy())
    return np.concatenate(outputs)


def tflite_labels(content: bytes, images: np.ndarray) -> np.ndarray:
    """The class a .tflite predicts for each uint8 image."""
    return tflite_predict(content, images).argmax(-1)


def tflite_accuracy(content: bytes, images: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(tflite_labels(content, images) == labels))


def keras_predict(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """A Keras model's outputs (logits or probabilities) for uint8 images."""
    return model.predict(normalize(images).numpy(), batch_size=batch_size, verbose=0)


def keras_labels(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The class a Keras model (logits or probabilities) predicts for each uint8 image."""
    return keras_predict(model, images, batch_size).argmax(-1)


def top1_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """The share of images on which two models' top-1 classes overlap.

    Ties count: an int8 softmax has steps of 1/256, so close classes can tie, and the
    model then does not tell them apart; it agrees when the other model's class is one
    of its tied best (an app's argmax takes the first of them)."""
    best_a, best_b = a == a.max(-1, keepdims=True), b == b.max(-1, keepdims=True)
    return float(np.mean((best_a & best_b).any(-1)))


Z95 = 1.959964  # two-sided 95%


def paired_drop(reference_hits: np.ndarray, shipped_hits: np.ndarray, z: float = Z95) -> dict:
    """How many accuracy points the shipped model loses against the reference on the same images, with a 95%
    interval from the images on which exactly one of them is right (McNemar's pairs): a difference of a few images
    where an unsure model changes its mind is noise, the same difference on a large split is not."""
    ref, shipped = np.asarray(reference_hits, bool), np.asarray(shipped_hits, bool)
    n = len(ref)
    lost, gained = int(np.sum(ref & ~shipped)), int(np.sum(~ref & shipped))
    drop = (lost - gained) / n
    spread = z * np.sqrt(max(lost + gained - (lost - gained) ** 2 / n, 0.0)) / n
    return {"points": 100 * drop, "low": 100 * (drop - spread), "high": 100 * (drop + spread), "images": n,
            "lost": lost, "gained": gained}


def proportion_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's 95% interval of a share of ``k`` in ``n``."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def keras_accuracy(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    return float(np.mean(keras_labels(model, images, batch_size) == labels))
