"""ImageNet weights, offline: the legacy PyTorch reader, the mapping onto the lite0 space, and known answers on real
photos (scikit-learn's sample images: the temple is ImageNet class 698 "palace", the flower 985 "daisy")."""

import dataclasses
import io
import pickle
import struct

import numpy as np
import pytest
from sklearn.datasets import load_sample_images

from factory.core.errors import FactoryError
from factory.nas.extract import extract
from factory.nas.pretrained import load_into_supernet, load_pretrained, reference_model
from factory.nas.space import LITE0, MOBILENETV3, SubnetConfig
from factory.nas.supernet import Supernet
from factory.nas.torch_legacy import MAGIC_NUMBER, PROTOCOL_VERSION, read_state_dict
from factory.training.data import normalize
from factory.training.portable.images import resize_image
from factory.nas.heads import ClassificationHead

PALACE, DAISY = 698, 985


# ------------------------------------------------------------------ the legacy format
class _Storage:
    def __init__(self, key, name, data):
        self.key, self.name, self.data = key, name, data


class _Writer(pickle.Pickler):
    """Writes what torch's legacy ``save`` writes, torch's classes and function pickled by name from a stub."""

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            import torch  # the stub: its storage classes pickle as references to torch's

            return ("storage", getattr(torch, obj.name), obj.key, "cpu", obj.data.size, None)
        return None


class _Rebuild:
    def __init__(self, *args):
        self.args = args

    def __reduce__(self):
        import torch._utils

        return torch._utils._rebuild_tensor_v2, self.args


def _legacy_file(tensors: dict, storages: list[_Storage]) -> bytes:
    """A legacy state dict file; ``tensors`` maps a name to (storage, offset, size, stride)."""
    import collections

    out = io.BytesIO()
    for obj in (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True}):
        pickle.dump(obj, out, protocol=2)
    _Writer(out, protocol=2).dump(collections.OrderedDict(
        (k, _Rebuild(s, o, size, stride, False, collections.OrderedDict())) for k, (s, o, size, stride) in tensors.items()))
    pickle.dump([s.key for s in storages], out, protocol=2)
    for s in storages:
        out.write(struct.pack("<q", s.data.size) + s.data.astype(s.data.dtype.newbyteorder("<")).tobytes())
    return out.getvalue()


@pytest.fixture
def torch_utils_stub(monkeypatch):
    """A stand-in ``torch`` module, so that pickle writes torch's names; reading never imports it."""
    import sys
    import types

    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def rebuild(*args):
        raise AssertionError("only written, never called")

    rebuild.__module__, rebuild.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2, torch._utils = rebuild, utils
    for name in ("FloatStorage", "LongStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)


def test_reader_rebuilds_views_with_offsets_and_strides(tmp_path, torch_utils_stub):
    floats = _Storage("0", "FloatStorage", np.arange(24, dtype=np.float32))
    longs = _Storage("1", "LongStorage", np.array([7], np.int64))
    path = tmp_path / "w.pth"
    path.write_bytes(_legacy_file({
        "plain": (floats, 0, (2, 3, 4), (12, 4, 1)),
        "transposed": (floats, 0, (4, 6), (1, 4)),  # a transposed view of the same storage
        "offset": (floats, 20, (4,), (1,)),
        "scalar": (longs, 0, (), ()),
    }, [floats, longs]))
    state = read_state_dict(path)
    base = np.arange(24, dtype=np.float32)
    np.testing.assert_array_equal(state["plain"], base.reshape(2, 3, 4))
    np.testing.assert_array_equal(state["transposed"], base.reshape(6, 4).T)
    np.testing.assert_array_equal(state["offset"], base[20:])
    assert state["scalar"] == 7 and state["scalar"].dtype == np.int64


def test_reader_refuses_anything_but_a_state_dict(tmp_path):
    path = tmp_path / "evil.pth"
    out = io.BytesIO()
    for obj in (MAGIC_NUMBER, PROTOCOL_VERSION, {}):
        pickle.dump(obj, out, protocol=2)
    out.write(b"cos\nsystem\n(S'echo pwned'\ntR.")  # os.system('echo pwned')
    path.write_bytes(out.getvalue())
    with pytest.raises(FactoryError, match="os.system is not part of a state dict"):
        read_state_dict(path)
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(FactoryError, match="cannot read the PyTorch weights"):
        read_state_dict(path)


# ------------------------------------------------------------------ EfficientNet-Lite0
@pytest.fixture(scope="module")
def lite0():
    return load_pretrained("efficientnet-lite0")


@pytest.fixture(scope="module")
def photos():
    """The two sample photos as the factory feeds them: resized whole to 224 px, normalized."""
    return normalize(np.stack([resize_image(i, 224) for i in load_sample_images().images])).numpy()


@pytest.fixture(scope="module")
def imagenet_supernet(lite0):
    supernet = Supernet(LITE0, ClassificationHead(1000))
    load_into_supernet(supernet, lite0, classifier=True)
    return supernet


def test_the_file_is_efficientnet_lite0(lite0):
    state = read_state_dict(lite0.source.path())
    assert len(state) == 296
    assert lite0.subnet == SubnetConfig(224, (2, 2, 3, 3, 4), ((3, 3), (5, 5), (3, 3, 3), (5, 5, 5), (5, 5, 5, 5)),
                                        ((6,) * 2, (6,) * 2, (6,) * 3, (6,) * 3, (6,) * 4))
    model = reference_model(lite0)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert round(trainable / 1e6, 2) == 4.65  # the paper's 4.7 M
    assert model.count_params() == LITE0.param_count(lite0.subnet, ClassificationHead(1000))


def test_the_reference_network_names_the_photos_imagenet_classes(lite0, photos):
    probabilities = reference_model(lite0).predict(photos, verbose=0)
    assert list(np.argmax(probabilities, axis=-1)) == [PALACE, DAISY]


def _kernels_up(subnet, by):
    return SubnetConfig(subnet.resolution, subnet.depths, tuple(tuple(k + by for k in ks) for ks in subnet.kernel_sizes),
                        subnet.expand_ratios)


@pytest.mark.parametrize("pick", ["largest", "reference", "kernels_up_to_7", "depths_up_to_4"])
def test_the_supernets_subnets_holding_lite0_compute_it(lite0, photos, imagenet_supernet, pick):
    """Bigger kernels hold Lite0's centred with zeros round them, deeper stages add identity blocks: every subnet
    that contains Lite0 computes it, extracted or run inside the supernet."""
    ref = lite0.subnet
    subnet = {"largest": SubnetConfig.largest(LITE0), "reference": ref,
              "kernels_up_to_7": _kernels_up(ref, 2),
              "depths_up_to_4": SubnetConfig(224, (4,) * 5, tuple(ks + (ks[-1],) * (4 - len(ks)) for ks in
                                                                  ref.kernel_sizes), ((6,) * 4,) * 5)}[pick]
    expected = reference_model(lite0).predict(photos, verbose=0)
    extracted = extract(imagenet_supernet, subnet).predict(photos, verbose=0)
    inside = imagenet_supernet.predict_subnet(subnet, photos)
    np.testing.assert_allclose(extracted, expected, atol=1e-4)
    np.testing.assert_allclose(inside, expected, atol=1e-4)


@pytest.mark.parametrize("resolution", [128, 160, 192])
def test_known_answers_hold_at_the_spaces_smaller_resolutions(lite0, imagenet_supernet, photos, resolution):
    """Lite0 at the space's smaller resolutions still names both photos' classes among its top 5 (narrower widths
    do not until the supernet is trained: their channels were never trained alone)."""
    subnet = SubnetConfig(resolution, lite0.subnet.depths, lite0.subnet.kernel_sizes, lite0.subnet.expand_ratios)
    top5 = np.argsort(-imagenet_supernet.predict_subnet(subnet, photos), axis=-1)[:, :5]
    assert PALACE in top5[0] and DAISY in top5[1]


def test_hidden_channels_are_sorted_by_importance_before_width_is_elastic(lite0, imagenet_supernet):
    for block in imagenet_supernet.blocks:
        assert np.all(np.diff(block.hidden_importance()) <= 1e-6), block.name
    original = lite0.layers["stage2_block0_project"][0]  # before sorting: Lite0's own order
    assert not np.all(np.diff(np.abs(original).sum(axis=(0, 1, 3))) <= 0)


def test_weights_that_do_not_fit_a_space_are_refused_in_one_line():
    with pytest.raises(FactoryError, match="does not fit search space 'mobilenetv3'"):
        load_pretrained("efficientnet-lite0", MOBILENETV3)
    with pytest.raises(FactoryError, match="unknown pretrained weights 'resnet50': use one of"):
        load_pretrained("resnet50")


def test_a_segmenter_starts_from_the_imagenet_backbone(lite0, photos, imagenet_supernet):
    """The segmentation backbone (output stride 16) holds the classifier's ImageNet weights, and an anchored
    segmenter runs and extracts as the supernet computes."""
    from factory.nas.extract import extract
    from factory.nas.heads import SegmentationHead

    segmenter = Supernet(LITE0, SegmentationHead(3), anchored_statistics=True)
    load_into_supernet(segmenter, lite0)
    for mine, theirs in zip(segmenter.blocks, imagenet_supernet.blocks):  # the anchored one has more statistics
        assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(mine.trainable_weights, theirs.trainable_weights))
    subnet = dataclasses.replace(lite0.subnet, resolution=128)
    x = photos[:, 48:176, 48:176]  # the photos' centres at 128 px
    segmenter.recalibrate(subnet, [x])
    logits = segmenter.predict_subnet(subnet, x)
    assert logits.shape == (2, 128, 128, 3) and np.isfinite(logits).all()
    assert np.max(np.abs(extract(segmenter, subnet)(x, training=False).numpy() - logits)) <= 1e-3
