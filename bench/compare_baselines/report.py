"""The benchmark's markdown: every model, every pair and the goal."""

from __future__ import annotations

from bench.common import header, pct
from bench.compare_baselines.compare import goal

TITLE = "Export against hand-designed MobileNets"


def markdown(doc: dict) -> str:
    """The table of every model, each pair's verdict and the goal."""
    lines = [f"{header(doc)}, {doc['device']}, baselines trained {doc['baseline_epochs']} epochs, QAT "
             f"{doc['qat_epochs']} epochs; test accuracy, latency the median of the side-by-side rounds:"]
    say = lines.append
    say("")
    say("| budget (ms) | model | float | PTQ int8 | QAT int8 | size (KB) | MMACs | predicted (ms) | measured (ms) |")
    say("|---|---|---|---|---|---|---|---|---|")
    for row in sorted(doc["rows"].values(), key=lambda r: (r["budget_ms"], r["model"] != "factory", r["model"])):
        name = row["model"] + (f" ({row['resolution']}px, alpha {row['alpha']:g})" if "alpha" in row else "")
        predicted = "" if row["predicted_ms"] is None else f"{row['predicted_ms']:.3f}"
        say(f"| {row['budget_ms']:g} | {name} | {pct(row['float'], 1)} | {pct(row['ptq_int8'], 1)} | "
              f"{pct(row['qat_int8'], 1)} | {row['size_bytes'] / 1024:.0f} | {row['macs'] / 1e6:.1f} | {predicted} | "
              f"{row['measured_ms']:.3f} |")
        if "fine_tuned" in row:
            tuned = row["fine_tuned"]
            say(f"| {row['budget_ms']:g} | {name}, {tuned['epochs']} epochs | {pct(tuned['float'], 1)} | "
                  f"{pct(tuned['ptq_int8'], 1)} |  | {tuned['size_bytes'] / 1024:.0f} | {row['macs'] / 1e6:.1f} |  | "
                  f"{row['measured_ms']:.3f} |")
    say("")
    factory = [r for r in doc["rows"].values() if r["model"] == "factory"]
    if any("export_measured_ms" not in r for r in factory):
        over = sum(r["measured_ms"] > r["budget_ms"] for r in factory)
        say(f"The factory's models of this run were exported before export kept budgets (no margin, no search again "
            f"when measured over): {over} of {len(factory)} measured over theirs here. `python -m bench.budget "
            "--workdir runs/bench-supernet` measures the bundles `make` ships now.")
        say("")
    for c in doc.get("comparisons", []):
        searched = c.get("factory_budget_ms", c["budget_ms"])  # an early results file searched at the budget only
        equal = (f"QAT int8 against it trained as many epochs {c['equal_training_gain_points']:+.2f} points, "
                 if "equal_training_gain_points" in c else "")
        say(f"{c['budget_ms']:g} ms, {c['baseline']} against the factory at "
            f"{c.get('factory_searched_at', 'the budget')} ({searched:g} ms): factory QAT int8 "
            f"{c['qat_int8_gain_points']:+.2f} points, post-training int8 {c['ptq_int8_gain_points']:+.2f} points, "
            f"{equal}at {c['latency_ratio']:.2f}x its measured latency: "
            f"{'wins' if c['factory_wins'] else 'does not win'}")
    beaten = goal(doc.get("comparisons", []))
    if beaten:
        say("")
        say(f"goal (beat each baseline at equal or lower measured latency): "
              f"{'met' if all(beaten.values()) else 'not met'}")
        for name, budgets in beaten.items():
            say(f"- {name}: " + (f"beaten by the factory searched at {', '.join(f'{b:g}' for b in budgets)} ms"
                                   if budgets else "not beaten"))
    return "\n".join(lines)
