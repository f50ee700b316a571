"""The ``factory`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import json
import sys

from factory.errors import FactoryError
from factory.space import SPACES


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


def _table(args):
    from devices.profile import load_profile
    from factory.space import get_space
    from latency_tables.builder import build_table
    from latency_tables.table import LatencyTable, default_table_path

    space, profile = get_space(args.space), load_profile(args.device)
    path = args.table or default_table_path(space, profile)
    if args.action == "build":
        doc = build_table(space, profile, path, num_classes=args.classes)
        print(f"wrote {path}: {len(doc['entries'])} layers measured on {profile.name}")
        return
    if args.action == "show":
        _show_table(path, space, profile)
        return
    from latency_tables.validate import calibrate_table, validate_table

    supernet = None
    if args.workdir:
        from factory.train import load_supernet

        supernet = load_supernet(args.workdir)
    table = LatencyTable.load(path, space, profile)
    out = args.out or f"runs/{args.action}__{space.name}__{profile.name}"
    if args.action == "validate":
        # calibrate and validate draw different subnets by default, so validation stays held out
        report = validate_table(table, profile, args.n, out, supernet=supernet,
                                seed=0 if args.seed is None else args.seed)
        applied = " (with the table's correction)" if table.correction else ""
        print(f"{report['n']} subnets on {profile.name}{applied}: {_errors(report)}; report in {out}")
        return
    report = calibrate_table(table, profile, args.n, out, supernet=supernet, seed=1 if args.seed is None else args.seed)
    c = report["correction_fitted_on_all"]
    print(f"{report['n']} subnets on {profile.name}: table alone {_errors(report['uncorrected'])}; corrected, "
          f"held out (5-fold): {_errors(report['corrected_cross_validated'])}\n"
          f"stored correction {c['slope']:.4f} x sum {c['intercept']:+.4f} ms in {path}")


def _show_table(path, space, profile):
    """What a table was measured on, its correction, and which budgets its subnets can meet."""
    from devices.hardware import describe
    from factory.files import read_json
    from latency_tables.table import LatencyTable, check_compatible, check_complete, check_host_hardware

    doc = read_json(path)
    check_compatible(doc, space, profile, str(path))
    check_complete(doc, space, str(path))
    table = LatencyTable(doc, space, str(path))
    c = table.correction
    rows = [("table", str(path)), ("space", f"{space.name} ({space.fingerprint})"),
            ("device", f"{profile.name} ({profile.precision})"), ("measured on", describe(table.hardware)),
            ("date", doc.get("date", "")), ("layers", str(len(doc["entries"]))),
            ("correction", f"{c['slope']:.4f} x sum {c['intercept']:+.4f} ms, fitted on {c['n']} subnets"
                           if c else f"none (`factory table calibrate --device {profile.name} --space {space.name}`)")]
    if profile.runner == "host":  # shown even when refused, with why a search would refuse it
        try:
            check_host_hardware(doc, space, profile, str(path))
            rows.append(("usable here", "yes"))
        except FactoryError as exc:
            rows.append(("usable here", f"no: {exc}"))
    for name, value in rows:
        print(f"{name:12s} {value}")
    print("\n| resolution | fastest subnet (ms) | slowest subnet (ms) |\n|---|---|---|")
    for resolution, (lo, hi) in table.span_by_resolution().items():
        print(f"| {resolution} | {lo:.3f} | {hi:.3f} |")


SPACE_HELP = f"search space: {', '.join(SPACES)} (presets) or a space JSON file"


def _errors(r: dict) -> str:
    return (f"MAPE {r['mape_percent']:.2f}%, within 5% {100 * r['within_5_percent']:.0f}%, within 10% "
            f"{100 * r['within_10_percent']:.0f}%, Kendall tau {r['kendall_tau']:.3f}")


def _search(args):
    from factory.evolution import EvolutionConfig
    from factory.workflow import search_workdir

    tables = dict(zip(args.device, args.table)) if args.table else None
    if args.table and len(args.table) != len(args.device):
        raise FactoryError("give one --table per --device, in the same order")
    search_workdir(args.workdir, args.device, args.budget_ms, data=args.data, strategy=args.strategy,
                   n_eval=args.n_eval, recheck=args.recheck, size_bytes=args.size_bytes,
                   evolution=EvolutionConfig(population=args.population, generations=args.generations,
                                             seed=args.seed),
                   trials=args.trials, seed=args.seed, tables=tables)


def _pareto(args):
    from factory.workflow import pareto_plot

    for i, device in enumerate(args.device):
        table = args.table[i] if args.table else None
        print(f"wrote {pareto_plot(args.workdir, device, table=table)}")


def _export_config(args):
    from export.pipeline import ExportConfig

    return ExportConfig(qat_epochs=args.qat_epochs, min_qat_steps=args.min_qat_steps,
                        learning_rate=args.qat_learning_rate, distill=not args.no_distill,
                        max_drop_points=args.max_drop, allow_float_ops=args.allow_float_ops, io=args.io,
                        formats=tuple(dict.fromkeys(["tflite", *args.format])), author=args.author,
                        license=args.license, seed=args.seed)


def _export(args):
    from export.pipeline import export_subnet, load_subnet

    subnet, budget = load_subnet(args.subnet)
    budget = args.budget_ms if args.budget_ms is not None else budget
    export_subnet(args.workdir, subnet, args.device, args.out, budget_ms=budget, config=_export_config(args),
                  data=args.data, table=args.table)


def _make(args):
    from factory.make import make
    from factory.train import TrainConfig

    make(args.data, args.device, args.budget_ms, args.workdir, space=args.space,
         train=TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed),
         n_eval=args.n_eval, strategy=args.strategy, export=_export_config(args), calibrate_n=args.calibrate_n)


def _predict(args):
    from export.predict import predict

    for path, top in zip(args.images, predict(args.bundle, args.images, args.top_k)):
        print(f"{path}: " + ", ".join(f"{label} {p:.3f}" for label, p in top))


def _bench(args):
    from pathlib import Path

    from devices.hardware import describe
    from devices.profile import load_profile
    from devices.runners import get_runner

    profile = load_profile(args.device)
    if not Path(args.model).is_file():
        raise FactoryError(f"{args.model} is not a file: give the path of a .tflite model")
    with get_runner(profile) as runner:
        timing, hardware = runner.measure(args.model), runner.hardware()
    rows = [("model", args.model), ("device", f"{profile.name} ({profile.runner}, {profile.threads} thread(s), "
                                              f"{profile.delegate})"), ("hardware", describe(hardware)),
            ("runs", f"{timing.runs} (after {profile.warmup_runs} warm-up; the fastest of {timing.repeats} "
                     f"measurement{'s' if timing.repeats > 1 else ''})")]
    for key in ("median_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "p10_ms", "p90_ms", "init_ms"):
        value = getattr(timing, key)
        if value is not None:
            rows.append((key.replace("_ms", " (ms)"), f"{value:.3f}"))
    rows.append(("cv", f"{timing.cv:.3f}"))
    if timing.peak_memory_mb is not None:
        rows.append(("peak memory (MB)", f"{timing.peak_memory_mb:.2f}"))
    if timing.delegated_nodes is not None:
        rows.append(("delegated nodes", "{} of {}".format(*timing.delegated_nodes)))
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


def _export_options(parser):
    from export.pipeline import ExportConfig

    parser.add_argument("--qat-epochs", type=int, default=2, help="quantization-aware fine-tuning epochs (0: none)")
    parser.add_argument("--min-qat-steps", type=int, default=300,
                        help="run more epochs when the data gives fewer fine-tuning steps than this")
    parser.add_argument("--qat-learning-rate", type=float, default=0.005)
    parser.add_argument("--no-distill", action="store_true", help="fine-tune on labels only")
    parser.add_argument("--max-drop", type=float, default=1.0,
                        help="most accuracy points the int8 model may lose against float")
    parser.add_argument("--allow-float-ops", action="store_true", help="ship a model with float operators left")
    parser.add_argument("--io", choices=["uint8", "int8"], default=ExportConfig.io,
                        help="int8 models: uint8 pixels in and probabilities out (MediaPipe, Task Library), "
                             "or int8 in and int8 logits out")
    parser.add_argument("--format", nargs="+", choices=["tflite", "onnx"], default=["tflite"],
                        help="onnx: also write model.onnx (the float weights) beside model.tflite")
    parser.add_argument("--author", default=ExportConfig.author, help="the model's author, in its metadata and card")
    parser.add_argument("--license", default=ExportConfig.license,
                        help="the model's licence, in its metadata and card")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="factory", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a supernet with the sandwich rule")
    train.add_argument("--data", default="digits",
                       help="'digits' (offline default), 'cifar10' (downloads) or an image folder")
    train.add_argument("--space", default="default", help=SPACE_HELP)
    train.add_argument("--epochs", type=int, default=5)
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--learning-rate", type=float, default=0.05)
    train.add_argument("--n-random", type=int, default=2, help="random subnets per step")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--distribute", choices=["none", "mirrored", "multiworker"], default="none",
                       help="tf.distribute strategy: several GPUs (mirrored) or machines (multiworker)")
    train.add_argument("--workdir", required=True)
    train.set_defaults(run=_train)

    table = sub.add_parser("table", help="build, show, validate or calibrate a latency table")
    table.add_argument("action", choices=["build", "show", "validate", "calibrate"],
                       help="show: what the table was measured on and the latency range per resolution; "
                            "calibrate: measure --n whole subnets and store a linear correction in the table")
    table.add_argument("--device", required=True, help="profile name or JSON file")
    table.add_argument("--space", default="default", help=SPACE_HELP)
    table.add_argument("--table", help="table path (default: latency_tables/tables/SPACE__DEVICE.json)")
    table.add_argument("--classes", type=int, default=10, help="classifier size of the head entries")
    table.add_argument("--n", type=int, default=100, help="random subnets to measure whole")
    table.add_argument("--workdir", help="validate with subnets of this work directory's trained supernet")
    table.add_argument("--out", help="validation report folder")
    table.add_argument("--seed", type=int, help="subnet sampling seed (default: 0 to validate, 1 to calibrate)")
    table.set_defaults(run=_table)

    search = sub.add_parser("search", help="find the most accurate subnet under latency budgets")
    search.add_argument("--workdir", required=True)
    search.add_argument("--device", nargs="+", required=True)
    search.add_argument("--budget-ms", nargs="+", type=float, required=True)
    search.add_argument("--strategy", choices=["evolution", "random", "bayesian"], default="evolution")
    search.add_argument("--n-eval", type=int, default=300, help="subnets evaluated to fit the predictor")
    search.add_argument("--recheck", type=int, default=5, help="top candidates re-checked with the supernet")
    search.add_argument("--size-bytes", type=int, help="model-size budget (int8: one byte a parameter)")
    search.add_argument("--population", type=int, default=100)
    search.add_argument("--generations", type=int, default=50)
    search.add_argument("--trials", type=int, default=500, help="keras-tuner trials (random, bayesian)")
    search.add_argument("--table", nargs="+", help="latency table per device (default: the shipped ones)")
    search.add_argument("--data", help="the training data, if the work directory does not record it")
    search.add_argument("--seed", type=int, default=0)
    search.set_defaults(run=_search)

    pareto = sub.add_parser("pareto", help="plot accuracy against predicted latency, per device, to PNG")
    pareto.add_argument("--workdir", required=True)
    pareto.add_argument("--device", nargs="+", required=True)
    pareto.add_argument("--table", nargs="+")
    pareto.set_defaults(run=_pareto)

    make = sub.add_parser("make", help="the whole factory: train, tables, search, export a bundle per budget")
    make.add_argument("--data", default="digits", help="'digits' (offline default), 'cifar10' or an image folder")
    make.add_argument("--device", nargs="+", required=True)
    make.add_argument("--budget-ms", nargs="+", type=float, required=True)
    make.add_argument("--workdir", required=True)
    make.add_argument("--space", default="default", help=SPACE_HELP)
    make.add_argument("--epochs", type=int, default=5, help="supernet training epochs")
    make.add_argument("--batch-size", type=int, default=128)
    make.add_argument("--n-eval", type=int, default=300, help="subnets evaluated to fit the predictor")
    make.add_argument("--strategy", choices=["evolution", "random", "bayesian"], default="evolution")
    make.add_argument("--calibrate-n", type=int, default=20,
                      help="whole subnets measured to calibrate a table make builds (under 5: none)")
    make.add_argument("--seed", type=int, default=0)
    _export_options(make)
    make.set_defaults(run=_make)

    export = sub.add_parser("export", help="QAT, int8 conversion, parity and latency checks, bundle")
    export.add_argument("--workdir", required=True)
    export.add_argument("--subnet", required=True, help="a `factory search` result or a SubnetConfig JSON")
    export.add_argument("--device", required=True)
    export.add_argument("--budget-ms", type=float, help="default: the search result's budget")
    export.add_argument("--out", required=True, help="bundle folder")
    export.add_argument("--table", help="latency table (default: the shipped one)")
    export.add_argument("--data", help="the training data, if the work directory does not record it")
    export.add_argument("--seed", type=int, default=0)
    _export_options(export)
    export.set_defaults(run=_export)

    bench = sub.add_parser("bench", help="time a .tflite on a device profile")
    bench.add_argument("model")
    bench.add_argument("--device", required=True)
    bench.set_defaults(run=_bench)

    predict = sub.add_parser("predict", help="classify image files with a bundle: top-k labels with probabilities")
    predict.add_argument("bundle", help="a bundle folder (or its model.tflite)")
    predict.add_argument("images", nargs="+", help="image files of any size (JPEG, PNG, BMP, GIF, WebP)")
    predict.add_argument("--top-k", type=int, default=3)
    predict.set_defaults(run=_predict)

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
