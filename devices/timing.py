"""A latency measurement and the statistics every runner reports."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Latency of one model on one device, in milliseconds.

    ``p10_ms``/``p90_ms`` are None where the tool does not report the distribution
    (older ``benchmark_model`` builds print only count, avg, std, min and max).
    """

    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    runs: int
    p10_ms: float | None = None
    p90_ms: float | None = None
    init_ms: float | None = None
    peak_memory_mb: float | None = None
    delegated_nodes: tuple[int, int] | None = None  # (delegated, total) from benchmark_model
    repeats: int = 1  # measurements this one is the fastest of

    @property
    def cv(self) -> float:
        """Coefficient of variation: how noisy the measurement was."""
        return self.std_ms / self.mean_ms if self.mean_ms else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "cv": self.cv}


def summarize(samples_ms, **extra) -> Timing:
    """Statistics of per-run latencies in milliseconds."""
    samples = np.asarray(samples_ms, dtype=np.float64)
    if samples.size == 0:
        raise ValueError("no timed runs to summarize")
    return Timing(
        median_ms=float(np.median(samples)),
        mean_ms=float(samples.mean()),
        std_ms=float(statistics.stdev(samples)) if samples.size > 1 else 0.0,
        min_ms=float(samples.min()),
        max_ms=float(samples.max()),
        runs=int(samples.size),
        p10_ms=float(np.percentile(samples, 10)),
        p90_ms=float(np.percentile(samples, 90)),
        **extra,
    )


# How long a model measured once for a decision (export's budget check, `factory bench`) is measured: slow spells on
# a shared machine last up to about 1.5 s (a 0.66 ms model ran at 0.84 ms for 16% of 40 s, in spells of 35 ms to
# 1.5 s, on this project's 2-core host), longer than a few repeats of 50 runs take.
SPREAD_S = 4.0


def fastest_of(measure, repeats: int, spread_s: float = 0.0) -> Timing:
    """Measure ``repeats`` times, and on for ``spread_s`` seconds at least, and keep the measurement with the lowest
    median.

    Other work on a shared machine (or a phone's background tasks) only ever adds time,
    and it comes in bursts of seconds that a median over one measurement's runs does not
    remove; the fastest of several measurements spread over longer than a burst is the model's own latency.
    """
    start, timings = time.perf_counter(), []
    while len(timings) < repeats or time.perf_counter() - start < spread_s:
        timings.append(measure())
    return replace(min(timings, key=lambda t: t.median_ms), repeats=len(timings))
