"""Memory and speed of a photo folder that does not fit in memory: decoded into memory against the on-disk cache.

    python -m bench.streaming [--images 5000 20000] [--folder runs/bench-streaming/photos] [--steps 20]

A folder of generated JPEGs (10 classes, sizes from 160x120 to 640x480, landscape and portrait) is made once.
For each image count (a subset of the folder, the same per class) and each way of holding it (``memory``: the
splits decoded into arrays; ``cache``: decoded once into ``.npy`` files, read a batch at a time), a fresh
process prepares the data at 128 px (MobileNetV3's smallest input) and another trains a supernet of the
``mobilenetv3`` space at a quarter width for ``--steps`` steps at 128 px. Reported: each process's peak resident
memory (the decode workers' largest beside it), decode throughput and training throughput in images per
second after the first steps' tracing. Goal: under 4 GiB and flat in the number of images.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import header, parse, provenance, run, save
from factory.core.errors import FactoryError

TITLE = "Data that does not fit in memory"
SIZE = 128
BATCH = 32


def space():
    from factory.nas.space import MOBILENETV3

    return dataclasses.replace(MOBILENETV3, name="mobilenetv3-w025-128", width_multiplier=0.25, resolutions=(SIZE,))


def generate(folder: Path, n: int, classes: int = 10, seed: int = 0):
    """``n`` JPEGs in ``classes`` folders: a class's colour cast over smooth noise, at random sizes (resumes)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    per_class = n // classes
    for c in range(classes):
        out = folder / f"class{c:02d}"
        out.mkdir(parents=True, exist_ok=True)
        have = len(list(out.glob("*.jpg")))
        for i in range(per_class):
            w, h = int(rng.integers(160, 641)), int(rng.integers(120, 481))
            small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            if i < have:
                continue
            small[..., c % 3] = 200
            Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR).save(out / f"{i:05d}.jpg", quality=85)
        if c == 0 or (c + 1) % 5 == 0:
            print(f"generated {per_class * (c + 1)}/{n} images", flush=True)


def subset(folder: Path, n: int) -> Path:
    """A folder of links to the first ``n / classes`` images of each class."""
    out = folder.parent / f"{folder.name}-{n}"
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    for c in classes:
        target = out / c.name
        if target.is_dir():
            continue
        target.mkdir(parents=True)
        for path in sorted(c.glob("*.jpg"))[:n // len(classes)]:
            (target / path.name).symlink_to(path.resolve())
    return out


def peak_mib(who) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kilobytes on Linux


def child_prepare(folder: str, mode: str, cache: str) -> dict:
    from factory.training.data import load_data

    start = time.time()
    data = load_data(folder, image_size=SIZE, cache=cache if mode == "cache" else None)
    seconds = time.time() - start
    n = len(data.y_train) + len(data.y_val) + len(data.y_test)
    return {"images": n, "seconds": seconds, "images_per_second": n / seconds,
            "peak_mib": peak_mib(resource.RUSAGE_SELF), "workers_peak_mib": peak_mib(resource.RUSAGE_CHILDREN)}


def child_train(folder: str, mode: str, cache: str, steps: int) -> dict:
    from factory.training.data import load_data, make_dataset
    from factory.training.portable.recipe import TrainConfig, make_optimizer
    from factory.training.train import build_supernet

    data = load_data(folder, image_size=SIZE, cache=cache if mode == "cache" else None)
    config = TrainConfig(batch_size=BATCH)
    train = make_dataset(data.x_train, data.y_train, BATCH, training=True, flip=True).repeat()
    supernet = build_supernet(space(), data.head, config)
    supernet.compile(optimizer=make_optimizer(config, steps, supernet.trainable_variables))
    supernet.fit(train, steps_per_epoch=3, epochs=1, verbose=0)  # the traces
    start = time.time()
    supernet.fit(train, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = time.time() - start
    return {"steps": steps, "seconds": seconds, "images_per_second": steps * BATCH / seconds,
            "peak_mib": peak_mib(resource.RUSAGE_SELF)}


def in_child(*args) -> dict:
    """One measurement in a fresh process, so each peak is its own."""
    done = subprocess.run([sys.executable, "-m", "bench.streaming", "--child", *map(str, args)],
                          capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise FactoryError(f"the {args[0]} measurement failed: {done.stderr.strip()[-400:]}")
    return json.loads(lines[-1])


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        result = child_prepare(*rest) if kind == "prepare" else child_train(*rest[:3], int(rest[3]))
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--folder", default="runs/bench-streaming/photos")
    parser.add_argument("--steps", type=int, default=20, help="training steps timed (batch 32)")
    parser.add_argument("--out", default="bench/results/streaming.json")
    args = parse(parser, markdown, "rows")
    if args is None:
        return
    folder = Path(args.folder).expanduser()
    generate(folder, max(args.images))
    rows = []
    for n in args.images:
        part = subset(folder, n)
        for mode in ("memory", "cache"):
            cache = folder.parent / f"cache-{n}"
            shutil.rmtree(cache, ignore_errors=True)  # every prepare decodes
            prepare = in_child("prepare", part, mode, cache)
            train = in_child("train", part, mode, cache, args.steps)
            rows.append({"images": n, "mode": mode, "prepare": prepare, "train": train})
            print(f"{n} images, {mode}: prepare peak {prepare['peak_mib']:.0f} MiB, train peak "
                  f"{train['peak_mib']:.0f} MiB", flush=True)
    save(args.out, {**provenance(), "size": SIZE, "batch_size": BATCH, "space": space().name, "rows": rows}, markdown)


def markdown(doc: dict) -> str:
    lines = [f"{header(doc)}; generated JPEGs 160x120 to 640x480 prepared at {doc['size']} px, training "
             f"{doc['space']} at batch {doc['batch_size']}:", "",
             "| images | held | prepare: peak MiB (its child processes) | decode images/s | train: peak MiB | "
             "train images/s |", "|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        p, t = r["prepare"], r["train"]
        lines.append(f"| {r['images']:,} | {r['mode']} | {p['peak_mib']:.0f} ({p['workers_peak_mib']:.0f}) | "
                     f"{p['images_per_second']:.0f} | {t['peak_mib']:.0f} | {t['images_per_second']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    run(main)
