"""Shared fixtures. The CPU is split into two logical devices before any TF op runs,
so MirroredStrategy can be tested on a machine with no GPU."""

import tarfile
from pathlib import Path

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


@pytest.fixture(scope="session")
def tiny_workdir(tmp_path_factory):
    """A tiny supernet trained 10 epochs on digits (about 90% for its largest subnet, in under a minute: most
    of the time is the first trace), shared by the search and export tests."""
    from factory.train import TrainConfig, train_supernet

    path = tmp_path_factory.mktemp("work")
    train_supernet(load_data("digits"), "tiny", path, TrainConfig(epochs=10, batch_size=64), verbose=0)
    return path


@pytest.fixture(scope="session")
def tiny_table_file(tmp_path_factory):
    """A synthetic host-cpu-1t table of the tiny space (cost grows with the work of each layer)."""
    import json

    from test_search import synthetic_table

    path = tmp_path_factory.mktemp("tables") / "tiny-host.json"
    path.write_text(json.dumps(synthetic_table("host-cpu-1t", 1.0).doc))
    return path


@pytest.fixture(scope="session")
def trained_bundle(tiny_workdir, tiny_table_file, tmp_path_factory):
    """A bundle as `factory export` writes it by default (uint8 pixels in, probabilities out, 300 QAT steps,
    every parity gate at its default), with its ONNX model: shared by the export and client tests."""
    from export.pipeline import ExportConfig, export_subnet
    from factory.space import SubnetConfig

    out = tmp_path_factory.mktemp("default") / "bundle"
    export_subnet(tiny_workdir, SubnetConfig.largest(TINY), "host-cpu-1t", out, table=tiny_table_file, verbose=0,
                  config=ExportConfig(formats=("tflite", "onnx")))
    return out


@pytest.fixture(scope="session")
def cifar10_folder():
    """The real CIFAR-10 from ../shared, unpacked once as an image folder (slow tests only)."""
    archive = Path(__file__).parents[2] / "shared" / "datasets" / "cifar10-jpg.tar.gz"
    cache = Path("~/.cache/mmf/cifar10").expanduser()
    if not (cache / "train").is_dir():
        if not archive.exists():
            pytest.skip(f"{archive} is not here")
        cache.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(cache, filter="data")
    return cache
