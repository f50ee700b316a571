"""Work-directory stages after training: evaluate subnets, fit the predictor, search, plot.

Each stage reads what earlier stages left in the work directory and writes its own
output there atomically; a stage whose output is already there is loaded, not redone.

    subnet_evals.json          validation accuracy of evaluated subnets (resumable)
    predictor/                 the accuracy predictor and its held-out report
    search/DEVICE__BUDGETms.json   one search result per (device, budget)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from devices.profile import load_profile
from factory.data import load_data, make_dataset
from factory.errors import FactoryError
from factory.evaluate import as_arrays, evaluate_subnets
from factory.evolution import EvolutionConfig
from factory.files import atomic_file, read_json, write_json
from factory.predictor import AccuracyPredictor, fit_predictor
from factory.search import Constraints, check_budgets, search
from factory.space import SubnetConfig, load_space
from factory.train import load_supernet
from latency_tables.table import LatencyTable, default_table_path


def workdir_data(workdir: Path, data: str | None = None):
    """The data a work directory was trained on (or ``data`` when given)."""
    recorded = read_json(workdir / "data.json")
    spec = data or recorded.get("source")
    if not spec:
        raise FactoryError(f"{workdir}/data.json does not say where its data came from: pass --data")
    loaded = load_data(spec, seed=recorded.get("seed", 0))
    if loaded.class_names != recorded["classes"]:
        raise FactoryError(f"{spec} has classes {loaded.class_names}, {workdir} was trained on "
                           f"{recorded['classes']}: pass the training data")
    return loaded


def ensure_predictor(workdir: Path, supernet, data, n_eval: int, seed: int = 0, verbose: int = 1):
    """Evaluate subnets (resuming) and fit the predictor, or load it if it saw as many subnets."""
    results = evaluate_subnets(supernet, data, workdir / "subnet_evals.json", n=n_eval, seed=seed, verbose=verbose)
    path = workdir / "predictor"
    if (path / "predictor.json").exists():
        predictor = AccuracyPredictor.load(path, supernet.space)
        seen = predictor.report.get("train_subnets", 0) + predictor.report.get("heldout_subnets", 0)
        if seen == len(results):
            return predictor, results
    encoded, accuracy = as_arrays(supernet.space, results)
    predictor = fit_predictor(supernet.space, encoded, accuracy, seed=seed)
    predictor.save(path)
    report = predictor.report
    print(f"accuracy predictor: kept {report['kept']}; held-out RMSE ridge {100 * report['ridge']['rmse']:.2f} pt, "
          f"MLP {100 * report['mlp']['rmse']:.2f} pt; Kendall tau {report[report['kept']]['kendall_tau']:.3f}")
    return predictor, results


def load_tables(space, devices, tables: dict | None = None) -> dict:
    out = {}
    for device in devices:
        profile = load_profile(device)
        path = Path((tables or {}).get(device) or default_table_path(space, profile))
        if not path.exists():
            raise FactoryError(f"no latency table of space {space.name} for {profile.name} at {path}: run "
                               f"`factory table build --device {device} --space {space.name}` first")
        out[profile.name] = LatencyTable.load(path, space, profile)
    return out


def result_path(workdir: Path, device: str, budget: float) -> Path:
    return workdir / "search" / f"{device}__{budget:g}ms.json"


def _reusable(workdir: Path, device: str, budget: float) -> dict | None:
    path = result_path(workdir, device, budget)
    if not path.exists():
        return None
    result = read_json(path)
    recorded = read_json(workdir / "space.json").get("fingerprint")
    return result if result.get("space_fingerprint") == recorded else None


def search_workdir(workdir: str | Path, devices: list[str], budgets_ms: list[float], *, data: str | None = None,
                   strategy: str = "evolution", n_eval: int = 300, recheck: int = 5, size_bytes: int | None = None,
                   evolution: EvolutionConfig = EvolutionConfig(), trials: int = 500, seed: int = 0,
                   tables: dict | None = None, reuse: bool = False, verbose: int = 1) -> list[dict]:
    """Search every (device, budget) pair; write and return one result each.

    With ``reuse``, a pair whose result file is already there (for this space) is loaded, not searched again.
    """
    workdir = Path(workdir)
    done = {}
    if reuse:
        pairs = [(load_profile(d).name, b) for d in devices for b in budgets_ms]
        done = {pair: result for pair in pairs if (result := _reusable(workdir, *pair))}
        if len(done) == len(pairs):
            return list(done.values())
    space = load_space(workdir / "space.json")
    tables = load_tables(space, devices, tables)
    for device, table in tables.items():  # before any evaluation: a budget no subnet meets fails now
        for budget in budgets_ms:
            check_budgets({device: table}, Constraints({device: budget}))
    supernet = load_supernet(workdir)
    image_data = workdir_data(workdir, data).resized(space.resolutions[-1])
    predictor, _ = ensure_predictor(workdir, supernet, image_data, n_eval, seed, verbose)
    val = make_dataset(image_data.x_val, image_data.y_val, 256, training=False)
    calibration = image_data.calibration()
    results = []
    for device, table in tables.items():
        for budget in budgets_ms:
            if (device, budget) in done:
                results.append(done[(device, budget)])
                continue
            top = search(space, predictor.predict_encoded, {device: table},
                         Constraints({device: budget}, size_bytes=size_bytes), supernet.num_classes,
                         strategy=strategy, evolution=evolution, trials=trials)
            checked = []
            for subnet, predicted in top[:recheck]:
                supernet.recalibrate(subnet, calibration)
                checked.append((supernet.evaluate_subnet(subnet, val), predicted, subnet))
            evaluated, predicted, best = max(checked, key=lambda c: c[0])
            result = {"device": device, "budget_ms": budget, "strategy": strategy, "seed": evolution.seed,
                      "subnet": best.to_dict(), "predicted_accuracy": float(predicted),
                      "val_accuracy": float(evaluated),
                      "predicted_latency_ms": {d: t.predict(best) for d, t in tables.items()},
                      "params": space.param_count(best, supernet.num_classes),
                      "space_fingerprint": space.fingerprint,
                      "rechecked": [{"subnet": s.to_dict(), "predicted_accuracy": float(p), "val_accuracy": float(a)}
                                    for a, p, s in checked]}
            write_json(result_path(workdir, device, budget), result)
            print(f"{device} <= {budget:g} ms: val accuracy {evaluated:.4f} (predicted {predicted:.4f}), "
                  f"predicted latency {result['predicted_latency_ms'][device]:.3f} ms -> "
                  f"{result_path(workdir, device, budget)}")
            results.append(result)
    return results


def pareto_plot(workdir: str | Path, device: str, out: str | Path | None = None,
                table: str | Path | None = None, chosen: list[dict] | None = None,
                size: tuple[float, float] = (6, 4.2)) -> Path:
    """Validation accuracy against predicted latency: evaluated subnets, their front, chosen subnets.

    ``chosen`` holds search results (``subnet``, ``val_accuracy``, ``budget_ms``); by default
    every search result of ``device`` in the work directory.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workdir = Path(workdir)
    space = load_space(workdir / "space.json")
    table = load_tables(space, [device], {device: table})[load_profile(device).name]
    evals = read_json(workdir / "subnet_evals.json")["results"] if (workdir / "subnet_evals.json").exists() else []
    if chosen is None:
        chosen = [read_json(p) for p in sorted((workdir / "search").glob(f"{table.device}__*ms.json"))]
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
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out = Path(out or workdir / f"pareto__{table.device}.png")
    with atomic_file(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out
