"""The mobilenetv3 space (OFA's MobileNetV3-Large space at 128-224 px), tested at small scale: a width-multiplied
copy trains, its subnets extract exactly, and a 128 px subnet ships as a fully int8 bundle."""

import dataclasses
import json

import numpy as np
import pytest

from export.config import ExportConfig
from factory.app.cli import main
from factory.nas.extract import build_subnet_model, extract
from factory.nas.space import MOBILENETV3, SubnetConfig, get_space
from factory.nas.supernet import Supernet
from factory.training.data import load_data
from factory.training.train import TrainConfig, train_supernet
from factory.training.workdir import Workdir
from helpers import randomize_statistics, synthetic_table, write_photos
from latency_tables.blocks import all_layers, subnet_layers
from latency_tables.builder import layer_model
from factory.nas.heads import ClassificationHead

# A quarter of the widths, both ends of the resolutions: the layout of the real space at a cost this CPU trains.
SMALL = dataclasses.replace(MOBILENETV3, name="mobilenetv3-w025", width_multiplier=0.25, resolutions=(128, 224))


def test_the_preset_is_ofas_mobilenetv3_large_space():
    space = get_space("mobilenetv3")
    assert space.stem_width == 16 and space.stem_stride == 2 and space.stem_block
    assert [s.width for s in space.stages] == [24, 40, 80, 112, 160]
    assert [s.stride for s in space.stages] == [2, 2, 2, 1, 2]
    assert [s.activation for s in space.stages] == ["relu", "relu", "hard_swish", "hard_swish", "hard_swish"]
    assert [s.se for s in space.stages] == [False, True, False, True, True]
    assert (space.head_channels, space.feature_channels) == (960, 1280)
    assert space.kernel_sizes == (3, 5, 7) and space.expand_ratios == (3, 4, 6) and space.depths == (2, 3, 4)
    assert space.resolutions == (128, 160, 192, 224)
    # OFA's count: (9^2 + 9^3 + 9^4)^5, about 2x10^19 block choices, here at each of 4 resolutions
    assert space.size() == 4 * (9**2 + 9**3 + 9**4) ** 5


@pytest.mark.parametrize("pick", ["smallest", "largest", "random"])
def test_param_count_counts_the_stem_block(pick):
    subnet = {"smallest": SubnetConfig.smallest, "largest": SubnetConfig.largest,
              "random": lambda s: SubnetConfig.random(s, 0)}[pick](MOBILENETV3)
    assert MOBILENETV3.param_count(subnet, ClassificationHead(10)) == build_subnet_model(MOBILENETV3, subnet, ClassificationHead(10)).count_params()


def test_fingerprints_of_spaces_without_a_stem_block_do_not_change():
    # the shipped tables and every work directory record these; a new field must not move them
    assert get_space("default").fingerprint == "196c6f722805f8b5"
    assert "stem_block" not in get_space("default").to_dict() and MOBILENETV3.to_dict()["stem_block"] is True


@pytest.fixture(scope="module")
def supernet():
    net = Supernet(SMALL, ClassificationHead(2), seed=1)
    randomize_statistics(net)
    return net


@pytest.mark.parametrize("name", ["smallest", "largest", "random0", "random1"])
def test_extracted_subnets_match_the_supernet(supernet, name):
    subnet = {"smallest": SubnetConfig.smallest(SMALL), "largest": SubnetConfig.largest(SMALL),
              "random0": SubnetConfig.random(SMALL, 0), "random1": SubnetConfig.random(SMALL, 1)}[name]
    x = np.random.default_rng(0).normal(size=(2, subnet.resolution, subnet.resolution, 3)).astype("float32")
    model = extract(supernet, subnet)
    assert "stem_block_add" in [layer.name for layer in model.layers]
    np.testing.assert_allclose(model(x, training=False).numpy(), supernet.predict_subnet(subnet, x), atol=1e-4)


def test_every_layer_a_table_times_builds_and_the_stem_includes_the_first_block():
    keys = all_layers(MOBILENETV3, ClassificationHead(10))
    assert {k.size for k in keys if k.kind == "stem"} == {128, 160, 192, 224}
    stem = next(k for k in keys if k.kind == "stem")
    assert any(layer.name == "stem_block_add" for layer in layer_model(MOBILENETV3, ClassificationHead(10), stem).layers)
    # a subnet's layers are all in the table's list: its prediction never misses an entry
    for seed in range(5):
        assert set(subnet_layers(MOBILENETV3, SubnetConfig.random(MOBILENETV3, seed), ClassificationHead(10))) <= set(keys)


def test_table_show_names_the_missing_table_and_how_to_build_it(capsys):
    assert main(["table", "show", "--space", "mobilenetv3", "--device", "host-cpu-1t"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "factory table build" in err and "mobilenetv3" in err


@pytest.mark.slow  # about 4 minutes here: a 20-block supernet's first traces at 224 px, QAT, conversions
def test_a_small_copy_trains_and_a_128px_subnet_ships_fully_int8(tmp_path, host):
    from export.pipeline import export_subnet

    write_photos(tmp_path / "photos", n=12)
    data = load_data(str(tmp_path / "photos"), image_size=SMALL.resolutions[-1], test_fraction=0.25)
    workdir = Workdir(tmp_path / "work")
    supernet = train_supernet(data, SMALL, workdir, TrainConfig(epochs=1, batch_size=8, calibration_images=16),
                              verbose=0)
    assert json.loads(workdir.train_log.read_text().splitlines()[1].split(",")[0]) == 0  # one epoch logged
    subnet = SubnetConfig.random(SMALL, 3)
    subnet = dataclasses.replace(subnet, resolution=128)
    table = synthetic_table("host-cpu-1t", 1.0, SMALL, ClassificationHead(2))
    card = export_subnet(supernet, subnet, data, host, table, tmp_path / "bundle", verbose=0,
                         config=ExportConfig(qat_epochs=1, min_qat_steps=2, batch_size=8, max_drop_points=100.0,
                                             min_agreement=0.0, representative_images=16))
    assert card["input"]["shape"] == [1, 128, 128, 3] and card["input"]["dtype"] == "uint8"
    assert card["float_operators"] == [] and card["io_operators"] == ["QUANTIZE", "DEQUANTIZE"]
    assert card["params"] == SMALL.param_count(subnet, ClassificationHead(2))
