"""The ``factory`` command line: a thin layer over the Python API.

Every command checks its arguments before anything slow (TensorFlow's import included):
device profiles, spaces, data folders, budgets, subnet and table files, and that the
folders it will write can be written. A fault the user can fix is one line on stderr and
exit code 2; a bug exits 1 with its traceback kept in a log file (``--debug`` shows it).
TensorFlow's and the converter's native logging goes to that log, not the console.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import traceback
from pathlib import Path

from export.config import PRETRAINED_QAT_EPOCHS, ExportConfig
from factory.core.errors import FactoryError, fault_line
from factory.core.files import writable_dir
from factory.training.portable.images import DEFAULT_RESIZE, RESIZE_POLICIES, check_data, data_task
from factory.training.portable.recipe import SCHEDULES, TRANSFER_DEFAULTS, TrainConfig
from factory.nas.pretrained import DEFAULT_PRETRAINED, PRETRAINED, load_pretrained
from factory.nas.heads import TASKS, make_head
from factory.nas.space import SPACES, get_space
from factory.search.evolution import EvolutionConfig
from factory.search.gradient import PENALTIES, GradientConfig
from factory.search.reinforce import REWARDS, ReinforceConfig
from factory.search.strategies import MAKE_SEARCH, PRETRAINED_N_EVAL, STRATEGIES, SearchConfig
from factory.training.workdir import Workdir, load_subnet, transfer_source
from latency_tables.table import CALIBRATE_N, MIN_CALIBRATION, check_calibration_n, describe_correction


def _profiles(devices: list[str]):
    """The edge where device names and profile files become profiles: nothing below loads one."""
    from devices.profile import load_profile

    return [load_profile(d) for d in devices]


def _table_paths(args) -> list[str] | None:
    """--table per --device, each an existing file."""
    if not args.table:
        return None
    if len(args.table) != len(args.device):
        raise FactoryError("give one --table per --device, in the same order")
    for path in args.table:
        if not Path(path).is_file():
            raise FactoryError(f"latency table {path} does not exist: build it with `factory table build --table {path}`")
    return args.table


def _trained(args) -> Workdir:
    return Workdir(args.workdir, wait=getattr(args, "wait", False)).check_trained()


def _n_eval(args, pretrained: bool) -> int:
    """--n-eval, or the default of the run: fewer for a supernet started from ImageNet weights."""
    return args.n_eval if args.n_eval is not None else PRETRAINED_N_EVAL if pretrained else SEARCH.n_eval


def pretrained_choice(data: str, pretrained: str | None, space: str | None, init_from: str | None) -> str:
    """The pretrained weights a run starts from: those named, else ImageNet's for a folder of images (the built-in
    sets keep their small spaces) unless another space or a work directory to start from is named."""
    if pretrained is not None:
        return "" if pretrained == "none" else pretrained
    if data in ("digits", "digits-seg", "cifar10") or init_from:
        return ""
    preset = PRETRAINED[DEFAULT_PRETRAINED]
    return preset.name if space in (None, preset.space) else ""


def _space_and_recipe(args) -> tuple:
    """The space and training settings of train and make: with --init-from, the source's space unless --space
    says otherwise (then they must be equal) and the transfer schedule unless --epochs or --learning-rate say;
    with pretrained weights, their space and the pretrained schedule."""
    pretrained = pretrained_choice(args.data, args.pretrained, args.space, args.init_from)
    source = transfer_source(args.init_from) if args.init_from else None
    default = PRETRAINED[pretrained].space if pretrained else "default"
    space = source.space() if source and not args.space else get_space(args.space or default)
    given = {k: v for k, v in (("epochs", args.epochs), ("learning_rate", getattr(args, "learning_rate", None)),
                               ("batch_size", args.batch_size), ("n_random", getattr(args, "n_random", None)),
                               ("seed", args.seed), ("schedule", args.schedule)) if v is not None}
    if pretrained:
        load_pretrained(pretrained, space)  # weights that do not fit the space: one line now, not after an hour
        return space, TrainConfig.from_pretrained(pretrained, teacher=args.teacher, **given)
    if source is None:
        return space, TrainConfig(**given)
    transfer_source(source.path, space)
    return space, TrainConfig.transfer(str(source.path.resolve()), **given)


def _train(args):
    check_data(args.data)
    data_task(args.data, args.task)
    space, config = _space_and_recipe(args)
    workdir = Workdir(writable_dir(args.workdir, "--workdir"), wait=args.wait)

    from factory.core.backend import tf
    from factory.training.data import load_data
    from factory.training.train import train_supernet

    strategy = {
        "none": None,
        "mirrored": tf.distribute.MirroredStrategy,
        "multiworker": tf.distribute.MultiWorkerMirroredStrategy,
    }[args.distribute]
    data = load_data(args.data, seed=config.seed, image_size=space.resolutions[-1], resize=args.resize,
                     cache=workdir.cache_dir)
    print(f"data {data.name}: {len(data.y_train)} train / {len(data.y_val)} val / "
          f"{len(data.y_test)} test images, {data.num_classes} classes")
    train_supernet(data, space, workdir, config, strategy=strategy() if strategy else None)


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
    from latency_tables.table import LatencyTable, default_table_path, user_table_path

    space, [profile] = get_space(args.space), _profiles([args.device])
    head = make_head(args.task, args.classes)
    if args.action == "calibrate":
        check_calibration_n(args.n)
    if args.action == "build":
        path = Path(args.table) if args.table else user_table_path(space, profile, head)
        if path.is_dir():
            raise FactoryError(f"--table {path} is a folder: give the table file's path")
        writable_dir(path.parent, "the folder of --table")
        from latency_tables.builder import build_table

        doc = build_table(space, profile, path, head)
        print(f"wrote {path}: {len(doc['entries'])} layers measured on {profile.name}")
        return
    path = args.table or default_table_path(space, profile, head)
    if args.action == "show":
        _show_table(path, space, profile)
        return
    table = LatencyTable.load(path, space, profile, head)
    out = writable_dir(args.out or f"runs/{args.action}__{space.name}__{profile.name}", "--out")
    workdir = _trained(args) if args.workdir else None
    from latency_tables.validate import calibrate_table, validate_table

    supernet = workdir.supernet() if workdir else None
    if args.action == "validate":
        # calibrate and validate draw different subnets by default, so validation stays held out
        applied = " (with the table's correction)" if table.correction else ""
        for kind in dict.fromkeys(args.kind):
            report = validate_table(table, profile, args.n, Path(out) / kind, supernet=supernet,
                                    seed=0 if args.seed is None else args.seed, kind=kind)
            print(f"{kind}: {report['n']} subnets on {profile.name}{applied}: {_errors(report)}; report in "
                  f"{Path(out) / kind}")
        return
    report = calibrate_table(table, profile, args.n, out, supernet=supernet, seed=1 if args.seed is None else args.seed)
    c = report["correction_fitted_on_all"]
    print(f"{report['n']} subnets on {profile.name}: table alone {_errors(report['uncorrected'])}; corrected, "
          f"held out (5-fold): {_errors(report['corrected_cross_validated'])}\n"
          f"stored correction {describe_correction(c)} in {path}")


def _show_table(path, space, profile):
    """What a table was measured on, its correction, and which budgets its subnets can meet."""
    from devices.hardware import describe
    from latency_tables.table import LatencyTable, check_host_hardware, read_table

    doc = read_table(path, space, profile)
    table = LatencyTable(doc, space, str(path))
    c = table.correction
    rows = [("table", str(path)), ("space", f"{space.name} ({space.fingerprint})"),
            ("device", f"{profile.name} ({profile.precision})"), ("measured on", describe(table.hardware)),
            ("date", doc.get("date", "")), ("layers", str(len(doc["entries"]))),
            ("correction", f"{describe_correction(c)}, fitted on {c['n']} subnets"
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


def _errors(r: dict) -> str:
    return (f"MAPE {r['mape_percent']:.2f}%, within 5% {100 * r['within_5_percent']:.0f}%, within 10% "
            f"{100 * r['within_10_percent']:.0f}%, Kendall tau {r['kendall_tau']:.3f}"
            + (f", 95% of subnets at most {r['p95_slower_percent']:.1f}% slower than predicted"
               if "p95_slower_percent" in r else ""))


def _search(args):
    workdir = _trained(args)
    profiles, paths = _profiles(args.device), _table_paths(args)
    if args.data:
        check_data(args.data)
    config = SearchConfig(strategy=args.strategy, n_eval=_n_eval(args, workdir.pretrained is not None), recheck=args.recheck,
                          int8_recheck=args.int8_recheck, size_bytes=args.size_bytes,
                          memory_kb=args.memory_kb, trials=args.trials, time_limit_s=args.time_limit, seed=args.seed,
                          evolution=EvolutionConfig(population=args.population, generations=args.generations,
                                                    seed=args.seed),
                          reinforce=ReinforceConfig(steps=args.reinforce_steps, reward=args.reward, seed=args.seed),
                          gradient=GradientConfig(steps=args.gradient_steps, penalty=args.penalty, seed=args.seed))
    from factory.app.stages import search_workdir
    from latency_tables.resolve import load_tables

    search_workdir(workdir, load_tables(workdir.space(), profiles, workdir.head(), paths), args.budget_ms, data=args.data,
                   config=config)


def _proxies(args):
    workdir = _trained(args)
    from factory.app.stages import proxies_workdir

    doc = proxies_workdir(workdir, args.n, data=args.data, seed=args.seed)
    print(f"zero-cost proxies of {doc['subnets']} evaluated subnets, on the untrained supernet; Kendall tau against "
          "the trained supernet's validation accuracy:")
    for name, tau in doc["kendall_tau"].items():
        print(f"  {name:8s} {tau:+.3f}")
    print(f"proxies {doc['proxy_seconds_per_subnet']:.2f} s a subnet, an evaluation "
          f"{doc['evaluation_seconds_per_subnet']:.2f} s; wrote {workdir.path / 'proxies.json'}")


def _pareto(args):
    workdir = _trained(args)
    profiles, paths = _profiles(args.device), _table_paths(args)
    from factory.app.plots import pareto_plot
    from latency_tables.resolve import load_tables

    for table in load_tables(workdir.space(), profiles, workdir.head(), paths).values():
        print(f"wrote {pareto_plot(workdir, table)}")
        if args.diverse:
            from factory.app.stages import diverse_workdir

            doc = diverse_workdir(workdir, table, args.diverse, data=args.data,
                                  config=SearchConfig(n_eval=_n_eval(args, workdir.pretrained is not None),
                                                      size_bytes=args.size_bytes))
            print(f"{args.diverse} diverse subnets near the front on {table.device} ({doc['candidates']} candidates, "
                  f"mean pairwise architecture distance {doc['mean_pairwise_distance']:.2f}):")
            print("   #  predicted acc  predicted ms    params  below front")
            for i, r in enumerate(doc["subnets"], start=1):
                print(f"  {i:>2}  {100 * r['predicted_accuracy']:12.2f}%  {r['predicted_latency_ms']:12.3f}  "
                      f"{r['params']:>8,}  {r['below_front_points']:8.2f} pt")
            print(f"wrote {workdir.diverse_file(table.device)} and {workdir.diverse_file(table.device, '.png')}")


def _export_config(args, pretrained: bool):
    return ExportConfig.for_run(pretrained, qat_epochs=args.qat_epochs, min_qat_steps=args.min_qat_steps,
                        learning_rate=args.qat_learning_rate, distill=not args.no_distill,
                        max_drop_points=args.max_drop, min_agreement=args.min_agreement,
                        allow_float_ops=args.allow_float_ops, allow_over_budget=args.allow_over_budget, io=args.io,
                        formats=tuple(dict.fromkeys(["tflite", *args.format])), author=args.author,
                        license=args.license, seed=EXPORT.seed if args.seed is None else args.seed)


def _export(args):
    workdir = _trained(args)
    subnet, budget = load_subnet(args.subnet)
    space = workdir.space()
    subnet.validate(space)
    [profile] = _profiles([args.device])
    if args.table and not Path(args.table).is_file():
        raise FactoryError(f"latency table {args.table} does not exist: give a table file")
    if args.data:
        check_data(args.data)
    writable_dir(args.out, "--out")
    config = _export_config(args, workdir.pretrained is not None)
    budget = args.budget_ms if args.budget_ms is not None else budget
    from factory.app.stages import export_workdir
    from latency_tables.resolve import load_tables

    [table] = load_tables(space, [profile], workdir.head(), [args.table]).values()
    export_workdir(workdir, subnet, profile, table, args.out, budget_ms=budget, config=config, data=args.data)


def _make(args):
    workdir = Workdir(writable_dir(args.workdir, "--workdir"), wait=args.wait)
    space, train = None, TrainConfig()
    if not workdir.trained:  # a trained work directory knows its own data and space
        check_data(args.data)
        data_task(args.data, args.task)
        space, train = _space_and_recipe(args)
    pretrained = workdir.pretrained is not None if workdir.trained else bool(train.pretrained)
    profiles = _profiles(args.device)
    export = _export_config(args, pretrained)
    search = SearchConfig(strategy=args.strategy, n_eval=_n_eval(args, pretrained), memory_kb=args.memory_kb,
                          int8_recheck=args.int8_recheck, seed=TRAIN.seed if args.seed is None else args.seed)
    from factory.app.make import make

    make(args.data, profiles, args.budget_ms, workdir, space=space, train=train, search=search, export=export,
         calibrate_n=args.calibrate_n, resize=args.resize)


def _predict(args):
    from export.predict import is_segmenter, predict, segment

    if is_segmenter(args.bundle):
        for path, (mask, shares) in zip(args.images, segment(args.bundle, args.images)):
            print(f"{path}: mask {mask}; " + ", ".join(f"{label} {100 * p:.1f}%" for label, p in shares))
        return
    for path, top in zip(args.images, predict(args.bundle, args.images, args.top_k)):
        print(f"{path}: " + ", ".join(f"{label} {p:.3f}" for label, p in top))


def check_tflite(path: str) -> Path:
    """A file that holds a .tflite model (TFLite's FlatBuffer identifier TFL3 at bytes 4..8)."""
    model = Path(path)
    if not model.is_file():
        raise FactoryError(f"{model} is not a file: give the path of a .tflite model")
    with open(model, "rb") as f:
        head = f.read(8)
    if not head:
        raise FactoryError(f"{model} is empty: give the path of a .tflite model")
    if head[4:8] != b"TFL3":
        raise FactoryError(f"{model} is not a .tflite model (no TFL3 identifier): give a model `factory export` wrote")
    return model


def _bench(args):
    [profile] = _profiles([args.device])
    check_tflite(args.model)
    from devices.hardware import describe
    from devices.runners import get_runner
    from devices.timing import SPREAD_S

    with get_runner(profile) as runner:
        timing, hardware = runner.measure(args.model, SPREAD_S), runner.hardware()
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


def _number(kind, minimum, strict: bool):
    """An argparse type: a number at least (or, ``strict``, above) ``minimum``, else one line naming it."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"{text} must be {'above' if strict else 'at least'} {minimum:g}")
        return value

    return parse


POSITIVE, POSITIVE_INT, COUNT = _number(float, 0, True), _number(int, 1, False), _number(int, 0, False)
SPACE_HELP = f"search space: {', '.join(SPACES)} (presets) or a space JSON file"
TRAIN, EXPORT, SEARCH = TrainConfig(), ExportConfig(), SearchConfig()
WAIT_HELP = "if another command is writing the work directory, wait for it instead of stopping"


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, like every other error of the factory."""

    def error(self, message):
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def _export_options(parser):
    parser.add_argument("--qat-epochs", type=COUNT,
                        help=f"quantization-aware fine-tuning epochs (0: ship post-training int8; default "
                             f"{EXPORT.qat_epochs}, {PRETRAINED_QAT_EPOCHS} for a supernet started from ImageNet weights)")
    parser.add_argument("--min-qat-steps", type=COUNT, default=EXPORT.min_qat_steps,
                        help="run more epochs when the data gives fewer fine-tuning steps than this")
    parser.add_argument("--qat-learning-rate", type=POSITIVE, default=EXPORT.learning_rate)
    parser.add_argument("--no-distill", action="store_true", help="fine-tune on labels only")
    parser.add_argument("--max-drop", type=_number(float, 0, False), default=EXPORT.max_drop_points,
                        help="most accuracy points the shipped model may lose against its float twin")
    parser.add_argument("--min-agreement", type=_number(float, 0, False), default=EXPORT.min_agreement,
                        help="least share of test images on which the .tflite's top-1 agrees with its Keras model")
    parser.add_argument("--allow-float-ops", action="store_true", help="ship a model with float operators left")
    parser.add_argument("--allow-over-budget", action="store_true",
                        help="ship a model that measured over its latency budget, with a warning (by default it is "
                             "refused, and make searches again under a tighter budget)")
    parser.add_argument("--io", choices=["uint8", "int8"], default=EXPORT.io,
                        help="int8 models: uint8 pixels in and probabilities out (MediaPipe, Task Library), "
                             "or int8 in and int8 logits out")
    parser.add_argument("--format", nargs="+", choices=["tflite", "onnx"], default=list(EXPORT.formats),
                        help="onnx: also write model.onnx (the float weights) beside model.tflite")
    parser.add_argument("--author", default=EXPORT.author, help="the model's author, in its metadata and card")
    parser.add_argument("--license", default=EXPORT.license, help="the model's licence, in its metadata and card")


def _resize_option(parser):
    parser.add_argument("--resize", choices=sorted(RESIZE_POLICIES), default=DEFAULT_RESIZE,
                        help="how a folder's images that are not square become square before they are resized to "
                             "the space's largest resolution: crop (centre), stretch or pad (black bars); recorded "
                             "in the work directory and the model card")


def _task_option(parser):
    parser.add_argument("--task", choices=sorted(TASKS), help="what the model does; the data decide it (masks: "
                                                              "segmentation), this checks they hold it")


def _space_option(parser):
    parser.add_argument("--space", help=SPACE_HELP + " (default: default, or the --init-from supernet's)")


def _recipe_options(parser):
    """Supernet training options of train and make; left unset, TrainConfig's (or the transfer schedule's)."""
    parser.add_argument("--pretrained", choices=[*PRETRAINED, "none"],
                        help=f"start from these ImageNet weights in their space ({DEFAULT_PRETRAINED}: the lite0 "
                             "space, whose largest subnet is EfficientNet-Lite0 at 224 px); the default for a folder "
                             "of images unless --space names another space or --init-from is given; none: random "
                             "weights")
    parser.add_argument("--teacher", action="store_true",
                        help="with pretrained weights: distil every subnet from the frozen pretrained network with its "
                             "classifier (OFA's teacher) instead of from the largest subnet in place")
    parser.add_argument("--schedule", choices=SCHEDULES,
                        help="which subnets each step trains: sandwich (default: the largest, the smallest and random "
                             "ones of the whole space) or progressive (OFA's progressive shrinking: kernel sizes "
                             "elastic from the start, depths from a third of the steps, expand ratios from two thirds)")
    parser.add_argument("--init-from", metavar="WORKDIR",
                        help="start from the supernet trained in WORKDIR (same space, other data): every weight but "
                             "the classifier, which is new for this data's classes; a shorter schedule at a lower "
                             "learning rate by default")
    parser.add_argument("--epochs", type=POSITIVE_INT,
                        help=f"supernet training epochs (default {TRAIN.epochs}, "
                             f"{TRANSFER_DEFAULTS['epochs']} with --init-from)")
    parser.add_argument("--batch-size", type=POSITIVE_INT, help=f"default {TRAIN.batch_size}")
    parser.add_argument("--seed", type=COUNT, help=f"default {TRAIN.seed}")


def _int8_recheck_option(parser, default: int):
    parser.add_argument("--int8-recheck", type=_number(int, 0, False), default=default, metavar="N",
                        help="score the best N re-checked candidates as post-training int8 .tflite models on the "
                             f"validation split and choose on that (what ships is int8; default {default}, 0: off)")


def _search_options(parser):
    parser.add_argument("--strategy", choices=STRATEGIES, default=SEARCH.strategy)
    parser.add_argument("--n-eval", type=_number(int, 10, False),
                        help=f"subnets evaluated to fit the predictor (default {SEARCH.n_eval}, {PRETRAINED_N_EVAL} for "
                             "a supernet started from ImageNet weights)")
    parser.add_argument("--memory-kb", type=POSITIVE,
                        help="peak-memory budget in KiB: weights plus the activation arena, predicted per subnet")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", help="show TensorFlow's and the converter's own logging")
    common.add_argument("--debug", action="store_true", help="show tracebacks (and everything --verbose shows)")
    parser = Parser(prog="factory", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def command(name, help):
        return sub.add_parser(name, help=help, parents=[common])

    train = command("train", "train a supernet with the sandwich rule")
    train.add_argument("--data", default="digits",
                       help="'digits' (offline default), 'digits-seg' (segmentation), 'cifar10' (downloads) or an "
                            "image folder: class folders, or images/ and masks/")
    _task_option(train)
    _space_option(train)
    _resize_option(train)
    _recipe_options(train)
    train.add_argument("--learning-rate", type=POSITIVE,
                       help=f"peak learning rate (default {TRAIN.learning_rate:g}, "
                            f"{TRANSFER_DEFAULTS['learning_rate']:g} with --init-from)")
    train.add_argument("--n-random", type=COUNT, help=f"random subnets per step (default {TRAIN.n_random})")
    train.add_argument("--distribute", choices=["none", "mirrored", "multiworker"], default="none",
                       help="tf.distribute strategy: several GPUs (mirrored) or machines (multiworker)")
    train.add_argument("--workdir", required=True)
    train.add_argument("--wait", action="store_true", help=WAIT_HELP)
    train.set_defaults(run=_train)

    table = command("table", "build, show, validate or calibrate a latency table")
    table.add_argument("action", choices=["build", "show", "validate", "calibrate"],
                       help="show: what the table was measured on and the latency range per resolution; "
                            "calibrate: measure --n whole subnets and store a linear correction in the table")
    table.add_argument("--device", required=True, help="profile name or JSON file")
    table.add_argument("--space", default="default", help=SPACE_HELP)
    table.add_argument("--table", help="table path (default: your own build in ~/.cache/mobile-model-factory/"
                                       "tables/, else the shipped one; build writes to the cache)")
    table.add_argument("--classes", type=_number(int, 2, False), default=10, help="classes of the head entries")
    table.add_argument("--task", choices=sorted(TASKS), default="classification",
                       help="the head whose entries the table holds (its own table file)")
    table.add_argument("--n", type=_number(int, 2, False), default=100,
                       help="subnets to measure whole (validate: of each --kind)")
    table.add_argument("--kind", nargs="+", choices=["random", "search-like"], default=["random", "search-like"],
                       help="validate on uniform random subnets, on subnets like those searches pick (the slowest "
                            "of each resolution, the largest under budgets across the table's span), or both")
    table.add_argument("--workdir", help="validate with subnets of this work directory's trained supernet")
    table.add_argument("--out", help="validation report folder")
    table.add_argument("--seed", type=COUNT, help="subnet sampling seed (default: 0 to validate, 1 to calibrate)")
    table.set_defaults(run=_table)

    search = command("search", "find the most accurate subnet under latency budgets")
    search.add_argument("--workdir", required=True)
    search.add_argument("--wait", action="store_true", help=WAIT_HELP)
    search.add_argument("--device", nargs="+", required=True)
    search.add_argument("--budget-ms", nargs="+", type=POSITIVE, required=True)
    _search_options(search)
    search.add_argument("--recheck", type=POSITIVE_INT, default=SEARCH.recheck,
                        help="top candidates re-checked with the supernet")
    _int8_recheck_option(search, SEARCH.int8_recheck)
    search.add_argument("--size-bytes", type=POSITIVE_INT, help="model-size budget (int8: one byte a parameter)")
    search.add_argument("--population", type=_number(int, 4, False), default=SEARCH.evolution.population)
    search.add_argument("--generations", type=POSITIVE_INT, default=SEARCH.evolution.generations)
    search.add_argument("--trials", type=POSITIVE_INT, default=SEARCH.trials, help="keras-tuner trials (random, bayesian)")
    search.add_argument("--reinforce-steps", type=POSITIVE_INT, default=SEARCH.reinforce.steps,
                        help=f"reinforce: policy updates of {SEARCH.reinforce.batch} sampled subnets each")
    search.add_argument("--reward", choices=REWARDS, default=SEARCH.reinforce.reward,
                        help="reinforce: MnasNet's soft latency penalty (w = -0.07) or 0 over the budget (hard)")
    search.add_argument("--gradient-steps", type=POSITIVE_INT, default=SEARCH.gradient.steps,
                        help="gradient: architecture updates per resolution (the supernet's weights stay frozen)")
    search.add_argument("--penalty", choices=PENALTIES, default=SEARCH.gradient.penalty,
                        help="gradient: expected latency above the budget (budget) or FBNet's CE * alpha * log(lat)^beta")
    search.add_argument("--time-limit", type=POSITIVE, metavar="SECONDS",
                        help="search for this long instead of --generations, --reinforce-steps, --trials or "
                             "--gradient-steps (the re-check comes after)")
    search.add_argument("--table", nargs="+", help="latency table per device (default: the shipped ones)")
    search.add_argument("--data", help="the training data, if the work directory does not record it")
    search.add_argument("--seed", type=COUNT, default=SEARCH.seed)
    search.set_defaults(run=_search)

    proxies = command("proxies", "rank zero-cost proxies (SNIP, synflow, NASWOT) against the supernet's evaluations")
    proxies.add_argument("--workdir", required=True)
    proxies.add_argument("--wait", action="store_true", help=WAIT_HELP)
    proxies.add_argument("--n", type=_number(int, 10, False), default=100, help="evaluated subnets to score")
    proxies.add_argument("--data", help="the training data, if the work directory does not record it")
    proxies.add_argument("--seed", type=COUNT, default=0)
    proxies.set_defaults(run=_proxies)

    pareto = command("pareto", "plot accuracy against predicted latency, per device, to PNG")
    pareto.add_argument("--workdir", required=True)
    pareto.add_argument("--wait", action="store_true", help=WAIT_HELP)
    pareto.add_argument("--device", nargs="+", required=True)
    pareto.add_argument("--table", nargs="+")
    pareto.add_argument("--diverse", type=_number(int, 2, False), metavar="K",
                        help="also pick K subnets near the front that differ in architecture (DPP-Net), "
                             "with their predicted accuracy, latency and size")
    pareto.add_argument("--n-eval", type=_number(int, 10, False),
                        help="--diverse: subnets evaluated to fit the predictor, if it is not there yet")
    pareto.add_argument("--size-bytes", type=POSITIVE_INT, help="--diverse: model-size budget")
    pareto.add_argument("--data", help="the training data, if the work directory does not record it")
    pareto.set_defaults(run=_pareto)

    make = command("make", "the whole factory: tables, train, search, export a bundle per budget")
    make.add_argument("--data", default="digits",
                      help="'digits' (offline default), 'digits-seg' (segmentation), 'cifar10' or an image folder: "
                           "class folders, or images/ and masks/")
    _task_option(make)
    make.add_argument("--device", nargs="+", required=True)
    make.add_argument("--budget-ms", nargs="+", type=POSITIVE, required=True)
    make.add_argument("--workdir", required=True)
    make.add_argument("--wait", action="store_true", help=WAIT_HELP)
    _space_option(make)
    _resize_option(make)
    _recipe_options(make)
    _search_options(make)
    _int8_recheck_option(make, MAKE_SEARCH.int8_recheck)
    make.add_argument("--calibrate-n", type=COUNT, default=CALIBRATE_N,
                      help=f"whole subnets measured to calibrate a table make builds (under {MIN_CALIBRATION}: none)")
    _export_options(make)
    make.set_defaults(run=_make)

    export = command("export", "QAT, int8 conversion, parity and latency checks, bundle")
    export.add_argument("--workdir", required=True)
    export.add_argument("--wait", action="store_true", help=WAIT_HELP)
    export.add_argument("--subnet", required=True, help="a `factory search` result or a SubnetConfig JSON")
    export.add_argument("--device", required=True)
    export.add_argument("--budget-ms", type=POSITIVE, help="default: the search result's budget")
    export.add_argument("--out", required=True, help="bundle folder")
    export.add_argument("--table", help="latency table (default: the shipped one)")
    export.add_argument("--data", help="the training data, if the work directory does not record it")
    export.add_argument("--seed", type=COUNT, default=EXPORT.seed)
    _export_options(export)
    export.set_defaults(run=_export)

    bench = command("bench", "time a .tflite on a device profile")
    bench.add_argument("model")
    bench.add_argument("--device", required=True)
    bench.set_defaults(run=_bench)

    predict = command("predict", "classify image files with a bundle (top-k labels with probabilities), or "
                                 "segment them (a coloured mask PNG beside each, each class's share of pixels)")
    predict.add_argument("bundle", help="a bundle folder (or its model.tflite)")
    predict.add_argument("images", nargs="+", help="image files of any size (JPEG, PNG, BMP, GIF, WebP)")
    predict.add_argument("--top-k", type=POSITIVE_INT, default=3)
    predict.set_defaults(run=_predict)

    devices = command("devices", "list or show device profiles")
    devices.add_argument("action", choices=["list", "show"])
    devices.add_argument("name", nargs="?", help="profile name or JSON file (for show)")
    devices.set_defaults(run=_devices)
    return parser


def main(argv=None) -> int:
    from factory.app.console import Console

    args = build_parser().parse_args(argv)
    workdir = getattr(args, "workdir", None)
    with Console(verbose=args.verbose or args.debug) as console:
        try:
            args.run(args)
        except KeyboardInterrupt:
            console.finish(workdir)
            print("interrupted: rerun the same command to resume", file=sys.stderr)
            return 130
        except Exception as exc:  # one line for what the user can fix; a bug keeps its traceback
            line = fault_line(exc)
            if args.debug:
                traceback.print_exc()
            if line is not None:  # the line says it all: nothing is added to the work directory
                console.finish(None)
                print(f"error: {line}", file=sys.stderr)
                return 2
            where = console.finish(workdir, trace=exc)
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            print(f"error: unexpected {type(exc).__name__}: {first} (a bug in the factory; its traceback is in "
                  f"{where}, --debug shows it)", file=sys.stderr)
            return 1
        console.finish(workdir)
    return 0
