"""Peak memory: the arena plan against the one LiteRT lays out, and the memory budget in search."""

import random

import numpy as np
import pytest

from devices.host import measure_memory
from export.pipeline import with_softmax
from factory.core.convert import convert, convert_for_timing
from factory.core.errors import FactoryError
from factory.nas.extract import build_subnet_model
from factory.nas.space import TINY, SubnetConfig
from factory.search.evolution import EvolutionConfig
from factory.search.strategies import Constraints, search
from helpers import synthetic_table
from latency_tables.memory import LayerGraph, MemoryModel, plan_arena, read_graph
from factory.nas.heads import ClassificationHead


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    return MemoryModel(TINY, "int8", ClassificationHead(10), tmp_path_factory.mktemp("memory") / "tiny.json").complete(verbose=0)


@pytest.mark.parametrize("middle, expected", [("CONV_2D", 2152), ("ADD", 1162)])
def test_plan_by_hand(middle, expected):
    """Input 100 B (lives throughout), two 1000 B tensors, a 10 B output, on 64-byte boundaries: a convolution
    needs a second 1000 B slot, an ADD reading a tensor nothing else reads writes over it (as LiteRT plans)."""
    graph = LayerGraph((100, 1000, 1000, 10), (("CONV_2D", (0,), (1,)), (middle, (1,), (2,)),
                                               ("FULLY_CONNECTED", (2,), (3,))), 0)
    assert plan_arena(graph) == expected


def _subnets():
    rng = random.Random(3)
    return [SubnetConfig.smallest(TINY), SubnetConfig.largest(TINY)] + [SubnetConfig.random(TINY, rng) for _ in range(4)]


@pytest.mark.parametrize("subnet", _subnets(), ids=lambda s: f"r{s.resolution}-d{'-'.join(map(str, s.depths))}")
def test_prediction_is_litert_arena(memory, subnet):
    """Chained layer graphs plan exactly the arena LiteRT lays out for the whole converted subnet."""
    content = convert_for_timing(build_subnet_model(TINY, subnet, ClassificationHead(10)), "int8")
    assert memory.graph(subnet).sizes == read_graph(content).sizes
    predicted, measured = memory.predict(subnet), measure_memory(content)
    assert predicted["arena_bytes"] == measured["arena_bytes"]
    assert predicted["weights_bytes"] == pytest.approx(measured["weights_bytes"], rel=0.01)


def test_shipped_interface_is_predicted(memory):
    """uint8 pixels in, probabilities out: the converter's QUANTIZE and DEQUANTIZE and export's SOFTMAX."""
    subnet = SubnetConfig.largest(TINY)
    model = build_subnet_model(TINY, subnet, ClassificationHead(10))
    x = np.random.default_rng(0).uniform(-1, 1, (8, *model.input_shape[1:])).astype(np.float32)
    content = convert(with_softmax(model), "int8", x, "uint8")
    assert memory.graph(subnet, "uint8").ops == read_graph(content).ops
    assert memory.predict(subnet, "uint8")["arena_bytes"] == measure_memory(content)["arena_bytes"]


def test_cached_graphs_are_reused(memory, monkeypatch):
    import factory.core.convert as conversion

    monkeypatch.setattr(conversion, "convert_for_timing", lambda *a: pytest.fail("converted again"))
    again = MemoryModel(TINY, "int8", ClassificationHead(10), memory.path).complete(verbose=0)
    assert again.predict(SubnetConfig.largest(TINY)) == memory.predict(SubnetConfig.largest(TINY))


def accuracy(encoded):
    return np.log1p(np.stack([TINY.param_count(TINY.decode(e), ClassificationHead(10)) for e in encoded]))


def test_memory_budget_in_search(memory):
    tables = {"phone": synthetic_table("phone", 1.0)}
    loose = tables["phone"].predict(SubnetConfig.largest(TINY)) + 1
    peaks = sorted(memory.predict(s)["peak_bytes"] for s in _subnets())
    limit_kb = (peaks[0] + peaks[-1]) / 2 / 1024
    config = EvolutionConfig(population=12, generations=4)
    free = search(TINY, accuracy, tables, Constraints({"phone": loose}), ClassificationHead(10), evolution=config)
    bound = search(TINY, accuracy, tables, Constraints({"phone": loose}, memory_kb=limit_kb), ClassificationHead(10), evolution=config,
                   memory={"phone": memory})
    assert all(memory.predict(s)["peak_bytes"] <= limit_kb * 1024 for s, _ in bound)
    assert memory.predict(free[0][0])["peak_bytes"] > limit_kb * 1024  # the budget changed the answer
    least = memory.predict(SubnetConfig.smallest(TINY))["peak_bytes"] / 1024
    with pytest.raises(FactoryError, match=f"give at least {least:,.0f} KB"):
        search(TINY, accuracy, tables, Constraints({"phone": loose}, memory_kb=least / 2), ClassificationHead(10), memory={"phone": memory})

