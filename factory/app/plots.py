"""The accuracy-latency plot of a work directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from factory.core.files import atomic_file
from factory.nas.space import SubnetConfig
from factory.training.workdir import Workdir
from latency_tables.table import LatencyTable


def pareto_plot(workdir: Workdir, table: LatencyTable, out: str | Path | None = None,
                chosen: list[dict] | None = None, size: tuple[float, float] = (6, 4.2)) -> Path:
    """Validation accuracy against predicted latency: evaluated subnets, their front, chosen subnets.

    ``chosen`` holds search results (``subnet``, ``val_accuracy``, ``budget_ms``); by default
    every search result of the table's device in the work directory.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = workdir.subnet_evals()
    if chosen is None:
        chosen = workdir.search_results(table.device)
    fig, ax = plt.subplots(figsize=size, dpi=120)
    if evals:
        lat = table.predict_many([SubnetConfig.from_dict(r["subnet"]) for r in evals])
        acc = np.array([r["val_accuracy"] for r in evals])
        order = np.argsort(lat)
        front = order[np.maximum.accumulate(acc[order]) == acc[order]]
        ax.scatter(lat, 100 * acc, s=10, alpha=0.4, label="evaluated subnets")
        ax.plot(lat[front], 100 * acc[front], "k-", lw=1, label="Pareto front")
    for r in chosen:
        latency = table.predict(SubnetConfig.from_dict(r["subnet"]))
        label = f"chosen for {r['budget_ms']:g} ms" if r.get("budget_ms") is not None else "chosen"
        ax.scatter([latency], [100 * r["val_accuracy"]], marker="*", s=160, edgecolor="k", zorder=3, label=label)
        if r.get("budget_ms") is not None:
            ax.axvline(r["budget_ms"], ls=":", lw=0.8, color="grey")
    ax.set_xlabel(f"predicted latency on {table.device} (ms)")
    ax.set_ylabel("validation accuracy (%)")
    return _save(fig, ax, Path(out or workdir.pareto_png(table.device)))


def diverse_plot(result: dict, device: str, out: Path) -> Path:
    """Predicted accuracy against predicted latency: the candidates searched and the diverse set chosen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    pool = result["pool"]
    ax.scatter(pool["latency_ms"], 100 * pool["accuracy"], s=8, alpha=0.35, label="candidates (searches)")
    ax.scatter(result["latency_ms"], 100 * result["accuracy"], marker="*", s=160, edgecolor="k", zorder=3,
               label=f"diverse set ({len(result['accuracy'])})")
    for i, (x, y) in enumerate(zip(result["latency_ms"], result["accuracy"]), start=1):
        ax.annotate(str(i), (x, 100 * y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel(f"predicted latency on {device} (ms)")
    ax.set_ylabel("predicted accuracy (%)")
    return _save(fig, ax, out)


def _save(fig, ax, out: Path) -> Path:
    import matplotlib.pyplot as plt

    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_file(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out
