"""The pretrained teacher: the frozen ImageNet network with a classifier for the user's classes, trained first on its
frozen features (MediaPipe Model Maker's recipe: dropout, softmax, label smoothing).

It serves twice. Its classifier starts the supernet's, so the largest subnet begins as a working model of the user's
classes instead of a random projection whose first gradients would wreck the pretrained features (a naive
whole-network fine-tune of Lite0 on 450 images lost 22 points that way, as issue 30 reported). And, frozen, it is the distillation
teacher of every subnet (OFA), which keeps what ImageNet taught on data too small to teach it again.
"""

from __future__ import annotations

import numpy as np

from factory.core.backend import keras, tf
from factory.core.files import atomic_file
from factory.nas.pretrained import PretrainedWeights, reference_model
from factory.nas.supernet import resize
from factory.training.data import ImageData, normalize

HEAD_STEPS = 600  # classifier steps on the cached features: seconds, and enough to converge on a few thousand images
HEAD_BATCH = 32


def feature_model(weights: PretrainedWeights, reference: keras.Model | None = None) -> keras.Model:
    """The frozen pretrained network (or ``reference``, a model of it) up to its pooled features."""
    reference = reference or reference_model(weights, name="teacher_body")
    body = keras.Model(reference.input, reference.get_layer("pool").output, name="teacher_body")
    body.trainable = False
    return body


def _features(body: keras.Model, images, flip: bool, batch_size: int = 64) -> np.ndarray:
    """Pooled features of every image (and of its mirror image when flips keep the label)."""
    out = []
    for start in range(0, len(images), batch_size):
        batch = normalize(np.asarray(images[start:start + batch_size])).numpy()
        views = [batch, batch[:, :, ::-1]] if flip else [batch]
        out.append(np.stack([body(v, training=False).numpy() for v in views], axis=1))
    return np.concatenate(out)  # (N, views, C)


def fit_head(weights: PretrainedWeights, data: ImageData, label_smoothing: float = 0.1, dropout: float = 0.2,
             seed: int = 0, verbose: int = 1, body: keras.Model | None = None) -> tuple[list[np.ndarray], float]:
    """A classifier for ``data``'s classes on the frozen pretrained features (of ``body``, a model of the network,
    when given); returns its weights (kernel, bias) and its validation accuracy. ``data`` must be at the pretrained
    network's resolution."""
    body = feature_model(weights, body)
    if verbose:
        print(f"teacher: {weights.source.name} features of {len(data.y_train) + len(data.y_val)} images", flush=True)
    train = _features(body, data.x_train, data.flip)
    views = train.shape[1]
    x = train.reshape(-1, train.shape[-1])
    y = np.repeat(np.asarray(data.y_train), views)
    val = _features(body, data.x_val, False)[:, 0]
    keras.utils.set_random_seed(seed)
    head = keras.Sequential([keras.layers.Dropout(dropout), keras.layers.Dense(data.num_classes, name="classifier")])
    head.compile(optimizer=keras.optimizers.Adam(1e-3),
                 loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing))
    steps_per_epoch = -(-len(y) // HEAD_BATCH)
    head.fit(x, keras.utils.to_categorical(y, data.num_classes), batch_size=HEAD_BATCH, verbose=0,
             epochs=max(1, -(-HEAD_STEPS // steps_per_epoch)))
    accuracy = float(np.mean(np.argmax(head.predict(val, verbose=0), -1) == np.asarray(data.y_val))) \
        if len(val) else float("nan")
    return head.get_layer("classifier").get_weights(), accuracy


def teacher_model(weights: PretrainedWeights, head: list[np.ndarray], body: keras.Model | None = None) -> keras.Model:
    """The frozen pretrained network with the user's classifier: logits for images at its resolution."""
    body = feature_model(weights, body)
    classifier = keras.layers.Dense(head[1].shape[0], name="classifier")
    model = keras.Model(body.input, classifier(body.output), name="teacher")
    classifier.set_weights(head)
    model.trainable = False
    return model


def save_head(path, head: list[np.ndarray], accuracy: float) -> None:
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, kernel=head[0], bias=head[1], val_accuracy=accuracy)


def load_head(path) -> tuple[list[np.ndarray], float]:
    with np.load(path) as saved:
        return [saved["kernel"], saved["bias"]], float(saved["val_accuracy"])


def teacher_logits_fn(teacher: keras.Model, jit_compile: bool = False):
    """The teacher as a function of a training batch, for ``Supernet.train_step`` (resized to its resolution);
    ``jit_compile``: its forward pass compiled by XLA (a fixed network, unlike the elastic step; ``bench.xla``)."""
    size = int(teacher.input_shape[1])
    forward = tf.function(lambda images: teacher(images, training=False), jit_compile=True) if jit_compile \
        else (lambda images: teacher(images, training=False))
    return lambda images: forward(resize(images, size))
