import pytest

from factory.nas.extract import build_subnet_model
from factory.nas.space import DEFAULT, RES64, TINY, SubnetConfig
from latency_tables.blocks import all_layers, block_input_sizes, subnet_layers
from factory.nas.heads import ClassificationHead


@pytest.mark.parametrize("space", [TINY, DEFAULT, RES64], ids=lambda s: s.name)
def test_every_subnet_layer_is_in_the_table(space):
    table = set(all_layers(space, ClassificationHead(10)))
    for seed in range(30):
        subnet = SubnetConfig.random(space, seed)
        layers = subnet_layers(space, subnet, ClassificationHead(10))
        assert set(layers) <= table
        assert len(layers) == 2 + sum(subnet.depths)


def test_default_space_table_size():
    layers = all_layers(DEFAULT, ClassificationHead(10))
    # Input sizes (first block, later blocks) per stage at resolutions 24 / 28 / 32:
    #   stage0 12/14/16 (its first block equals the later ones: stem and stage are 16 wide) -> 3
    #   stage1 first 12/14/16, later 6/7/8 -> 6;  stage2 first 6/7/8, later 3/4/4 -> 5
    #   stage3 first 3/4/4, later 3/4/4 -> 4;      stage4 first 3/4/4, later 2/2/2 -> 3
    # 21 shapes x 9 (kernel, expand) choices; one stem per resolution; one head (2x2 at all).
    assert sum(k.kind == "mbconv" for k in layers) == 21 * 9
    assert sum(k.kind == "stem" for k in layers) == 3
    assert sum(k.kind == "head" for k in layers) == 1
    assert len({k.id for k in layers}) == len(layers)


@pytest.mark.parametrize("space, resolution", [(DEFAULT, r) for r in DEFAULT.resolutions] + [(RES64, 40), (RES64, 64)],
                         ids=lambda v: getattr(v, "name", v))
def test_block_sizes_match_the_keras_model(space, resolution):
    subnet = SubnetConfig(resolution, (4,) * 5, ((3,) * 4,) * 5, ((3,) * 4,) * 5)
    model = build_subnet_model(space, subnet, ClassificationHead(10))
    sizes = block_input_sizes(space, resolution)
    for block, size in zip(space.blocks(), sizes):
        layer = model.get_layer(f"stage{block.stage}_block{block.index}_expand")
        assert layer.input.shape[1] == size
    layers = subnet_layers(space, subnet, ClassificationHead(10))
    assert model.get_layer("head_conv").input.shape[1] == layers[-1].size
