"""Constrained search: the most accurate subnet whose predicted latency fits every budget.

Strategies share one objective (predicted accuracy) and one constraint (predicted
latency <= budget on every device, optionally parameter bytes <= a size budget and
predicted peak memory <= a memory budget on every device):
``evolution`` (OFA's evolutionary search, the default), ``reinforce`` (MnasNet's
controller and reward, ``reinforce.py``) and keras-tuner's ``random`` and
``bayesian`` oracles (the latter maximising its acquisition over a batch of random
points), which score an infeasible candidate as infeasible instead of failing.
``gradient`` (FBNet, ``gradient.py``) needs the supernet itself rather than the
predictor, so the work-directory stage runs it, with :func:`constraint_test`. The best
candidates of every strategy are then re-checked with the real supernet.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from factory.core.checks import check_fields, check_number
from factory.core.errors import FactoryError
from factory.search.evolution import EvolutionConfig, evolve
from factory.search.gradient import GradientConfig
from factory.search.reinforce import ReinforceConfig, reinforce
from factory.nas.space import SearchSpace, SubnetConfig

STRATEGIES = ("evolution", "reinforce", "gradient", "random", "bayesian")
INFEASIBLE = -1.0  # the objective of a candidate that breaks a constraint
ACQUISITION_CANDIDATES = 4096  # random points of the space the Bayesian acquisition is maximised over, each trial


@dataclass(frozen=True)
class Constraints:
    """Latency budget per device (ms), optional size budget in bytes (int8: a byte a parameter), optional peak
    memory budget in KiB (weights plus activation arena, ``latency_tables.memory``) on every device."""

    latency_ms: dict = field(default_factory=dict)
    size_bytes: int | None = None
    bytes_per_param: int = 1
    memory_kb: float | None = None

    def __post_init__(self):
        for device, budget in self.latency_ms.items():
            check_number(budget, f"the latency budget for {device} (ms)", ">0")
        check_fields(self, {"size_bytes": (">0",), "bytes_per_param": (">0",), "memory_kb": (">0",)},
                     optional=("size_bytes", "memory_kb"))


@dataclass(frozen=True)
class SearchConfig:
    """How a work directory is searched; the CLI's defaults are these."""

    strategy: str = "evolution"
    n_eval: int = 300  # subnets evaluated with the supernet to fit the accuracy predictor
    recheck: int = 5  # top candidates re-checked with the supernet on the validation split
    int8_recheck: int = 0  # of those, the best scored again as post-training int8 .tflite models; the choice is theirs
    size_bytes: int | None = None
    memory_kb: float | None = None
    trials: int = 500  # keras-tuner trials (random, bayesian)
    time_limit_s: float | None = None  # search this long instead of a count of generations, steps or trials
    evolution: EvolutionConfig = EvolutionConfig()
    reinforce: ReinforceConfig = ReinforceConfig()
    gradient: GradientConfig = GradientConfig()
    seed: int = 0

    def __post_init__(self):
        check_fields(self, {"n_eval": (">=1",), "recheck": (">=0",), "int8_recheck": (">=0",), "size_bytes": (">0",),
                            "memory_kb": (">0",), "trials": (">=1",), "time_limit_s": (">0",), "seed": (">=0",)},
                     optional=("size_bytes", "memory_kb", "time_limit_s"))
        if self.strategy not in STRATEGIES:
            raise FactoryError(f"search strategy {self.strategy!r} is not one of {list(STRATEGIES)}")


# `make` ships an int8 model, so by default it chooses among its top 5 on their int8 accuracy: on a CIFAR-10
# supernet that changed the float re-check's choice at 2 of 3 budgets (docs/search.md, "int8 in the loop")
MAKE_SEARCH = SearchConfig(int8_recheck=5)
# A work directory started from ImageNet weights evaluates fewer subnets: a lite0 subnet's evaluation takes 17 s here
# (its reference pass and 500 teacher-labelled images), 300 of them 85 minutes; bench.pretrained ranks with 60
PRETRAINED_N_EVAL = 60


def check_budgets(tables: dict, constraints: Constraints):
    """A budget below the fastest subnet on a device is an error naming that latency."""
    for device, budget in constraints.latency_ms.items():
        fastest = tables[device].fastest_ms()
        if budget < fastest:
            raise FactoryError(f"a {budget:g} ms budget on {device} is below the fastest subnet of the space "
                               f"there ({fastest:.3f} ms): give a budget of at least {fastest:.3f} ms")


def check_memory(memory: dict, constraints: Constraints):
    """A memory budget below the smallest subnet's predicted peak is an error naming that peak."""
    if constraints.memory_kb is None:
        return
    missing = set(constraints.latency_ms) - set(memory)
    if missing:
        raise FactoryError(f"a memory budget needs a memory model for {sorted(missing)}")
    for device, model in memory.items():
        least = model.predict(SubnetConfig.smallest(model.space))["peak_bytes"] / 1024
        if constraints.memory_kb < least:
            raise FactoryError(f"a {constraints.memory_kb:g} KB memory budget on {device} is below the smallest "
                               f"subnet's predicted peak ({least:,.0f} KB): give at least {least:,.0f} KB")


def feasibility(space: SearchSpace, tables: dict, constraints: Constraints, head,
                memory: dict | None = None):
    """A vectorised test of the constraints on encoded subnets (peak memory only where the rest holds: it is the
    costly one)."""
    def feasible(encoded: np.ndarray) -> np.ndarray:
        ok = np.ones(len(encoded), bool)
        for device, budget in constraints.latency_ms.items():
            ok &= tables[device].predict_encoded(encoded) <= budget
        if constraints.size_bytes is not None:
            params = np.array([space.param_count(space.decode(e), head) for e in encoded])
            ok &= params * constraints.bytes_per_param <= constraints.size_bytes
        if constraints.memory_kb is not None:
            for model in memory.values():
                rows = np.flatnonzero(ok)
                ok[rows] &= model.predict_encoded(encoded[rows]) <= constraints.memory_kb * 1024
        return ok

    return feasible


def constraint_test(space: SearchSpace, tables: dict, constraints: Constraints, head,
                    memory: dict | None = None):
    """The vectorised feasibility test of ``constraints``, after refusing (one line each) a device without a table, a
    budget below the fastest subnet and a memory budget below the smallest subnet's peak."""
    missing = set(constraints.latency_ms) - set(tables)
    if missing:
        raise FactoryError(f"no latency table for {sorted(missing)}: build one with `factory table build`")
    check_budgets(tables, constraints)
    check_memory(memory or {}, constraints)
    return feasibility(space, tables, constraints, head, memory)


def tuner_search(space: SearchSpace, score, feasible, strategy: str, trials: int, seed: int = 0,
                 top_k: int = 10, seconds: float | None = None) -> list[tuple[SubnetConfig, float]]:
    """keras-tuner's RandomSearch or BayesianOptimization oracle over the same space and objective; with ``seconds``,
    trials start until that time is up, and Bayesian's initial random points are keras-tuner's default (3 per
    hyperparameter) rather than a fifth of ``trials``, so its Gaussian process starts however many trials there are
    time for."""
    import keras_tuner as kt

    hp = kt.HyperParameters()
    hp.Choice("resolution", list(space.resolutions))
    for s in range(len(space.stages)):
        hp.Choice(f"depth_{s}", list(space.depths))
        for i in range(space.max_depth):
            hp.Choice(f"kernel_{s}_{i}", list(space.kernel_sizes))
            hp.Choice(f"expand_{s}_{i}", list(space.expand_ratios))
    objective = kt.Objective("predicted_accuracy", "max")
    common = dict(objective=objective, max_trials=trials if seconds is None else 10 ** 9, seed=seed, hyperparameters=hp,
                  allow_new_entries=False, tune_new_entries=False)
    if strategy == "random":
        oracle = kt.oracles.RandomSearchOracle(**common)
    else:  # with a count, keras-tuner's default initial points could leave no trial to the GP
        initial = None if seconds is not None else max(5, trials // 5)
        oracle = _batched_acquisition_oracle(kt)(num_initial_points=initial, **common)
    seen: dict[SubnetConfig, float] = {}
    end = None if seconds is None else time.monotonic() + seconds

    class SubnetTuner(kt.engine.base_tuner.BaseTuner):
        def run_trial(self, trial, **kwargs):
            values = trial.hyperparameters.values
            depths = tuple(values[f"depth_{s}"] for s in range(len(space.stages)))
            subnet = SubnetConfig(
                values["resolution"], depths,
                tuple(tuple(values[f"kernel_{s}_{i}"] for i in range(d)) for s, d in enumerate(depths)),
                tuple(tuple(values[f"expand_{s}_{i}"] for i in range(d)) for s, d in enumerate(depths)))
            encoded = space.encode(subnet)[None]
            value = float(score(encoded)[0]) if feasible(encoded)[0] else INFEASIBLE
            if value != INFEASIBLE:
                seen[subnet] = value
            if end is not None and time.monotonic() >= end:  # the oracle stops at its next trial
                self.oracle.max_trials = len(self.oracle.trials)
            return {"predicted_accuracy": value}

    with tempfile.TemporaryDirectory(prefix="mmf-tuner-") as directory, warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="sklearn")  # the Gaussian process's fit, per trial
        tuner = SubnetTuner(oracle, directory=directory, project_name=strategy, overwrite=True)
        tuner.search(verbose=0)
    return sorted(seen.items(), key=lambda item: -item[1])[:top_k]


def _batched_acquisition_oracle(kt):
    """keras-tuner's Bayesian oracle (its Gaussian process, upper confidence bound and initial random points) with the
    acquisition maximised over ``ACQUISITION_CANDIDATES`` random points of the space in one batched prediction,
    instead of from 50 L-BFGS-B starts with numerical gradients: on the default space's 41 choices those took about
    10 s a trial, nearly all of it in their one-point predictions (py-spy), and a point of this all-categorical space
    is one of finitely many anyway."""

    class BatchedAcquisition(kt.oracles.BayesianOptimizationOracle):
        def populate_space(self, trial_id):
            done = sum(t.status == "COMPLETED" for t in self.trials.values())
            if done < (self.num_initial_points or 3 * len(self.hyperparameters.space)):
                return self._random_populate_space()
            x, y = self._vectorize_trials()
            self.gpr.fit(np.nan_to_num(x, posinf=0, neginf=0), np.nan_to_num(y, posinf=0, neginf=0))
            bounds = self._get_hp_bounds()
            points = self._random_state.uniform(bounds[:, 0], bounds[:, 1], (ACQUISITION_CANDIDATES, len(bounds)))
            mean, std = self.gpr.predict(points, return_std=True)
            best = points[np.argmin(mean - self.beta * std)]  # keras-tuner minimises; a score to maximise is negated
            return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": self._vector_to_values(best)}

    return BatchedAcquisition


def search(space: SearchSpace, score, tables: dict, constraints: Constraints, head, *,
           strategy: str = "evolution", evolution: EvolutionConfig = EvolutionConfig(), trials: int = 500,
           reinforce_config: ReinforceConfig = ReinforceConfig(), top_k: int = 10,
           memory: dict | None = None, seconds: float | None = None) -> list[tuple[SubnetConfig, float]]:
    """The ``top_k`` feasible candidates by predicted accuracy, best first. ``memory``: a
    ``latency_tables.memory.MemoryModel`` per device, needed for a memory budget; ``seconds``: a time limit in
    place of the strategy's count of generations, steps or trials."""
    if strategy not in STRATEGIES or strategy == "gradient":
        raise FactoryError(f"unknown strategy {strategy!r}: use one of {[s for s in STRATEGIES if s != 'gradient']} "
                           "(gradient searches the supernet: `factory.app.stages.search_workdir`)")
    feasible = constraint_test(space, tables, constraints, head, memory)
    if strategy == "evolution":
        return evolve(space, score, feasible, evolution, top_k=top_k, seconds=seconds).top
    if strategy == "reinforce":
        budgets = constraints.latency_ms

        def latency_ratios(encoded):
            return np.stack([tables[d].predict_encoded(encoded) / b for d, b in budgets.items()], axis=1)

        others = feasibility(space, tables, replace(constraints, latency_ms={}), head, memory)
        return reinforce(space, score, latency_ratios, feasible, others, reinforce_config, top_k, seconds).top
    top = tuner_search(space, score, feasible, strategy, trials, evolution.seed, top_k, seconds)
    if not top:
        raise FactoryError(f"{strategy} search found no subnet within the budget in its trials: "
                           "raise --trials (or --time-limit) or the budget")
    return top
