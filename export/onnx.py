"""The float model as ONNX (tf2onnx), checked in ONNX Runtime against the Keras model it came from.

ONNX Runtime users get the float weights the .tflite was quantized from (after the QAT
fine-tune, quantizers removed), NHWC float32 input normalized as in training
(``(pixel - 128) / 128``) and logits out.
"""

from __future__ import annotations

import numpy as np

from factory.core.backend import tf
from factory.training.data import normalize
from factory.core.errors import FactoryError

OPSET = 17


def to_onnx(model) -> bytes:
    """The ONNX model of a Keras model with one image input (any batch size)."""
    import tf2onnx

    spec = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="image"),)
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET)
    except Exception as exc:  # tf2onnx raises many types; its first line names the op
        raise FactoryError(f"ONNX conversion failed: {str(exc).strip().splitlines()[0]}") from None
    return proto.SerializeToString()


def onnx_outputs(content: bytes, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """ONNX Runtime's outputs for uint8 images (normalized as the model expects)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: normalize(images[i:i + batch_size]).numpy()})[0]
                           for i in range(0, len(images), batch_size)])


def onnx_check(content: bytes, model, images: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1 agreement and the largest logit difference between ONNX Runtime and Keras, and ONNX's accuracy."""
    ours = onnx_outputs(content, images)
    theirs = model.predict(normalize(images).numpy(), batch_size=256, verbose=0)
    return {"top1_agreement": float(np.mean(ours.argmax(-1) == theirs.argmax(-1))),
            "max_abs_logit_difference": float(np.abs(ours - theirs).max()),
            "accuracy": float(np.mean(ours.argmax(-1) == labels)), "opset": OPSET}
