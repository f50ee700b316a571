"""The LR-ASPP segmentation head on the elastic backbone: the supernet and its extracted subnets, the loss and mean
IoU, the latency-table entries and the peak-memory model, over the elastic choices."""

import dataclasses
import random

import numpy as np
import pytest
from helpers import randomize_statistics, synthetic_table

from devices.host import measure_memory
from factory.core.backend import keras, tf
from factory.core.convert import convert_for_timing
from factory.core.errors import FactoryError
from factory.nas.extract import build_subnet_model, extract
from factory.nas.heads import ClassificationHead, SegmentationHead, head_from_dict
from factory.nas.heads.segmentation import IGNORE, class_iou, mean_iou
from factory.nas.space import LITE0, TINY, SubnetConfig
from factory.nas.supernet import Supernet
from latency_tables.blocks import all_layers, subnet_layers
from latency_tables.builder import layer_model
from latency_tables.memory import MemoryModel

HEAD = SegmentationHead(3)


def _subnets():
    rng = random.Random(5)
    return [SubnetConfig.smallest(TINY), SubnetConfig.largest(TINY)] + [SubnetConfig.random(TINY, rng) for _ in range(3)]


IDS = lambda s: f"r{s.resolution}-d{'-'.join(map(str, s.depths))}"  # noqa: E731


def test_backbone_runs_at_output_stride_16_and_reads_stride_8():
    backbone = HEAD.backbone(LITE0)
    assert LITE0.stage_strides() == [4, 8, 16, 16, 32]
    assert backbone.stage_strides() == [4, 8, 16, 16, 16]
    assert HEAD.endpoints(backbone) == (1,)  # Lite0's 40-channel stage
    assert ClassificationHead(10).backbone(LITE0) is LITE0
    assert HEAD.backbone(TINY).stage_strides() == [2, 4] and HEAD.endpoints(TINY) == (0,)
    once = dataclasses.replace(TINY, stages=TINY.stages[1:])
    with pytest.raises(FactoryError, match="downsamples only once"):
        HEAD.backbone(once)
    with pytest.raises(FactoryError, match="2 to 255 classes"):
        SegmentationHead(1)
    assert head_from_dict(HEAD.to_dict()) == HEAD and head_from_dict({"num_classes": 4}) == ClassificationHead(4)


@pytest.fixture(scope="module")
def supernet():
    net = Supernet(TINY, HEAD, seed=3)
    randomize_statistics(net)
    return net


@pytest.mark.parametrize("subnet", _subnets(), ids=IDS)
def test_extracted_segmenter_matches_the_supernet(supernet, subnet):
    """Logits at the input's size, the same from the supernet's slices and the extracted standard layers."""
    x = np.random.default_rng(0).normal(size=(2, subnet.resolution, subnet.resolution, 3)).astype("float32")
    model = extract(supernet, subnet)
    expected = supernet.predict_subnet(subnet, x)
    got = model(x, training=False).numpy()
    assert got.shape == (2, subnet.resolution, subnet.resolution, 3)
    assert np.max(np.abs(expected - got)) <= 1e-4
    assert model.count_params() == TINY.param_count(subnet, HEAD)
    assert TINY.param_count(subnet, HEAD) != TINY.param_count(subnet, ClassificationHead(3))


def test_loss_leaves_out_unlabelled_pixels():
    rng = np.random.default_rng(1)
    logits = tf.constant(rng.normal(size=(2, 4, 4, 3)), tf.float32)
    masks = rng.integers(0, 3, (2, 4, 4))
    masks[:, :2] = IGNORE
    other = logits.numpy()
    other[:, :2] = rng.normal(size=other[:, :2].shape) * 10  # any logits where nothing is labelled
    assert float(HEAD.loss(tf.constant(masks), logits)) == pytest.approx(float(HEAD.loss(tf.constant(masks),
                                                                                         tf.constant(other))))
    labelled = tf.nn.sparse_softmax_cross_entropy_with_logits(masks[:, 2:], logits[:, 2:])
    assert float(HEAD.loss(tf.constant(masks), logits)) == pytest.approx(float(tf.reduce_mean(labelled)), rel=1e-5)


def test_mean_iou_by_hand():
    """Class 0: 2 right, 1 taken for class 1 (IoU 2/3); class 1: 1 right and that 1 (IoU 1/2); class 2 never occurs
    and does not count; the unlabelled pixel counts nowhere."""
    masks = np.array([[[0, 0, 0, 1, IGNORE]]])
    logits = np.eye(3)[[[[0, 0, 1, 1, 2]]]]
    confusion = HEAD.confusion([(logits, masks)])
    assert confusion.sum() == 4
    assert mean_iou(confusion) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert class_iou(confusion) == [pytest.approx(2 / 3), pytest.approx(1 / 2), None]
    assert HEAD.score([(logits, masks)]) == mean_iou(confusion)


def _squares(n, size=24, seed=0):
    """Images with a bright square (class 1) or a dark one (class 2) on noise; the square's border unlabelled."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.3, 0.7, (n, size, size, 3)).astype("float32")
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        s, y, x = rng.integers(8, 14), *rng.integers(0, size - 14, 2)
        cls = 1 + i % 2
        images[i, y:y + s, x:x + s] = 1.0 if cls == 1 else 0.0
        masks[i, y:y + s, x:x + s] = IGNORE
        masks[i, y + 1:y + s - 1, x + 1:x + s - 1] = cls
    return images, masks


def test_sandwich_training_learns_masks():
    images, masks = _squares(64)
    net = Supernet(TINY, HEAD, n_random=1, seed=0)
    net.compile(optimizer=keras.optimizers.Adam(3e-3))
    data = tf.data.Dataset.from_tensor_slices((images, masks)).repeat().batch(16)
    net.fit(data, steps_per_epoch=60, epochs=1, verbose=0)
    val_images, val_masks = _squares(32, seed=1)
    val = [(val_images[i:i + 16], val_masks[i:i + 16]) for i in range(0, 32, 16)]
    background = HEAD.score((np.eye(3)[np.zeros(m.shape, int)], m) for _, m in val)  # every pixel background
    for subnet in (SubnetConfig.largest(TINY), SubnetConfig.smallest(TINY)):
        net.recalibrate(subnet, [images[i:i + 16] for i in range(0, 64, 16)])
        assert net.evaluate_subnet(subnet, val) > background + 0.15


@pytest.mark.parametrize("resolution", TINY.resolutions)
def test_latency_entry_is_the_whole_head(resolution):
    """One entry per resolution holds the head from both stage outputs to the logits at the input's size; every
    subnet's layers are in the table."""
    keys = all_layers(TINY, HEAD)
    [key] = [k for k in keys if k.kind == "lraspp" and k.size == resolution]
    content = convert_for_timing(layer_model(TINY, HEAD, key), "int8")
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    assert [tuple(d["shape"][1:]) for d in interpreter.get_output_details()] == [(resolution, resolution, 3)]
    assert len(interpreter.get_input_details()) == 2
    for subnet in _subnets():
        assert set(subnet_layers(TINY, subnet, HEAD)) <= set(keys)
    table = synthetic_table("phone", 1.0, head=HEAD)
    assert table.head == HEAD and table.predict(SubnetConfig.largest(TINY)) > table.fastest_ms()


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    return MemoryModel(TINY, "int8", HEAD, tmp_path_factory.mktemp("memory") / "tiny-seg.json")


@pytest.mark.parametrize("subnet", _subnets(), ids=IDS)
def test_memory_prediction_is_litert_arena(memory, subnet):
    """The head's graph wired to the low stage's output and the last: the arena LiteRT plans for the whole
    converted segmenter, whose stride-8 features live until the head reads them."""
    content = convert_for_timing(build_subnet_model(TINY, subnet, HEAD), "int8")
    predicted, measured = memory.predict(subnet), measure_memory(content)
    assert predicted["arena_bytes"] == measured["arena_bytes"]
    assert predicted["weights_bytes"] == pytest.approx(measured["weights_bytes"], rel=0.01)
