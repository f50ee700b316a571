"""Reinforcement-learning search, as MnasNet: a controller samples subnets, the reward says how good they were.

The controller is a factorised policy, one softmax per choice of the space (the
resolution, each stage's depth, each block position's kernel and expand ratio), trained
with REINFORCE and a moving-average baseline. A whole batch of subnets is sampled and
scored at once (predictor and tables are vectorised), so a policy learns in seconds.

MnasNet's reward is ``accuracy * prod_d (latency_d / budget_d) ** w``: with ``w = -0.07``
on both sides of the budget (``soft``) a subnet a little over it can still win a sample,
which keeps the policy exploring near the budget; ``hard`` gives 0 to any subnet over
it. Breaking a size or memory budget always gives 0. Whatever the reward, only subnets
within every budget are returned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from factory.core.checks import check_fields
from factory.core.errors import FactoryError
from factory.nas.space import SearchSpace, SubnetConfig
from factory.search.rounds import rounds

REWARDS = ("soft", "hard")


@dataclass(frozen=True)
class ReinforceConfig:
    # tuned on the quick start's digits supernet against evolution (python -m bench.search compares them)
    steps: int = 400  # policy updates
    batch: int = 32  # subnets sampled per update
    learning_rate: float = 0.5  # on the logits, with advantages scaled to unit spread
    baseline_decay: float = 0.9  # moving-average baseline: b <- decay * b + (1 - decay) * mean reward
    latency_exponent: float = -0.07  # MnasNet's w
    # "hard" by default: only subnets within the budget count in the end, and the soft reward lets the policy drift
    # over it
    reward: str = "hard"
    seed: int = 0

    def __post_init__(self):
        check_fields(self, {"steps": (">=1",), "batch": (">=1",), "learning_rate": (">0",),
                            "baseline_decay": (">=0", "<1"), "latency_exponent": (), "seed": (">=0",)})
        if self.reward not in REWARDS:
            raise FactoryError(f"--reward {self.reward!r} is not one of {list(REWARDS)}")


@dataclass(frozen=True)
class ReinforceResult:
    top: list[tuple[SubnetConfig, float]]  # the best subnets within every budget, by the objective, best first
    evaluated: int  # distinct subnets sampled
    reward_history: list[float]  # mean reward of each step's batch
    entropy: float  # the final policy's mean entropy per choice (nats)


def mnasnet_reward(accuracy: np.ndarray, latency_ratios: np.ndarray, exponent: float, hard: bool) -> np.ndarray:
    """``accuracy * prod(ratio ** exponent)`` over the devices (``latency_ratios``: (N, devices), latency / budget);
    with ``hard``, 0 where any ratio is over 1 and no penalty below."""
    ratios = np.atleast_2d(latency_ratios)
    if hard:
        return np.where((ratios <= 1).all(axis=1), accuracy, 0.0)
    return accuracy * np.prod(ratios ** exponent, axis=1)


class FactorisedPolicy:
    """Independent softmax logits per choice; the logits start at 0 (every subnet equally likely)."""

    def __init__(self, space: SearchSpace):
        self.space = space
        n_stages, self.positions = len(space.stages), len(space.stages) * space.max_depth
        self.logits = {"resolution": np.zeros((1, len(space.resolutions))),
                       "depth": np.zeros((n_stages, len(space.depths))),
                       "kernel": np.zeros((self.positions, len(space.kernel_sizes))),
                       "expand": np.zeros((self.positions, len(space.expand_ratios)))}

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, dict, dict]:
        """``n`` encoded subnets, the index chosen for each choice, and which choices the subnet uses (a kernel of a
        block its stage's depth skips is drawn but unused: it gets no credit)."""
        sp = self.space
        chosen = {k: np.argmax(v[None] + rng.gumbel(size=(n, *v.shape)), axis=-1) for k, v in self.logits.items()}
        depths = np.asarray(sp.depths)[chosen["depth"]]  # (n, stages)
        index_in_stage = np.tile(np.arange(sp.max_depth), len(sp.stages))
        active = index_in_stage[None, :] < np.repeat(depths, sp.max_depth, axis=1)  # (n, positions)
        kernels = np.where(active, np.asarray(sp.kernel_sizes)[chosen["kernel"]], 0)
        expands = np.where(active, np.asarray(sp.expand_ratios)[chosen["expand"]], 0)
        resolution = np.asarray(sp.resolutions)[chosen["resolution"]]  # (n, 1)
        encoded = np.concatenate([resolution, depths, kernels, expands], axis=1).astype(np.int32)
        used = {"resolution": np.ones((n, 1), bool), "depth": np.ones_like(depths, bool),
                "kernel": active, "expand": active}
        return encoded, chosen, used

    def update(self, chosen: dict, used: dict, advantage: np.ndarray, learning_rate: float):
        """One REINFORCE step: logits += lr * mean_n(advantage_n * grad log p(choice_n)), where the gradient of a
        softmax's log-probability is onehot(choice) - softmax(logits)."""
        for key, logits in self.logits.items():
            probs = _softmax(logits)
            onehot = np.eye(logits.shape[-1])[chosen[key]]  # (n, groups, choices)
            grad = (onehot - probs[None]) * (used[key][..., None] * advantage[:, None, None])
            logits += learning_rate * grad.mean(axis=0)

    def entropy(self) -> float:
        """Mean entropy (nats) of the policy's choices: how undecided it still is."""
        values = []
        for logits in self.logits.values():
            p = _softmax(logits)
            values.append(-(p * np.log(p + 1e-12)).sum(axis=-1))
        return float(np.concatenate(values).mean())


def _softmax(logits: np.ndarray) -> np.ndarray:
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


def reinforce(space: SearchSpace, score, latency_ratios, feasible, other_constraints,
              config: ReinforceConfig = ReinforceConfig(), top_k: int = 10,
              seconds: float | None = None) -> ReinforceResult:
    """Train a policy on MnasNet's reward and return the best subnets it sampled that meet every budget.

    ``score``: predicted accuracy of encoded subnets; ``latency_ratios``: their predicted latency over the budget,
    (N, devices); ``feasible``: every constraint holds; ``other_constraints``: the size and memory constraints hold
    (breaking them gives 0 whatever the reward); ``seconds``: train for that long instead of ``config.steps``."""
    rng = np.random.default_rng(config.seed)
    policy, baseline = FactorisedPolicy(space), None
    seen: dict[bytes, tuple[np.ndarray, float]] = {}  # sampled subnets within every budget
    sampled, history = set(), []
    for _ in rounds(config.steps, seconds):
        encoded, chosen, used = policy.sample(config.batch, rng)
        accuracy = score(encoded)
        reward = mnasnet_reward(accuracy, latency_ratios(encoded), config.latency_exponent,
                                config.reward == "hard") * other_constraints(encoded)
        ok = feasible(encoded)
        for row, acc, good in zip(encoded, accuracy, ok):
            sampled.add(row.tobytes())
            if good:
                seen.setdefault(row.tobytes(), (row, float(acc)))
        baseline = reward.mean() if baseline is None else baseline
        advantage = reward - baseline
        spread = reward.std()
        policy.update(chosen, used, advantage / (spread if spread > 1e-8 else 1.0), config.learning_rate)
        baseline = config.baseline_decay * baseline + (1 - config.baseline_decay) * reward.mean()
        history.append(float(reward.mean()))
    if not seen:
        raise FactoryError(f"the reinforce controller sampled no subnet within the budget in {len(history)} steps: "
                           "raise the budget or --reinforce-steps")
    best = sorted(seen.values(), key=lambda item: -item[1])[:top_k]
    return ReinforceResult([(space.decode(row), acc) for row, acc in best], len(sampled), history, policy.entropy())
