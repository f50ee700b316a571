"""Work-directory stages after training: evaluate subnets, fit the predictor, search, export.

Each stage reads what earlier stages left in the ``Workdir`` and writes its own output
there atomically; a stage whose output is already there is loaded, not redone.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from devices.profile import DeviceProfile
from export.config import ExportConfig
from export.pipeline import OverBudgetError, export_subnet
from factory.app.plots import diverse_plot, pareto_plot
from factory.core.errors import FactoryError
from factory.core.files import write_json
from factory.nas.space import SubnetConfig
from factory.search.diverse import DiverseConfig, diverse_front, mean_pairwise_distance
from factory.search.evaluate import as_arrays, best_evaluated, evaluate_subnets, ranking_target
from factory.search.predictor import AccuracyPredictor, fit_predictor
from factory.search.gradient import GradientConfig, gradient_search
from factory.search.strategies import Constraints, SearchConfig, check_budgets, constraint_test, feasibility, search
from factory.training.data import ImageData, make_dataset, normalize
from factory.training.workdir import Workdir, writes_workdir
from latency_tables.memory import MemoryModel
from latency_tables.table import LatencyTable


# the best evaluated subnets within a budget join the search's candidates in the re-check: a predictor fitted on a
# few dozen subnets extrapolates, and a subnet measured good (the pretrained network at a resolution) must not be
# lost to it
EVALUATED_RECHECK = 2


def ensure_predictor(workdir: Workdir, supernet, data, n_eval: int, seed: int = 0, verbose: int = 1):
    """Evaluate subnets (resuming) and fit the predictor, or load it if it saw as many subnets."""
    results = evaluate_subnets(supernet, data, workdir.subnet_evals_file, n=n_eval, seed=seed,
                               teacher=workdir.teacher(), anchors=workdir.anchor_subnets(), verbose=verbose)
    path = workdir.predictor_dir
    if (path / "predictor.json").exists():
        predictor = AccuracyPredictor.load(path, supernet.space)
        seen = predictor.report.get("train_subnets", 0) + predictor.report.get("heldout_subnets", 0)
        if seen == len(results):
            return predictor, results
    encoded, accuracy = as_arrays(supernet.space, results)
    predictor = fit_predictor(supernet.space, encoded, accuracy, seed=seed)
    predictor.report["fitted_to"] = ranking_target(results)
    predictor.save(path)
    report = predictor.report
    print(f"accuracy predictor ({report['fitted_to'].replace('_', ' ')}): kept {report['kept']}; held-out RMSE ridge {100 * report['ridge']['rmse']:.2f} pt, "
          f"MLP {100 * report['mlp']['rmse']:.2f} pt; Kendall tau {report[report['kept']]['kendall_tau']:.3f}")
    return predictor, results


@writes_workdir
def diverse_workdir(workdir: Workdir, table: LatencyTable, k: int, *, data: str | None = None,
                    config: SearchConfig = SearchConfig(), diverse: DiverseConfig = DiverseConfig()) -> list[dict]:
    """A diverse Pareto set of ``k`` subnets on ``table``'s device (``factory.search.diverse``), written to the work
    directory as JSON and a plot; returns its rows."""
    space = workdir.space()
    supernet = workdir.supernet()
    image_data = workdir.data(data).resized(space.resolutions[-1])
    predictor, _ = ensure_predictor(workdir, supernet, image_data, config.n_eval, config.seed)
    device = table.device

    def feasible_under(budget):
        return feasibility(space, {device: table}, Constraints({device: budget}, size_bytes=config.size_bytes),
                           supernet.task_head)

    result = diverse_front(space, predictor.predict_encoded, table, feasible_under, k, diverse)
    rows = [{"subnet": space.decode(e).to_dict(), "predicted_accuracy": float(a), "predicted_latency_ms": float(t),
             "below_front_points": float(100 * g), "params": space.param_count(space.decode(e), supernet.task_head)}
            for e, a, t, g in zip(result["encoded"], result["accuracy"], result["latency_ms"], result["gap"])]
    doc = {"device": device, "k": k, "space_fingerprint": space.fingerprint, "candidates": len(result["pool"]["gap"]),
           "mean_pairwise_distance": mean_pairwise_distance(space, result["encoded"]), "subnets": rows}
    write_json(workdir.diverse_file(device), doc)
    diverse_plot(result, device, workdir.diverse_file(device, ".png"))
    return doc


def training_sample(data: ImageData, config: GradientConfig):
    """The gradient search's images: a seeded sample of the training split, normalized (never validation images)."""
    pick = np.random.default_rng(config.seed).permutation(len(data.y_train))[:config.images]
    return normalize(data.x_train[np.sort(pick)]).numpy(), np.asarray(data.y_train)[np.sort(pick)]


def candidates(supernet, predictor: AccuracyPredictor, image_data: ImageData, tables: dict, constraints: Constraints,
               config: SearchConfig, memory: dict | None = None, verbose: int = 1) -> list[tuple[SubnetConfig, float]]:
    """The best candidates of ``config.strategy`` with their predicted accuracy, best first (the gradient strategy's
    order is its learnt distribution's; the predictor's figure is recorded for it too)."""
    space = supernet.space
    if config.strategy != "gradient":
        return search(space, predictor.predict_encoded, tables, constraints, supernet.task_head,
                      strategy=config.strategy, evolution=config.evolution, trials=config.trials,
                      reinforce_config=config.reinforce, memory=memory, seconds=config.time_limit_s)
    feasible = constraint_test(space, tables, constraints, supernet.task_head, memory)
    found = gradient_search(supernet, *training_sample(image_data, config.gradient), tables, constraints.latency_ms,
                            feasible, config.gradient, verbose=verbose, seconds=config.time_limit_s).top
    return [(s, float(predictor.predict_encoded(space.encode(s)[None])[0])) for s, _ in found]


def recheck(supernet, top: list[tuple[SubnetConfig, float]], calibration, val) -> list[tuple[float, float, SubnetConfig]]:
    """``(validation accuracy, predicted accuracy, subnet)`` of each candidate, evaluated with the supernet after its
    batch-norm recalibration, best first."""
    checked = []
    for subnet, predicted in top:
        supernet.recalibrate(subnet, calibration)
        checked.append((supernet.evaluate_subnet(subnet, val), predicted, subnet))
    return sorted(checked, key=lambda c: -c[0])


def int8_recheck(supernet, checked: list[tuple[float, float, SubnetConfig]], image_data: ImageData,
                 calibration) -> list[dict]:
    """The candidates scored as the model that ships is: each extracted, converted to post-training int8 (calibrated on
    200 training images) and run by LiteRT on the validation split at its resolution. Best int8 accuracy first (ties:
    the float figure), so a subnet that quantization hurts more than the others is not chosen."""
    from export.parity import tflite_predict
    from export.pipeline import pinned
    from factory.core.convert import convert
    from factory.nas.extract import extract
    from factory.training.portable.images import resize_images

    train, val = np.asarray(image_data.x_train[:200]), np.asarray(image_data.x_val[:len(image_data.y_val)])
    at = {}  # (representative images, validation images) per resolution, resized once
    rows = []
    for evaluated, predicted, subnet in checked:
        r = subnet.resolution
        if r not in at:
            at[r] = (pinned(normalize(resize_images(train, r)).numpy()), resize_images(val, r))
        supernet.recalibrate(subnet, calibration)
        content = convert(extract(supernet, subnet), "int8", at[r][0], "int8", signature=False)
        rows.append({"subnet": subnet, "val_accuracy": float(evaluated), "predicted_accuracy": float(predicted),
                     "int8_val_accuracy": supernet.task_head.score(
                         [(tflite_predict(content, at[r][1]), np.asarray(image_data.y_val))])})
    return sorted(rows, key=lambda r: (-r["int8_val_accuracy"], -r["val_accuracy"]))


@writes_workdir
def proxies_workdir(workdir: Workdir, n: int, *, data: str | None = None, seed: int = 0, verbose: int = 1) -> dict:
    """Zero-cost proxies (``factory.search.proxies``) of ``n`` subnets the work directory evaluated, on a supernet of
    its space at initialisation (plain init: no zero-initialised residual branches), against those evaluations;
    written to ``W/proxies.json``."""
    from factory.core.backend import keras
    from factory.search.proxies import rank_proxies, score_subnets
    from factory.training.portable.recipe import TrainConfig
    from factory.training.train import build_supernet

    evals = workdir.subnet_evals()
    if len(evals) < 10:
        raise FactoryError(f"{workdir} holds {len(evals)} subnet evaluations: run `factory search` there first "
                           "(it evaluates --n-eval subnets), the proxies are judged against them")
    evals = evals[:n]
    space, trained = workdir.space(), workdir.supernet()
    image_data = workdir.data(data).resized(space.resolutions[-1])
    untrained = build_supernet(space, trained.task_head, TrainConfig(seed=seed, zero_init_residual=False))
    pick = np.random.default_rng(seed).permutation(len(image_data.y_train))[:64]
    images = normalize(image_data.x_train[np.sort(pick)]).numpy()
    subnets = [SubnetConfig.from_dict(r["subnet"]) for r in evals]
    keras.utils.set_random_seed(seed)  # the subnets' dropout in SNIP's training-mode pass
    scored = score_subnets(untrained, subnets, images, np.asarray(image_data.y_train)[np.sort(pick)], verbose)
    tau = rank_proxies(scored["scores"], [r["val_accuracy"] for r in evals])
    calibration = image_data.calibration(512)  # as evaluate_subnets scores a subnet
    val = make_dataset(image_data.x_val, image_data.y_val, 256, training=False)

    def evaluate(subnet):
        trained.recalibrate(subnet, calibration)
        trained.evaluate_subnet(subnet, val)

    evaluate(subnets[0])  # traces the supernet's graphs, once a run: not timed
    start, timed = time.perf_counter(), subnets[1:6]
    for subnet in timed:
        evaluate(subnet)
    doc = {"subnets": len(subnets), "kendall_tau": tau, "proxy_seconds_per_subnet": scored["seconds_per_subnet"],
           "evaluation_seconds_per_subnet": (time.perf_counter() - start) / len(timed),
           "scores": scored["scores"], "val_accuracy": [r["val_accuracy"] for r in evals],
           "space_fingerprint": space.fingerprint}
    write_json(workdir.path / "proxies.json", doc)
    return doc


MAX_TRIES = 3  # subnets make exports per (device, budget) before it gives up on a budget they all measure over


def search_budget(table: LatencyTable, budget_ms: float) -> float:
    """The predicted latency a search may spend under ``budget_ms``: the budget less the table's margin (how much
    slower than predicted subnets measure 95 times in 100), never below the fastest subnet."""
    return max(budget_ms / (1 + table.margin), table.fastest_ms())


@writes_workdir
def search_workdir(workdir: Workdir, tables: dict[str, LatencyTable], budgets_ms: list[float], *,
                   data: str | None = None, config: SearchConfig = SearchConfig(), reuse: bool = False,
                   search_budgets: dict | None = None, verbose: int = 1) -> list[dict]:
    """Search every (device, budget) pair, ``tables`` by device name; write and return one result each.

    Each search spends :func:`search_budget` of its budget, or ``search_budgets[(device, budget)]`` when given (a
    budget tightened after a subnet measured over it). With ``reuse``, a pair whose result file is already there
    (for this space) is loaded, not searched again.
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
    predictor, evaluations = ensure_predictor(workdir, supernet, image_data, config.n_eval, config.seed, verbose)
    val = make_dataset(image_data.x_val, image_data.y_val, 256, training=False)
    calibration = image_data.calibration()
    memory = {device: MemoryModel(space, table.precision, supernet.task_head).complete(verbose)
              for device, table in tables.items()} if config.memory_kb is not None else None
    results = []
    for device, budget in pairs:
        if (device, budget) in done:
            results.append(done[(device, budget)])
            continue
        spend = (search_budgets or {}).get((device, budget)) or search_budget(tables[device], budget)
        if spend < tables[device].fastest_ms():
            raise FactoryError(f"no subnet is left under {budget:g} ms on {device}: the fastest subnets measured "
                               "over it; raise the budget or pass --allow-over-budget")
        constraints = Constraints({device: spend}, size_bytes=config.size_bytes, memory_kb=config.memory_kb)
        device_memory = None if memory is None else {device: memory[device]}
        top = candidates(supernet, predictor, image_data, {device: tables[device]}, constraints, config,
                         device_memory, verbose)[:config.recheck]
        known = best_evaluated(space, evaluations, feasibility(space, {device: tables[device]}, constraints,
                                                             supernet.task_head, device_memory), EVALUATED_RECHECK)
        top += [(s, float(predictor.predict_encoded(space.encode(s)[None])[0])) for s, _ in known
                if s not in {c for c, _ in top}]
        checked = recheck(supernet, top, calibration, val)
        evaluated, predicted, best = checked[0]
        int8 = int8_recheck(supernet, checked[:config.int8_recheck], image_data, calibration) \
            if config.int8_recheck else None
        if int8:
            evaluated, predicted, best = next(c for c in checked if c[2] == int8[0]["subnet"])
        result = {"device": device, "budget_ms": budget, "search_budget_ms": spend,
                  "margin_percent": 100 * tables[device].margin, "strategy": config.strategy,
                  "seed": config.evolution.seed,
                  "subnet": best.to_dict(), "predicted_accuracy": float(predicted),
                  "predictor_fitted_to": predictor.report.get("fitted_to", "val_accuracy"),
                  "val_accuracy": float(evaluated),
                  "predicted_latency_ms": {d: t.predict(best) for d, t in tables.items()},
                  "params": space.param_count(best, supernet.task_head),
                  "memory_kb": config.memory_kb,
                  "predicted_memory": None if memory is None else memory[device].predict(best),
                  "space_fingerprint": space.fingerprint,
                  "rechecked": [{"subnet": s.to_dict(), "predicted_accuracy": float(p), "val_accuracy": float(a)}
                                for a, p, s in checked],
                  "int8_rechecked": None if int8 is None else [{**r, "subnet": r["subnet"].to_dict()} for r in int8],
                  "chosen_by": "int8 validation accuracy" if int8 else "validation accuracy"}
        path = workdir.search_result_file(device, budget)
        write_json(path, result)
        print(f"{device} <= {budget:g} ms (searched under {spend:.3f} ms): val accuracy {evaluated:.4f} "
              f"(predicted {'teacher agreement ' if result['predictor_fitted_to'] == 'teacher_agreement' else ''}"
              f"{predicted:.4f}" + (f", int8 {int8[0]['int8_val_accuracy']:.4f}" if int8 else "")
              + f"), predicted latency {result['predicted_latency_ms'][device]:.3f} ms -> {path}")
        results.append(result)
    return results


@writes_workdir
def export_workdir(workdir: Workdir, subnet: SubnetConfig, profile: DeviceProfile, table: LatencyTable,
                   out: str | Path, *, budget_ms: float | None = None, config: ExportConfig = ExportConfig(),
                   data: str | None = None, tries: list[dict] = (), verbose: int = 2) -> dict:
    """Export a subnet of the work directory's supernet, with its Pareto plot, to the bundle ``out``."""
    def plot(png: Path, result: dict):
        pareto_plot(workdir, table, png, chosen=[result], size=(4.5, 3.2))

    return export_subnet(workdir.supernet(), subnet, workdir.data(data), profile, table, out, budget_ms=budget_ms,
                         config=config, supernet_training=workdir.training(), plot=plot, tries=tries,
                         verbose=verbose)


@writes_workdir
def export_within_budget(workdir: Workdir, result: dict, profile: DeviceProfile, tables: dict[str, LatencyTable],
                         out: str | Path, *, config: ExportConfig = ExportConfig(), search: SearchConfig = SearchConfig(),
                         data: str | None = None, verbose: int = 2) -> dict:
    """Export a search result; when it measures over its budget, search again under a budget tightened by how far
    it missed (its prediction scaled by budget / measured: a device k times slower than its table gets a search
    budget of budget / k) and export that, up to ``MAX_TRIES`` subnets: only a model that measured within its budget ships
    (unless ``config.allow_over_budget``), and the card lists the subnets that did not."""
    device, budget, tries = result["device"], result["budget_ms"], []
    while True:
        try:
            return export_workdir(workdir, SubnetConfig.from_dict(result["subnet"]), profile, tables[device], out,
                                  budget_ms=budget, config=config, data=data, tries=tries, verbose=verbose)
        except OverBudgetError as exc:
            spent = result.get("search_budget_ms", budget)
            tries.append({**exc.record(), "search_budget_ms": spent})
            if len(tries) == MAX_TRIES:
                raise FactoryError(f"{MAX_TRIES} subnets searched for {device} <= {budget:g} ms measured over it "
                                   f"(the last {exc.measured_ms:.3f} ms): raise the budget, calibrate the table on this "
                                   "machine (`factory table calibrate`), or pass --allow-over-budget") from None
            tightened = min(spent, exc.predicted_ms) * budget / exc.measured_ms * 0.98
            print(f"{device}: the {exc.stage} model measured {exc.measured_ms:.3f} ms, over the {budget:g} ms budget; "
                  f"searching again under {tightened:.3f} ms predicted", flush=True)
            [result] = search_workdir(workdir, {device: tables[device]}, [budget], data=data, config=search,
                                      search_budgets={(device, budget): tightened}, verbose=verbose)
