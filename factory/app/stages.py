"""Work-directory stages after training: evaluate subnets, fit the predictor, search, export.

Each stage reads what earlier stages left in the ``Workdir`` and writes its own output
there atomically; a stage whose output is already there is loaded, not redone.
"""

from __future__ import annotations

from pathlib import Path

from devices.profile import DeviceProfile
from export.config import ExportConfig
from export.pipeline import export_subnet
from factory.app.plots import pareto_plot
from factory.core.files import write_json
from factory.nas.space import SubnetConfig
from factory.search.evaluate import as_arrays, evaluate_subnets
from factory.search.predictor import AccuracyPredictor, fit_predictor
from factory.search.strategies import Constraints, SearchConfig, check_budgets, search
from factory.training.data import make_dataset
from factory.training.workdir import Workdir
from latency_tables.table import LatencyTable


def ensure_predictor(workdir: Workdir, supernet, data, n_eval: int, seed: int = 0, verbose: int = 1):
    """Evaluate subnets (resuming) and fit the predictor, or load it if it saw as many subnets."""
    results = evaluate_subnets(supernet, data, workdir.subnet_evals_file, n=n_eval, seed=seed, verbose=verbose)
    path = workdir.predictor_dir
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


def search_workdir(workdir: Workdir, tables: dict[str, LatencyTable], budgets_ms: list[float], *,
                   data: str | None = None, config: SearchConfig = SearchConfig(), reuse: bool = False,
                   verbose: int = 1) -> list[dict]:
    """Search every (device, budget) pair, ``tables`` by device name; write and return one result each.

    With ``reuse``, a pair whose result file is already there (for this space) is loaded, not searched again.
    """
    pairs = [(device, budget) for device in tables for budget in budgets_ms]
    done = {pair: result for pair in pairs if reuse and (result := workdir.search_result(*pair))}
    if len(done) == len(pairs):
        return list(done.values())
    space = workdir.space()
    for device, table in tables.items():  # before any evaluation: a budget no subnet meets fails now
        for budget in budgets_ms:
            check_budgets({device: table}, Constraints({device: budget}))
    supernet = workdir.supernet()
    image_data = workdir.data(data).resized(space.resolutions[-1])
    predictor, _ = ensure_predictor(workdir, supernet, image_data, config.n_eval, config.seed, verbose)
    val = make_dataset(image_data.x_val, image_data.y_val, 256, training=False)
    calibration = image_data.calibration()
    results = []
    for device, budget in pairs:
        if (device, budget) in done:
            results.append(done[(device, budget)])
            continue
        top = search(space, predictor.predict_encoded, {device: tables[device]},
                     Constraints({device: budget}, size_bytes=config.size_bytes), supernet.num_classes,
                     strategy=config.strategy, evolution=config.evolution, trials=config.trials)
        checked = []
        for subnet, predicted in top[:config.recheck]:
            supernet.recalibrate(subnet, calibration)
            checked.append((supernet.evaluate_subnet(subnet, val), predicted, subnet))
        evaluated, predicted, best = max(checked, key=lambda c: c[0])
        result = {"device": device, "budget_ms": budget, "strategy": config.strategy, "seed": config.evolution.seed,
                  "subnet": best.to_dict(), "predicted_accuracy": float(predicted),
                  "val_accuracy": float(evaluated),
                  "predicted_latency_ms": {d: t.predict(best) for d, t in tables.items()},
                  "params": space.param_count(best, supernet.num_classes),
                  "space_fingerprint": space.fingerprint,
                  "rechecked": [{"subnet": s.to_dict(), "predicted_accuracy": float(p), "val_accuracy": float(a)}
                                for a, p, s in checked]}
        path = workdir.search_result_file(device, budget)
        write_json(path, result)
        print(f"{device} <= {budget:g} ms: val accuracy {evaluated:.4f} (predicted {predicted:.4f}), "
              f"predicted latency {result['predicted_latency_ms'][device]:.3f} ms -> {path}")
        results.append(result)
    return results


def export_workdir(workdir: Workdir, subnet: SubnetConfig, profile: DeviceProfile, table: LatencyTable,
                   out: str | Path, *, budget_ms: float | None = None, config: ExportConfig = ExportConfig(),
                   data: str | None = None, verbose: int = 2) -> dict:
    """Export a subnet of the work directory's supernet, with its Pareto plot, to the bundle ``out``."""
    def plot(png: Path, result: dict):
        pareto_plot(workdir, table, png, chosen=[result], size=(4.5, 3.2))

    return export_subnet(workdir.supernet(), subnet, workdir.data(data), profile, table, out, budget_ms=budget_ms,
                         config=config, supernet_training=workdir.training(), plot=plot, verbose=verbose)
