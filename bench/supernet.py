"""Supernet benchmark: the cost of elasticity, and accuracy after E epochs of sandwich training.

    python -m bench.supernet --data ~/.cache/mmf/cifar10 --epochs 3 --workdir runs/bench-supernet

1. Elasticity cost: one sandwich step (largest + smallest + 2 random subnets) against
   the sum of one plain training step of each of the same four subnets built as static
   Keras models, on the same batch, side by side, over ``--steps`` different steps.
2. Accuracy: the supernet trained for E epochs; the largest, smallest and 5 random
   subnets after BN recalibration on the test set, next to the largest and smallest
   trained alone from scratch for the same E epochs with the same optimizer.
3. Ablation: short trainings with one of BigNAS's training details turned off.

Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench.common import header, provenance, run, save, parse
from factory.core.backend import keras, tf
from factory.core.files import read_json
from factory.nas.extract import build_subnet_model
from factory.nas.space import SubnetConfig, get_space
from factory.nas.supernet import resize
from factory.training.data import load_data, make_dataset
from factory.training.portable.recipe import TrainConfig, make_optimizer
from factory.training.train import build_supernet, calibration_batches, train_model, train_supernet
from factory.training.workdir import Workdir

TITLE = "Supernet: the cost of elasticity, accuracy after E epochs, training details"


def _time_call(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def elasticity_cost(data, space, steps: int, batch_size: int, repeats: int = 3):
    """Median time of a sandwich step vs the summed plain steps of its four subnets."""
    config = TrainConfig(batch_size=batch_size)
    x = data.x_train[:batch_size]
    y = data.y_train[:batch_size]
    batch = make_dataset(x, y, batch_size, training=False)
    images, labels = next(iter(batch))
    supernet = build_supernet(space, data.head, config)
    supernet.compile(optimizer=make_optimizer(config, 1000, supernet.trainable_variables))
    train_fn = supernet.make_train_function()
    repeated = iter(tf.data.Dataset.from_tensors((images, labels)).repeat())
    rows = []
    train_fn(repeated)  # trace once
    for step in range(1, steps + 1):
        subnets = supernet.sandwich_configs(step)

        def sandwich():
            supernet.optimizer.iterations.assign(step)  # same step -> same subnets
            train_fn(repeated)

        t_sandwich = _time_call(sandwich, repeats)
        t_static = 0.0
        for subnet in subnets:
            model = build_subnet_model(space, subnet, data.head)
            model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            resized = resize(images, subnet.resolution)
            static_it = iter(tf.data.Dataset.from_tensors((resized, labels)).repeat())
            static_fn = model.make_train_function()
            static_fn(static_it)  # trace
            t_static += _time_call(lambda: static_fn(static_it), repeats)
        rows.append({"step": step, "sandwich_s": t_sandwich, "static_sum_s": t_static,
                     "subnets": [s.to_dict() for s in subnets]})
        print(f"  step {step:2d}: sandwich {t_sandwich * 1e3:7.1f} ms  static sum {t_static * 1e3:7.1f} ms"
              f"  ratio {t_sandwich / t_static:.2f}", flush=True)
    sandwich_total = sum(r["sandwich_s"] for r in rows)
    static_total = sum(r["static_sum_s"] for r in rows)
    traces = train_fn.experimental_get_tracing_count()
    return {"steps": rows, "sandwich_ms_mean": 1e3 * sandwich_total / steps,
            "static_sum_ms_mean": 1e3 * static_total / steps,
            "ratio": sandwich_total / static_total, "train_function_traces": traces}


def train_standalone(data, space, subnet, config: TrainConfig, verbose):
    """A static subnet trained alone from scratch with the supernet's optimizer settings."""
    model = build_subnet_model(space, subnet, data.head, name="standalone")
    seconds = train_model(model, data, config, verbose)
    local = data.resized(subnet.resolution)
    test = make_dataset(local.x_test, local.y_test, 256, training=False)
    test = test.map(lambda x, y: (x, tf.one_hot(y, data.num_classes)))
    _, acc = model.evaluate(test, verbose=0)
    return acc, seconds


def accuracy_after_epochs(data, space, epochs, workdir, batch_size, verbose):
    config = TrainConfig(epochs=epochs, batch_size=batch_size)
    start = time.time()
    supernet = train_supernet(data, space, Workdir(workdir), config, verbose=verbose)
    supernet_seconds = time.time() - start
    test = make_dataset(data.x_test, data.y_test, 256, training=False)
    subnets = [("largest", SubnetConfig.largest(space)), ("smallest", SubnetConfig.smallest(space))]
    subnets += [(f"random{i}", SubnetConfig.random(space, 1000 + i)) for i in range(5)]
    rows = []
    for label, subnet in subnets:
        supernet.recalibrate(subnet, calibration_batches(data, config))
        rows.append({"subnet": label, "config": subnet.to_dict(),
                     "supernet_acc": supernet.evaluate_subnet(subnet, test)})
    for row in rows[:2]:
        acc, seconds = train_standalone(data, space, SubnetConfig.from_dict(row["config"]), config, verbose)
        row["standalone_acc"], row["standalone_seconds"] = acc, seconds
    return {"epochs": epochs, "supernet_train_seconds": supernet_seconds, "subnets": rows}


ABLATIONS = {
    "all details on": {},
    "no zero-init residual gamma": {"zero_init_residual": False},
    "no label smoothing": {"label_smoothing": 0.0},
    "no gradient clipping": {"clipnorm": 0.0},
}


def ablation(data, space, epochs, images, batch_size, workdir, verbose):
    """Short sandwich trainings with one training detail off at a time, same data and seed.

    Scores the largest and smallest subnets after BN recalibration on the validation
    split. A short run on a subset is a coarse signal; it is what this machine affords.
    """
    import dataclasses

    subset = dataclasses.replace(data, x_train=data.x_train[:images], y_train=data.y_train[:images])
    rows = []
    for label, change in ABLATIONS.items():
        config = TrainConfig(epochs=epochs, batch_size=batch_size, **change)
        path = Workdir(Path(workdir) / label.replace(" ", "-"))
        start = time.time()
        train_supernet(subset, space, path, config, verbose=verbose)
        result = path.training()
        rows.append({"setting": label, "change": change, "seconds": time.time() - start,
                     **{f"val_{k}": v for k, v in result["val_accuracy_recalibrated"].items()}})
        print(f"  {label}: largest {rows[-1]['val_largest']:.4f} smallest {rows[-1]['val_smallest']:.4f}",
              flush=True)
    return {"epochs": epochs, "train_images": images, "rows": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path("~/.cache/mmf/cifar10").expanduser()))
    parser.add_argument("--space", default="default")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workdir", default="runs/bench-supernet")
    parser.add_argument("--ablation-epochs", type=int, default=2)
    parser.add_argument("--ablation-images", type=int, default=10000)
    parser.add_argument("--part", choices=["all", "elasticity", "accuracy", "ablation"], default="all",
                        help="run one part; its results are merged into --out")
    parser.add_argument("--out", default="bench/results/supernet.json")
    args = parse(parser, markdown, "space_fingerprint")
    if args is None:
        return

    space = get_space(args.space)
    start = time.time()
    data = load_data(args.data).resized(space.resolutions[-1])
    print(f"loaded {data.name} in {time.time() - start:.1f} s")
    out = Path(args.out)
    result = read_json(out) if out.exists() else {}
    run_record = provenance()
    result |= {**run_record, "space": space.name, "space_fingerprint": space.fingerprint, "data": data.summary(),
               "tensorflow": tf.__version__}
    if args.part in ("all", "elasticity"):
        print(f"1. elasticity cost ({args.steps} steps, batch {args.batch_size})")
        result["elasticity"] = {**elasticity_cost(data, space, args.steps, args.batch_size), **run_record}
    if args.part in ("all", "accuracy"):
        print(f"\n2. accuracy after {args.epochs} epochs")
        result["accuracy"] = {**accuracy_after_epochs(data, space, args.epochs, args.workdir, args.batch_size,
                                                      verbose=2), **run_record}
    if args.part in ("all", "ablation"):
        print(f"\n3. ablation: {args.ablation_epochs} epochs on {args.ablation_images} training images")
        result["ablation"] = {**ablation(data, space, args.ablation_epochs, args.ablation_images,
                                         args.batch_size, Path(args.workdir) / "ablation", verbose=2), **run_record}
    save(out, result, markdown)


def markdown(result: dict) -> str:
    """Each part a results file holds, with the command, date and machine of the run that made it."""
    lines = []
    e = result.get("elasticity")
    if e:
        lines += [f"Elasticity cost, space {result['space']}: {header({**result, **e})}", "",
                  "| sandwich step (ms) | 4 static steps (ms) | ratio (goal <= 1.3) | traces |", "|---|---|---|---|",
                  f"| {e['sandwich_ms_mean']:.1f} | {e['static_sum_ms_mean']:.1f} | {e['ratio']:.2f} | "
                  f"{e['train_function_traces']} |", ""]
    acc = result.get("accuracy")
    if acc:
        lines += [f"Accuracy after {acc['epochs']} epochs ({acc['supernet_train_seconds'] / 60:.0f} min of supernet "
                  f"training), space {result['space']}, test split of {result['data']['name']}: "
                  f"{header({**result, **acc})}", "",
                  "| subnet | resolution | depths | supernet (BN recalibrated) | standalone | difference |",
                  "|---|---|---|---|---|---|"]
        for row in acc["subnets"]:
            c = row["config"]
            alone = row.get("standalone_acc")
            diff = f"{100 * (row['supernet_acc'] - alone):+.1f} pt" if alone is not None else ""
            alone_s = f"{100 * alone:.1f}%" if alone is not None else ""
            lines.append(f"| {row['subnet']} | {c['resolution']} | {c['depths']} | {100 * row['supernet_acc']:.1f}% "
                         f"| {alone_s} | {diff} |")
        lines.append("")
    abl = result.get("ablation")
    if abl:
        lines += [f"Ablation: {abl['epochs']} epochs on {abl['train_images']} training images, validation accuracy "
                  f"after BN recalibration: {header({**result, **abl})}", "",
                  "| setting | largest | smallest |", "|---|---|---|"]
        lines += [f"| {row['setting']} | {100 * row['val_largest']:.1f}% | {100 * row['val_smallest']:.1f}% |"
                  for row in abl["rows"]]
    return "\n".join(lines).rstrip()


if __name__ == "__main__":
    run(main)
