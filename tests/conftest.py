"""Shared fixtures. The CPU is split into two logical devices before any TF op runs,
so MirroredStrategy can be tested on a machine with no GPU."""

import numpy as np
import pytest

from factory.backend import tf

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

from factory.data import load_data  # noqa: E402
from factory.space import TINY  # noqa: E402


@pytest.fixture(scope="session")
def tiny():
    return TINY


@pytest.fixture(scope="session")
def digits():
    return load_data("digits").resized(TINY.resolutions[-1])


def randomize_statistics(supernet, seed=0):
    """Give every batch norm non-trivial statistics, so parity tests can fail."""
    rng = np.random.default_rng(seed)
    for var in supernet.weights:
        name = var.name.split("/")[-1]
        if name.startswith(("moving_", "gamma", "beta")):
            var.assign(rng.uniform(0.5, 1.5, var.shape).astype("float32"))
