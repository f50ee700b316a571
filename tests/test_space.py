import json

import pytest

from factory.core.errors import FactoryError
from factory.nas.space import DEFAULT, RES64, TINY, InvalidSubnetError, SearchSpace, SubnetConfig, get_space, load_space, space_document
from factory.nas.heads import ClassificationHead

SPACES = [TINY, DEFAULT, RES64]


def subnets(space):
    return [SubnetConfig.smallest(space), SubnetConfig.largest(space)] + [
        SubnetConfig.random(space, seed) for seed in range(5)]


@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.name)
def test_subnet_json_round_trip(space):
    for subnet in subnets(space):
        again = SubnetConfig.from_json(subnet.to_json())
        assert again == subnet and hash(again) == hash(subnet)
        assert again.validate(space) is again


@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.name)
def test_encode_decode_round_trip(space):
    for subnet in subnets(space):
        vec = space.encode(subnet)
        assert vec.shape == (space.encoding_length,)
        assert space.decode(vec) == subnet


def test_smallest_and_largest_use_the_extreme_choices():
    small, large = SubnetConfig.smallest(DEFAULT), SubnetConfig.largest(DEFAULT)
    assert small.resolution == 24 and set(small.depths) == {2}
    assert {k for s in small.kernel_sizes for k in s} == {3}
    assert {e for s in large.expand_ratios for e in s} == {6}
    assert large.depths == (4,) * 5 and large.resolution == 32


def test_random_is_seeded():
    assert SubnetConfig.random(DEFAULT, 7) == SubnetConfig.random(DEFAULT, 7)
    assert len({SubnetConfig.random(DEFAULT, s) for s in range(50)}) == 50


@pytest.mark.parametrize("mutate, message", [
    (dict(resolution=30), "resolution 30 is not in"),
    (dict(depths=(2, 2, 2, 2)), "has 5 stages"),
    (dict(kernel_sizes=((9, 3),) + ((3, 3),) * 4), "stage 0 block 0: kernel size 9"),
    (dict(expand_ratios=((3, 3),) * 4 + ((3, 5),)), "stage 4 block 1: expand ratio 5"),
    (dict(kernel_sizes=((3, 3, 3),) + ((3, 3),) * 4), "one value per active block"),
])
def test_out_of_space_values_name_the_problem(mutate, message):
    base = SubnetConfig.smallest(DEFAULT).to_dict()
    base.update({k: v for k, v in mutate.items()})
    with pytest.raises(InvalidSubnetError, match=message):
        SubnetConfig(**base).validate(DEFAULT)


def test_malformed_json_is_refused():
    with pytest.raises(InvalidSubnetError, match="must be JSON"):
        SubnetConfig.from_json("{resolution: 32")
    with pytest.raises(InvalidSubnetError, match="exactly the keys"):
        SubnetConfig.from_json(json.dumps({"resolution": 32}))


def test_fingerprint_is_stable_and_tracks_the_definition(tmp_path):
    assert DEFAULT.fingerprint == SearchSpace.from_dict(DEFAULT.to_dict()).fingerprint
    wider = SearchSpace.from_dict({**DEFAULT.to_dict(), "width_multiplier": 1.25})
    assert wider.fingerprint != DEFAULT.fingerprint
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space_document(wider)))
    assert get_space(str(path)) == wider
    doc = space_document(wider) | {"fingerprint": "0" * 16}
    path.write_text(json.dumps(doc))
    with pytest.raises(FactoryError, match="does not match"):
        load_space(path)


def test_width_multiplier_rounds_channels_to_multiples_of_8():
    wide = SearchSpace.from_dict({**DEFAULT.to_dict(), "width_multiplier": 1.3})
    assert all(b.out_channels % 8 == 0 for b in wide.blocks())
    assert wide.blocks()[-1].out_channels > DEFAULT.blocks()[-1].out_channels


def test_bad_space_definitions_are_refused():
    with pytest.raises(FactoryError, match="activation"):
        SearchSpace.from_dict({**TINY.to_dict(), "stages": [{"width": 8, "stride": 1, "activation": "gelu"}]})
    with pytest.raises(FactoryError, match="increasing"):
        SearchSpace.from_dict({**TINY.to_dict(), "kernel_sizes": [5, 3]})
    with pytest.raises(FactoryError, match="unknown search space"):
        get_space("huge")


def test_space_size_counts_every_subnet():
    # tiny: 2 resolutions, per stage 9 + 81 block choices for depth 1 or 2, two stages
    assert TINY.size() == 2 * (9 + 81) ** 2
    assert DEFAULT.size() > 10**15


@pytest.mark.parametrize("seed", range(4))
def test_param_count_matches_the_keras_model(seed):
    from factory.nas.extract import build_subnet_model

    subnet = SubnetConfig.random(DEFAULT, seed)
    assert DEFAULT.param_count(subnet, ClassificationHead(10)) == build_subnet_model(DEFAULT, subnet, ClassificationHead(10)).count_params()
