"""Evolutionary search on problems whose constrained optimum is known."""

import numpy as np
import pytest

from factory.core.errors import FactoryError
from factory.search.evolution import EvolutionConfig, crossover, evolve, mutate
from factory.nas.space import DEFAULT, TINY, SubnetConfig

N_STAGES = len(TINY.stages)
KERNELS = slice(1 + N_STAGES, 1 + N_STAGES + N_STAGES * TINY.max_depth)


def kernel_sum(encoded):  # maximise the summed kernel sizes of the active blocks
    return encoded[:, KERNELS].sum(axis=1).astype(float)


def at_most_three_blocks(encoded):  # a "budget": 3 blocks at most, lowest resolution only
    return (encoded[:, 1:1 + N_STAGES].sum(axis=1) <= 3) & (encoded[:, 0] == TINY.resolutions[0])


def test_finds_the_constrained_optimum():
    result = evolve(TINY, kernel_sum, at_most_three_blocks, EvolutionConfig(population=20, generations=15))
    assert result.score == 21  # three blocks, all 7x7
    assert sum(result.best.depths) == 3 and result.best.resolution == 16
    assert all(at_most_three_blocks(TINY.encode(c)[None])[0] for c, _ in result.top)
    assert result.history == sorted(result.history)  # parents survive: the best never gets worse
    assert result.history[-1] > result.history[0]


def test_seeded_and_reproducible():
    config = EvolutionConfig(population=16, generations=5, seed=4)
    a = evolve(TINY, kernel_sum, at_most_three_blocks, config)
    b = evolve(TINY, kernel_sum, at_most_three_blocks, config)
    assert a.top == b.top and a.evaluated == b.evaluated


def test_impossible_constraint_is_an_error():
    with pytest.raises(FactoryError, match="loosen the budget"):
        evolve(TINY, kernel_sum, lambda e: np.zeros(len(e), bool), EvolutionConfig(population=4, max_redraws=3))


def test_a_budget_that_admits_almost_no_subnet_is_searched_by_shrinking_draws_until_they_fit():
    """Near the fastest subnet random draws almost never fit (make once refused a real budget 7% above it)."""
    smallest = DEFAULT.encode(SubnetConfig.smallest(DEFAULT))

    def cost(encoded):  # a latency-like cost: every choice above the smallest adds to it
        return (encoded - smallest).clip(0).sum(axis=1)

    def near_the_fastest(encoded):
        return cost(encoded) <= 6

    def score(encoded):
        return kernel_sum(encoded) - encoded[:, 0] / 1000.0

    draws = np.stack([DEFAULT.encode(SubnetConfig.random(DEFAULT, seed)) for seed in range(2000)])
    assert not near_the_fastest(draws).any()  # plain redrawing would give up
    result = evolve(DEFAULT, score, near_the_fastest, EvolutionConfig(population=12, generations=4, max_redraws=5))
    assert near_the_fastest(DEFAULT.encode(result.best)[None])[0] and len(result.top) >= 5
    assert result.best != SubnetConfig.smallest(DEFAULT)


@pytest.mark.parametrize("seed", range(5))
def test_mutation_and_crossover_stay_in_the_space(seed):
    import random

    rng = random.Random(seed)
    a, b = SubnetConfig.random(DEFAULT, rng), SubnetConfig.random(DEFAULT, rng)
    for child in (mutate(DEFAULT, a, 0.5, rng), crossover(a, b, rng)):
        child.validate(DEFAULT)
    assert mutate(DEFAULT, a, 0.0, rng) == a
    genes_a, genes_b = DEFAULT.encode(a), DEFAULT.encode(b)
    child = DEFAULT.encode(crossover(a, b, rng))
    assert child[0] in (genes_a[0], genes_b[0])
