"""Latency-table benchmark: how well a host table predicts whole int8 subnets.

    python bench/latency.py --device host-cpu-1t --n 100

Builds (or resumes) the table of the default space on the device, timing the build;
measures ``--n`` random int8 subnets as whole models and reports the share within
+-10% (goal: at least 99%, nn-Meter's figure on mobile CPUs), MAPE (goal <= 3%) and
Kendall's tau; and times vectorised prediction (goal: 100,000 subnets a second).
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from devices.profile import load_profile  # noqa: E402
from factory.space import SubnetConfig, get_space  # noqa: E402
from latency_tables.builder import build_table  # noqa: E402
from latency_tables.table import LatencyTable, default_table_path  # noqa: E402
from latency_tables.validate import validate_table  # noqa: E402


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
    args = parser.parse_args()

    space, profile = get_space(args.space), load_profile(args.device)
    path = Path(args.table) if args.table else default_table_path(space, profile)
    start = time.time()
    build_table(space, profile, path)
    build_seconds = time.time() - start
    doc = json.loads(path.read_text())
    table = LatencyTable(doc, space, str(path))
    report = validate_table(table, profile, args.n, Path("runs") / f"bench-latency__{profile.name}", seed=1)
    rate = prediction_rate(table)
    result = {"date": datetime.date.today().isoformat(), "command": " ".join(sys.argv), "device": profile.name,
              "space": space.name, "table": str(path), "table_entries": len(doc["entries"]),
              "table_build_seconds_this_run": build_seconds,
              "predictions_per_second": rate, **{k: v for k, v in report.items() if k != "subnets"},
              "subnets": report["subnets"]}
    print(f"\n| device | subnets | within +-10% (goal >= 99%) | within +-5% | MAPE (goal <= 3%) | Kendall tau "
          f"| table entries | predictions/s |\n|---|---|---|---|---|---|---|---|\n"
          f"| {profile.name} | {report['n']} | {100 * report['within_10_percent']:.0f}% | "
          f"{100 * report['within_5_percent']:.0f}% | {report['mape_percent']:.2f}% | {report['kendall_tau']:.3f} | "
          f"{len(doc['entries'])} | {rate:,.0f} |")
    out = Path(args.out or f"bench/results/latency__{profile.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
