"""Semantic segmentation: MobileNetV3's LR-ASPP head on the elastic backbone, logits at the input size.

The backbone runs at output stride 16: stages past it keep their width and weights but stride 1 (MobileNetV3's
segmentation models do the same, with dilation; a plain 3x3 or 5x5 depthwise keeps TFLite's kernels fast). The
head reads those features and the last stride-8 stage's output: a 1x1 convolution (128, batch norm, ReLU) gated
by a sigmoid of a 1x1 convolution over their global average, upsampled to stride 8 and classified, plus a
classifier on the stride-8 features, summed and upsampled bilinearly to the input size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from factory.core.errors import FactoryError
from factory.nas.space import SearchSpace

IGNORE = 255  # a mask value that no loss or metric counts (unlabelled pixels)
OUTPUT_STRIDE = 16
BRANCH_CHANNELS = 128


@dataclass(frozen=True)
class SegmentationHead:
    """``num_classes`` logits per pixel, at the input's size."""

    num_classes: int
    task: ClassVar[str] = "segmentation"
    metric_name: ClassVar[str] = "mIoU"
    pretrained_classifier: ClassVar[bool] = False  # only the backbone comes from a pretrained classifier

    def __post_init__(self):
        if not 2 <= self.num_classes <= IGNORE:
            raise FactoryError(f"segmentation needs 2 to {IGNORE} classes (background included), "
                               f"got {self.num_classes}")

    def to_dict(self) -> dict:
        return {"task": self.task, "num_classes": self.num_classes}

    # ------------------------------------------------------------ backbone
    def backbone(self, space: SearchSpace) -> SearchSpace:
        """``space`` with the stages that would go past output stride 16 at stride 1."""
        strides, stages = space.stem_stride, []
        for stage in space.stages:
            stride = stage.stride if strides * stage.stride <= OUTPUT_STRIDE else 1
            strides *= stride
            stages.append(dataclasses.replace(stage, stride=stride))
        backbone = dataclasses.replace(space, stages=tuple(stages))
        self.endpoints(backbone)
        return backbone

    def endpoints(self, space: SearchSpace) -> tuple[int, ...]:
        """The stage the low-level branch reads: the last whose stride is at most half the final stride."""
        strides = space.stage_strides()
        low = [s for s, stride in enumerate(strides) if 2 * stride <= strides[-1]]
        if not low:
            raise FactoryError(f"search space {space.name!r} downsamples only once: segmentation reads a stage at "
                               "half the final resolution; use a space with two strided stages or more")
        return (low[-1],)

    # ------------------------------------------------------------ supernet
    def supernet_layers(self, space: SearchSpace, anchored: bool) -> dict:
        """The head's layers by attribute name, built. Their batch norm is never anchored: no pretrained network
        holds this head."""
        from factory.core.backend import keras
        from factory.nas.layers import ConvBN

        high, low = space.top_in_channels, self._low_channels(space)
        layers = {"seg_branch": ConvBN(high, BRANCH_CHANNELS, 1, 1, "relu", name="seg_branch"),
                  "seg_gate": keras.layers.Dense(BRANCH_CHANNELS, activation="sigmoid", name="seg_gate"),
                  "seg_high_classifier": keras.layers.Dense(self.num_classes, name="seg_high_classifier"),
                  "seg_low_classifier": keras.layers.Dense(self.num_classes, name="seg_low_classifier")}
        layers["seg_branch"].build(None)
        layers["seg_gate"].build((None, high))
        layers["seg_high_classifier"].build((None, BRANCH_CHANNELS))
        layers["seg_low_classifier"].build((None, low))
        return layers

    def supernet_logits(self, layers: dict, space: SearchSpace, features: list, output_size, training=False,
                        dropout=False, rate=None, anchor=None):
        from factory.core.backend import tf

        high, low = features[-1], features[self.endpoints(space)[0]]
        branch = layers["seg_branch"](high, training=training, rate=rate)
        gate = layers["seg_gate"](tf.reduce_mean(high, axis=[1, 2], keepdims=True))
        branch = tf.image.resize(branch * gate, tf.shape(low)[1:3])
        logits = layers["seg_high_classifier"](branch) + layers["seg_low_classifier"](low)
        return tf.image.resize(logits, output_size)

    # ----------------------------------------------------- standard layers
    def keras_logits(self, space: SearchSpace, features: list, resolution: int):
        """Standard layers, named as the supernet's (``seg_*``): what QAT and the TFLite converter take."""
        from factory.core.backend import keras
        from factory.nas.extract import conv_bn_act

        high, low = features[-1], features[self.endpoints(space)[0]]
        branch = conv_bn_act(high, BRANCH_CHANNELS, 1, 1, "relu", "seg_branch")
        gate = keras.layers.GlobalAveragePooling2D(keepdims=True, name="seg_pool")(high)
        gate = keras.layers.Conv2D(BRANCH_CHANNELS, 1, name="seg_gate")(gate)
        gate = keras.layers.Activation("sigmoid", name="seg_gate_act")(gate)
        branch = keras.layers.Multiply(name="seg_scale")([branch, gate])
        branch = keras.layers.Resizing(low.shape[1], low.shape[2], name="seg_upsample")(branch)
        logits = keras.layers.Add(name="seg_add")([
            keras.layers.Conv2D(self.num_classes, 1, name="seg_high_classifier")(branch),
            keras.layers.Conv2D(self.num_classes, 1, name="seg_low_classifier")(low)])
        return keras.layers.Resizing(resolution, resolution, name="seg_resize")(logits)

    def export_weights(self, layers: dict, space: SearchSpace) -> dict[str, list]:
        def conv(dense):  # a Dense on channels is a 1x1 convolution
            kernel, bias = dense.get_weights()
            return [kernel[None, None], bias]

        return {"seg_branch_conv": [layers["seg_branch"].kernel.numpy()],
                "seg_branch_bn": layers["seg_branch"].bn.export(),
                **{name: conv(layers[name]) for name in ("seg_gate", "seg_high_classifier", "seg_low_classifier")}}

    def load_pretrained(self, layers: dict, weights: dict, put, put_bn, classifier: bool) -> None:
        """Nothing: a pretrained classifier's head convolution and classifier have no place in this head."""

    def param_count(self, space: SearchSpace) -> int:
        """Parameters of the standard layers (batch norm's 4 per channel included)."""
        high, b, n = space.top_in_channels, BRANCH_CHANNELS, self.num_classes
        return high * b + 4 * b + (high + 1) * b + (b + 1) * n + (self._low_channels(space) + 1) * n

    # -------------------------------------------------------- latency table
    def table_entry(self, space: SearchSpace, resolution: int) -> tuple[str, int]:
        """(kind, size) of the head's latency-table entry: it ends at the input's size."""
        return "lraspp", resolution

    def table_inputs(self, space: SearchSpace, size: int) -> list[tuple[int, int, int]]:
        """(stage, size, channels) of the stage outputs the entry of ``size`` takes: the low-level stage's and the
        last stage's (which the fixed last block, if any, takes first)."""
        sizes, low = space.stage_sizes(size), self.endpoints(space)[0]
        return [(low, sizes[low], self._low_channels(space)),
                (len(space.stages) - 1, sizes[-1], space.stages_out_channels)]

    # -------------------------------------------------------- loss, metric
    def loss(self, labels, logits, label_smoothing: float = 0.0):
        """Per-pixel cross-entropy over labelled pixels (``IGNORE`` is not counted), smoothed."""
        from factory.core.backend import tf

        valid = tf.not_equal(labels, IGNORE)
        targets = tf.one_hot(tf.where(valid, labels, 0), self.num_classes)
        targets = targets * (1.0 - label_smoothing) + label_smoothing / self.num_classes
        per_pixel = tf.nn.softmax_cross_entropy_with_logits(targets, logits)
        weights = tf.cast(valid, per_pixel.dtype)
        return tf.reduce_sum(per_pixel * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)

    def distill_loss(self, soft, logits):
        """Per-pixel cross-entropy against a teacher's probabilities, over every pixel."""
        from factory.core.backend import tf

        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(soft, logits))

    def align(self, soft, logits):
        """A teacher's per-pixel probabilities at ``logits``' size (a teacher runs at its own resolution)."""
        from factory.core.backend import tf

        return tf.image.resize(soft, tf.shape(logits)[1:3])

    def train_metric(self, name: str):
        from factory.core.backend import keras

        return keras.metrics.MeanIoU(self.num_classes, name=name, sparse_y_pred=False, ignore_class=IGNORE)

    def labels(self, targets):
        """A batch's masks as int32 (batch, height, width)."""
        from factory.core.backend import tf

        targets = tf.cast(targets, tf.int32)
        return targets[..., 0] if targets.shape.rank == 4 else targets

    def score(self, pairs) -> float:
        """Mean IoU over ``(logits, masks)`` batches: IoU per class from one confusion matrix, averaged over the
        classes present in the masks or the predictions."""
        return mean_iou(self.confusion(pairs))

    def confusion(self, pairs) -> np.ndarray:
        """The (true, predicted) pixel counts over ``(outputs, masks)`` batches, unlabelled pixels left out.
        Outputs (logits or probabilities) of another size than the masks are resized to theirs bilinearly first,
        as a segmenter client brings its confidence masks to the image."""
        return sum((self.image_confusions(outputs, masks).sum(0) for outputs, masks in pairs),
                   np.zeros((self.num_classes,) * 2, np.int64))

    def image_confusions(self, outputs, masks) -> np.ndarray:
        """One (true, predicted) pixel-count matrix per image: ``(N, C, C)``."""
        n = self.num_classes
        masks = np.asarray(masks).astype(np.int64)
        masks = masks[..., 0] if masks.ndim == 4 else masks
        outputs = np.asarray(outputs, np.float32)
        if outputs.shape[1:3] != masks.shape[1:3]:
            from factory.core.backend import tf

            outputs = tf.image.resize(outputs, masks.shape[1:3]).numpy()
        pred = np.argmax(outputs, axis=-1)
        keep = masks != IGNORE
        index = np.arange(len(masks))[:, None, None] * n * n + masks * n + pred
        return np.bincount(index[keep], minlength=len(masks) * n * n).reshape(len(masks), n, n)

    # ------------------------------------------------------------ private
    def _low_channels(self, space: SearchSpace) -> int:
        return space.channels(space.stages[self.endpoints(space)[0]].width)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean of intersection over union per class, over the classes that occur (true or predicted)."""
    intersection = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    present = union > 0
    return float(np.mean(intersection[present] / union[present])) if present.any() else 0.0


def class_iou(confusion: np.ndarray) -> list[float | None]:
    """IoU of each class (None where it never occurs)."""
    intersection = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    return [float(i / u) if u else None for i, u in zip(intersection, union)]
