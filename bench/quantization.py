"""Quantization cost of the factory's exports: the shipped int8 .tflite against its float twin.

    python bench/quantization.py --workdir runs/cifar10 --device host-cpu-1t [--table T]
    python bench/quantization.py --show bench/results/quantization.json

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

import datetime
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.search import budgets_parser, three_budgets  # noqa: E402
from devices.hardware import describe, host_hardware  # noqa: E402
from devices.profile import load_profile  # noqa: E402
from export.bundle import is_complete  # noqa: E402
from export.pipeline import export_subnet  # noqa: E402
from factory.files import read_json, write_json  # noqa: E402
from factory.space import SubnetConfig, load_space  # noqa: E402
from factory.workflow import load_tables, search_workdir  # noqa: E402

GOAL_POINTS = 0.3


def run(args) -> dict:
    workdir = Path(args.workdir)
    device = load_profile(args.device).name
    tables = {device: args.table} if args.table else None
    space = load_space(workdir / "space.json")
    budgets = three_budgets(load_tables(space, [device], tables)[device], space)
    results = search_workdir(workdir, [device], budgets, n_eval=args.n_eval, reuse=True, tables=tables)
    rows = []
    for budget, result in zip(budgets, results):
        bundle = workdir / "bench-quantization" / f"{device}__{budget:g}ms"
        if not is_complete(bundle):
            export_subnet(workdir, SubnetConfig.from_dict(result["subnet"]), args.device, bundle, budget_ms=budget,
                          table=args.table)
        card = read_json(bundle / "model_card.json")
        acc = card["accuracy"]
        rows.append({"budget_ms": budget, "subnet": card["subnet"], "images": acc["images"],
                     **{k: acc[k] for k in ("float", "ptq_int8", "float_finetuned", "qat_keras", "qat_int8")},
                     "cost_points": 100 * (acc["float_finetuned"] - acc["qat_int8"]),
                     "top1_agreement": card["parity"]["top1_agreement"], "qat_epochs": card["training"]["qat_epochs_run"],
                     "measured_ms": card["latency"]["measured"]["median_ms"], "bundle": str(bundle)})
    return {"date": datetime.date.today().isoformat(), "command": "python " + " ".join(sys.argv),
            "machine": describe(host_hardware()), "device": device, "data": card["accuracy"]["data"],
            "space": space.name, "goal_points": GOAL_POINTS, "rows": rows}


def show(doc: dict):
    """The results as the markdown bench/README.md holds."""
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    print(f"`{doc['command']}`, {doc['date']}, {doc['machine']}, {doc['device']}, {doc['data']} test split "
          f"({doc['rows'][0]['images']:,} images):\n")
    print("| budget (ms) | float, before QAT | post-training int8 | float twin (fine-tuned) | QAT in Keras | "
          "**.tflite (LiteRT)** | cost (points) | top-1 agreement | measured (ms) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in doc["rows"]:
        print(f"| {r['budget_ms']:.3f} | {pct(r['float'])} | {pct(r['ptq_int8'])} | {pct(r['float_finetuned'])} | "
              f"{pct(r['qat_keras'])} | **{pct(r['qat_int8'])}** | {r['cost_points']:+.2f} | "
              f"{pct(r['top1_agreement'])} | {r['measured_ms']:.3f} |")
    worst = max(r["cost_points"] for r in doc["rows"])
    print(f"\ngoal (quantization costs at most {doc['goal_points']:g} points): "
          f"{'met' if worst <= doc['goal_points'] else 'not met'} (largest cost {worst:+.2f} points; "
          "TFMOT's MobileNetV2 on ImageNet: float 72.78% to QAT int8 72.79%)")


def main():
    parser = budgets_parser(__doc__, "runs/cifar10", "bench/results/quantization.json")
    parser.add_argument("--show", metavar="RESULTS", help="print a results file's table and stop")
    args = parser.parse_args()
    if args.show:
        show(read_json(args.show))
        return
    doc = run(args)
    write_json(args.out, doc)
    show(doc)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
