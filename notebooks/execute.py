"""Re-execute notebooks in place, so the repository shows them with their outputs and plots.

    python notebooks/execute.py 01_quickstart.ipynb
    MMF_CIFAR10=~/.cache/mmf/cifar10 MMF_EPOCHS=1 python notebooks/execute.py 02_cifar10_pareto.ipynb

Each runs top to bottom in a fresh kernel from the repository root (its relative paths,
``runs/...``, land there); the file is replaced only when every cell ran (temp file, then
rename). Run it alone: the notebooks measure latencies, which other work on the machine
slows. ``03_android`` needs a phone on adb: it is stored without outputs, since none was
attached here (``tests/test_notebooks.py`` runs it against the adb double).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
# TensorFlow's, absl's and the converter's native logging: what `factory` sends to its log file, not the reader
NATIVE = re.compile(r"^(\s*|[IWE]\d{4} .*|WARNING: All log messages before absl.*|INFO:tensorflow:.*|"
                    r"fully_quantize: .*|INFO: Created TensorFlow Lite XNNPACK delegate.*)$")


def quiet(nb):
    """Drop TensorFlow's logging lines from the stream outputs (and outputs left empty); everything else stays."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            if output.get("output_type") == "stream":
                output["text"] = "".join(line for line in output["text"].splitlines(keepends=True)
                                         if not NATIVE.match(line.rstrip("\n")))
                if not output["text"].strip():
                    continue
            kept.append(output)
        cell.outputs = kept
    return nb


def execute(name: str, timeout: int) -> float:
    path = HERE / name
    nb = nbformat.read(path, as_version=4)
    start = time.time()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE.parent)}}).execute()
    quiet(nb)
    tmp = path.with_name(f".{path.name}.tmp")
    nbformat.write(nb, tmp)
    tmp.replace(path)
    return time.time() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", help="notebook file names in notebooks/")
    parser.add_argument("--timeout", type=int, default=7200, help="seconds a cell may run")
    args = parser.parse_args()
    for name in args.notebooks:
        if not (HERE / name).is_file():
            sys.exit(f"error: {HERE / name} does not exist: give a notebook of {HERE}")
    for name in args.notebooks:
        print(f"{name}: {execute(name, args.timeout):.0f} s", flush=True)


if __name__ == "__main__":
    main()
