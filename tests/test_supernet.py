import itertools

import numpy as np
import pytest
from helpers import randomize_statistics

from factory.core.backend import keras, tf
from factory.training.data import make_dataset
from factory.nas.extract import build_subnet_model, extract
from factory.nas.space import TINY, SubnetConfig
from factory.nas.supernet import Supernet, resize
from factory.nas.heads import ClassificationHead

ALLOWED_LAYERS = {"InputLayer", "Conv2D", "DepthwiseConv2D", "BatchNormalization", "ReLU", "Activation",
                  "GlobalAveragePooling2D", "Multiply", "Add", "Dense", "Dropout"}


def uniform(space, resolution, depth, kernel, expand):
    n = len(space.stages)
    return SubnetConfig(resolution, (depth,) * n, ((kernel,) * depth,) * n, ((expand,) * depth,) * n)


@pytest.fixture(scope="module")
def supernet():
    net = Supernet(TINY, ClassificationHead(10), seed=3)
    # Train-like weights: non-identity kernel transforms and batch-norm statistics.
    rng = np.random.default_rng(1)
    for block in net.blocks:
        for t in block.transforms:
            t.assign(t.numpy() + rng.normal(0, 0.1, t.shape).astype("float32"))
    randomize_statistics(net)
    return net


PARITY_CASES = (
    [("smallest", SubnetConfig.smallest(TINY)), ("largest", SubnetConfig.largest(TINY))]
    + [(f"random{s}", SubnetConfig.random(TINY, s)) for s in range(4)]
    + [(f"k{k}-e{e}-d{d}", uniform(TINY, 16, d, k, e))
       for k, e, d in itertools.product(TINY.kernel_sizes, TINY.expand_ratios, TINY.depths)]
)


@pytest.mark.parametrize("name, subnet", PARITY_CASES, ids=[c[0] for c in PARITY_CASES])
def test_extracted_model_matches_supernet(supernet, name, subnet):
    x = np.random.default_rng(0).normal(size=(4, subnet.resolution, subnet.resolution, 3)).astype("float32")
    model = extract(supernet, subnet)
    assert {type(layer).__name__ for layer in model.layers} <= ALLOWED_LAYERS
    expected = supernet.predict_subnet(subnet, x)
    got = model(x, training=False).numpy()
    assert np.max(np.abs(expected - got)) <= 1e-4
    assert model.count_params() == build_subnet_model(TINY, subnet, ClassificationHead(10)).count_params()


@pytest.mark.parametrize("seed", range(3))
def test_folded_gate_computes_the_same_function(supernet, seed):
    subnet = SubnetConfig.random(TINY, seed)
    x = np.random.default_rng(seed).normal(size=(2, subnet.resolution, subnet.resolution, 3)).astype("float32")
    folded = extract(supernet, subnet, fold_gate=True)
    assert not any(getattr(layer, "activation", None).__name__ == "hard_sigmoid"
                   for layer in folded.layers if isinstance(layer, keras.layers.Activation))
    np.testing.assert_allclose(folded(x).numpy(), supernet.predict_subnet(subnet, x), atol=1e-4)


def test_kernel_choices_give_different_functions(supernet):
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    outs = [supernet.predict_subnet(uniform(TINY, 16, 2, k, 6), x) for k in TINY.kernel_sizes]
    assert all(np.max(np.abs(a - b)) > 1e-3 for a, b in itertools.combinations(outs, 2))


def test_extracted_model_reloads_from_keras_format(supernet, tmp_path):
    subnet = SubnetConfig.random(TINY, 11)
    model = extract(supernet, subnet)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    x = np.ones((1, subnet.resolution, subnet.resolution, 3), "float32")
    np.testing.assert_allclose(again(x).numpy(), model(x).numpy(), atol=1e-6)


def test_training_over_many_random_subnets_never_retraces(digits):
    net = Supernet(TINY, ClassificationHead(10), n_random=2, seed=5)
    net.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    ds = make_dataset(digits.x_train[:16 * 24], digits.y_train[:16 * 24], 16, training=True)
    net.fit(ds.take(1), epochs=1, verbose=0)
    traced = net.train_function.experimental_get_tracing_count()
    net.fit(ds.skip(1).take(22), epochs=1, verbose=0)
    assert net.optimizer.iterations.numpy() == 23
    assert net.train_function.experimental_get_tracing_count() == traced
    randoms = {s for step in range(1, 23) for s in net.sandwich_configs(step)[2:]}
    assert len(randoms) >= 20


def test_sandwich_is_largest_smallest_then_seeded_randoms():
    net = Supernet(TINY, ClassificationHead(10), n_random=3, seed=9)
    step7 = net.sandwich_configs(7)
    assert step7[0] == SubnetConfig.largest(TINY) and step7[1] == SubnetConfig.smallest(TINY)
    assert len(step7) == 5
    assert step7 == net.sandwich_configs(7)
    assert step7[2:] != net.sandwich_configs(8)[2:]
    assert Supernet(TINY, ClassificationHead(10), n_random=3, seed=9).sandwich_configs(7) == step7
    assert Supernet(TINY, ClassificationHead(10), n_random=3, seed=10).sandwich_configs(7)[2:] != step7[2:]


def test_progressive_shrinking_opens_kernel_then_depth_then_expand(digits):
    net = Supernet(TINY, ClassificationHead(10), n_random=3, seed=9)
    net.shrink_progressively(30)
    phases = {name: [s for step in steps for s in net.sandwich_configs(step)[1:]]
              for name, steps in (("kernel", range(10)), ("depth", range(10, 20)), ("expand", range(20, 40)))}
    big, small = SubnetConfig.largest(TINY), SubnetConfig.smallest(TINY)
    expands = lambda s: {e for stage in s.expand_ratios for e in stage}  # noqa: E731
    kernels = lambda s: {k for stage in s.kernel_sizes for k in stage}  # noqa: E731
    assert all(s.depths == big.depths and expands(s) == {6} for s in phases["kernel"])
    assert set.union(*map(kernels, phases["kernel"])) == set(TINY.kernel_sizes)
    assert {s.resolution for s in phases["kernel"]} == set(TINY.resolutions)
    assert all(expands(s) == {6} for s in phases["depth"]) and len({s.depths for s in phases["depth"]}) > 1
    assert set.union(*map(expands, phases["expand"])) == set(TINY.expand_ratios)
    assert [net.sandwich_configs(step)[1] for step in (0, 10, 20)] == [
        SubnetConfig(small.resolution, big.depths, tuple((3,) * d for d in big.depths), big.expand_ratios),
        SubnetConfig(small.resolution, small.depths, small.kernel_sizes, tuple((6,) * d for d in small.depths)),
        small]
    ds = make_dataset(digits.x_train[:64], digits.y_train[:64], 32, training=True)  # one traced step serves all
    net.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    net.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(net.loss_tracker.result().numpy())


def test_recalibration_sets_the_average_batch_statistics(supernet, digits):
    subnet = SubnetConfig.random(TINY, 2)
    batches = [b for b, _ in make_dataset(digits.x_train[:96], digits.y_train[:96], 32, training=False)]
    assert supernet.recalibrate(subnet, batches) == 3
    stem = supernet.stem
    means = []
    for images in batches:
        h = tf.nn.conv2d(resize(images, subnet.resolution), stem.kernel, stem.stride, "SAME")
        means.append(tf.reduce_mean(h, axis=[0, 1, 2]).numpy())
    np.testing.assert_allclose(stem.bn.moving_mean.numpy(), np.mean(means, axis=0), rtol=1e-4, atol=1e-5)
    # the extracted model carries the recalibrated statistics
    model = extract(supernet, subnet)
    np.testing.assert_allclose(model.get_layer("stem_bn").moving_mean.numpy(), stem.bn.moving_mean.numpy())


def test_sort_channels_keeps_the_largest_subnet_and_its_optimizer_state(digits):
    net = Supernet(TINY, ClassificationHead(10), n_random=1, seed=2)
    net.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    net.fit(make_dataset(digits.x_train[:64], digits.y_train[:64], 32, training=True), epochs=1, verbose=0)
    randomize_statistics(net)
    x = np.random.default_rng(0).normal(size=(2, 24, 24, 3)).astype("float32")
    largest = SubnetConfig.largest(TINY)
    before = net.predict_subnet(largest, x)
    block = net.blocks[-1]
    slot = net.optimizer.momentums[net.optimizer._index_dict[net.optimizer._var_key(block.project_kernel)]]
    perm = np.argsort(-block.hidden_importance(), kind="stable")
    expected_slot = np.take(slot.numpy(), perm, axis=2)
    net.sort_channels()
    np.testing.assert_allclose(net.predict_subnet(largest, x), before, atol=1e-4)
    importance = block.hidden_importance()
    assert np.all(np.diff(importance) <= 1e-6)
    np.testing.assert_allclose(slot.numpy(), expected_slot)


@pytest.mark.slow  # about 80 s here: two logical CPUs stand in for GPUs
def test_training_under_mirrored_strategy(digits):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        net = Supernet(TINY, ClassificationHead(10), n_random=2, seed=1)
        net.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, global_clipnorm=1.0))
    before = [w.numpy().copy() for w in net.trainable_weights]
    ds = make_dataset(digits.x_train[:128], digits.y_train[:128], 32, training=True)
    history = net.fit(ds, epochs=2, verbose=0)
    assert all(np.isfinite(v) for v in history.history["loss"])
    assert net.optimizer.iterations.numpy() == 8
    kernels = [(a, w) for a, w in zip(before, net.trainable_weights) if "kernel" in w.name]
    assert kernels and all(not np.allclose(a, w.numpy()) for a, w in kernels)
    # every replica applied the same all-reduced update, so the copies agree
    for w in net.trainable_weights:
        np.testing.assert_array_equal(w.values[0].numpy(), w.values[1].numpy())
