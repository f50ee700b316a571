"""Budget benchmark: every bundle measures within its latency budget, and what the margin costs in accuracy.

    python -m bench.budget --workdir runs/quickstart --devices host-cpu-1t host-cpu-2t

On a trained work directory (the quick start's digits supernet by default; the CIFAR-10
one of ``bench/supernet.py`` with ``--workdir runs/bench-supernet``), for each device
profile and three budgets (25%, 50% and 75% of the way from the fastest to the largest
subnet's predicted latency), runs what `factory make` runs after training: a search that
spends the budget less the table's margin and chooses among its top 5 on int8
accuracy, then the export that measures the model before fine-tuning and as shipped,
and searches again under a tightened budget when it measures over (at most 3 subnets).
Reports each bundle's budget, the predicted latency the search spent, the shipped
model's predicted and measured latency, the subnets that measured over first, its int8
test accuracy, and the accuracy given up for the margin: the validation accuracy
(re-checked with the supernet) of the best subnet under the whole budget against the one
under the margin. Each device's table must be of this CPU (`python -m bench.latency`
builds the missing ones). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import header, parse, pct, provenance, run, save, three_budgets
from devices.profile import load_profile
from export.config import ExportConfig
from factory.app.stages import export_within_budget, search_workdir
from factory.search.strategies import MAKE_SEARCH
from factory.training.workdir import Workdir
from latency_tables.resolve import load_tables

TITLE = "Latency budgets kept"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="runs/quickstart")
    parser.add_argument("--devices", nargs="+", default=["host-cpu-1t", "host-cpu-2t"])
    parser.add_argument("--out", default="bench/results/budget.json")
    args = parse(parser, markdown, "bundles")
    if args is None:
        return
    workdir = Workdir(args.workdir).check_trained()
    space, profiles = workdir.space(), [load_profile(d) for d in args.devices]
    tables = load_tables(space, profiles, workdir.head())
    rows = []
    for profile in profiles:
        table = tables[profile.name]
        budgets = three_budgets(table, space)
        whole = search_workdir(workdir, {profile.name: table}, budgets, config=MAKE_SEARCH,
                               search_budgets={(profile.name, b): b for b in budgets})
        margin = search_workdir(workdir, {profile.name: table}, budgets, config=MAKE_SEARCH)
        for budget, free, kept in zip(budgets, whole, margin):
            out = Path(args.workdir) / "bench-budget" / f"{profile.name}__{budget:g}ms"
            card = export_within_budget(workdir, kept, profile, tables, out, config=ExportConfig(),
                                        search=MAKE_SEARCH)
            kept = workdir.search_result(profile.name, budget)  # a search again, when a subnet measured over
            latency, accuracy = card["latency"], card["accuracy"]
            rows.append({"device": profile.name, "budget_ms": budget, "margin_percent": kept["margin_percent"],
                         "search_budget_ms": kept["search_budget_ms"], "subnet": card["subnet"],
                         "predicted_ms": latency["predicted_ms"], "measured_ms": latency["measured"]["median_ms"],
                         "within_budget": latency["within_budget"], "tries": latency["tries"],
                         "test_accuracy": accuracy[accuracy["shipped"]], "shipped": accuracy["shipped"],
                         "val_accuracy_under_margin": kept["val_accuracy"],
                         "val_accuracy_whole_budget": free["val_accuracy"],
                         "whole_budget_subnet": free["subnet"],
                         "whole_budget_predicted_ms": free["predicted_latency_ms"][profile.name]})
    save(args.out, {**provenance(), "workdir": args.workdir, "data": workdir.data_record().get("name"),
                    "bundles": rows}, markdown)


def markdown(doc: dict) -> str:
    lines = [f"{header(doc)}, supernet of `{doc['workdir']}` ({doc['data']}):", "",
             "| device | budget ms | margin | searched under ms | predicted ms | measured ms | within | subnets over "
             "first | int8 test | val under margin | val, whole budget | given up |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["bundles"]:
        given_up = 100 * (r["val_accuracy_whole_budget"] - r["val_accuracy_under_margin"])
        over = ", ".join(f"{t['measured_ms']:.3f} ms" for t in r["tries"]) or "none"
        lines.append(f"| {r['device']} | {r['budget_ms']:g} | {r['margin_percent']:.1f}% | {r['search_budget_ms']:.3f} "
                     f"| {r['predicted_ms']:.3f} | {r['measured_ms']:.3f} | {'yes' if r['within_budget'] else 'NO'} "
                     f"| {over} | {pct(r['test_accuracy'])} | {pct(r['val_accuracy_under_margin'])} "
                     f"| {pct(r['val_accuracy_whole_budget'])} | {given_up:+.2f} pt |")
    kept = sum(bool(r["within_budget"]) for r in doc["bundles"])
    lines += ["", f"{kept} of {len(doc['bundles'])} bundles measured within their budget."]
    return "\n".join(lines)


if __name__ == "__main__":
    run(main)
