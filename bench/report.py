"""Write bench/README.md from the results files: every figure there is a benchmark's own markdown.

    python -m bench.report            # rewrite bench/README.md
    python -m bench.report --check    # exit 1 if bench/README.md is not what the results files make

Each benchmark module has a ``TITLE`` and a ``markdown(doc)``; its section is its docstring
(what it measures and how to run it) and then, per results file, the markdown of that file,
which starts with the command, date and machine that produced it.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path

from bench.common import run
from factory.core.files import atomic_file, read_json

BENCH = Path(__file__).parent
RESULTS = BENCH / "results"
# (module, the results files it wrote), in the order a reader meets the factory's stages
SECTIONS = [
    ("bench.supernet", ["supernet.json", "supernet-res64.json", "supernet-ablation.json"]),
    ("bench.streaming", ["streaming.json"]),
    ("bench.transfer", ["transfer.json"]),
    ("bench.pretrained", ["pretrained.json"]),
    ("bench.xla", ["xla.json"]),
    ("bench.latency", ["latency-linear.json", "latency.json", "latency__*.json", "validate__*.json"]),
    ("bench.budget", ["budget.json", "budget__*.json"]),
    ("bench.stability", ["stability__*.json"]),
    ("bench.search", ["search.json"]),
    ("bench.gradient_memory", ["gradient_memory.json"]),
    ("bench.compare_baselines.report", ["export.json", "export-res64.json", "export-res64-qat4.json"]),
    ("bench.quantization", ["quantization.json"]),
    ("bench.clients", ["clients.json"]),
]
INTRO = """# Benchmarks

Written by `python -m bench.report` from the results files in `bench/results/`: do not edit it by
hand. Each section says what its benchmark measures and how to run it (`python -m bench.NAME`,
from the repository root); each table after it is that benchmark's own markdown of one results
file (`python -m bench.NAME --show FILE` prints it again), under the command, date and machine
that produced it. A machine older runs did not record is said to be not recorded. The
benchmarks that train read the CIFAR-10 copy in `../shared/datasets`, unpacked as in
[docs/supernet.md](../docs/supernet.md). Host latencies hold only for the CPU model they were
measured on; no phone was measured here.
"""


def _description(module) -> str:
    """The benchmark's docstring after its title line (``compare_baselines.report``: its package's)."""
    doc = inspect.getdoc(importlib.import_module(module.__name__.rsplit(".report", 1)[0]))
    return doc.split("\n", 1)[1].strip("\n") if "\n" in doc else ""


def build() -> str:
    parts = [INTRO]
    for name, patterns in SECTIONS:
        module = importlib.import_module(name)
        files = [path for pattern in patterns for path in sorted(RESULTS.glob(pattern))]
        parts.append(f"## {module.TITLE}\n\n{_description(module)}\n")
        for path in files:
            parts.append(f"### `{path.relative_to(BENCH.parent)}`\n\n{module.markdown(read_json(path))}\n")
    return "\n".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    text = build()
    readme = BENCH / "README.md"
    if parser.parse_args().check:
        same = readme.exists() and readme.read_text() == text
        print(f"{readme} is {'up to date' if same else 'out of date: run python -m bench.report'}")
        sys.exit(0 if same else 1)
    with atomic_file(readme) as tmp:
        tmp.write_text(text)
    print(f"wrote {readme}")


if __name__ == "__main__":
    run(main)
