"""Differentiable search on the trained supernet, as FBNet.

Every block position gets architecture logits over its (kernel, expand ratio) pairs and
every stage over its depths. A step samples Gumbel-softmax weights at a temperature
annealed from ``temperature[0]`` to ``temperature[1]``, runs every choice of every block
on a batch and mixes their outputs by those weights (a stage's output is the mix of its
outputs after each allowed depth), and takes a gradient step on the logits only. The
supernet's weights stay frozen: they were trained once, for every subnet; only the
architecture parameters learn (batch norm uses the batch's statistics and leaves the
stored ones alone). The loss adds the tables' expected latency, differentiable in the
weights: FBNet's ``CE * alpha * log(latency) ** beta`` or, by default, a penalty on the
expected latency above the budget, per device. Images are a sample of the training
split, never the validation images the re-check scores (FBNet holds a fifth of its
training images out because it trains the weights in turn; frozen weights need not).

Resolution is not mixed (that would run the network once per resolution each step): a
search runs at each resolution of the space, and the candidates are the argmax subnets
first, then subnets sampled from the final distributions, by probability.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from factory.core.checks import check_fields, check_number
from factory.core.errors import FactoryError
from factory.nas.space import SubnetConfig
from factory.search.rounds import rounds

PENALTIES = ("budget", "fbnet")


@dataclass(frozen=True)
class GradientConfig:
    steps: int = 60  # architecture updates per resolution (3.5 s each for the default space at batch 64 on 2 cores)
    batch: int = 32
    images: int = 2000  # the sample of the training split the steps draw their batches from
    learning_rate: float = 0.05  # Adam on the logits
    temperature: tuple[float, float] = (5.0, 0.2)  # annealed exponentially over the steps
    penalty: str = "budget"  # CE + weight * relu(E[latency] / budget - 1), or "fbnet": CE * alpha * log(E[latency]) ** beta
    weight: float = 2.0
    alpha: float = 0.2  # FBNet's
    beta: float = 0.6
    samples: int = 200  # subnets drawn from each final distribution as further candidates
    seed: int = 0

    def __post_init__(self):
        check_fields(self, {"steps": (">=1",), "batch": (">=1",), "images": (">=1",), "learning_rate": (">0",),
                            "weight": (">=0",), "alpha": (">=0",), "beta": (">=0",), "samples": (">=0",),
                            "seed": (">=0",)})
        for t in self.temperature:
            check_number(t, "GradientConfig.temperature", ">0")
        if self.penalty not in PENALTIES:
            raise FactoryError(f"gradient penalty {self.penalty!r} is not one of {list(PENALTIES)}")


@dataclass(frozen=True)
class GradientResult:
    top: list[tuple[SubnetConfig, float]]  # candidates within every budget, best first; the value is log-probability
    history: dict  # per resolution, (loss, {device: expected latency}) of every step


def gradient_search(supernet, images: np.ndarray, labels: np.ndarray, tables: dict, budgets_ms: dict, feasible,
                    config: GradientConfig = GradientConfig(), top_k: int = 10, verbose: int = 1,
                    seconds: float | None = None) -> GradientResult:
    """FBNet's search at every resolution of ``supernet``'s space. ``images``: normalized float images at the space's
    largest resolution; ``tables`` and ``budgets_ms`` by device; ``feasible``: every constraint holds (encoded);
    ``seconds``: the time of the whole search instead of ``config.steps`` a resolution, each resolution taking an
    equal share of what is left, at least one step (in a process's first search, that step traces the mixed
    network: tens of seconds); the temperature then anneals over that share."""
    from factory.core.backend import tf  # here: the CLI reads this module's settings before TensorFlow loads

    space = supernet.space
    rng = np.random.default_rng(config.seed)
    argmaxes, drawn, history = [], {}, {}
    t0, t1 = config.temperature
    devices = tuple(tables)
    terms = tf.constant([config.weight, config.alpha, config.beta], tf.float32)
    budgets = tf.constant([budgets_ms[d] for d in devices], tf.float32)
    end = None if seconds is None else time.monotonic() + seconds
    for r_i, resolution in enumerate(space.resolutions):
        arch, optimizer, step = _traced(supernet, resolution, devices, config.penalty)
        arch.reset(tables, config.seed + r_i)
        optimizer.learning_rate.assign(config.learning_rate)
        for variable in optimizer.variables:  # Adam's step count and moments start again
            variable.assign(tf.zeros_like(variable))
        rows = []
        share = None if end is None else max(end - time.monotonic(), 0.0) / (len(space.resolutions) - r_i)
        for progress in rounds(config.steps, share):
            pick = rng.choice(len(labels), min(config.batch, len(labels)), replace=False)
            temperature = t0 * (t1 / t0) ** progress
            loss, latency = step(tf.constant(images[pick]), tf.constant(labels[pick], tf.int32),
                                 tf.constant(temperature, tf.float32), budgets, terms)
            rows.append((float(loss), {d: float(t) for d, t in zip(devices, latency)}))
        history[resolution] = rows
        if verbose:
            lat = ", ".join(f"{d} {rows[0][1][d]:.3f} -> {rows[-1][1][d]:.3f} ms (budget {budgets_ms[d]:g})"
                            for d in tables)
            print(f"gradient search at {resolution} px: loss {rows[0][0]:.3f} -> {rows[-1][0]:.3f}; expected latency "
                  f"{lat}", flush=True)
        best = arch.argmax()
        argmaxes.append((best, arch.log_probability(best)))
        for _ in range(config.samples):
            sample = arch.draw(rng)
            drawn.setdefault(sample, arch.log_probability(sample))

    def within(candidates):
        candidates = list(candidates)
        ok = feasible(np.stack([space.encode(s) for s, _ in candidates])) if candidates else []
        return [c for c, good in zip(candidates, ok) if good]

    first = within(sorted(argmaxes, key=lambda c: -c[1]))
    chosen = {s for s, _ in first}
    top = (first + within(sorted(((s, lp) for s, lp in drawn.items() if s not in chosen), key=lambda c: -c[1])))
    if not top:
        raise FactoryError("the gradient search found no subnet within the budget: raise the budget")
    return GradientResult(top[:top_k], history)


_TRACED: dict = {}  # the last supernet's (architecture, optimizer, step) by (resolution, devices, penalty)


def _traced(supernet, resolution: int, devices: tuple[str, ...], penalty: str):
    """One resolution's mixed network, its optimizer and its traced training step, made once per supernet and
    reused by every later search (``Architecture.reset`` sets a search's tables and seed): TensorFlow never frees a
    traced graph, and the mixed network's took minutes and gigabytes per search when each search traced its own.
    Only the last supernet's are kept."""
    from factory.core.backend import keras, tf
    from factory.nas.supernet import resize
    from factory.search.mixed import Architecture

    if _TRACED.get("supernet") is not supernet:
        _TRACED.clear()
        _TRACED["supernet"] = supernet
    key = (resolution, devices, penalty)
    if key in _TRACED:
        return _TRACED[key]
    arch = Architecture(supernet.space, resolution, devices)
    optimizer = keras.optimizers.Adam()
    optimizer.build(arch.variables)  # its slots made here, not in the traced step

    @tf.function(reduce_retracing=True)
    def step(x, y, temperature, budgets, terms):
        """One update of the logits; ``terms``: the penalty's weight, and FBNet's alpha and beta."""
        with tf.GradientTape() as tape:
            logits = arch.forward(supernet, resize(x, resolution), arch.gumbel(arch.block_logits, temperature),
                                  arch.gumbel(arch.depth_logits, temperature), output_size=tf.shape(x)[1:3])
            ce = supernet.task_head.loss(supernet.task_head.labels(y), logits)
            latency = tf.stack([arch.expected_latency()[d] for d in devices])
            if penalty == "fbnet":
                loss = ce * tf.reduce_sum(terms[1] * tf.math.log(latency) ** terms[2])
            else:
                loss = ce + terms[0] * tf.reduce_sum(tf.nn.relu(latency / budgets - 1.0))
        optimizer.apply_gradients(zip(tape.gradient(loss, arch.variables), arch.variables))
        return loss, latency

    _TRACED[key] = (arch, optimizer, step)
    return _TRACED[key]
