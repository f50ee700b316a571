"""MobileNetV3's activations, written the way TFLite fuses them.

``x * relu6(x + 3) / 6`` is the pattern the TFLite converter turns into one
HARD_SWISH operator; both functions are registered so saved models reload.
"""

from factory.core.backend import keras, tf


@keras.saving.register_keras_serializable(package="factory")
def hard_sigmoid(x):
    return tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


@keras.saving.register_keras_serializable(package="factory")
def hard_swish(x):
    return x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


def get(name: str):
    """The activation function a search space names."""
    return {"relu": tf.nn.relu, "relu6": tf.nn.relu6, "hard_swish": hard_swish}[name]
