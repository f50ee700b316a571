"""QAT of extracted subnets (squeeze-excite and hard-swish included) and fully int8 conversion."""

import numpy as np
import pytest

from export.quantize import float_operators, io_operators, operator_report, quantize_model
from factory.core.convert import convert
from factory.nas.space import TINY, SubnetConfig
from factory.nas.supernet import Supernet
from factory.nas.extract import extract
from factory.nas.heads import ClassificationHead


@pytest.fixture(scope="module")
def supernet():
    return Supernet(TINY, ClassificationHead(10))


@pytest.mark.parametrize("seed, io", [(0, "int8"), (1, "int8"), (0, "uint8")])
def test_qat_subnet_converts_to_a_fully_int8_model(supernet, seed, io):
    subnet = SubnetConfig.random(TINY, seed)
    model = extract(supernet, subnet, fold_gate=True)
    qat = quantize_model(model)
    wrapped = {type(layer).__name__ for layer in qat.layers}
    assert "QuantizeWrapperV2" in wrapped or "QuantizeWrapper" in wrapped
    x = np.random.default_rng(seed).uniform(-1, 1, (8, subnet.resolution, subnet.resolution, 3)).astype("float32")
    qat.compile(optimizer="sgd", loss="mse")
    qat.fit(x, model(x).numpy(), epochs=1, verbose=0)  # ranges are learnt, not left at init
    content = convert(qat, "int8", x, io)
    report = operator_report(content)
    assert float_operators(content) == []  # the uint8 interface's QUANTIZE and DEQUANTIZE are I/O, not body
    assert io_operators(content) == ({"int8": [], "uint8": ["QUANTIZE", "DEQUANTIZE"]}[io])
    assert {"HARD_SWISH", "MUL", "DEPTHWISE_CONV_2D"} <= {op["op"] for op in report}  # SE gate and hard-swish stay
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    assert interpreter.get_input_details()[0]["dtype"] == {"int8": np.int8, "uint8": np.uint8}[io]
    assert interpreter.get_output_details()[0]["dtype"] == {"int8": np.int8, "uint8": np.float32}[io]


def test_float_operators_are_found(supernet):
    from factory.core.backend import tf

    model = extract(supernet, SubnetConfig.smallest(TINY))
    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()  # no quantization at all
    assert "CONV_2D" in float_operators(content)


def test_a_float16_conversion_stores_float16_weights_and_takes_float32(supernet):
    model = extract(supernet, SubnetConfig.smallest(TINY))
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=convert(model, "float16"))
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    assert "float16" in {np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}


def test_the_fine_tuned_float_twin_holds_the_qat_weights(supernet):
    from export.quantize import dequantized

    model = extract(supernet, SubnetConfig.random(TINY, 2), fold_gate=True)
    qat = quantize_model(model)
    x = np.random.default_rng(0).uniform(-1, 1, (8, *model.input_shape[1:])).astype("float32")
    qat.compile(optimizer="sgd", loss="mse")
    qat.fit(x, model(x).numpy() + 1.0, epochs=2, verbose=0)  # moves every weight away from the extracted ones
    twin = dequantized(qat, model)
    trained = {v.name: v.numpy() for v in qat.weights}
    for name in ("classifier/kernel:0", "stem_conv/kernel:0", "stem_bn/moving_mean:0", "head_bn/gamma:0"):
        layer, weight = name.split("/")
        [value] = [w.numpy() for w in twin.get_layer(layer).weights if w.name.endswith(weight)]
        np.testing.assert_array_equal(value, trained[name])
    assert not np.array_equal(twin.get_layer("classifier").get_weights()[0],
                              model.get_layer("classifier").get_weights()[0])  # the fine-tune moved it


@pytest.mark.parametrize("name, precision", [("smallest", "int8"), ("largest", "int8"), ("random", "float16")])
def test_timing_conversion_is_the_same_graph(supernet, name, precision):
    """Models are converted from their frozen function, not from a SavedModel as ``from_keras_model`` does: the
    same operators on the same tensors (float16's weight DEQUANTIZEs come in another order), the same outputs,
    and the same serving signature."""
    from ai_edge_litert.interpreter import Interpreter

    from factory.core.backend import tf
    from factory.core.convert import _convert
    from latency_tables.memory import read_graph

    def operators(content):
        graph = read_graph(content)
        sizes = lambda ids: tuple(graph.sizes[i] for i in ids)  # noqa: E731
        return sorted((name, sizes(inputs), sizes(outputs)) for name, inputs, outputs in graph.ops), graph.weights

    subnet = {"smallest": SubnetConfig.smallest(TINY), "largest": SubnetConfig.largest(TINY),
              "random": SubnetConfig.random(TINY, 4)}[name]
    model = extract(supernet, subnet)
    saved_model = _convert(tf.lite.TFLiteConverter.from_keras_model(model), model, precision, None, "int8")
    content = convert(model, precision)
    assert operators(content) == operators(saved_model)
    ours, theirs = Interpreter(model_content=content), Interpreter(model_content=saved_model)
    assert ours.get_signature_list() == theirs.get_signature_list()
    x = np.random.default_rng(0).integers(-128, 127, (1, subnet.resolution, subnet.resolution, 3))
    outputs = []
    for interpreter in (ours, theirs):
        runner = interpreter.get_signature_runner()
        [name] = interpreter.get_signature_list()["serving_default"]["inputs"]
        outputs.append(next(iter(runner(**{name: x.astype(runner.get_input_details()[name]["dtype"])}).values())))
    np.testing.assert_array_equal(*outputs)
