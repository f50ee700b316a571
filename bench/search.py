"""Search benchmark: evolution against keras-tuner's RandomSearch and BayesianOptimization.

    python bench/search.py --workdir runs/bench-supernet --device host-cpu-1t

On a supernet trained on CIFAR-10 (``bench/supernet.py`` leaves one in its work
directory) and the shipped host table: at equal numbers of objective evaluations, the
best feasible predicted accuracy each strategy finds, over ``--seeds`` seeds (mean and
std) at three budgets (25%, 50% and 75% of the way from the fastest to the largest
subnet's latency); and the wall time of an evolutionary search that scores 10,000
candidates (goal: under 5 s here). Prints a table and writes JSON after every
(budget, strategy) row, so an interrupted run resumes (same --evaluations and --seeds).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from devices.profile import load_profile  # noqa: E402
from factory.evolution import EvolutionConfig  # noqa: E402
from factory.files import write_json  # noqa: E402
from factory.search import Constraints, search  # noqa: E402
from factory.space import SubnetConfig  # noqa: E402
from factory.train import load_supernet  # noqa: E402
from factory.workflow import ensure_predictor, load_tables, workdir_data  # noqa: E402


def three_budgets(table, space) -> list[float]:
    """25%, 50% and 75% of the way from the fastest to the largest subnet's predicted latency (to the microsecond)."""
    fastest, largest = table.fastest_ms(), table.predict(SubnetConfig.largest(space))
    return [round(fastest + f * (largest - fastest), 3) for f in (0.25, 0.5, 0.75)]


def budgets_parser(doc: str, workdir: str, out: str) -> argparse.ArgumentParser:
    """The options of a benchmark that searches a trained work directory at three budgets."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=workdir)
    parser.add_argument("--device", default="host-cpu-1t")
    parser.add_argument("--table", help="latency table (default: the shipped one; it must be of this CPU)")
    parser.add_argument("--n-eval", type=int, default=300)
    parser.add_argument("--out", default=out)
    return parser


def main():
    parser = budgets_parser(__doc__, "runs/bench-supernet", "bench/results/search.json")
    parser.add_argument("--evaluations", type=int, default=500, help="objective evaluations per search")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()

    workdir = Path(args.workdir)
    supernet = load_supernet(workdir)
    space = supernet.space
    device = load_profile(args.device).name
    tables = load_tables(space, [device], {device: args.table} if args.table else None)
    table = tables[device]
    data = workdir_data(workdir).resized(space.resolutions[-1])
    predictor, evals = ensure_predictor(workdir, supernet, data, args.n_eval)

    budgets = three_budgets(table, space)
    # evolution evaluates population * (generations + 1) candidates at most; match the others to it
    population = max(10, min(50, args.evaluations // 5))
    generations = max(1, args.evaluations // population - 1)
    path = Path(args.out)
    previous = json.loads(path.read_text()) if path.exists() else {}
    same = (previous.get("evaluations_per_search"), previous.get("seeds")) == (args.evaluations, args.seeds)
    done = {(round(r["budget_ms"], 6), r["strategy"]): r for r in previous.get("rows", [])} if same else {}
    rows = []
    for budget in budgets:
        for strategy in ("evolution", "random", "bayesian"):
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
    out = {"date": datetime.date.today().isoformat(), "command": " ".join(sys.argv), "device": device,
           "space": space.name, "subnets_evaluated_for_predictor": len(evals), "predictor": predictor.report,
           "evaluations_per_search": args.evaluations, "seeds": args.seeds, "rows": rows,
           "evolution_10000_candidates_seconds": wall, "best_at_middle_budget": result[0][0].to_dict()}
    print("\n| budget (ms) | evolution | keras-tuner random | keras-tuner bayesian |\n|---|---|---|---|")
    for budget in budgets:
        cells = [r for r in rows if r["budget_ms"] == budget]
        print(f"| {budget:.3f} | " + " | ".join(f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}%" for r in cells) + " |")
    print(f"\nevolutionary search over 10,000 candidates: {wall:.2f} s (goal < 5 s)")
    write_json(path, out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
