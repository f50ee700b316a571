"""Transfer from a trained supernet against training from scratch, on CIFAR-10 cut in two.

    python -m bench.transfer [--data ~/.cache/mmf/cifar10] [--source-epochs 5] [--epochs 20] [--per-class 100]

The source is a supernet of the default space trained on airplane, automobile, bird, cat and deer (all their
training images). The target is dog, frog, horse, ship and truck with ``--per-class`` training images each (a
seeded draw; their whole test split), trained ``--epochs`` epochs twice at one batch size: from the source
(``--init-from``: every weight but the classifier, the transfer learning rate) and from scratch (the default
learning rate). Reported per start: the largest and smallest subnets' test accuracy (batch norm recalibrated) and,
through the whole pipeline (predictor, search, QAT int8 export at one budget on host-cpu-1t), the bundle's test
accuracy, or why export refused it. Work is kept under ``--work``; a rerun resumes it.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from bench.common import CLASSIFIER, header, parse, provenance, run, save
from devices.profile import load_profile
from export.config import ExportConfig
from factory.app.make import make
from factory.core.errors import FactoryError
from factory.core.files import read_json
from factory.nas.space import DEFAULT, SubnetConfig
from factory.search.strategies import SearchConfig
from factory.training.data import load_data, make_dataset
from factory.training.portable.images import CIFAR10_CLASSES, is_image_file
from factory.training.portable.recipe import TrainConfig
from factory.training.train import train_supernet
from factory.training.workdir import Workdir
from latency_tables.table import default_table_path

TITLE = "Transfer from a trained supernet"
SOURCE, TARGET = CIFAR10_CLASSES[:5], CIFAR10_CLASSES[5:]


def link_folders(cifar: Path, work: Path, per_class: int, seed: int) -> tuple[Path, Path]:
    """Image folders of links into ``cifar``: the source classes whole, the target's training images cut down."""
    if not (cifar / "train").is_dir():
        raise FactoryError(f"{cifar} has no train/: unpack ../shared/datasets/cifar10-jpg.tar.gz there")
    source, target = work / "source-data", work / "target-data"
    for name in SOURCE:
        for split in ("train", "test"):
            _link(cifar / split / name, source / split / name)
    for name in TARGET:
        _link(cifar / "test" / name, target / "test" / name)
    rng = random.Random(seed)
    for name in TARGET:
        folder = target / "train" / name
        if folder.is_dir():
            continue
        folder.mkdir(parents=True)
        files = sorted(p for p in (cifar / "train" / name).iterdir() if is_image_file(p))
        for path in rng.sample(files, per_class):
            (folder / path.name).symlink_to(path)
    return source, target


def _link(real: Path, link: Path):
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(real.resolve(), target_is_directory=True)


def subnet_test_accuracy(workdir: Workdir) -> dict:
    """The largest and smallest subnets' test accuracy, each recalibrated on the training images."""
    supernet, data = workdir.supernet(), workdir.data()
    test = make_dataset(data.x_test, data.y_test, 256, training=False)
    out = {}
    for name, subnet in (("largest", SubnetConfig.largest(DEFAULT)), ("smallest", SubnetConfig.smallest(DEFAULT))):
        supernet.recalibrate(subnet, data.calibration())
        out[name] = supernet.evaluate_subnet(subnet, test)
    return out


def train_run(folder: Path, workdir: Workdir, config: TrainConfig) -> float:
    """Train (or load) a supernet; the seconds this run spent, 0 when it was already trained."""
    if workdir.trained:
        return workdir.training()["seconds_this_run"]
    start = time.time()
    train_supernet(load_data(str(folder), image_size=DEFAULT.resolutions[-1]), DEFAULT, workdir, config, verbose=2)
    return time.time() - start


def pipeline(folder: Path, workdir: Workdir, config: TrainConfig, profile, budget: float, n_eval: int) -> dict:
    """Predictor, search and int8 export at one budget (the work directory is trained): the bundle's figures, or
    the one line export refused it with."""
    try:
        [card] = make(str(folder), [profile], [budget], workdir, space=DEFAULT, train=config,
                      search=SearchConfig(n_eval=n_eval), export=ExportConfig(), calibrate_n=0)
    except FactoryError as exc:
        return {"refused": str(exc)}
    acc, lat = card["accuracy"], card["latency"]
    return {"shipped": acc["shipped"], "test_accuracy": acc[acc["shipped"]], "float_accuracy": acc["float"],
            "measured_ms": lat["measured"]["median_ms"], "predicted_ms": lat["predicted_ms"],
            "size_bytes": card["size_bytes"], "subnet": card["subnet"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="~/.cache/mmf/cifar10", help="CIFAR-10 as train/<class>/, test/<class>/")
    parser.add_argument("--work", default="runs/bench-transfer")
    parser.add_argument("--source-epochs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20, help="target epochs, the same for both starts")
    parser.add_argument("--batch-size", type=int, default=32, help="target batch size, the same for both starts")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--budget-ms", type=float, default=1.5, help="the bundle's budget on host-cpu-1t")
    parser.add_argument("--n-eval", type=int, default=SearchConfig().n_eval)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/results/transfer.json")
    args = parse(parser, markdown, "starts")
    if args is None:
        return
    profile = load_profile("host-cpu-1t")
    if not default_table_path(DEFAULT, profile, CLASSIFIER).exists():
        raise FactoryError("no host-cpu-1t table of the default space: `factory table build --device host-cpu-1t`")
    work = Path(args.work).expanduser()
    source_dir, target_dir = link_folders(Path(args.data).expanduser(), work, args.per_class, args.seed)
    source = Workdir(work / "source")
    source_seconds = train_run(source_dir, source, TrainConfig(epochs=args.source_epochs, seed=args.seed))
    configs = {"transfer": TrainConfig.transfer(str(source.path.resolve()), epochs=args.epochs,
                                                batch_size=args.batch_size, seed=args.seed),
               "scratch": TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)}
    starts = {}
    for name, config in configs.items():
        workdir = Workdir(work / name)
        seconds = train_run(target_dir, workdir, config)
        starts[name] = {"learning_rate": config.learning_rate, "epochs": config.epochs, "train_seconds": seconds,
                        "subnets": subnet_test_accuracy(workdir),
                        "bundle": pipeline(target_dir, workdir, config, profile, args.budget_ms, args.n_eval)}
    target = read_json(Workdir(work / "transfer").data_file)
    save(args.out, {**provenance(), "space": DEFAULT.name, "source_classes": SOURCE, "target_classes": TARGET,
                    "source": {"epochs": args.source_epochs, "train_seconds": source_seconds,
                               "images": read_json(source.data_file)["train"]},
                    "target_images": {"train": target["train"], "val": target["val"], "test": target["test"]},
                    "per_class": args.per_class, "batch_size": args.batch_size, "budget_ms": args.budget_ms,
                    "device": profile.name, "starts": starts}, markdown)


def markdown(doc: dict) -> str:
    t = doc["target_images"]
    lines = [f"{header(doc)}. Source: {', '.join(doc['source_classes'])} ({doc['source']['images']} training images, "
             f"{doc['source']['epochs']} epochs, {doc['source']['train_seconds']:.0f} s). Target: "
             f"{', '.join(doc['target_classes'])}, {doc['per_class']} images per class ({t['train']} train, {t['val']} "
             f"val, {t['test']} test), batch {doc['batch_size']}; test accuracy, the bundle's through search and "
             f"int8 export at {doc['budget_ms']:g} ms on {doc['device']}:", "",
             "| start | epochs | learning rate | train s | largest subnet | smallest subnet | int8 bundle | "
             "measured ms |", "|---|---|---|---|---|---|---|---|"]
    for name, s in doc["starts"].items():
        b = s["bundle"]
        bundle = f"refused: {b['refused']}" if "refused" in b else f"{100 * b['test_accuracy']:.2f}%"
        measured = "" if "refused" in b else f"{b['measured_ms']:.3f}"
        lines.append(f"| {name} | {s['epochs']} | {s['learning_rate']:g} | {s['train_seconds']:.0f} | "
                     f"{100 * s['subnets']['largest']:.2f}% | {100 * s['subnets']['smallest']:.2f}% | {bundle} | "
                     f"{measured} |")
    return "\n".join(lines)


if __name__ == "__main__":
    run(main)
