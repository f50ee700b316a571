"""A diverse Pareto set, as DPP-Net: K subnets near the accuracy-latency front that are unlike each other.

The top of one search is a cluster of near-duplicates (one kernel apart). A determinantal
point process picks a set whose kernel ``L = diag(q) S diag(q)`` has the largest
determinant: ``q`` is a subnet's quality (how close its predicted accuracy is to the front
at its latency) and ``S`` the architectures' similarity, so a set pays for every pair
that looks alike. The candidates come from evolutionary searches under budgets spread
across the latencies of the space's subnets, which is where the front is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from factory.core.errors import FactoryError
from factory.nas.space import SearchSpace, SubnetConfig
from factory.search.evolution import EvolutionConfig, evolve
from factory.search.predictor import one_hot_features


def front_gap(latency: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """How far below the front each point lies: the best accuracy at its latency or less, minus its own (0 on the
    front)."""
    order = np.argsort(latency, kind="stable")
    best = np.maximum.accumulate(accuracy[order])
    gap = np.empty_like(accuracy, dtype=np.float64)
    gap[order] = best - accuracy[order]
    return gap


def architecture_distance(space: SearchSpace, encoded: np.ndarray) -> np.ndarray:
    """Pairwise distance (N, N): the share of the space's choices (resolution, and kernel and expand ratio of every
    block position, a skipped block being a choice of its own) on which two subnets differ."""
    features = one_hot_features(space, encoded).astype(np.float64)
    same = features @ features.T  # one-hot entries two subnets share: resolution, kernels and expands of used blocks
    _, _, kernels, _ = space.split(np.atleast_2d(encoded))
    skipped = (kernels == 0).astype(np.float64)
    both_skipped = 2 * skipped @ skipped.T  # a position both skip: its kernel and its expand choice agree
    return 1.0 - (same + both_skipped) / (1 + 2 * kernels.shape[1])


def dpp_greedy(kernel: np.ndarray, k: int) -> list[int]:
    """Greedy MAP inference of a DPP (Chen et al., 2018): add the item that raises log det(L_Y) most, with the
    incremental Cholesky update, O(N k^2)."""
    n = len(kernel)
    k = min(k, n)
    cis = np.zeros((k, n))
    gains = np.diag(kernel).astype(np.float64).copy()
    chosen = [int(np.argmax(gains))]
    while len(chosen) < k:
        j, row = chosen[-1], len(chosen) - 1
        e = (kernel[j] - cis[:row, j] @ cis[:row]) / np.sqrt(gains[j])
        cis[row] = e
        gains = gains - e ** 2
        gains[chosen] = -np.inf
        nxt = int(np.argmax(gains))
        if gains[nxt] <= 1e-10:  # every remaining candidate is a copy of the chosen ones
            break
        chosen.append(nxt)
    return chosen


@dataclass(frozen=True)
class DiverseConfig:
    budgets: int = 8  # searches spread across the table's span, each adding its top candidates
    per_budget: int = 40
    quality_scale: float = 0.01  # q = exp(-gap / scale): one accuracy point below the front costs a factor e
    similarity_scale: float = 0.25  # S = exp(-distance / scale)
    evolution: EvolutionConfig = EvolutionConfig(population=60, generations=20)


def diverse_front(space: SearchSpace, score, table, feasible_under, k: int,
                  config: DiverseConfig = DiverseConfig()) -> dict:
    """``k`` subnets near the front of predicted accuracy against ``table``'s predicted latency, far apart in
    architecture. ``feasible_under(budget_ms)``: the vectorised constraint test of a search under that budget.

    Returns the chosen rows (encoded, predicted accuracy and latency, gap to the front) and the candidate pool."""
    if k < 2:
        raise FactoryError(f"--diverse {k}: a diverse set needs at least 2 subnets")
    # budgets at quantiles of random subnets' latency: from where 5 in 100 fit (a search can still draw them) to all
    rng = np.random.default_rng(config.evolution.seed)
    sample = np.stack([space.encode(SubnetConfig.random(space, int(s))) for s in rng.integers(0, 2**31, 2000)])
    pool = {}
    for i, budget in enumerate(np.quantile(table.predict_encoded(sample), np.linspace(0.05, 1.0, config.budgets))):
        result = evolve(space, score, feasible_under(float(budget)), replace(config.evolution, seed=i),
                        top_k=config.per_budget)
        for subnet, _ in result.top:
            pool.setdefault(subnet, None)
    encoded = np.stack([space.encode(s) for s in pool])
    accuracy = np.asarray(score(encoded), np.float64)
    latency = table.predict_encoded(encoded)
    gap = front_gap(latency, accuracy)
    quality = np.exp(-gap / config.quality_scale)
    distance = architecture_distance(space, encoded)
    kernel = quality[:, None] * np.exp(-distance / config.similarity_scale) * quality[None, :]
    chosen = dpp_greedy(kernel, k)
    chosen.sort(key=lambda i: latency[i])
    return {"encoded": encoded[chosen], "accuracy": accuracy[chosen], "latency_ms": latency[chosen],
            "gap": gap[chosen], "pool": {"encoded": encoded, "accuracy": accuracy, "latency_ms": latency, "gap": gap}}


def mean_pairwise_distance(space: SearchSpace, encoded: np.ndarray) -> float:
    """The diversity of a set: its mean architecture distance over pairs."""
    d = architecture_distance(space, encoded)
    n = len(d)
    return float(d[np.triu_indices(n, 1)].mean()) if n > 1 else 0.0
