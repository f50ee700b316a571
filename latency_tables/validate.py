"""How far a table's predictions are from real measurements of whole subnets, and the
linear correction that takes out the systematic part of that error.

The correction is judged only on subnets it was not fitted on: k-fold cross-validation
over the measured subnets (each subnet predicted by a correction fitted on the others).
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np

from devices.hardware import check_same_hardware
from devices.profile import DeviceProfile
from devices.runners import get_runner
from factory.core.convert import convert_for_timing
from factory.nas.extract import build_subnet_model, extract
from factory.core.errors import FactoryError
from factory.core.files import atomic_directory, read_json, write_json
from factory.nas.space import SubnetConfig
from latency_tables.table import LatencyTable, apply_correction, check_calibration_n


def error_report(predicted, measured) -> dict:
    """MAPE, the shares within +-5% and +-10%, Kendall's tau of predicted vs measured, and how much slower than
    predicted a subnet measures 95 times in 100 (the margin a search leaves under a budget)."""
    from scipy.stats import kendalltau

    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    error = (predicted - measured) / measured
    tau = kendalltau(predicted, measured).statistic if len(measured) > 1 else float("nan")
    return {"n": int(len(measured)), "mape_percent": float(100 * np.mean(np.abs(error))),
            "within_5_percent": float(np.mean(np.abs(error) <= 0.05)),
            "within_10_percent": float(np.mean(np.abs(error) <= 0.10)),
            "mean_error_percent": float(100 * np.mean(error)), "kendall_tau": float(tau),
            "p95_slower_percent": float(100 * np.percentile(measured / predicted - 1, 95))}


def fit_correction(predicted, measured) -> dict:
    """``quadratic * sum**2 + slope * sum + intercept`` minimising the squared relative error (what MAPE counts).

    Whole networks grow slower than the sum of their one-layer models as they grow (each one-layer model had the
    caches to itself): on the shipped host-cpu-1t table, fitted on 10 random and 10 search-like subnets, the
    quadratic held out 2.44% MAPE on 50 random and 4.05% on 50 search-like subnets, where a linear correction
    fitted on 100 held out 4.95% and 7.64%. A fit that would not grow over the range measured falls back to the
    line."""
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    if len(measured) < 3:
        raise FactoryError("a latency correction needs at least 3 measured subnets: raise --n")

    def fit(columns):
        design = np.stack([c / measured for c in columns], axis=1)
        return np.linalg.lstsq(design, np.ones_like(measured), rcond=None)[0]

    quadratic, slope, intercept = fit([predicted ** 2, predicted, np.ones_like(predicted)])
    low, high = predicted.min() / 2, predicted.max() * 2
    if min(2 * quadratic * low + slope, 2 * quadratic * high + slope) <= 0:  # not increasing: the line
        quadratic, (slope, intercept) = 0.0, fit([predicted, np.ones_like(predicted)])
        if slope <= 0:
            raise FactoryError("measured latencies do not grow with the table's predictions: rebuild the table")
    return {"quadratic": float(quadratic), "slope": float(slope), "intercept": float(intercept),
            "n": int(len(measured))}


def cross_validated(predicted, measured, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold corrected predictions: each subnet corrected by a fit on the other folds."""
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    order = np.random.default_rng(seed).permutation(len(measured))
    out = np.empty_like(predicted)
    for fold in np.array_split(order, min(folds, len(measured))):
        train = np.setdiff1d(order, fold)
        out[fold] = apply_correction(fit_correction(predicted[train], measured[train]), predicted[fold])
    return out


def correction_report(predicted_raw, measured, folds: int = 5) -> dict:
    """Error of the plain table and, held out by cross-validation, of the corrected one."""
    return {"uncorrected": error_report(predicted_raw, measured),
            "corrected_cross_validated": {**error_report(cross_validated(predicted_raw, measured, folds), measured),
                                          "folds": folds},
            "correction_fitted_on_all": fit_correction(predicted_raw, measured)}


def store_correction(path: str | Path, correction: dict, **provenance) -> dict:
    """Write the correction into the table file at ``path`` (atomically)."""
    doc = read_json(path)
    doc["correction"] = {**correction, **provenance}
    write_json(path, doc)
    return doc


CALIBRATION_PASSES = 2  # each whole subnet is measured in this many passes over all of them (the lowest median kept)


def calibrate_table(table: LatencyTable, profile: DeviceProfile, n: int, out_dir: str | Path, supernet=None,
                    seed: int = 1, verbose: bool = True) -> dict:
    """Measure ``n`` whole subnets, half uniform random and half search-like (searches pick from the slow end of
    the space, where a sum of layers misses most), and store the fitted correction in the table's file.

    Returns the validation report; its ``corrected_cross_validated`` part is what the
    correction does on subnets it was not fitted on. Seed 1 by default, so that a later
    validation (seed 0) measures other subnets.
    """
    check_calibration_n(n)
    if not Path(table.source).is_file():
        raise FactoryError("calibrate a table loaded from its file (LatencyTable.load), where the correction is stored")
    mix = draw(table, "random", n - n // 2, seed) + search_like(table, n // 2, seed, extremes=False)
    report = validate_table(table, profile, n, out_dir, supernet=supernet, seed=seed, passes=CALIBRATION_PASSES,
                            verbose=verbose, subnets=mix)
    store_correction(table.source, report["correction_fitted_on_all"], fitted_on_subnets=n, seed=seed,
                     cross_validated=report["corrected_cross_validated"])
    return report


KINDS = ("random", "search-like")


def search_like(table: LatencyTable, n: int, seed: int = 0, extremes: bool = True) -> list[SubnetConfig]:
    """``n`` subnets like those searches pick, where a table's error matters most: the slowest of each resolution
    (largest kernels, expand ratios and depths), then the largest subnets under budgets drawn across the table's
    span, each reached from the largest subnet by lowering one random choice at a time until its prediction fits,
    as a search that maximises accuracy spends a budget. Calibration leaves the ``extremes`` out, so that
    validation's stay held out.

    Budgets are drawn evenly on a log scale, as users set them (a quarter, half, all of a reference) and as the
    correction's relative error counts: drawn evenly in milliseconds over the lite0 space's span (0.7 to 106 ms),
    nine in ten budgets lay above 10 ms, the fast end where phones' budgets lie went uncalibrated (a 1.04 ms
    prediction measured 1.12 ms), and whole subnets of 30 ms made most of a calibration's time."""
    space, rng = table.space, random.Random(seed)
    largest = SubnetConfig.largest(space)
    out = [dataclasses.replace(largest, resolution=r) for r in reversed(space.resolutions)][:n] if extremes else []
    # from the smallest subnet's prediction, not the table's fastest: on a noisy device a subnet with a larger choice
    # can measure faster than the smallest, and a budget under every descent's end would never be reached
    lo, hi = np.log(table.predict(SubnetConfig.smallest(space))), np.log(table.predict(largest))
    while len(out) < n:
        budget = float(np.exp(lo + rng.random() * (hi - lo)))
        subnet, lower = largest, None
        while table.predict(subnet) > budget and lower != subnet:
            subnet, lower = subnet.lowered(space, rng), subnet
        out.append(subnet)
    return out


def draw(table: LatencyTable, kind: str, n: int, seed: int) -> list[SubnetConfig]:
    """``n`` subnets of a kind: ``random`` (uniform) or ``search-like``."""
    if kind not in KINDS:
        raise FactoryError(f"subnet kind {kind!r} is not one of {list(KINDS)}")
    if kind == "search-like":
        return search_like(table, n, seed)
    rng = random.Random(seed)
    return [SubnetConfig.random(table.space, rng) for _ in range(n)]


def scatter(predicted, measured, title: str, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    ax.scatter(measured, predicted, s=12, alpha=0.7)
    lo, hi = min(min(measured), min(predicted)), max(max(measured), max(predicted))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="exact")
    ax.fill_between([lo, hi], [0.9 * lo, 0.9 * hi], [1.1 * lo, 1.1 * hi], color="grey", alpha=0.2, label="+-10%")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def judge(table: LatencyTable, profile: DeviceProfile, subnets: list[SubnetConfig], measured: list[float],
          kind: str, passes: int) -> dict:
    """The report of subnets measured whole: the table's predictions against the measurements, and what a
    correction refitted on them would do held out."""
    rows = [{"subnet": s.to_dict(), "predicted_ms": table.predict(s),
             "uncorrected_ms": table.predict(s, corrected=False), "measured_ms": ms}
            for s, ms in zip(subnets, measured)]
    predicted = [r["predicted_ms"] for r in rows]
    return {"device": profile.name, "precision": profile.precision, "space": table.space.name, "passes": passes,
            "kind": kind, "table": table.source, "table_correction": table.correction,
            **error_report(predicted, measured),
            **(correction_report([r["uncorrected_ms"] for r in rows], measured) if len(rows) >= 5 else {}),
            "subnets": rows}


def validate_table(table: LatencyTable, profile: DeviceProfile, n: int, out_dir: str | Path, supernet=None,
                   seed: int = 0, passes: int = 3, verbose: bool = True, kind: str = "random",
                   subnets: list[SubnetConfig] | None = None) -> dict:
    """Measure ``n`` subnets of ``kind`` (:func:`draw`; or the ``subnets`` given) as full models and compare with
    the table's predictions.

    Subnets are extracted from ``supernet`` when given, else built with random weights
    (latency does not depend on the weights' values). All are converted first, then
    measured in ``passes`` passes and each keeps its lowest median, so that a burst of
    other work on the machine does not decide a subnet's figure. Writes ``report.json``
    and ``scatter.png`` into ``out_dir`` atomically.
    """
    space = table.space
    kind = kind if subnets is None else "given"
    subnets = draw(table, kind, n, seed) if subnets is None else list(subnets)
    n, models = len(subnets), []
    with get_runner(profile) as runner:
        check_same_hardware(table.hardware, runner.hardware(), table.source,
                            "validate or calibrate it on the hardware it was measured on")
        for i, subnet in enumerate(subnets):
            model = (extract(supernet, subnet) if supernet is not None
                     else build_subnet_model(space, subnet, table.head))
            models.append(convert_for_timing(model, profile.precision))
            if verbose:
                print(f"  converted {i + 1}/{n}", flush=True)
        measured = [runner.measure(m).median_ms for m in models]
        for _ in range(1, passes):
            measured = [min(ms, runner.measure(m).median_ms) for ms, m in zip(measured, models)]
    report = judge(table, profile, subnets, measured, kind, passes)
    if verbose:
        for i, r in enumerate(report["subnets"]):
            print(f"  {i + 1}/{n}: predicted {r['predicted_ms']:.3f} ms, measured {r['measured_ms']:.3f} ms")
    with atomic_directory(out_dir) as tmp:
        write_json(tmp / "report.json", report)
        scatter([r["predicted_ms"] for r in report["subnets"]], measured, f"{space.name} on {profile.name}: MAPE {report['mape_percent']:.1f}%, "
                                     f"tau {report['kendall_tau']:.2f}", tmp / "scatter.png")
    return report
