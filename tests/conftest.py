"""Shared fixtures. The CPU is split into two logical devices before any TF op runs,
so MirroredStrategy can be tested on a machine with no GPU."""

import tarfile
from pathlib import Path

import pytest

from factory.core.backend import tf

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

from factory.training.data import load_data  # noqa: E402
from factory.nas.space import TINY  # noqa: E402


@pytest.fixture(scope="session")
def tiny():
    return TINY


@pytest.fixture(scope="session")
def digits():
    return load_data("digits").resized(TINY.resolutions[-1])


@pytest.fixture(scope="session")
def tiny_workdir(tmp_path_factory):
    """A tiny supernet trained 10 epochs on digits (about 90% for its largest subnet, in under a minute: most
    of the time is the first trace), shared by the search and export tests."""
    from factory.training.train import TrainConfig, train_supernet
    from factory.training.workdir import Workdir

    path = tmp_path_factory.mktemp("work")
    train_supernet(load_data("digits"), TINY, Workdir(path), TrainConfig(epochs=10, batch_size=64), verbose=0)
    return path


@pytest.fixture(scope="session")
def host():
    """The shipped single-thread host profile."""
    from devices.profile import load_profile

    return load_profile("host-cpu-1t")


@pytest.fixture(scope="session")
def tiny_table_file(tmp_path_factory):
    """A synthetic host-cpu-1t table of the tiny space (cost grows with the work of each layer)."""
    import json

    from helpers import synthetic_table

    path = tmp_path_factory.mktemp("tables") / "tiny-host.json"
    path.write_text(json.dumps(synthetic_table("host-cpu-1t", 1.0).doc))
    return path


@pytest.fixture(scope="session")
def tiny_table(tiny_table_file, host):
    from latency_tables.table import LatencyTable

    return LatencyTable.load(tiny_table_file, TINY, host)


@pytest.fixture(scope="session")
def trained_bundle(tiny_workdir, tiny_table, host, tmp_path_factory):
    """A bundle as `factory export` writes it by default (uint8 pixels in, probabilities out, 300 QAT steps),
    with its ONNX model: shared by the export and client tests. Every parity gate is at its default but
    the drop: the tiny test split has 360 images, so one point is 3.6 images, and which few images QAT
    flips changes with the CPU (CI measured a 1.11-point drop where this machine measured less)."""
    from export.config import ExportConfig
    from factory.app.stages import export_workdir
    from factory.nas.space import SubnetConfig
    from factory.training.workdir import Workdir

    out = tmp_path_factory.mktemp("default") / "bundle"
    export_workdir(Workdir(tiny_workdir), SubnetConfig.largest(TINY), host, tiny_table, out, verbose=0,
                  config=ExportConfig(formats=("tflite", "onnx"), max_drop_points=2.5))
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
