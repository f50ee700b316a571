"""Search benchmark: every strategy on one supernet, judged by the supernet, not by the predictor.

    python -m bench.search --workdir runs/bench-supernet --device host-cpu-1t

For each budget (``--budgets-ms``, or 25%, 50% and 75% of the way from the fastest to the
largest subnet's predicted latency), each strategy runs ``--seeds`` searches two ways:

- at equal numbers of objective evaluations, for each count of ``--evaluations``
  (evolution's population x generations, reinforce's steps x 32, keras-tuner's trials).
  Bayesian search runs in the smallest count's table only: keras-tuner refits its
  Gaussian process (20 optimiser restarts) on every trial, a cost cubic in the trials.
  The gradient strategy evaluates no predictor: it runs ``--gradient-steps`` supernet steps per
  resolution, for ``--gradient-seeds`` seeds, once, in the largest count's table;
- at equal wall time (``--seconds`` a search, ``factory search --time-limit``), every
  strategy, with the objective evaluations each made in that time.

Each search ends as ``factory search`` does: its top candidates re-checked with the
supernet on the validation split, the best kept (a subnet re-checked once in a run is not
evaluated again). The tables give that validation accuracy (mean and std over the seeds),
the best predicted accuracy and the wall time of a search. Then, at the middle budget, the
diversity of ``factory pareto --diverse K`` against evolution's top K (mean pairwise
architecture distance, with each set's mean distance below the front of predicted
accuracy); the zero-cost proxies' Kendall tau against the supernet's evaluations
(``factory proxies``); and the wall time of an evolutionary search that scores 10,000
candidates (goal: under 5 s). JSON after every (mode, budget, strategy) row, so an
interrupted run resumes (rows are kept while the seeds, re-check and gradient settings
are unchanged).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from bench.common import budgets_parser, header, parse, provenance, run, save, three_budgets, trained
from factory.app.stages import candidates, diverse_workdir, ensure_predictor, proxies_workdir, recheck
from factory.core.files import read_json, write_json
from factory.nas.space import SubnetConfig
from factory.search.diverse import front_gap, mean_pairwise_distance
from factory.search.evolution import EvolutionConfig
from factory.search.gradient import GradientConfig
from factory.search.reinforce import ReinforceConfig
from factory.search.strategies import STRATEGIES, Constraints, SearchConfig, search
from factory.training.data import make_dataset

TITLE = "Search strategies under a budget"
MODES = {"evaluations": "equal objective evaluations", "time": "equal wall time"}


def main():
    parser = budgets_parser(__doc__, "runs/bench-supernet", "bench/results/search.json")
    parser.add_argument("--budgets-ms", type=float, nargs="+", help="default: 25/50/75%% of the table's span")
    parser.add_argument("--evaluations", type=int, nargs="+", default=[100, 2000],
                        help="objective evaluations per search, one table per count")
    parser.add_argument("--evaluation-strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--seconds", type=float, default=20.0, help="wall time of a search in the equal-time mode")
    parser.add_argument("--time-strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--gradient-seeds", type=int, default=1)
    parser.add_argument("--gradient-steps", type=int, default=GradientConfig().steps)
    parser.add_argument("--recheck", type=int, default=SearchConfig().recheck)
    parser.add_argument("--diverse", type=int, default=5, help="K of the diversity comparison")
    parser.add_argument("--proxies", type=int, default=100, help="evaluated subnets the proxies rank (0: none)")
    args = parse(parser, markdown, "seconds_per_search")
    if args is None:
        return

    workdir, supernet, profile, tables = trained(args)
    space = supernet.space
    device = profile.name
    table = tables[device]
    data = workdir.data().resized(space.resolutions[-1])
    predictor, evals = ensure_predictor(workdir, supernet, data, args.n_eval)
    val = make_dataset(data.x_val, data.y_val, 256, training=False)
    calibration = data.calibration()
    checked: dict[SubnetConfig, float] = {}  # validation accuracy of every subnet re-checked in this run

    def validated(top):
        todo = [(s, p) for s, p in top[:args.recheck] if s not in checked]
        for accuracy, _, subnet in recheck(supernet, todo, calibration, val):
            checked[subnet] = accuracy
        return max(checked[s] for s, _ in top[:args.recheck])

    budgets = args.budgets_ms or three_budgets(table, space)
    settings = {"evaluations_per_search": sorted(args.evaluations), "seconds_per_search": args.seconds,
                "seeds": args.seeds, "gradient_seeds": args.gradient_seeds, "gradient_steps": args.gradient_steps,
                "recheck": args.recheck}
    path = Path(args.out)
    previous = read_json(path) if path.exists() else {}
    same = all(previous.get(k) == settings[k] for k in ("seeds", "gradient_seeds", "gradient_steps", "recheck"))
    done = {_key(r): r for r in previous.get("rows", [])} if same else {}
    rows = []
    for mode, limit, strategies in _plan(args):
        print(f"{MODES[mode]}, {limit:g} {'evaluations' if mode == 'evaluations' else 's'} a search:", flush=True)
        count = limit if mode == "evaluations" else max(args.evaluations)  # time mode: only the population's size
        population = max(10, min(100, count // 20))  # evolution scores population * (generations + 1)
        for budget in budgets:
            for strategy in strategies:
                row = {"mode": mode, "limit": limit, "budget_ms": budget, "strategy": strategy}
                if _key(row) in done:  # resumed: every seed of this row ran before
                    rows.append(done[_key(row)])
                    continue
                val_acc, predicted, seconds, evaluations = [], [], [], []
                for seed in range(args.gradient_seeds if strategy == "gradient" else args.seeds):
                    counted = Counted(predictor)
                    config = SearchConfig(
                        strategy=strategy, trials=count, seed=seed,
                        time_limit_s=limit if mode == "time" else None,
                        evolution=EvolutionConfig(population=population,
                                                  generations=max(1, count // population - 1), seed=seed),
                        reinforce=dataclasses.replace(ReinforceConfig(), steps=max(1, count // 32), seed=seed),
                        gradient=GradientConfig(steps=args.gradient_steps, seed=seed))
                    start = time.perf_counter()
                    top = candidates(supernet, counted, data, tables, Constraints({device: budget}), config, verbose=0)
                    seconds.append(time.perf_counter() - start)
                    evaluations.append(None if strategy == "gradient" else counted.rows)  # its cost: supernet steps
                    val_acc.append(validated(top))
                    predicted.append(max(p for _, p in top))
                rows.append({**row, "val_accuracy": val_acc, "mean": float(np.mean(val_acc)),
                             "std": float(np.std(val_acc)),
                             "best_predicted": float(np.mean(predicted)), "seconds": seconds,
                             "evaluations": evaluations})
                print(f"  {budget:.3f} ms {strategy:9s}: {_cell(rows[-1])}", flush=True)
                write_json(path, {**settings, "rows": _with_earlier(rows, done)})

    middle = budgets[len(budgets) // 2]
    diversity = compare_diversity(workdir, space, predictor, table, device, middle, args.diverse, args.n_eval)
    proxies = None
    if args.proxies:
        doc = proxies_workdir(workdir, args.proxies)
        proxies = {k: doc[k] for k in ("subnets", "kendall_tau", "proxy_seconds_per_subnet",
                                       "evaluation_seconds_per_subnet")}
    start = time.perf_counter()
    search(space, predictor.predict_encoded, tables, Constraints({device: middle}), supernet.task_head,
           evolution=EvolutionConfig(population=100, generations=99, seed=0))
    wall = time.perf_counter() - start
    rows = _with_earlier(rows, done)
    settings["evaluations_per_search"] = sorted({r["limit"] for r in rows if r["mode"] == "evaluations"})
    out = {**provenance(), **settings, "device": device, "space": space.name, "data": workdir.data_record()["name"],
           "subnets_evaluated_for_predictor": len(evals), "predictor": predictor.report, "rows": rows,
           "diversity": diversity, "proxies": proxies, "evolution_10000_candidates_seconds": wall}
    save(path, out, markdown)


def _plan(args) -> list[tuple[str, float, list[str]]]:
    """(mode, evaluations or seconds a search, strategies) of each table: gradient once among the counts (it
    evaluates nothing) and Bayesian at the fewest (its cost is cubic in the trials), every strategy in time."""
    counts = sorted(args.evaluations)
    once = {"gradient": counts[-1], "bayesian": counts[0]}
    plan = [("evaluations", count, [s for s in args.evaluation_strategies if once.get(s, count) == count])
            for count in counts]
    return plan + [("time", args.seconds, list(args.time_strategies))]


def _with_earlier(rows: list[dict], earlier: dict) -> list[dict]:
    """This run's rows, then the earlier run's that this one did not run (yet, or at all: a run for one strategy
    keeps the others')."""
    ran = {_key(r) for r in rows}
    return rows + [r for k, r in earlier.items() if k not in ran]


def _key(row: dict) -> tuple:
    return row["mode"], row["limit"], round(row["budget_ms"], 6), row["strategy"]


class Counted:
    """The predictor, counting the subnets it scores (a search's objective evaluations)."""

    def __init__(self, predictor):
        self.predictor, self.rows = predictor, 0

    def predict_encoded(self, encoded):
        self.rows += len(encoded)
        return self.predictor.predict_encoded(encoded)


def compare_diversity(workdir, space, predictor, table, device: str, budget: float, k: int, n_eval: int) -> dict:
    """``pareto --diverse K`` against the top K of one evolutionary search under ``budget``: mean pairwise architecture
    distance, and how far below the front of predicted accuracy of the two sets together each lies on average."""
    doc = diverse_workdir(workdir, table, k, config=SearchConfig(n_eval=n_eval))
    top = search(space, predictor.predict_encoded, {device: table}, Constraints({device: budget}), 10, top_k=k)
    diverse = np.stack([space.encode(SubnetConfig.from_dict(r["subnet"])) for r in doc["subnets"]])
    evolved = np.stack([space.encode(s) for s, _ in top])
    both = np.concatenate([diverse, evolved])
    gap = front_gap(table.predict_encoded(both), predictor.predict_encoded(both))
    return {"k": k, "budget_ms": budget,
            "diverse": {"mean_pairwise_distance": mean_pairwise_distance(space, diverse),
                        "mean_below_front_points": float(100 * gap[:k].mean()),
                        "latency_ms": [r["predicted_latency_ms"] for r in doc["subnets"]]},
            "evolution_top_k": {"mean_pairwise_distance": mean_pairwise_distance(space, evolved),
                                "mean_below_front_points": float(100 * gap[k:].mean()),
                                "latency_ms": table.predict_encoded(evolved).tolist()}}


def markdown(doc: dict) -> str:
    """Validation accuracy per mode, strategy and budget (mean ± std over seeds), time and evaluations, diversity, the
    proxies' ranking, evolution's speed."""
    lines = [f"{header(doc)}, {doc['device']}, space {doc['space']} on {doc.get('data', '?')}; {doc['seeds']} seeds "
             f"(gradient: {doc['gradient_seeds']}); the chosen subnet's validation accuracy with the supernet after a "
             f"re-check of the top {doc['recheck']} (best predicted accuracy; seconds and objective evaluations a "
             "search):"]
    for mode, limit in sorted({(r["mode"], r["limit"]) for r in doc["rows"]}, key=lambda m: (m[0] != "evaluations", m[1])):
        rows = [r for r in doc["rows"] if (r["mode"], r["limit"]) == (mode, limit)]
        title = MODES[mode]
        strategies = [s for s in STRATEGIES if any(r["strategy"] == s for r in rows)]
        if mode == "evaluations":
            limit = f"{limit:,} objective evaluations a search" + (
                f" (gradient: {doc['gradient_steps']} steps per resolution)" if "gradient" in strategies else "") + (
                "" if "bayesian" in strategies else "; Bayesian left out: its Gaussian process's cost is cubic in the trials")
        else:
            limit = f"{limit:g} s a search"
        lines += ["", f"{title}, {limit}:", "", "| budget (ms) | " + " | ".join(strategies) + " |",
                  "|---|" + "---|" * len(strategies)]
        for budget in sorted({r["budget_ms"] for r in rows}):
            cells = {r["strategy"]: r for r in rows if r["budget_ms"] == budget}
            lines.append(f"| {budget:.3f} | " + " | ".join(_cell(cells[s]) if s in cells else "" for s in strategies)
                         + " |")
    if any(r["strategy"] == "gradient" for r in doc["rows"]):
        lines += ["", "the first gradient search of a run traces each resolution's mixed network, and its seconds include "
                      "that; later ones reuse the traces (`python -m bench.gradient_memory`)"]
    d = doc["diversity"]
    lines += ["", f"diversity at {d['budget_ms']:.3f} ms, K = {d['k']}: `pareto --diverse` mean pairwise architecture "
                  f"distance {d['diverse']['mean_pairwise_distance']:.2f} (mean {d['diverse']['mean_below_front_points']:.2f}"
                  f" points below the predicted front, latencies {', '.join(f'{t:.2f}' for t in d['diverse']['latency_ms'])}"
                  f" ms); evolution's top {d['k']}: {d['evolution_top_k']['mean_pairwise_distance']:.2f} "
                  f"({d['evolution_top_k']['mean_below_front_points']:.2f} points below, latencies "
                  f"{', '.join(f'{t:.2f}' for t in d['evolution_top_k']['latency_ms'])} ms)"]
    p = doc.get("proxies")
    if p:
        lines += ["", f"zero-cost proxies on {p['subnets']} evaluated subnets, Kendall tau against their validation "
                      "accuracy: " + ", ".join(f"{k} {v:+.2f}" for k, v in p["kendall_tau"].items())
                  + f"; {p['proxy_seconds_per_subnet']:.2f} s a subnet for all proxies against "
                    f"{p['evaluation_seconds_per_subnet']:.2f} s for an evaluation"]
    wall = doc["evolution_10000_candidates_seconds"]
    lines += ["", f"evolutionary search over 10,000 candidates: {wall:.2f} s (goal < 5 s: "
                  f"{'met' if wall < 5 else 'not met'})"]
    return "\n".join(lines)


def _cell(row: dict) -> str:
    evaluations = [e for e in row.get("evaluations", []) if e is not None]
    return (f"{100 * row['mean']:.2f} ± {100 * row['std']:.2f}% ({100 * row['best_predicted']:.2f}%; "
            f"{np.mean(row['seconds']):.1f} s" + (f"; {np.mean(evaluations):,.0f}" if evaluations else "") + ")")


if __name__ == "__main__":
    run(main)
