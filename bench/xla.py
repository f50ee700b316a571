"""XLA on this CPU: seconds per supernet training step of the pretrained lite0 space, with and without ``jit_compile``.

    python -m bench.xla [--steps 5] [--batch-size 32]

The step is the one ``factory train --pretrained efficientnet-lite0`` runs: ImageNet weights with anchored batch
norm, the sandwich rule (largest, smallest, two random subnets) distilled from the frozen teacher, at the pretrained
schedule's batch size. Three ways: no XLA (the default); XLA on the teacher's forward pass alone (a fixed network
with static shapes, ``teacher_logits_fn(jit_compile=True)``); and Keras's ``jit_compile=True`` on the whole step,
whose elastic kernels, widths and depths are slices and conditionals on the subnet tensor. Each runs in its own
process, so a crash is recorded instead of ending the benchmark. The factory keeps XLA where it measured faster.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from bench.common import header, parse, provenance, run, save
from factory.core.files import read_json

TITLE = "XLA (`jit_compile`) on this CPU"
WAYS = {"none": "no XLA", "teacher": "XLA on the teacher's forward pass", "step": "XLA on the whole step"}


def time_steps(way: str, steps: int, batch_size: int) -> dict:
    """Seconds per training step after a first (tracing, compiling) one, in this process."""
    import numpy as np

    from factory.nas.pretrained import DEFAULT_PRETRAINED, load_into_supernet, load_pretrained
    from factory.nas.space import LITE0
    from factory.training.portable.recipe import TrainConfig, make_optimizer
    from factory.training.teacher import teacher_logits_fn, teacher_model
    from factory.training.train import build_supernet

    config = TrainConfig.from_pretrained(DEFAULT_PRETRAINED)
    classes = 5
    supernet = build_supernet(LITE0, classes, config)
    weights = load_pretrained(DEFAULT_PRETRAINED, LITE0)
    load_into_supernet(supernet, weights)
    rng = np.random.default_rng(0)
    head = [rng.normal(0, 0.01, (LITE0.head_channels, classes)).astype("float32"), np.zeros(classes, "float32")]
    supernet.set_teacher(teacher_logits_fn(teacher_model(weights, head), jit_compile=way == "teacher"))
    supernet.compile(optimizer=make_optimizer(config, steps + 1, supernet.trainable_variables),
                     jit_compile=way == "step")
    size = LITE0.resolutions[-1]
    images = rng.uniform(-1, 1, ((steps + 1) * batch_size, size, size, 3)).astype("float32")
    labels = rng.integers(0, classes, len(images))
    start = time.perf_counter()
    supernet.fit(images[:batch_size], labels[:batch_size], batch_size=batch_size, epochs=1, verbose=0)
    first = time.perf_counter() - start
    start = time.perf_counter()
    supernet.fit(images[batch_size:], labels[batch_size:], batch_size=batch_size, epochs=1, verbose=0)
    return {"seconds_per_step": (time.perf_counter() - start) / steps, "first_step_seconds": first}


def measure(way: str, steps: int, batch_size: int) -> dict:
    """``time_steps`` in a child process: its figures, or how the process ended."""
    done = subprocess.run([sys.executable, "-m", "bench.xla", "--way", way, "--steps", str(steps),
                           "--batch-size", str(batch_size)], capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode == 0 and lines:
        return json.loads(lines[-1])
    why = f"signal {-done.returncode}" if done.returncode < 0 else f"exit code {done.returncode}"
    lines = done.stderr.splitlines()
    raised = [i for i, line in enumerate(lines) if re.match(r"^[\w.]+(Error|Exception): ", line)]
    if raised:  # the exception's line, and the next one where it only names its kind ("Graph execution error:")
        message = lines[raised[0]].split(": ", 1)[1]
        if message.endswith(":"):  # TensorFlow's own: the node's traceback, then what went wrong
            message += " " + next((line for line in lines[raised[0] + 1:] if line.strip() and not
                                   line.startswith((" ", "\t", "File ", "Detected at node", "<"))), "")
        why += ": " + message[:300]
    return {"failed": why}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--ways", nargs="+", choices=list(WAYS), default=list(WAYS))
    parser.add_argument("--way", choices=list(WAYS), help=argparse.SUPPRESS)  # one measurement, in a child
    parser.add_argument("--out", default="bench/results/xla.json")
    args = parse(parser, markdown, "ways")
    if args is None:
        return
    if args.way:
        print(json.dumps(time_steps(args.way, args.steps, args.batch_size)))
        return
    out = Path(args.out)
    doc = read_json(out) if out.exists() else {}
    if (doc.get("steps"), doc.get("batch_size")) != (args.steps, args.batch_size):
        doc = {"ways": {}}  # other settings: the earlier ways do not compare
    for r in doc["ways"].values():  # rows of a file written before rows kept their own provenance
        r.setdefault("command", doc.get("command")), r.setdefault("date", doc.get("date"))
    doc.update({**provenance(), "steps": args.steps, "batch_size": args.batch_size})
    for way in args.ways:  # each way keeps the command and date that measured it
        doc["ways"][way] = {**measure(way, args.steps, args.batch_size),
                            **{k: v for k, v in provenance().items() if k in ("command", "date")}}
        print(f"{WAYS[way]}: {doc['ways'][way]}", flush=True)
    save(args.out, doc, markdown)


def markdown(doc: dict) -> str:
    lines = [f"{header(doc)}. The lite0 supernet's training step (batch {doc['batch_size']}, teacher, sandwich), "
             f"mean of {doc['steps']} steps after the first:", "",
             "| way | seconds a step | first step (tracing, compiling) |", "|---|---|---|"]
    for way, r in doc["ways"].items():
        if "failed" in r:
            lines.append(f"| {WAYS[way]} | failed: {r['failed']} | |")
        else:
            lines.append(f"| {WAYS[way]} | {r['seconds_per_step']:.2f} | {r['first_step_seconds']:.1f} s |")
    other = [f"{WAYS[way]}: `{r['command']}`, {r['date']}" for way, r in doc["ways"].items()
             if r.get("command", doc.get("command")) != doc.get("command")]
    return "\n".join(lines + (["", "Measured by an earlier run: " + "; ".join(other) + "."] if other else []))


if __name__ == "__main__":
    run(main)
