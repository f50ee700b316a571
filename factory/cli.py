"""The ``factory`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import json
import sys

from factory.errors import FactoryError


def _train(args):
    from factory.backend import tf
    from factory.data import load_data
    from factory.train import TrainConfig, train_supernet

    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                         learning_rate=args.learning_rate, n_random=args.n_random, seed=args.seed)
    strategy = {
        "none": None,
        "mirrored": tf.distribute.MirroredStrategy,
        "multiworker": tf.distribute.MultiWorkerMirroredStrategy,
    }[args.distribute]
    data = load_data(args.data, seed=args.seed)
    print(f"data {data.name}: {len(data.y_train)} train / {len(data.y_val)} val / "
          f"{len(data.y_test)} test images, {data.num_classes} classes")
    train_supernet(data, args.space, args.workdir, config, strategy=strategy() if strategy else None)


def _devices(args):
    from devices.profile import list_profiles, load_profile

    if args.action == "list":
        for p in list_profiles():
            print(f"{p.name:22s} {p.runner:5s} {p.threads} thread(s) {p.delegate:8s} {p.precision:8s} {p.description}")
    else:
        if not args.name:
            raise FactoryError("`factory devices show` needs a profile name or file")
        print(json.dumps(load_profile(args.name).to_dict(), indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="factory", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a supernet with the sandwich rule")
    train.add_argument("--data", default="digits",
                       help="'digits' (offline default), 'cifar10' (downloads) or an image folder")
    train.add_argument("--space", default="default", help="'default', 'tiny' or a space JSON file")
    train.add_argument("--epochs", type=int, default=5)
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--learning-rate", type=float, default=0.05)
    train.add_argument("--n-random", type=int, default=2, help="random subnets per step")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--distribute", choices=["none", "mirrored", "multiworker"], default="none",
                       help="tf.distribute strategy: several GPUs (mirrored) or machines (multiworker)")
    train.add_argument("--workdir", required=True)
    train.set_defaults(run=_train)

    devices = sub.add_parser("devices", help="list or show device profiles")
    devices.add_argument("action", choices=["list", "show"])
    devices.add_argument("name", nargs="?", help="profile name or JSON file (for show)")
    devices.set_defaults(run=_devices)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except FactoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    return 0
