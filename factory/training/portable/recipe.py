"""The training recipe: settings, optimizer and batch-norm recalibration.

Kept free of a TensorFlow import, and every function takes the Keras to build with
(tf_keras by default), so that a baseline can be trained by the same recipe under
Keras 3 on another backend, as ``bench/baselines.py`` does on machines without
TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

from factory.core.checks import check_fields
from factory.core.errors import FactoryError


@dataclass(frozen=True)
class TrainConfig:
    """Sandwich-rule training settings; defaults follow BigNAS scaled to small data."""

    epochs: int = 5
    batch_size: int = 128
    learning_rate: float = 0.05
    warmup_epochs: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 4e-5
    clipnorm: float = 1.0
    n_random: int = 2
    label_smoothing: float = 0.1
    zero_init_residual: bool = True
    sort_channels: bool = True
    calibration_images: int = 2000
    seed: int = 0
    init_from: str = ""  # a trained work directory of the same space: start from its weights, all but the classifier
    min_steps: int = 0  # small data sets run more epochs to reach this many steps
    pretrained: str = ""  # start from these ImageNet weights (``factory.nas.pretrained.PRETRAINED``), head first
    # with ``pretrained``: distil every subnet from the frozen pretrained network (OFA's teacher) rather than in place
    # from the largest; in place scored higher on every subnet compared on 450 photos (bench.pretrained)
    teacher: bool = False
    schedule: str = "sandwich"  # or "progressive": OFA's progressive shrinking (kernel, then depth, then expand)

    def __post_init__(self):
        check_fields(self, {"epochs": (">=1",), "batch_size": (">=1",), "learning_rate": (">0",),
                            "warmup_epochs": (">=0",), "momentum": (">=0", "<1"), "weight_decay": (">=0",),
                            "clipnorm": (">=0",), "n_random": (">=0",), "label_smoothing": (">=0", "<1"),
                            "calibration_images": (">=1",), "seed": (">=0",), "min_steps": (">=0",)})
        if self.schedule not in SCHEDULES:
            raise FactoryError(f"schedule {self.schedule!r}: use one of {', '.join(SCHEDULES)}")
        if self.pretrained and self.init_from:
            raise FactoryError("start from pretrained weights or from another work directory (--init-from), not both")

    @classmethod
    def transfer(cls, init_from: str, **overrides) -> "TrainConfig":
        """Fine-tuning a trained supernet on new classes: a shorter schedule at a lower rate (the features are
        there already; the new classifier learns fast), a short warm-up so its first random gradients do not
        wreck them, and at least ``min_steps`` steps however few the images, unless the epochs are given."""
        defaults = {**TRANSFER_DEFAULTS, **({"min_steps": 0} if "epochs" in overrides else {})}
        return cls(**{**defaults, **overrides, "init_from": init_from})


    @classmethod
    def from_pretrained(cls, pretrained: str, **overrides) -> "TrainConfig":
        """Training from ImageNet weights: small batches, a low rate after a warm-up, and a schedule sized in steps,
        so a few hundred images train enough without wrecking what the weights know."""
        defaults = {**PRETRAINED_DEFAULTS, **({"min_steps": 0} if "epochs" in overrides else {})}
        return cls(**{**defaults, **overrides, "pretrained": pretrained})


SCHEDULES = ("sandwich", "progressive")
TRANSFER_DEFAULTS = {"epochs": 3, "learning_rate": 0.01, "warmup_epochs": 0.2, "min_steps": 300}
PRETRAINED_DEFAULTS = {"epochs": 2, "batch_size": 32, "learning_rate": 0.005, "warmup_epochs": 0.5, "min_steps": 200,
                       "calibration_images": 500}


def epochs_for(config: TrainConfig, steps_per_epoch: int) -> int:
    """The epochs a run trains: ``config.epochs``, or more when they give fewer than ``config.min_steps`` steps
    (three epochs of a few hundred images are a dozen steps)."""
    return max(config.epochs, -(-config.min_steps // max(steps_per_epoch, 1)))


def _keras(keras):
    if keras is None:
        from factory.core.backend import keras
    return keras


def make_optimizer(config: TrainConfig, steps_per_epoch: int, variables, keras=None):
    """Nesterov SGD, linear warm-up then cosine decay, decoupled weight decay, clipping; its slots for ``variables``
    made now: a train step that creates them on its first call is traced twice (the default supernet's first step
    took 79 s, against 47 s with the slots made first)."""
    keras = _keras(keras)
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(total - 1, int(config.warmup_epochs * steps_per_epoch))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else config.learning_rate, decay_steps=max(1, total - warmup),
        warmup_target=config.learning_rate if warmup else None, warmup_steps=warmup)
    opt = keras.optimizers.SGD(schedule, momentum=config.momentum, nesterov=True,
                               weight_decay=config.weight_decay or None,
                               global_clipnorm=config.clipnorm or None)
    opt.exclude_from_weight_decay(var_names=["gamma", "beta", "bias", "transform"])
    opt.build(variables)
    return opt


def loss(config: TrainConfig, keras=None):
    """Cross-entropy on logits against one-hot labels, with the recipe's label smoothing."""
    return _keras(keras).losses.CategoricalCrossentropy(from_logits=True, label_smoothing=config.label_smoothing)


def recalibrate_batch_norm(model, batches, keras=None) -> int:
    """Set every batch norm's moving statistics to their average over ``batches`` of images.

    keras.applications' MobileNets keep momentum 0.999, so after a short run from scratch
    the moving statistics still mostly hold those of the first steps and the model predicts
    one class at inference. Returns the number of batches used."""
    keras = _keras(keras)
    inner = model.submodules if hasattr(model, "submodules") else model._flatten_layers()  # Keras 2 / Keras 3
    layers = [layer for layer in inner if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    n = 0
    try:
        for n, images in enumerate(batches, start=1):
            for layer in layers:
                layer.momentum = 1.0 - 1.0 / n  # the running mean of the batch statistics
            model(images, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return n
