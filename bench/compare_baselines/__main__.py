"""``python -m bench.compare_baselines``: the stages in order (see the package's docstring)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import run as run_main
from bench.common import parse
from bench.compare_baselines import __doc__ as DOC
from bench.compare_baselines.compare import add_factory, time_side_by_side
from bench.compare_baselines.match import ARCHS, match_baselines
from bench.compare_baselines.report import markdown
from bench.compare_baselines.run import Run
from bench.compare_baselines.train import add_baselines, add_fine_tuned_baselines, fine_tune_recipe, write_plan
from devices.runners import get_runner
from factory.search.strategies import SearchConfig


def parse_args() -> argparse.Namespace | None:
    parser = argparse.ArgumentParser(prog="python -m bench.compare_baselines", description=DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="runs/bench-supernet")
    parser.add_argument("--device", default="host-cpu-1t")
    parser.add_argument("--table", help="latency table (default: the shipped one; it must be of this CPU)")
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--baseline-epochs", type=int, help="default: the supernet's epochs")
    parser.add_argument("--n-eval", type=int, default=SearchConfig().n_eval)
    parser.add_argument("--budgets-ms", type=float, nargs="+",
                        help="default: 25%%, 50%% and 75%% of the way from the fastest to the largest subnet "
                             "(give the same budgets to compare two spaces)")
    parser.add_argument("--rounds", type=int, default=5, help="side-by-side timing rounds at the end")
    parser.add_argument("--no-train", action="store_true",
                        help="leave baselines not trained yet out (report and time what is done)")
    parser.add_argument("--plan-baselines", metavar="PLAN",
                        help="write the baselines to train (with the recipe and a checksum of the data) to PLAN "
                             "for `python -m bench.baselines`, after choosing them, and stop")
    parser.add_argument("--baseline-weights", metavar="DIR",
                        help="take baselines not trained yet from bench.baselines' weights in DIR")
    parser.add_argument("--archs", nargs="+", choices=ARCHS, default=list(ARCHS),
                        help="the baselines to compare against (default: both)")
    parser.add_argument("--match-as", metavar="RESULTS",
                        help="take the baselines' matching timings from another results file, so that a follow-up "
                             "run compares against the same baselines on another day")
    parser.add_argument("--out", default="bench/results/export.json")
    return parse(parser, markdown, "latency_by_config")


def main():
    args = parse_args()
    if args is None:
        return
    run = Run.start(args)
    with get_runner(run.profile) as runner:
        configs = match_baselines(run, runner)
        tune = fine_tune_recipe(args.qat_epochs, len(run.data.y_train))
        if args.plan_baselines:
            write_plan(Path(args.plan_baselines), configs, run.raw, run.data, run.epochs, tune)
            return
        add_baselines(run, configs)
        if tune:
            add_fine_tuned_baselines(run, tune)
        if not run.workdir.trained:
            print(f"{run.workdir} holds no trained supernet yet: the baselines' rows are saved; rerun once "
                  f"`factory train --workdir {run.workdir}` has finished")
            return
        add_factory(run, runner)
        time_side_by_side(run, runner)
    run.save()
    print(markdown(run.doc))
    print(f"\nwrote {run.out}")


if __name__ == "__main__":
    run_main(main)
