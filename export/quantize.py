"""Quantization-aware training of an extracted subnet, and what its int8 .tflite holds.

tfmot's default registry knows Conv2D, DepthwiseConv2D (folded with batch norm), ReLU,
Add, pooling and Dense. It does not know squeeze-excite's ``Multiply``, activations
other than relu/relu6/swish/gelu (hard-swish, hard-sigmoid) or weightless op layers;
those get :class:`OutputQuantizeConfig`, which quantizes their outputs with tfmot's
moving-average quantizer as the default registry does for Add, so QAT simulates every
int8 tensor the converter will produce.
"""

from __future__ import annotations

import numpy as np

from factory.nas import activations
from factory.core.backend import keras

import tensorflow_model_optimization as tfmot  # noqa: E402  (after the Keras 2 switch)

quantizers = tfmot.quantization.keras.quantizers


@keras.saving.register_keras_serializable(package="factory")
class OutputQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """Quantize a weightless layer's output (8 bits, asymmetric, moving-average range)."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self):
        return {}


_REGISTRY = tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme().get_quantize_registry()
# activations whose output tfmot's Default8BitActivationQuantizeConfig knows how to quantize
_KNOWN_ACTIVATIONS = {"relu", "relu6", "swish", "gelu", "linear", "softmax", "sigmoid", "tanh"}


def _needs_config(layer) -> bool:
    if isinstance(layer, keras.layers.Activation):
        return getattr(layer.activation, "__name__", None) not in _KNOWN_ACTIVATIONS
    # layers with weights (batch norm included, which tfmot folds into its convolution) are tfmot's own
    return not layer.weights and not _REGISTRY.supports(layer)


def quantize_scope():
    return tfmot.quantization.keras.quantize_scope({
        "OutputQuantizeConfig": OutputQuantizeConfig,
        "hard_swish": activations.hard_swish, "hard_sigmoid": activations.hard_sigmoid})


def quantize_model(model: keras.Model) -> keras.Model:
    """The QAT version of an extracted subnet (fake-quantized, trainable, same weights)."""
    annotate = tfmot.quantization.keras.quantize_annotate_layer

    def clone(layer):
        config = OutputQuantizeConfig() if _needs_config(layer) else None
        return annotate(layer.__class__.from_config(layer.get_config()), config)

    annotated = keras.models.clone_model(model, clone_function=clone)
    annotated.set_weights(model.get_weights())
    with quantize_scope():
        return tfmot.quantization.keras.quantize_apply(annotated)


def pin_input_range(qat: keras.Model, low: float, high: float):
    """Fix the input quantizer's range to the normalization's [low, high].

    With pixel * SCALE + OFFSET over 0..255 this makes the int8 input exactly
    ``pixel - 128`` and a uint8 input exactly the pixel, whatever pixels the fine-tune
    happens to see (the quantizer only widens its range to what it sees).
    """
    [layer] = [layer for layer in qat.layers if type(layer).__name__ == "QuantizeLayer"]
    for var in layer.weights:
        if var.name.endswith("_min:0"):
            var.assign(low)
        elif var.name.endswith("_max:0"):
            var.assign(high)


def wrapped(qat: keras.Model, name: str):
    """The QAT wrapper of the float layer called ``name``."""
    return qat.get_layer(f"quant_{name}")


def dequantized(qat: keras.Model, model: keras.Model) -> keras.Model:
    """``model`` holding the QAT model's trained float weights, quantizers removed: the float
    twin of the int8 model, against which quantization's own cost is measured."""
    twin = keras.models.clone_model(model)
    for layer in twin.layers:
        if layer.weights:  # the wrapper owns the float layer's variables, named "<layer>/<weight>"
            trained = {w.name.split("/", 1)[1]: w for w in wrapped(qat, layer.name).weights
                       if w.name.startswith(f"{layer.name}/")}
            layer.set_weights([trained[w.name.split("/", 1)[1]].numpy() for w in layer.weights])
    return twin


def operator_report(content: bytes) -> list[dict]:
    """Every operator of a .tflite with the dtypes of its inputs and outputs; ``io`` marks the
    QUANTIZE/DEQUANTIZE that convert the model's own input or output."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    tensors = {t["index"]: np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    ends = {d["index"] for d in interpreter.get_input_details() + interpreter.get_output_details()}
    return [{"op": op["op_name"],
             "inputs": [tensors[i] for i in op["inputs"] if i >= 0 and i in tensors],
             "outputs": [tensors[i] for i in op["outputs"] if i in tensors],
             "io": op["op_name"] in ("QUANTIZE", "DEQUANTIZE") and bool(ends & {*op["inputs"], *op["outputs"]})}
            for op in interpreter._get_ops_details()]


def io_operators(content: bytes) -> list[str]:
    """The QUANTIZE/DEQUANTIZE operators at the model's input and output (uint8 pixels in, float32 out)."""
    return [op["op"] for op in operator_report(content) if op["io"]]


def float_operators(content: bytes) -> list[str]:
    """Operators computing in float, but for the I/O conversions (fully int8 bodies have none)."""
    return [op["op"] for op in operator_report(content) if "float32" in op["outputs"] and not op["io"]]
