"""QAT of extracted subnets (squeeze-excite and hard-swish included) and fully int8 conversion."""

import numpy as np
import pytest

from export.quantize import float_operators, operator_report, quantize_model, to_int8_tflite
from factory.space import TINY, SubnetConfig
from factory.supernet import Supernet
from factory.extract import extract


@pytest.fixture(scope="module")
def supernet():
    return Supernet(TINY, 10)


@pytest.mark.parametrize("seed", [0, 1])
def test_qat_subnet_converts_to_a_fully_int8_model(supernet, seed):
    subnet = SubnetConfig.random(TINY, seed)
    model = extract(supernet, subnet, fold_gate=True)
    qat = quantize_model(model)
    wrapped = {type(layer).__name__ for layer in qat.layers}
    assert "QuantizeWrapperV2" in wrapped or "QuantizeWrapper" in wrapped
    x = np.random.default_rng(seed).uniform(-1, 1, (8, subnet.resolution, subnet.resolution, 3)).astype("float32")
    qat.compile(optimizer="sgd", loss="mse")
    qat.fit(x, model(x).numpy(), epochs=1, verbose=0)  # ranges are learnt, not left at init
    content = to_int8_tflite(qat, x)
    report = operator_report(content)
    assert float_operators(content) == []
    assert {"HARD_SWISH", "MUL", "DEPTHWISE_CONV_2D"} <= {op["op"] for op in report}  # SE gate and hard-swish stay
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8


def test_float_operators_are_found(supernet):
    from factory.backend import tf

    model = extract(supernet, SubnetConfig.smallest(TINY))
    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()  # no quantization at all
    assert "CONV_2D" in float_operators(content)
