"""What every benchmark shares: the one-line error exit, the results file and its markdown header."""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Callable

from factory.core.errors import FactoryError, fault_line
from factory.core.files import read_json, write_json
from factory.nas.heads import ClassificationHead
from factory.nas.space import SubnetConfig

# The classification benchmarks' head where no work directory names one: it picks their tables (by task; a table
# predicts with its own head entries) and the shipped tables were measured with it.
CLASSIFIER = ClassificationHead(10)


def run(main: Callable[[], None]):
    """Run a benchmark's ``main``: a fault the user can fix (``FactoryError``, a missing file) is one
    ``error:`` line and exit code 2, as in the CLI; an interrupted run says it resumes."""
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as exc:  # noqa: BLE001 - a bug keeps its traceback
        line = fault_line(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        raise SystemExit(2) from None


def provenance() -> dict:
    """The date, command and machine a results file records (the machine as ``describe`` words it)."""
    from devices.hardware import describe, host_hardware

    return {"date": datetime.date.today().isoformat(), "command": "python -m " + module_command(),
            "machine": describe(host_hardware())}


def module_command() -> str:
    """This run's command line, as ``python -m bench.NAME ARGS`` (``sys.argv[0]`` is the module's file)."""
    from pathlib import Path

    name = Path(sys.argv[0]).with_suffix("").name
    name = Path(sys.argv[0]).parent.name if name == "__main__" else name
    return " ".join([f"bench.{name}", *sys.argv[1:]])


def header(doc: dict) -> str:
    """A results file's command, date and machine, as every section of bench/README.md starts."""
    from devices.hardware import describe

    machine = doc.get("machine") or (describe(doc["hardware"]) if doc.get("hardware") else "machine not recorded")
    command = f"`{doc['command']}`" if doc.get("command") else "command not recorded"
    return f"{command}, {doc.get('date', 'date not recorded')}, {machine}"


def results_file(path: str, key: str, script: str) -> dict:
    """A results file ``script`` wrote (it has ``key``), or a FactoryError naming what to give instead."""
    doc = read_json(path)
    if not isinstance(doc, dict) or key not in doc:
        raise FactoryError(f"{path} is not a results file of {script}: give one it wrote with --out")
    return doc


def save(path, doc: dict, markdown: Callable[[dict], str]):
    """Write the results (atomically) and print their markdown."""
    write_json(path, doc)
    print(markdown(doc))
    print(f"\nwrote {path}")


def parse(parser: argparse.ArgumentParser, markdown: Callable[[dict], str], key: str) -> argparse.Namespace | None:
    """The command line, with ``--show RESULTS``: that results file's markdown (a file with ``key``) is printed
    and None returned, for the benchmark to stop."""
    parser.add_argument("--show", metavar="RESULTS", help="print a results file's markdown (as bench/README.md "
                                                          "holds it) and stop")
    args = parser.parse_args()
    if args.show:
        print(markdown(results_file(args.show, key, module_command().split()[0])))
        return None
    return args


def span_budgets(table, space, fractions) -> list[float]:
    """Each fraction of the way from the fastest to the largest subnet's predicted latency (to the microsecond)."""
    fastest, largest = table.fastest_ms(), table.predict(SubnetConfig.largest(space))
    return [round(fastest + f * (largest - fastest), 3) for f in fractions]


def three_budgets(table, space) -> list[float]:
    """25%, 50% and 75% of the way across the table's span."""
    return span_budgets(table, space, (0.25, 0.5, 0.75))


def budgets_parser(doc: str, workdir: str, out: str) -> argparse.ArgumentParser:
    """The options of a benchmark that searches a trained work directory at three budgets."""
    from factory.search.strategies import SearchConfig

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=workdir)
    parser.add_argument("--device", default="host-cpu-1t")
    parser.add_argument("--table", help="latency table (default: the shipped one; it must be of this CPU)")
    parser.add_argument("--n-eval", type=int, default=SearchConfig().n_eval)
    parser.add_argument("--out", default=out)
    return parser


def trained(args):
    """``budgets_parser``'s work directory (trained), its supernet, the device's profile and its tables by name."""
    from devices.profile import load_profile
    from factory.training.workdir import Workdir
    from latency_tables.resolve import load_tables

    workdir = Workdir(args.workdir).check_trained()
    supernet = workdir.supernet()
    profile = load_profile(args.device)
    return workdir, supernet, profile, load_tables(supernet.space, [profile], supernet.task_head,
                                                  [args.table] if args.table else None)


def pct(value, digits: int = 2) -> str:
    return "" if value is None else f"{100 * value:.{digits}f}%"
