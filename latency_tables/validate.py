"""How far a table's predictions are from real measurements of whole subnets."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from devices.profile import load_profile
from devices.runners import get_runner
from factory.extract import build_subnet_model, extract
from factory.files import atomic_directory, write_json
from factory.space import SubnetConfig
from latency_tables.builder import to_tflite
from latency_tables.table import LatencyTable


def error_report(predicted, measured) -> dict:
    """MAPE, the shares within +-5% and +-10%, and Kendall's tau of predicted vs measured."""
    from scipy.stats import kendalltau

    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    error = (predicted - measured) / measured
    tau = kendalltau(predicted, measured).statistic if len(measured) > 1 else float("nan")
    return {"n": int(len(measured)), "mape_percent": float(100 * np.mean(np.abs(error))),
            "within_5_percent": float(np.mean(np.abs(error) <= 0.05)),
            "within_10_percent": float(np.mean(np.abs(error) <= 0.10)),
            "mean_error_percent": float(100 * np.mean(error)), "kendall_tau": float(tau)}


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


def validate_table(table: LatencyTable, profile, n: int, out_dir: str | Path, supernet=None,
                   seed: int = 0, verbose: bool = True) -> dict:
    """Measure ``n`` random subnets as full models and compare with the table's predictions.

    Subnets are extracted from ``supernet`` when given, else built with random weights
    (latency does not depend on the weights' values). Writes ``report.json`` and
    ``scatter.png`` into ``out_dir`` atomically.
    """
    profile = load_profile(profile)
    space = table.space
    rng = random.Random(seed)
    rows = []
    with get_runner(profile) as runner:
        for i in range(n):
            subnet = SubnetConfig.random(space, rng)
            model = (extract(supernet, subnet) if supernet is not None
                     else build_subnet_model(space, subnet, table.num_classes))
            measured = runner.measure(to_tflite(model, profile.precision)).median_ms
            rows.append({"subnet": subnet.to_dict(), "predicted_ms": table.predict(subnet),
                         "measured_ms": measured})
            if verbose:
                print(f"  {i + 1}/{n}: predicted {rows[-1]['predicted_ms']:.3f} ms, measured {measured:.3f} ms",
                      flush=True)
    predicted = [r["predicted_ms"] for r in rows]
    measured = [r["measured_ms"] for r in rows]
    report = {"device": profile.name, "precision": profile.precision, "space": space.name,
              "table": table.source, **error_report(predicted, measured), "subnets": rows}
    with atomic_directory(out_dir) as tmp:
        write_json(tmp / "report.json", report)
        scatter(predicted, measured, f"{space.name} on {profile.name}: MAPE {report['mape_percent']:.1f}%, "
                                     f"tau {report['kendall_tau']:.2f}", tmp / "scatter.png")
    return report
