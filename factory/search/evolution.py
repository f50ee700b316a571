"""Evolutionary search under constraints, as in OFA.

A population of feasible subnets evolves for some generations: the best ``parent_ratio``
survive, half the rest of the next generation are mutants of random parents (each
block's kernel and expand ratio, each stage's depth and the resolution re-drawn with
``mutation_prob``), half are uniform crossovers of two parents. Infeasible children are
drawn again. Scoring is vectorised: ``score`` and ``feasible`` take a batch of encoded
subnets, so thousands of candidates a second are scored by a predictor and a latency
table.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import numpy as np

from factory.core.checks import check_fields
from factory.core.errors import FactoryError
from factory.nas.space import SearchSpace, SubnetConfig
from factory.search.rounds import rounds

Scorer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class EvolutionConfig:
    population: int = 100
    generations: int = 50
    parent_ratio: float = 0.25
    mutation_prob: float = 0.1
    mutation_ratio: float = 0.5
    max_redraws: int = 1000
    seed: int = 0

    def __post_init__(self):
        check_fields(self, {"population": (">=2",), "generations": (">=0",), "parent_ratio": (">0", "<=1"),
                            "mutation_prob": (">=0", "<=1"), "mutation_ratio": (">=0", "<=1"),
                            "max_redraws": (">=1",), "seed": (">=0",)})


@dataclass(frozen=True)
class SearchResult:
    best: SubnetConfig
    score: float
    top: list[tuple[SubnetConfig, float]]  # best candidates seen, best first
    evaluated: int
    history: list[float]  # best score after each generation


def mutate(space: SearchSpace, subnet: SubnetConfig, prob: float, rng: random.Random) -> SubnetConfig:
    def pick(current, choices):
        return rng.choice(choices) if rng.random() < prob else current

    depths = tuple(pick(d, space.depths) for d in subnet.depths)
    kernels, expands = [], []
    for s, d in enumerate(depths):
        ks, es = list(subnet.kernel_sizes[s]), list(subnet.expand_ratios[s])
        ks += [rng.choice(space.kernel_sizes) for _ in range(d - len(ks))]
        es += [rng.choice(space.expand_ratios) for _ in range(d - len(es))]
        kernels.append(tuple(pick(k, space.kernel_sizes) for k in ks[:d]))
        expands.append(tuple(pick(e, space.expand_ratios) for e in es[:d]))
    return SubnetConfig(pick(subnet.resolution, space.resolutions), depths, tuple(kernels), tuple(expands))


def crossover(a: SubnetConfig, b: SubnetConfig, rng: random.Random) -> SubnetConfig:
    """Uniform crossover: every gene (resolution, stage depth, block choice) from either parent."""
    depths = tuple(rng.choice(pair) for pair in zip(a.depths, b.depths))
    kernels, expands = [], []
    for s, d in enumerate(depths):
        def gene(field, i):
            options = [getattr(p, field)[s][i] for p in (a, b) if i < p.depths[s]]
            return rng.choice(options)

        kernels.append(tuple(gene("kernel_sizes", i) for i in range(d)))
        expands.append(tuple(gene("expand_ratios", i) for i in range(d)))
    return SubnetConfig(rng.choice((a.resolution, b.resolution)), depths, tuple(kernels), tuple(expands))


SHRUNK_REDRAWS = 10  # shrunk draws per candidate before giving up: a shrunk draw fails only below the smallest


def evolve(space: SearchSpace, score: Scorer, feasible: Scorer, config: EvolutionConfig = EvolutionConfig(),
           top_k: int = 10, seconds: float | None = None) -> SearchResult:
    """Maximise ``score`` over subnets for which ``feasible`` holds; with ``seconds``, for as many generations as
    start within that time instead of ``config.generations``."""
    rng = random.Random(config.seed)
    seen: dict[SubnetConfig, float] = {}

    def fits(subnet):
        return bool(feasible(space.encode(subnet)[None])[0])

    def shrunk(subnet):
        """``subnet`` lowered one random choice at a time until it fits (or is the smallest)."""
        while not fits(subnet) and (lower := subnet.lowered(space, rng)) != subnet:
            subnet = lower
        return subnet

    def fill(count, make):
        """``count`` feasible candidates from ``make()``, redrawing infeasible ones in batches; where a budget
        admits too few subnets for redrawing to find them (one near the fastest), each draw is shrunk until it
        fits instead."""
        out, draws, shrink = [], 0, False
        while len(out) < count:
            batch = [make() for _ in range(max(count - len(out), 8))]
            batch = [shrunk(c) for c in batch] if shrink else batch
            ok = feasible(np.stack([space.encode(c) for c in batch]))
            out += [c for c, good in zip(batch, ok) if good][: count - len(out)]
            draws += len(batch)
            if draws > (SHRUNK_REDRAWS if shrink else config.max_redraws) * count:
                if shrink:
                    raise FactoryError("could not draw feasible candidates: the constraint admits almost no "
                                       "subnet of the space; loosen the budget")
                shrink, draws = True, 0
        return out

    def evaluate(candidates):
        new = [c for c in dict.fromkeys(candidates) if c not in seen]
        if new:
            for c, s in zip(new, score(np.stack([space.encode(c) for c in new]))):
                seen[c] = float(s)
        return sorted(dict.fromkeys(candidates), key=lambda c: -seen[c])

    population = evaluate(fill(config.population, lambda: SubnetConfig.random(space, rng)))
    history = [seen[population[0]]]
    n_parents = max(2, int(config.parent_ratio * config.population))
    n_mutants = int(config.mutation_ratio * (config.population - n_parents))
    for _ in rounds(config.generations, seconds):
        parents = population[:n_parents]
        mutants = fill(n_mutants, lambda: mutate(space, rng.choice(parents), config.mutation_prob, rng))
        pairs = parents if len(parents) > 1 else parents * 2  # a budget near the fastest leaves one parent
        children = fill(config.population - n_parents - n_mutants, lambda: crossover(*rng.sample(pairs, 2), rng))
        population = evaluate(parents + mutants + children)[: config.population]
        history.append(seen[population[0]])
    feasible_seen = sorted(seen, key=lambda c: -seen[c])
    top = [(c, seen[c]) for c in feasible_seen[:top_k]]
    return SearchResult(top[0][0], top[0][1], top, len(seen), history)
