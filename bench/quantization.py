"""Quantization cost of the factory's exports: the shipped int8 .tflite against its float twin.

    python -m bench.quantization --workdir runs/cifar10 --device host-cpu-1t [--table T]
    python -m bench.quantization --show bench/results/quantization.json

On a supernet trained on CIFAR-10, at three budgets (25%, 50% and 75% of the way from
the fastest to the largest subnet's predicted latency, as ``bench/search.py``), each
searched subnet is exported with ``factory export``'s defaults (uint8 pixels in,
probabilities out, QAT fine-tune, distilled) and its card's figures on the test split
are reported: the float subnet before fine-tuning, post-training int8, the fine-tuned
float twin (the int8 model's weights, quantizers removed), the QAT model simulated in
Keras and the .tflite through LiteRT. Quantization's own cost is float twin minus
.tflite. Anchor: TFMOT's MobileNetV2 on ImageNet, float 72.78% to QAT int8 72.79%;
goal here: at most 0.3 points. Bundles already exported are read back, so an
interrupted run resumes. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

from bench.common import budgets_parser, header, pct, provenance, parse, run, save, three_budgets
from devices.profile import load_profile
from export.bundle import is_complete
from factory.app.stages import export_workdir, search_workdir
from factory.core.files import read_json
from factory.nas.space import SubnetConfig
from factory.search.strategies import SearchConfig
from factory.training.workdir import Workdir
from latency_tables.resolve import load_tables

TITLE = "Quantization cost of the exports"

GOAL_POINTS = 0.3


def measure(args) -> dict:
    workdir = Workdir(args.workdir).check_trained()
    profile = load_profile(args.device)
    device, space = profile.name, workdir.space()
    tables = load_tables(space, [profile], workdir.head(), [args.table] if args.table else None)
    budgets = three_budgets(tables[device], space)
    results = search_workdir(workdir, tables, budgets, config=SearchConfig(n_eval=args.n_eval), reuse=True)
    rows = []
    for budget, result in zip(budgets, results):
        bundle = workdir.path / "bench-quantization" / f"{device}__{budget:g}ms"
        if not is_complete(bundle):
            export_workdir(workdir, SubnetConfig.from_dict(result["subnet"]), profile, tables[device], bundle,
                           budget_ms=budget)
        card = read_json(bundle / "model_card.json")
        acc = card["accuracy"]
        rows.append({"budget_ms": budget, "subnet": card["subnet"], "images": acc["images"],
                     **{k: acc[k] for k in ("float", "ptq_int8", "float_finetuned", "qat_keras", "qat_int8")},
                     "cost_points": 100 * (acc["float_finetuned"] - acc["qat_int8"]),
                     "top1_agreement": card["parity"]["top1_agreement"], "qat_epochs": card["training"]["qat_epochs_run"],
                     "measured_ms": card["latency"]["measured"]["median_ms"], "bundle": str(bundle)})
    return {**provenance(), "device": device, "data": card["accuracy"]["data"],
            "space": space.name, "goal_points": GOAL_POINTS, "rows": rows}


def markdown(doc: dict) -> str:
    """The results as bench/README.md holds them."""
    lines = [f"{header(doc)}, {doc['device']}, {doc['data']} test split ({doc['rows'][0]['images']:,} images):", "",
             "| budget (ms) | float, before QAT | post-training int8 | float twin (fine-tuned) | QAT in Keras | "
             "**.tflite (LiteRT)** | cost (points) | top-1 agreement | measured (ms) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        lines.append(f"| {r['budget_ms']:.3f} | {pct(r['float'])} | {pct(r['ptq_int8'])} | "
                     f"{pct(r['float_finetuned'])} | {pct(r['qat_keras'])} | **{pct(r['qat_int8'])}** | "
                     f"{r['cost_points']:+.2f} | {pct(r['top1_agreement'])} | {r['measured_ms']:.3f} |")
    worst = max(r["cost_points"] for r in doc["rows"])
    lines += ["", f"goal (quantization costs at most {doc['goal_points']:g} points): "
                  f"{'met' if worst <= doc['goal_points'] else 'not met'} (largest cost {worst:+.2f} points; "
                  "TFMOT's MobileNetV2 on ImageNet: float 72.78% to QAT int8 72.79%)"]
    return "\n".join(lines)


def main():
    args = parse(budgets_parser(__doc__, "runs/cifar10", "bench/results/quantization.json"), markdown, "goal_points")
    if args is None:
        return
    save(args.out, measure(args), markdown)


if __name__ == "__main__":
    run(main)
