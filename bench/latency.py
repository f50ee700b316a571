"""Latency-table benchmark: how well a host table predicts whole int8 subnets.

    python -m bench.latency --device host-cpu-1t --n 100

Builds (or resumes) the table of the default space on the device, timing the build;
measures ``--n`` random int8 subnets as whole models and reports the share within
+-10% (goal: at least 99%, nn-Meter's figure on mobile CPUs), MAPE (goal <= 3%) and
Kendall's tau; and times vectorised prediction (goal: 100,000 subnets a second).
Reports the table alone and with a linear correction, the latter held out by 5-fold
cross-validation over the measured subnets; ``--store-correction`` writes the
correction fitted on all of them into the table. ``--reuse FILE`` takes the measured
subnets of an earlier run's JSON (this script's or `factory table validate`'s
report.json) instead of measuring again, if the table has not changed since.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np

from bench.common import header, provenance, run, save, parse
from devices.profile import load_profile
from factory.core.files import read_json
from factory.nas.space import SubnetConfig, get_space
from latency_tables.builder import build_table
from latency_tables.table import LatencyTable, default_table_path
from latency_tables.validate import correction_report, store_correction, validate_table

TITLE = "Latency tables on this machine"


def prediction_rate(table: LatencyTable, n: int = 200_000) -> float:
    rng = random.Random(0)
    encoded = np.stack([table.space.encode(SubnetConfig.random(table.space, rng)) for _ in range(2000)])
    encoded = np.tile(encoded, (n // len(encoded), 1))
    table.predict_encoded(encoded[:100])
    start = time.perf_counter()
    table.predict_encoded(encoded)
    return len(encoded) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="host-cpu-1t")
    parser.add_argument("--space", default="default")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--table", help="table path (default: the shipped one, built if missing)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--reuse", help="JSON of an earlier run whose measured subnets to reuse")
    parser.add_argument("--store-correction", action="store_true", help="write the fitted correction into the table")
    args = parse(parser, markdown, "corrected_cross_validated")
    if args is None:
        return

    space, profile = get_space(args.space), load_profile(args.device)
    path = Path(args.table) if args.table else default_table_path(space, profile)
    start = time.time()
    build_table(space, profile, path)
    build_seconds = time.time() - start
    doc = read_json(path)
    table = LatencyTable(doc, space, str(path))
    rows = reusable(Path(args.reuse), table) if args.reuse else None
    if rows is None:
        rows = validate_table(table, profile, args.n, Path("runs") / f"bench-latency__{profile.name}", seed=1)["subnets"]
    else:
        print(f"reusing the {len(rows)} subnets measured in {args.reuse} (the table has not changed)")
    raw = [table.predict(SubnetConfig.from_dict(r["subnet"]), corrected=False) for r in rows]
    analysis = correction_report(raw, [r["measured_ms"] for r in rows])
    if args.store_correction:
        store_correction(path, analysis["correction_fitted_on_all"], fitted_on_subnets=len(rows), seed=1,
                         cross_validated=analysis["corrected_cross_validated"])
        print(f"stored the correction in {path}")
    rate = prediction_rate(table)
    result = {**provenance(), "device": profile.name,
              "space": space.name, "table": str(path), "hardware": table.hardware,
              "table_entries": len(doc["entries"]),
              "table_build_seconds_this_run": build_seconds, "predictions_per_second": rate, **analysis,
              "subnets": [{**r, "uncorrected_ms": p} for r, p in zip(rows, raw)]}
    save(args.out or f"bench/results/latency__{profile.name}.json", result, markdown)


def markdown(doc: dict) -> str:
    """The table alone and corrected (held out), against the goals; for a `factory table validate` report
    (``--reuse`` takes one), also the table as it predicts, with the correction it held then."""
    rate = doc.get("predictions_per_second")
    where = f"{doc.get('table_entries')} layers" if rate else f"`factory table validate` report of {doc['table']}"
    lines = [f"{header(doc)}, {doc['device']}, space {doc['space']}, {where}:", "",
             "| prediction | subnets | within +-10% (goal >= 99%) | within +-5% | MAPE (goal <= 3%) | mean error "
             "| Kendall tau |", "|---|---|---|---|---|---|---|"]
    rows = [("layer sum", doc["uncorrected"]), ("corrected (5-fold held out)", doc["corrected_cross_validated"])]
    if not rate:
        rows.append(("the table as it predicted (its stored correction)", doc))
    for label, r in rows:
        within_5 = f"{100 * r['within_5_percent']:.0f}%" if "within_5_percent" in r else "not recorded"
        lines.append(f"| {label} | {r['n']} | {100 * r['within_10_percent']:.0f}% | {within_5} "
                     f"| {r['mape_percent']:.2f}% | {r['mean_error_percent']:+.2f}% | {r['kendall_tau']:.3f} |")
    if rate:
        lines += ["", f"vectorised prediction: {rate:,.0f} subnets a second (goal 100,000)"]
    c = doc["correction_fitted_on_all"]
    lines += ["", f"correction fitted on all {c['n']}: {c['slope']:.4f} x sum {c['intercept']:+.4f} ms"]
    return "\n".join(lines)


def reusable(path: Path, table: LatencyTable) -> list[dict] | None:
    """Measured subnets of an earlier run whose layer-sum predictions this table still makes."""
    if not path.exists():
        return None
    rows = read_json(path)["subnets"]
    for r in rows:
        recorded = r.get("uncorrected_ms", r["predicted_ms"])
        if abs(recorded - table.predict(SubnetConfig.from_dict(r["subnet"]), corrected=False)) > 1e-9:
            return None
    return rows


if __name__ == "__main__":
    run(main)
