"""The one place that selects Keras 2.

tensorflow-model-optimization's quantization-aware training only accepts Keras 2
models, and TF 2.21 ships Keras 3 as ``tf.keras``. Every module of the project takes
``keras`` (tf_keras) and ``tf`` from here, so the switch is made once, before
TensorFlow is first imported.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

if not tf.config.list_physical_devices("GPU"):
    # On a CPU, Grappler's graph rewrites cost more than they give on the supernet's graphs: two epochs of its
    # sandwich step on digits took 80 s without them against 150 s with (the first trace 51 s against 97 s,
    # then 10 s an epoch against 12 s). A GPU keeps them (its layout rewrite matters there).
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})

__all__ = ["tf", "keras"]
