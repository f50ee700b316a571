"""Matching: which width and resolution of each baseline runs closest under a budget, and the budget the
factory is searched at to match a model's measured latency."""

from __future__ import annotations

import math

from bench.baselines import baseline
from factory.core.backend import keras
from factory.core.convert import convert
from factory.training.data import normalize
from factory.training.portable.images import resize_images

ARCHS = ("MobileNetV3Small", "MobileNetV2")
ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.4)
RESOLUTIONS = (32, 64, 96, 128)


def representative_at(images, size: int):
    """uint8 calibration images at ``size`` (the factory's resize), normalized as the models take them."""
    return normalize(resize_images(images, size)).numpy()


def matching_config(arch, budget_ms, num_classes, representative, runner, cache) -> tuple[int, float]:
    """The (resolution, alpha) whose (random-weight) int8 model measures closest under the budget."""
    for size in RESOLUTIONS:
        images = representative_at(representative, size)
        for alpha in ALPHAS:
            key = f"{arch}@{size}@{alpha:g}"
            if key not in cache:
                cache[key] = runner.measure(convert(baseline(keras, arch, alpha, size, num_classes), "int8", images)).median_ms
    fits = [(ms, key) for key, ms in cache.items() if key.startswith(f"{arch}@") and ms <= budget_ms]
    _, key = max(fits) if fits else min((ms, key) for key, ms in cache.items() if key.startswith(f"{arch}@"))
    _, size, alpha = key.split("@")
    return int(size), float(alpha)


def match_baselines(run, runner) -> dict:
    """1. Width and resolution of each baseline for each budget, measured first while nothing else runs."""
    configs = {(arch, budget): matching_config(arch, budget, run.data.num_classes, run.representative, runner,
                                               run.doc["latency_by_config"])
               for budget in run.budgets for arch in run.args.archs}
    run.save()
    return configs


def equal_latency_budget(measured_ms: float, table) -> float:
    """The budget the factory is searched at to match a model measured at ``measured_ms``: under it by
    the table's cross-validated error (0 without a calibration), so that a prediction off by its typical
    error still measures at or under the model."""
    mape = (table.correction or {}).get("cross_validated", {}).get("mape_percent", 0.0)
    return math.floor(1000 * measured_ms * (1 - mape / 100)) / 1000
