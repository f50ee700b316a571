"""Search benchmark: evolution against keras-tuner's RandomSearch and BayesianOptimization.

    python -m bench.search --workdir runs/bench-supernet --device host-cpu-1t

On a supernet trained on CIFAR-10 (``bench/supernet.py`` leaves one in its work
directory) and the shipped host table: at equal numbers of objective evaluations, the
best feasible predicted accuracy each strategy finds, over ``--seeds`` seeds (mean and
std) at three budgets (25%, 50% and 75% of the way from the fastest to the largest
subnet's latency); and the wall time of an evolutionary search that scores 10,000
candidates (goal: under 5 s here). Prints a table and writes JSON after every
(budget, strategy) row, so an interrupted run resumes (same --evaluations and --seeds).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bench.common import budgets_parser, header, provenance, parse, run, save, three_budgets
from devices.profile import load_profile
from factory.app.stages import ensure_predictor
from factory.core.files import read_json, write_json
from factory.search.evolution import EvolutionConfig
from factory.search.strategies import STRATEGIES, Constraints, search
from factory.training.workdir import Workdir
from latency_tables.resolve import load_tables

TITLE = "Search under a budget"


def main():
    parser = budgets_parser(__doc__, "runs/bench-supernet", "bench/results/search.json")
    parser.add_argument("--evaluations", type=int, default=500, help="objective evaluations per search")
    parser.add_argument("--seeds", type=int, default=5)
    args = parse(parser, markdown, "evaluations_per_search")
    if args is None:
        return

    workdir = Workdir(args.workdir).check_trained()
    supernet = workdir.supernet()
    space = supernet.space
    profile = load_profile(args.device)
    device = profile.name
    tables = load_tables(space, [profile], [args.table] if args.table else None)
    table = tables[device]
    data = workdir.data().resized(space.resolutions[-1])
    predictor, evals = ensure_predictor(workdir, supernet, data, args.n_eval)

    budgets = three_budgets(table, space)
    # evolution evaluates population * (generations + 1) candidates at most; match the others to it
    population = max(10, min(50, args.evaluations // 5))
    generations = max(1, args.evaluations // population - 1)
    path = Path(args.out)
    previous = read_json(path) if path.exists() else {}
    same = (previous.get("evaluations_per_search"), previous.get("seeds")) == (args.evaluations, args.seeds)
    done = {(round(r["budget_ms"], 6), r["strategy"]): r for r in previous.get("rows", [])} if same else {}
    rows = []
    for budget in budgets:
        for strategy in STRATEGIES:
            if (round(budget, 6), strategy) in done:  # resumed: every seed of this row ran before
                rows.append(done[(round(budget, 6), strategy)])
                continue
            best, seconds = [], []
            for seed in range(args.seeds):
                start = time.perf_counter()
                top = search(space, predictor.predict_encoded, tables, Constraints({device: budget}),
                             supernet.num_classes, strategy=strategy, trials=args.evaluations,
                             evolution=EvolutionConfig(population=population, generations=generations, seed=seed))
                seconds.append(time.perf_counter() - start)
                best.append(top[0][1])
            rows.append({"budget_ms": budget, "strategy": strategy, "best_predicted_accuracy": best,
                         "mean": float(np.mean(best)), "std": float(np.std(best)), "seconds": seconds})
            print(f"  {budget:.3f} ms {strategy:9s}: {100 * np.mean(best):.2f} +- {100 * np.std(best):.2f} % "
                  f"({np.mean(seconds):.1f} s a search)", flush=True)
            write_json(path, {"evaluations_per_search": args.evaluations, "seeds": args.seeds, "rows": rows})

    start = time.perf_counter()
    result = search(space, predictor.predict_encoded, tables, Constraints({device: budgets[1]}),
                    supernet.num_classes, evolution=EvolutionConfig(population=100, generations=99, seed=0))
    wall = time.perf_counter() - start
    out = {**provenance(), "device": device,
           "space": space.name, "subnets_evaluated_for_predictor": len(evals), "predictor": predictor.report,
           "evaluations_per_search": args.evaluations, "seeds": args.seeds, "rows": rows,
           "evolution_10000_candidates_seconds": wall, "best_at_middle_budget": result[0][0].to_dict()}
    save(path, out, markdown)


def markdown(doc: dict) -> str:
    """Best predicted accuracy per strategy and budget (mean ± std over the seeds), and evolution's speed."""
    lines = [f"{header(doc)}, {doc['device']}, space {doc['space']}; {doc['evaluations_per_search']} objective "
             f"evaluations per search, {doc['seeds']} seeds; best feasible predicted accuracy:", "",
             "| budget (ms) | evolution | keras-tuner random | keras-tuner bayesian |", "|---|---|---|---|"]
    for budget in sorted({r["budget_ms"] for r in doc["rows"]}):
        cells = {r["strategy"]: r for r in doc["rows"] if r["budget_ms"] == budget}
        lines.append(f"| {budget:.3f} | " + " | ".join(f"{100 * cells[s]['mean']:.2f} ± {100 * cells[s]['std']:.2f}%"
                                                       for s in STRATEGIES) + " |")
    wall = doc["evolution_10000_candidates_seconds"]
    lines += ["", f"evolutionary search over 10,000 candidates: {wall:.2f} s (goal < 5 s: "
                  f"{'met' if wall < 5 else 'not met'})"]
    return "\n".join(lines)


if __name__ == "__main__":
    run(main)
