"""Zero-cost proxies: a subnet's promise scored at initialisation, before any training.

Each proxy looks at a subnet of an *untrained* supernet (extracted as a plain Keras
model) and one batch of training images:

* ``snip`` (Lee et al., 2019): sum over weights of |w * dL/dw|, the loss's sensitivity to
  removing each weight;
* ``synflow`` (Tanaka et al., 2020): sum of w * dR/dw with every weight made positive,
  R the sum of the outputs for an all-ones input: data-free, layer-collapse aware;
* ``naswot`` (Mellor et al., 2021): log|K| of the Hamming-similarity kernel of the
  activation patterns (which units are on) of the batch's images: networks that tell
  images apart at initialisation train better;
* ``params``: the parameter count, the baseline every proxy paper reports against.

``rank_proxies`` scores them against the trained supernet's evaluations of the same subnets
(Kendall's tau): a proxy that ranks well could pre-filter candidates before evaluations.
"""

from __future__ import annotations

import time

import numpy as np

from factory.core.backend import keras, tf

PROXIES = ("snip", "synflow", "naswot", "params")


def _kernels(model: keras.Model) -> list:
    """The convolution and dense kernels: what the proxies score (not batch norm's scale and shift)."""
    return [w for w in model.trainable_weights if "kernel" in w.name]


def snip(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> float:
    weights = _kernels(model)
    with tf.GradientTape() as tape:
        logits = model(images, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    return float(sum(tf.reduce_sum(tf.abs(w * g)) for w, g in zip(weights, tape.gradient(loss, weights))))


def synflow(model: keras.Model, input_shape: tuple) -> float:
    weights = _kernels(model)
    saved = [w.numpy() for w in weights]
    try:
        for w in weights:
            w.assign(tf.abs(w))
        ones = tf.ones((1, *input_shape), tf.float64 if model.dtype == "float64" else tf.float32)
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(model(ones, training=False))
        grads = tape.gradient(total, weights)
        return float(sum(tf.reduce_sum(w * g) for w, g in zip(weights, grads) if g is not None))
    finally:
        for w, value in zip(weights, saved):
            w.assign(value)


def naswot(model: keras.Model, images: np.ndarray) -> float:
    acts = [layer.output for layer in model.layers if layer.name.endswith("_act")]
    probe = keras.Model(model.input, acts)
    outputs = probe(images, training=True)
    codes = np.concatenate([(o.numpy() > 0).reshape(len(images), -1) for o in outputs], axis=1).astype(np.float64)
    kernel = codes @ codes.T + (1 - codes) @ (1 - codes).T
    return float(np.linalg.slogdet(kernel)[1])


def score_subnets(untrained, subnets, images: np.ndarray, labels: np.ndarray, verbose: int = 1) -> dict:
    """Every proxy of every subnet (extracted from ``untrained``, a supernet at initialisation), and the seconds one
    subnet's proxies took on average."""
    from factory.nas.extract import extract

    space = untrained.space
    scores = {p: [] for p in PROXIES}
    progress = keras.utils.Progbar(len(subnets), verbose=verbose, unit_name="subnet")
    start = time.perf_counter()
    for subnet in subnets:
        model = extract(untrained, subnet)
        x = tf.image.resize(images, (subnet.resolution, subnet.resolution)).numpy()
        scores["snip"].append(snip(model, x, labels))
        scores["synflow"].append(synflow(model, x.shape[1:]))
        scores["naswot"].append(naswot(model, x))
        scores["params"].append(float(space.param_count(subnet, untrained.task_head)))
        progress.add(1)
    return {"scores": scores, "seconds_per_subnet": (time.perf_counter() - start) / max(len(subnets), 1)}


def rank_proxies(scores: dict, accuracy) -> dict:
    """Kendall's tau of each proxy against the trained supernet's accuracies."""
    from scipy.stats import kendalltau

    return {p: float(kendalltau(values, accuracy).statistic) for p, values in scores.items()}
