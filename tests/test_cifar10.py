"""Slow: the supernet learns real CIFAR-10 from the image folder in ../shared (skipped without it)."""

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cifar10(cifar10_folder):
    from factory.training.data import load_data

    return load_data(str(cifar10_folder))


def test_cifar10_folder_loads_all_images(cifar10):
    assert cifar10.class_names[:2] == ["airplane", "automobile"] and cifar10.image_size == 32
    assert len(cifar10.y_train) + len(cifar10.y_val) == 50000 and len(cifar10.y_test) == 10000


def test_one_epoch_on_cifar10_beats_chance_for_every_subnet_kind(cifar10, tmp_path):
    import dataclasses

    from factory.training.data import make_dataset
    from factory.nas.space import TINY, SubnetConfig
    from factory.training.train import TrainConfig, calibration_batches, train_supernet
    from factory.training.workdir import Workdir

    data = dataclasses.replace(cifar10, x_train=cifar10.x_train[:10000], y_train=cifar10.y_train[:10000])
    config = TrainConfig(epochs=2, batch_size=128)
    supernet = train_supernet(data, TINY, Workdir(tmp_path / "w"), config, verbose=0)
    small = data.resized(TINY.resolutions[-1])
    val = make_dataset(small.x_val, small.y_val, 256, training=False)
    for subnet in (SubnetConfig.largest(TINY), SubnetConfig.smallest(TINY), SubnetConfig.random(TINY, 0)):
        supernet.recalibrate(subnet, calibration_batches(small, config))
        assert supernet.evaluate_subnet(subnet, val) > 0.2  # chance is 0.1
