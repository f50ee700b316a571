"""Constrained search over tiny-space subnets with synthetic latency tables for two devices."""

import time

import numpy as np
import pytest

from factory.core.errors import FactoryError
from factory.search.evolution import EvolutionConfig
from factory.search.reinforce import FactorisedPolicy, ReinforceConfig, mnasnet_reward, reinforce
from factory.search.strategies import Constraints, feasibility, search
from factory.nas.space import TINY, SubnetConfig
from helpers import synthetic_table
from factory.nas.heads import ClassificationHead

TABLES = {"phone": synthetic_table("phone", 1.0), "watch": synthetic_table("watch", 3.0)}


def accuracy(encoded):  # bigger subnets are more accurate, as in a real supernet
    return np.log1p(np.stack([TINY.param_count(TINY.decode(e), ClassificationHead(10)) for e in encoded]))


def budgets(fraction):
    """A budget per device between its fastest and its largest subnet."""
    largest = SubnetConfig.largest(TINY)
    return {d: t.fastest_ms() + fraction * (t.predict(largest) - t.fastest_ms()) for d, t in TABLES.items()}


@pytest.mark.parametrize("strategy", ["evolution", "reinforce", "random", "bayesian"])
def test_every_candidate_fits_every_device(strategy):
    limits = budgets(0.3)
    top = search(TINY, accuracy, TABLES, Constraints(limits), ClassificationHead(10), strategy=strategy,
                 evolution=EvolutionConfig(population=20, generations=8),
                 reinforce_config=ReinforceConfig(steps=30),
                 trials=25)
    assert top and [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    for subnet, _ in top:
        for device, table in TABLES.items():
            assert table.predict(subnet) <= limits[device]


@pytest.mark.parametrize("strategy", ["evolution", "reinforce", "random", "bayesian"])
def test_a_budget_only_the_fastest_subnet_fits(strategy):
    """At the fastest subnet's latency evolution's draws all shrink to one subnet, and a population of one still
    evolves; a few random trials find nothing there and say what to raise."""
    limits = {d: t.fastest_ms() * 1.0001 for d, t in TABLES.items()}

    def run():
        return search(TINY, accuracy, TABLES, Constraints(limits), ClassificationHead(10), strategy=strategy,
                      evolution=EvolutionConfig(population=20, generations=3),
                      reinforce_config=ReinforceConfig(steps=5), trials=5)

    if strategy in ("random", "bayesian"):
        with pytest.raises(FactoryError, match="raise --trials"):
            run()
        return
    top = run()
    assert top and all(t.predict(s) <= limits[d] for s, _ in top for d, t in TABLES.items())


def test_evolution_beats_the_random_population_it_starts_from():
    limits = budgets(0.3)
    config = EvolutionConfig(population=20, generations=15, seed=2)
    best = search(TINY, accuracy, TABLES, Constraints(limits), ClassificationHead(10), evolution=config)[0]
    start = search(TINY, accuracy, TABLES, Constraints(limits), ClassificationHead(10),
                   evolution=EvolutionConfig(population=20, generations=0, seed=2))[0]
    assert best[1] > start[1]


def _reinforce(limits, config):
    constraints = Constraints(limits)

    def ratios(encoded):
        return np.stack([TABLES[d].predict_encoded(encoded) / b for d, b in limits.items()], axis=1)

    return reinforce(TINY, accuracy, ratios, feasibility(TINY, TABLES, constraints, ClassificationHead(10)), lambda e: np.ones(len(e)),
                     config)


@pytest.mark.parametrize("reward", ["soft", "hard"])
def test_reinforce_reward_rises_and_the_policy_decides(reward):
    limits = budgets(0.5)
    result = _reinforce(limits, ReinforceConfig(steps=80, batch=32, reward=reward, seed=1))
    first, last = np.mean(result.reward_history[:10]), np.mean(result.reward_history[-10:])
    assert last > first * 1.05
    assert result.entropy < FactorisedPolicy(TINY).entropy() * 0.9  # it started uniform
    best, score = result.top[0]
    assert all(TABLES[d].predict(best) <= b for d, b in limits.items())
    # a search that learned finds better subnets than the first batch a uniform policy samples
    start = _reinforce(limits, ReinforceConfig(steps=1, batch=32, reward=reward, seed=1)).top
    assert np.mean([s for _, s in result.top]) > np.mean([s for _, s in start])


def test_mnasnet_reward():
    accuracy_ = np.array([0.8, 0.8, 0.8])
    ratios = np.array([[0.5], [1.0], [2.0]])  # latency / budget
    soft = mnasnet_reward(accuracy_, ratios, -0.07, hard=False)
    np.testing.assert_allclose(soft, 0.8 * np.array([0.5, 1.0, 2.0]) ** -0.07)
    np.testing.assert_allclose(mnasnet_reward(accuracy_, ratios, -0.07, hard=True), [0.8, 0.8, 0.0])
    two_devices = mnasnet_reward(np.array([1.0]), np.array([[2.0, 2.0]]), -0.07, hard=False)
    np.testing.assert_allclose(two_devices, 4.0 ** -0.07)  # the penalty of each device multiplies


def test_policy_samples_valid_subnets_and_learns_a_rewarded_choice():
    policy, rng = FactorisedPolicy(TINY), np.random.default_rng(0)
    encoded, chosen, used = policy.sample(64, rng)
    for e in encoded:
        TINY.decode(e)  # raises on a subnet outside the space
    for _ in range(30):  # reward the largest resolution only
        encoded, chosen, used = policy.sample(64, rng)
        reward = (encoded[:, 0] == TINY.resolutions[-1]).astype(float)
        policy.update(chosen, used, reward - reward.mean(), 0.5)
    logits = policy.logits["resolution"][0]
    assert np.argmax(logits) == len(TINY.resolutions) - 1


def test_size_budget():
    limits = budgets(1.0)
    size = TINY.param_count(SubnetConfig.smallest(TINY), ClassificationHead(10)) + 2000
    top = search(TINY, accuracy, TABLES, Constraints(limits, size_bytes=size), ClassificationHead(10),
                 evolution=EvolutionConfig(population=10, generations=3))
    assert all(TINY.param_count(s, ClassificationHead(10)) <= size for s, _ in top)


def test_budget_below_the_fastest_names_it():
    fastest = TABLES["watch"].fastest_ms()
    with pytest.raises(FactoryError, match=f"at least {fastest:.3f} ms"):
        search(TINY, accuracy, TABLES, Constraints({"phone": 10.0, "watch": fastest * 0.9}), ClassificationHead(10))


@pytest.mark.parametrize("strategy", ["random", "bayesian"])
def test_infeasible_candidates_do_not_crash_keras_tuner(strategy):
    from factory.search.strategies import tuner_search

    calls = []

    def low_resolution_only(encoded):  # half of all candidates break this constraint
        calls.append(int(encoded[0, 0]))
        return encoded[:, 0] == TINY.resolutions[0]

    top = tuner_search(TINY, accuracy, low_resolution_only, strategy, trials=16, top_k=100)
    assert len(calls) == 16  # every trial ran, infeasible ones included
    assert TINY.resolutions[-1] in calls
    assert top and all(s.resolution == TINY.resolutions[0] for s, _ in top)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bayesian_trials_after_the_random_start_score_higher(seed):
    """The Gaussian process's proposals (after ``trials // 5`` random points) beat the random points on average."""
    from factory.search.strategies import tuner_search

    scores = []

    def scored(encoded):
        scores.extend(accuracy(encoded))
        return accuracy(encoded)

    tuner_search(TINY, scored, lambda encoded: np.ones(len(encoded), bool), "bayesian", trials=40, seed=seed)
    assert len(scores) == 40
    assert np.mean(scores[8:]) > np.mean(scores[:8]) + 0.5 * np.std(scores[:8])


def test_bad_strategy_or_missing_table():
    with pytest.raises(FactoryError, match="unknown strategy"):
        search(TINY, accuracy, TABLES, Constraints(budgets(0.5)), ClassificationHead(10), strategy="annealing")
    with pytest.raises(FactoryError, match="no latency table for \\['tablet'\\]"):
        search(TINY, accuracy, TABLES, Constraints({"tablet": 1.0}), ClassificationHead(10))


def test_rounds_count_or_time():
    from factory.search.rounds import rounds

    assert list(rounds(3)) == [0.0, 0.5, 1.0] and list(rounds(0)) == []
    assert list(rounds(3, seconds=0.0)) == [1.0]  # time already up: one round, at the schedule's end
    start = time.monotonic()
    progress = list(rounds(1, seconds=0.3))
    assert 0.3 <= time.monotonic() - start < 1.0
    assert len(progress) > 1 and progress == sorted(progress) and progress[0] == 0.0 and progress[-1] <= 1.0


@pytest.mark.parametrize("strategy", ["evolution", "reinforce", "random", "bayesian"])
def test_time_limit_replaces_the_count(strategy):
    """With a time limit a search runs until the time is up, past its count of generations, steps or trials."""
    rows = []

    def counted(encoded):
        rows.append(len(encoded))
        return accuracy(encoded)

    limits, seconds = budgets(0.3), 2.0
    start = time.monotonic()
    top = search(TINY, counted, TABLES, Constraints(limits), ClassificationHead(10), strategy=strategy,
                 evolution=EvolutionConfig(population=10, generations=1), reinforce_config=ReinforceConfig(steps=1),
                 trials=2, seconds=seconds)
    wall = time.monotonic() - start
    assert seconds <= wall < seconds + 30  # the last round (a Gaussian-process trial: seconds) finishes
    assert sum(rows) > {"evolution": 20, "reinforce": 32, "random": 2, "bayesian": 2}[strategy]
    assert top and all(t.predict(s) <= limits[d] for s, _ in top for d, t in TABLES.items())
