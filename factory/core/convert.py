"""The one TFLite conversion of the project: latency tables and export convert through here.

Precisions: ``int8`` (fully integer body: every operator int8, a float leftover fails
conversion), ``float16`` (float16 weights, float32 compute and I/O) and ``float32``.
An int8 model's interface is chosen by ``io``: ``int8`` (int8 in, int8 out) or ``uint8``
(uint8 pixels in, float32 out: what MediaPipe Tasks and the Task Library accept; the
converter adds one QUANTIZE at the input and one DEQUANTIZE at the output).
"""

from __future__ import annotations

import warnings

import numpy as np

from factory.core.errors import FactoryError

PRECISIONS = ("int8", "float16", "float32")
IO_TYPES = ("uint8", "int8")


def convert(model, precision: str, representative: np.ndarray | None = None, io: str = "int8",
            signature: bool = True) -> bytes:
    """The .tflite of a Keras model. ``representative``: a few input images, as the model takes them (int8 only).

    Post-training quantization calibrates every range from ``representative``; a QAT
    model brings its own ranges, and TF 2.21's converter still asks for a representative
    dataset before it allows integer input and output. Without ``representative`` an int8
    model is calibrated on random inputs: right for timing (latency does not depend on the
    ranges), never for a model that ships.

    The model's frozen function is converted, not a SavedModel of it (``from_keras_model``),
    whose writing and reading is 90% of that path's time and more for a QAT model (44 s
    against 3 s for one of the default space): the same operators on the same tensors. The
    ``serving_default`` signature that path would write (input and output named after the
    model's) is added afterwards, unless ``signature`` is False.
    """
    import logging

    from factory.core.backend import tf

    specs = [tf.TensorSpec((1, *shape[1:]), tf.float32) for shape in _input_shapes(model)]
    function = tf.function(lambda *x: model(x[0] if len(x) == 1 else list(x), training=False)
                           ).get_concrete_function(*specs)
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # "consider providing the trackable_obj": that path is the SavedModel one
    try:
        content = _convert(tf.lite.TFLiteConverter.from_concrete_functions([function]), model, precision,
                           representative, io)
    finally:
        absl.setLevel(level)
    return with_signature(content, model.input_names[0], model.output_names[0]) if signature else content


def _input_shapes(model) -> list:
    return model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]


def convert_for_timing(model, precision: str) -> bytes:
    """A model only timed (tables, calibration): random calibration, int8 I/O, no signature."""
    return convert(model, precision, signature=False)


def with_signature(content: bytes, input_name: str, output_name: str, key: str = "serving_default") -> bytes:
    """``content`` with a signature naming its one input and one output (what ``get_signature_runner`` reads)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    graph = model.subgraphs[0]

    def tensor_map(name, index):
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = name, int(index)
        return entry

    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = key, 0
    signature.inputs = [tensor_map(input_name, graph.inputs[0])]
    signature.outputs = [tensor_map(output_name, graph.outputs[0])]
    model.signatureDefs = [signature]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _convert(converter, model, precision: str, representative, io: str) -> bytes:
    from factory.core.backend import tf

    if precision not in PRECISIONS:
        raise FactoryError(f"precision {precision!r} is not one of {list(PRECISIONS)}")
    if precision == "int8":
        if io not in IO_TYPES:
            raise FactoryError(f"--io {io!r} is not one of {list(IO_TYPES)}")
        if representative is None:  # one batch per input (a head's table entry takes two stage outputs)
            rng = np.random.default_rng(0)
            inputs = [rng.standard_normal((16, *shape[1:])).astype(np.float32) for shape in _input_shapes(model)]
        else:
            inputs = [representative]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[i][None].astype(np.float32) for x in inputs]
                                                    for i in range(len(inputs[0])))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8 if io == "uint8" else tf.int8
        converter.inference_output_type = tf.float32 if io == "uint8" else tf.int8
    elif precision == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    try:
        with warnings.catch_warnings():  # "Statistics for quantized inputs were expected": random calibration
            warnings.simplefilter("ignore", UserWarning)
            return converter.convert()
    except Exception as exc:  # the converter raises many types; its first line says which op
        raise FactoryError(f"{precision} conversion failed: {str(exc).strip().splitlines()[0]}") from None
