"""Training a standalone model as the supernet is trained: the baselines of the benchmarks."""

import numpy as np
import pytest

from factory.core.backend import keras, tf
from factory.training.data import normalize
from factory.training.train import TrainConfig, train_model


def small_model(size: int) -> keras.Model:
    return keras.Sequential([keras.Input((size, size, 3)), keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])


class Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


@pytest.mark.parametrize("size", [16, 24])
def test_an_interrupted_run_resumes_at_its_next_epoch(digits, tmp_path, capfd, size):
    backup = tmp_path / "backup"
    config = TrainConfig(epochs=2, batch_size=256)
    first = small_model(size)
    first.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(KeyboardInterrupt):  # what train_model's backup does, stopped after epoch 1
        first.fit(tf.image.resize(digits.x_train[:512], (size, size)), digits.y_train[:512], epochs=2,
                  callbacks=[keras.callbacks.BackupAndRestore(str(backup)), Interrupt()], verbose=0)
    capfd.readouterr()
    model = small_model(size)  # images are resized to the model's input
    train_model(model, digits, config, verbose=2, backup_dir=backup)
    out = capfd.readouterr().out
    assert "Epoch 2/2" in out and "Epoch 1/2" not in out
    assert not list(backup.rglob("*.index"))  # the checkpoint is removed once training finished
    assert int(model.optimizer.iterations.numpy()) > 0


@pytest.mark.parametrize("momentum", [0.9, 0.999])
def test_batch_norm_statistics_are_those_of_the_data_after_training(digits, momentum):
    """keras.applications' MobileNets use momentum 0.999: short runs would keep stale statistics."""
    config = TrainConfig(epochs=1, batch_size=256, calibration_images=512)
    bn = keras.layers.BatchNormalization(momentum=momentum)
    model = keras.Sequential([keras.Input((16, 16, 3)), bn, keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
    train_model(model, digits, config, verbose=0)
    images = normalize(digits.resized(16).x_train[:512]).numpy()  # what the model saw: the factory's one resize
    np.testing.assert_allclose(bn.moving_mean.numpy(), images.mean(axis=(0, 1, 2)), atol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(), images.var(axis=(0, 1, 2)), rtol=0.02)
    assert bn.momentum == momentum
