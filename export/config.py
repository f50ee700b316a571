"""The settings of an export (no TensorFlow here: the CLI builds its options from them)."""

from __future__ import annotations

from dataclasses import dataclass

from factory.core.convert import IO_TYPES
from factory.core.checks import check_fields
from factory.core.errors import FactoryError

FORMATS = ("tflite", "onnx")
# A subnet of a supernet started from ImageNet ships post-training int8, as Model Maker's models do: on
# bench.pretrained's 450 photos a lite0 subnet lost 0.22 points to post-training int8 (86.26% float, 86.04%) and 19.5
# to 60 QAT steps at the default rate (66.80%), which re-learn from too few images what ImageNet taught
PRETRAINED_QAT_EPOCHS = 0


@dataclass(frozen=True)
class ExportConfig:
    """QAT, interface and acceptance settings of an export."""

    qat_epochs: int = 2
    min_qat_steps: int = 300  # small data sets run more epochs to reach this many steps
    learning_rate: float = 0.005
    batch_size: int = 128
    distill: bool = True
    max_drop_points: float = 1.0  # the shipped model may lose at most this many points against its float twin
    # top-1 agreement of the .tflite with the Keras model it was converted from: int8 kernels round differently from
    # the fake-quantized Keras model, so an unsure model's close calls flip on about 1% of images (98.89% of 360
    # digits, 98.92% and 98.96% of 5,000 CIFAR-10 images were measured here, the accuracies alike); a conversion
    # that changes the model disagrees on far more
    min_agreement: float = 0.98
    allow_float_ops: bool = False
    allow_over_budget: bool = False  # ship a model that measured over its budget, with a warning
    io: str = "uint8"  # int8 models: "uint8" pixels in, probabilities out; "int8" in, int8 logits out
    representative_images: int = 200
    formats: tuple[str, ...] = ("tflite",)  # "onnx" adds model.onnx (the float weights) beside the .tflite
    author: str = "mobile-model-factory"
    license: str = "unspecified (set it with --license)"
    seed: int = 0

    @classmethod
    def for_run(cls, pretrained: bool, **settings) -> "ExportConfig":
        """The settings of the run's kind: a subnet of a supernet started from ImageNet weights ships post-training
        int8 (``PRETRAINED_QAT_EPOCHS``) unless ``qat_epochs`` is given."""
        if settings.get("qat_epochs") is None:
            settings["qat_epochs"] = PRETRAINED_QAT_EPOCHS if pretrained else cls.qat_epochs
        return cls(**settings)

    def __post_init__(self):
        check_fields(self, {"qat_epochs": (">=0",), "min_qat_steps": (">=0",), "learning_rate": (">0",),
                            "batch_size": (">=1",), "max_drop_points": (">=0",), "min_agreement": (">=0", "<=1"),
                            "representative_images": (">=1",), "seed": (">=0",)})
        if self.io not in IO_TYPES:
            raise FactoryError(f"--io {self.io!r} is not one of {list(IO_TYPES)}")
        unknown = sorted(set(self.formats) - set(FORMATS))
        if unknown:
            raise FactoryError(f"--format {unknown[0]!r} is not one of {list(FORMATS)}")

