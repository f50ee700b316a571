"""Quantization-aware training of an extracted subnet, and its conversion to a fully int8 .tflite.

tfmot's default registry knows Conv2D, DepthwiseConv2D (folded with batch norm), ReLU,
Add, pooling and Dense. It does not know squeeze-excite's ``Multiply``, activations
other than relu/relu6/swish/gelu (hard-swish, hard-sigmoid) or weightless op layers;
those get :class:`OutputQuantizeConfig`, which quantizes their outputs with tfmot's
moving-average quantizer as the default registry does for Add, so QAT simulates every
int8 tensor the converter will produce.
"""

from __future__ import annotations

import numpy as np

from factory import activations
from factory.backend import keras, tf
from factory.errors import FactoryError

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


def to_int8_tflite(model: keras.Model, representative: np.ndarray) -> bytes:
    """Fully int8 (int8 input and output); a float operator left over fails conversion.

    ``representative`` holds a few normalized input images. Post-training quantization
    calibrates every range from them; for a QAT model the fake-quant ranges are used and
    TF 2.21's converter still asks for them before it allows int8 input and output.
    """
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None].astype(np.float32)] for x in representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    try:
        return converter.convert()
    except Exception as exc:  # the converter raises many types; its first line says which op
        raise FactoryError(f"int8 conversion failed: {str(exc).strip().splitlines()[0]}") from None


def operator_report(content: bytes) -> list[dict]:
    """Every operator of a .tflite with the dtypes of its inputs and outputs."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    tensors = {t["index"]: np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    return [{"op": op["op_name"],
             "inputs": [tensors[i] for i in op["inputs"] if i >= 0 and i in tensors],
             "outputs": [tensors[i] for i in op["outputs"] if i in tensors]}
            for op in interpreter._get_ops_details()]


def float_operators(content: bytes) -> list[str]:
    """Operators computing in float (dequantize-free int8 graphs have none)."""
    return [op["op"] for op in operator_report(content) if "float32" in op["outputs"]]
