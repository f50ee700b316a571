"""Stability benchmark: how far apart two measurements of the same model land on a device.

    python -m bench.stability --device host-cpu-1t --subnets 3 --rounds 8

For a few int8 subnets of the default space (the smallest, the largest and random ones),
``--rounds`` rounds, each measuring every subnet once with a single measurement
(``repeats`` 1) and once with the profile's ``repeats`` (the fastest of several), one
after the other. Reports, per subnet and method, the lowest and highest median over the
rounds and the spread ``highest / lowest - 1``: what a latency table entry or a
validation point can be off by from one measurement to the next. Prints a table and
writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses

from bench.common import CLASSIFIER, header, provenance, run, save, parse
from devices.profile import load_profile
from devices.runners import get_runner
from factory.core.convert import convert_for_timing
from factory.nas.extract import build_subnet_model
from factory.nas.space import SubnetConfig, get_space

TITLE = "Stability of one measurement"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="host-cpu-1t")
    parser.add_argument("--space", default="default")
    parser.add_argument("--subnets", type=int, default=3, help="random subnets besides the smallest and largest")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--out", default=None)
    args = parse(parser, markdown, "rounds")
    if args is None:
        return

    space, profile = get_space(args.space), load_profile(args.device)
    single = dataclasses.replace(profile, repeats=1)
    subnets = {"smallest": SubnetConfig.smallest(space), "largest": SubnetConfig.largest(space),
               **{f"random{i}": SubnetConfig.random(space, i) for i in range(args.subnets)}}
    models = {name: convert_for_timing(build_subnet_model(space, s, CLASSIFIER), profile.precision) for name, s in subnets.items()}
    methods = {"single measurement": single, f"fastest of {profile.repeats}": profile}
    medians = {(name, method): [] for name in models for method in methods}
    with contextlib.ExitStack() as stack:
        runners = {method: stack.enter_context(get_runner(p)) for method, p in methods.items()}
        hardware = next(iter(runners.values())).hardware()
        for r in range(args.rounds):
            for name, content in models.items():
                for method, runner in runners.items():
                    medians[(name, method)].append(runner.measure(content).median_ms)
            print(f"round {r + 1}/{args.rounds}", flush=True)

    rows = [{"subnet": name, "method": method, "lowest_ms": min(v), "highest_ms": max(v),
             "spread_percent": 100 * (max(v) / min(v) - 1), "medians_ms": v}
            for (name, method), v in medians.items()]
    doc = {**provenance(), "device": profile.to_dict(), "hardware": hardware, "rounds": args.rounds,
           "subnets": {k: s.to_dict() for k, s in subnets.items()}, "rows": rows}
    save(args.out or f"bench/results/stability__{profile.name}.json", doc, markdown)


def markdown(doc: dict) -> str:
    """Per subnet and method, the lowest and highest median over the rounds."""
    lines = [f"{header(doc)}, {doc['device']['name']}, {doc['rounds']} rounds:", "",
             "| subnet | method | lowest (ms) | highest (ms) | spread |", "|---|---|---|---|---|"]
    for row in doc["rows"]:
        lines.append(f"| {row['subnet']} | {row['method']} | {row['lowest_ms']:.3f} | {row['highest_ms']:.3f} | "
                     f"{row['spread_percent']:.1f}% |")
    return "\n".join(lines)


if __name__ == "__main__":
    run(main)
