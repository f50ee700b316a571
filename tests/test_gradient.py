"""FBNet's differentiable search on a trained tiny supernet: frozen weights, a latency term that pulls."""

import numpy as np
import pytest

from factory.app.stages import training_sample
from factory.nas.space import TINY, SubnetConfig
from factory.search.diverse import architecture_distance, dpp_greedy, front_gap
from factory.search import gradient
from factory.search.gradient import GradientConfig, gradient_search
from factory.search.mixed import Architecture
from factory.search.strategies import Constraints, feasibility
from factory.training.workdir import Workdir
from latency_tables.table import LatencyTable
from factory.nas.heads import ClassificationHead


@pytest.fixture(scope="module")
def setup(tiny_workdir, tiny_table):
    work = Workdir(tiny_workdir)
    supernet = work.supernet()
    data = work.data().resized(TINY.resolutions[-1])
    return supernet, data, tiny_table


def _search(setup, budget, weight, seconds=None):
    supernet, data, table = setup
    config = GradientConfig(steps=12, batch=32, images=256, weight=weight, samples=50)
    feasible = feasibility(TINY, {"d": table}, Constraints({"d": 1e9}), ClassificationHead(10))  # every subnet: compare the argmaxes
    return gradient_search(supernet, *training_sample(data, config), {"d": table}, {"d": budget}, feasible, config,
                           verbose=0, seconds=seconds)


def test_the_latency_term_moves_the_search_toward_the_budget(setup):
    table = setup[2]
    budget = table.fastest_ms() * 1.05
    free, pulled = _search(setup, budget, 0.0), _search(setup, budget, 50.0)
    for resolution in TINY.resolutions:
        assert pulled.history[resolution][-1][1]["d"] < free.history[resolution][-1][1]["d"]
        assert pulled.history[resolution][-1][1]["d"] < pulled.history[resolution][0][1]["d"]


def test_only_the_architecture_learns(setup):
    supernet, _, table = setup
    before = [w.copy() for w in supernet.get_weights()]
    result = _search(setup, table.predict(SubnetConfig.largest(TINY)), 1.0)
    assert all(np.array_equal(a, b) for a, b in zip(before, supernet.get_weights()))  # batch-norm statistics too
    assert result.top and all(isinstance(s, SubnetConfig) for s, _ in result.top)
    log_probabilities = [lp for _, lp in result.top[len(TINY.resolutions):]]
    assert log_probabilities == sorted(log_probabilities, reverse=True)


def test_a_time_limit_replaces_the_steps(setup):
    table = setup[2]
    spent = _search(setup, table.fastest_ms() * 1.05, 1.0, seconds=0.0)  # time up at once: one step a resolution
    assert [len(spent.history[r]) for r in TINY.resolutions] == [1] * len(TINY.resolutions) and spent.top


def test_searches_reuse_one_traced_step_and_start_afresh(setup):
    """Searches at several budgets in one process trace the mixed network once (TensorFlow never frees a traced
    graph: each search used to hold gigabytes), and each starts from uniform logits and a fresh optimizer, so the
    same seed searches the same way after any other search."""
    supernet, _, table = setup
    budget = table.fastest_ms() * 1.05
    first = _search(setup, budget, 1.0)
    traces = [gradient._traced(supernet, r, ("d",), "budget")[2].experimental_get_tracing_count()
              for r in TINY.resolutions]
    _search(setup, budget * 3, 50.0)
    again = _search(setup, budget, 1.0)
    assert traces == [gradient._traced(supernet, r, ("d",), "budget")[2].experimental_get_tracing_count()
                      for r in TINY.resolutions]
    for r in TINY.resolutions:
        np.testing.assert_allclose([loss for loss, _ in again.history[r]], [loss for loss, _ in first.history[r]],
                                   rtol=1e-5)
    assert [s for s, _ in again.top] == [s for s, _ in first.top]


@pytest.mark.parametrize("correction", [None, {"quadratic": 0.02, "slope": 0.9, "intercept": 0.3}])
@pytest.mark.parametrize("pick", ["smallest", "largest", 0, 1, 2])
def test_expected_latency_is_the_tables_prediction_at_a_certain_choice(tiny_table, correction, pick):
    """With all probability on one subnet, the differentiable latency the search pulls on is the table's figure."""
    table = LatencyTable({**tiny_table.doc, "correction": correction}, TINY)
    subnet = getattr(SubnetConfig, pick)(TINY) if isinstance(pick, str) else SubnetConfig.random(TINY, pick)
    arch = Architecture(TINY, subnet.resolution, ("d",))
    arch.reset({"d": table}, seed=0)
    m = TINY.max_depth
    blocks, depths = np.zeros(arch.block_logits.shape), np.zeros(arch.depth_logits.shape)
    for s, d in enumerate(subnet.depths):
        depths[s, TINY.depths.index(d)] = 50.0
        for i, choice in enumerate(zip(subnet.kernel_sizes[s], subnet.expand_ratios[s])):
            blocks[s * m + i, arch.options.index(choice)] = 50.0
    arch.block_logits.assign(blocks.astype(np.float32))
    arch.depth_logits.assign(depths.astype(np.float32))
    assert float(arch.expected_latency()["d"]) == pytest.approx(table.predict(subnet), rel=1e-4)


def test_training_sample_comes_from_the_training_split(setup):
    _, data, _ = setup
    images, labels = training_sample(data, GradientConfig(images=100))
    assert images.shape == (100, *data.x_train.shape[1:]) and images.dtype == np.float32
    assert np.isin(labels, data.y_train).all() and -1.01 <= images.min() and images.max() <= 1.01


def test_front_gap_and_dpp():
    latency = np.array([1.0, 2.0, 2.5, 3.0])
    accuracy = np.array([0.5, 0.7, 0.6, 0.8])
    np.testing.assert_allclose(front_gap(latency, accuracy), [0, 0, 0.1, 0])
    # two identical items and a different one: a DPP of 2 never takes both copies
    kernel = np.array([[1.0, 1.0, 0.1], [1.0, 1.0, 0.1], [0.1, 0.1, 1.0]])
    assert sorted(dpp_greedy(kernel, 2)) in ([0, 2], [1, 2])
    assert len(dpp_greedy(kernel, 3)) == 2  # the copy adds nothing: the set stops


def test_architecture_distance():
    a, b = SubnetConfig.smallest(TINY), SubnetConfig.largest(TINY)
    d = architecture_distance(TINY, np.stack([TINY.encode(a), TINY.encode(a), TINY.encode(b)]))
    assert d[0, 1] == 0 and d[0, 2] == 1.0 and np.allclose(d, d.T)  # smallest and largest share no choice
