"""Gradient search, repeated in one process: its memory and time search after search.

    python -m bench.gradient_memory --workdir runs/quickstart --device host-cpu-1t

A user who runs ``factory search --strategy gradient`` at several budgets, or a benchmark
that runs it for several seeds, searches many times in one process. TensorFlow frees no
graph it traced, so the factory traces each resolution's mixed network once per supernet
and resets its variables for every search. This runs ``--searches`` short gradient searches
(``--steps`` per resolution) at budgets spread across the table's span, with a new seed
each, and records the process's resident memory and the wall time after each: the first
search pays the tracing, the later ones should hold no more memory and take seconds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from bench.common import budgets_parser, header, parse, provenance, run, save, span_budgets, trained
from factory.app.stages import training_sample
from factory.search.gradient import GradientConfig, gradient_search
from factory.search.strategies import Constraints, constraint_test

TITLE = "Gradient search, repeated in one process"


def resident_gb() -> float:
    """The process's resident memory now (``/proc/self/statm``; Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 30


def main():
    parser = budgets_parser(__doc__, "runs/quickstart", "bench/results/gradient_memory.json")
    parser.add_argument("--searches", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2, help="steps per resolution")
    args = parse(parser, markdown, "searches")
    if args is None:
        return
    workdir, supernet, profile, tables = trained(args)
    space = supernet.space
    table = tables[profile.name]
    data = workdir.data().resized(space.resolutions[-1])
    start_gb = resident_gb()
    rows = []
    budgets = span_budgets(table, space, [(i + 1) / (args.searches + 1) for i in range(args.searches)])
    for i, budget in enumerate(budgets):
        config = GradientConfig(steps=args.steps, seed=i)
        feasible = constraint_test(space, tables, Constraints({profile.name: budget}), supernet.task_head)
        start = time.perf_counter()
        gradient_search(supernet, *training_sample(data, config), tables, {profile.name: budget}, feasible, config,
                        verbose=0)
        rows.append({"budget_ms": budget, "seed": i, "seconds": time.perf_counter() - start,
                     "resident_gb": resident_gb()})
        print(f"search {i + 1}: {budget:.3f} ms, {rows[-1]['seconds']:.1f} s, {rows[-1]['resident_gb']:.2f} GB",
              flush=True)
    save(args.out, {**provenance(), "searches": args.searches, "steps": args.steps, "space": space.name,
                    "device": profile.name, "resident_gb_before": start_gb, "rows": rows}, markdown)


def markdown(doc: dict) -> str:
    lines = [f"{header(doc)}, {doc['device']}, space {doc['space']}, {doc['steps']} steps per resolution a search; "
             f"resident memory before the first search {doc['resident_gb_before']:.2f} GB:", "",
             "| search | budget (ms) | seconds | resident memory after (GB) |", "|---|---|---|---|"]
    for i, r in enumerate(doc["rows"]):
        lines.append(f"| {i + 1} | {r['budget_ms']:.3f} | {r['seconds']:.1f} | {r['resident_gb']:.2f} |")
    later = doc["rows"][1:]
    if later:
        growth = later[-1]["resident_gb"] - doc["rows"][0]["resident_gb"]
        lines += ["", f"after the first search: {growth:+.2f} GB over {len(later)} more searches, "
                      f"{np.mean([r['seconds'] for r in later]):.1f} s a search"]
    return "\n".join(lines)


if __name__ == "__main__":
    run(main)
