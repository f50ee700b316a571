"""Image classification: the space's head convolution, global pooling, features and a dense classifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from factory.nas.space import SearchSpace


@dataclass(frozen=True)
class ClassificationHead:
    """``num_classes`` logits per image from the backbone's last features (MobileNetV3's classification top)."""

    num_classes: int
    task: ClassVar[str] = "classification"
    metric_name: ClassVar[str] = "accuracy"
    # a pretrained network's classifier fits this head: it starts as one trained on the frozen features, and can
    # teach every subnet
    pretrained_classifier: ClassVar[bool] = True

    def to_dict(self) -> dict:
        return {"task": self.task, "num_classes": self.num_classes}

    # ------------------------------------------------------------ backbone
    def backbone(self, space: SearchSpace) -> SearchSpace:
        """The space the backbone runs: classification reads its final stride-32 features as they are."""
        return space

    def endpoints(self, space: SearchSpace) -> tuple[int, ...]:
        """Stage outputs read besides the backbone's last features: none."""
        return ()

    # ------------------------------------------------------------ supernet
    def supernet_layers(self, space: SearchSpace, anchored: bool) -> dict:
        """The supernet's head layers by attribute name (the names its checkpoints use), built."""
        from factory.core.backend import keras
        from factory.nas.layers import ConvBN

        layers = {"head": ConvBN(space.top_in_channels, space.head_channels, 1, 1, space.head_activation, anchored,
                                 name="head"),
                  "features": keras.layers.Dense(space.feature_channels, name="features")
                  if space.feature_channels else None,
                  "dropout": keras.layers.Dropout(space.dropout),
                  "classifier": keras.layers.Dense(self.num_classes, name="classifier")}
        layers["head"].build(None)
        if layers["features"] is not None:
            layers["features"].build((None, space.head_channels))
        layers["classifier"].build((None, space.pooled_channels))
        return layers

    def supernet_logits(self, layers: dict, space: SearchSpace, features: list, output_size, training=False,
                        dropout=False, rate=None, anchor=None):
        from factory.core.backend import tf
        from factory.nas import activations

        x = tf.reduce_mean(layers["head"](features[-1], training=training, rate=rate, anchor=anchor), axis=[1, 2])
        if layers["features"] is not None:
            x = activations.get(space.head_activation)(layers["features"](x))
        if dropout:
            x = layers["dropout"](x, training=True)
        return layers["classifier"](x)

    # ----------------------------------------------------- standard layers
    def keras_logits(self, space: SearchSpace, features: list, resolution: int):
        """Standard layers on the backbone's last features, named as the supernet's."""
        from factory.core.backend import keras
        from factory.nas.extract import activation_layer, conv_bn_act

        x = conv_bn_act(features[-1], space.head_channels, 1, 1, space.head_activation, "head")
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        if space.feature_channels:
            x = keras.layers.Dense(space.feature_channels, name="features")(x)
            x = activation_layer(space.head_activation, "features_act")(x)
        x = keras.layers.Dropout(space.dropout, name="dropout")(x)
        return keras.layers.Dense(self.num_classes, name="classifier")(x)

    def export_weights(self, layers: dict, space: SearchSpace) -> dict[str, list]:
        """The standard layers' weights by name, from the supernet's head layers."""
        out = {"head_conv": [layers["head"].kernel.numpy()], "head_bn": layers["head"].bn.export(),
               "classifier": layers["classifier"].get_weights()}
        if space.feature_channels:
            out["features"] = layers["features"].get_weights()
        return out

    def load_pretrained(self, layers: dict, weights: dict, put, put_bn, classifier: bool) -> None:
        """A pretrained network's head convolution (and its classifier when ``classifier``: ImageNet's classes)."""
        put((layers["head"].kernel,), weights["head_conv"])
        put_bn(layers["head"].bn, weights["head_bn"])
        if classifier:
            layers["classifier"].set_weights(weights["classifier"])

    def param_count(self, space: SearchSpace) -> int:
        """Parameters of the standard layers (batch norm's 4 per channel included)."""
        total = space.top_in_channels * space.head_channels + 4 * space.head_channels
        if space.feature_channels:
            total += (space.head_channels + 1) * space.feature_channels
        return total + (space.pooled_channels + 1) * self.num_classes

    # -------------------------------------------------------- latency table
    def table_entry(self, space: SearchSpace, resolution: int) -> tuple[str, int]:
        """(kind, size) of the head's latency-table entry: it starts at the last stage's output size."""
        return "head", space.stage_sizes(resolution)[-1]

    def table_inputs(self, space: SearchSpace, size: int) -> list[tuple[int, int, int]]:
        """(stage, size, channels) of the stage outputs the entry of ``size`` takes: the last stage's."""
        return [(len(space.stages) - 1, size, space.stages_out_channels)]

    # -------------------------------------------------------- loss, metric
    def loss(self, labels, logits, label_smoothing: float = 0.0):
        """Cross-entropy on integer labels, smoothed."""
        from factory.core.backend import tf

        targets = tf.one_hot(labels, self.num_classes)
        targets = targets * (1.0 - label_smoothing) + label_smoothing / self.num_classes
        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(targets, logits))

    def distill_loss(self, soft, logits):
        """Cross-entropy against a teacher's (or the largest subnet's) probabilities."""
        from factory.core.backend import tf

        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(soft, logits))

    def align(self, soft, logits):
        """A teacher's probabilities as ``logits`` are laid out: per image already."""
        return soft

    def train_metric(self, name: str):
        from factory.core.backend import keras

        return keras.metrics.SparseCategoricalAccuracy(name)

    def labels(self, targets):
        """Integer labels of a batch's targets, as the loss and metric read them."""
        from factory.core.backend import tf

        return tf.cast(tf.reshape(targets, [-1]), tf.int32)

    def score(self, pairs) -> float:
        """Top-1 accuracy over ``(logits, labels)`` batches."""
        correct = total = 0
        for logits, labels in pairs:
            pred = np.argmax(logits, axis=-1)
            correct += int(np.sum(pred == np.reshape(labels, [-1])))
            total += int(pred.shape[0])
        return correct / max(total, 1)
