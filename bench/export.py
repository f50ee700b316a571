"""Export benchmark: the factory's int8 models against hand-designed MobileNets at equal latency.

    python bench/export.py --workdir runs/bench-supernet --device host-cpu-1t

On a supernet trained on CIFAR-10 (``bench/supernet.py`` leaves one in its work
directory), at three latency budgets (25%, 50% and 75% of the way from the fastest to
the largest subnet's predicted latency, as ``bench/search.py``, or ``--budgets-ms``): the factory's subnet
for each budget exported through ``export_subnet`` (float, post-training int8 and QAT
int8 test accuracy, .tflite size, predicted and measured latency). Next to each,
keras.applications MobileNetV3Small and MobileNetV2 at the width multiplier (alpha) and
input resolution whose int8 model measures closest under the budget on the same profile
(at CIFAR-10's own 32x32 both networks shrink the image to 1x1 and even alpha 1.4 stays far
under every budget, so the images are upscaled as is usual for them), trained from
scratch on the same data for as many epochs as the supernet (same optimizer, schedule,
label smoothing, augmentation), converted to int8 by the same converter and timed by the
same runner. A baseline matched under a budget runs faster than the budget, so the
factory is also searched and exported at each baseline's own latency (timed just before
the search; less the table's cross-validated error, so that a typical prediction error
does not put it over), the like-for-like latency of the goal. At the end every model is timed
again side by side in rounds, and the median of the rounds is reported.
keras.applications' MobileNetV3 writes hard-sigmoid with TF op layers that tfmot cannot
wrap, so the baselines are post-training quantized. The factory's QAT fine-tune trains its
model more epochs, so each baseline is also trained as many epochs more with the same
fine-tune settings (no teacher) and post-training quantized: the shipped models are judged
at equal training, and the factory's post-training int8 against the baseline's is reported
too. The factory wins a pair when its QAT int8 beats the baseline both as trained and at equal
training, at equal or lower measured latency; the goal is met when every baseline loses at
least one pair. Results are cached per row in the output JSON, so an interrupted run resumes.

The baselines train here (MobileNetV2 at 128x128 takes 10-14 minutes an epoch on 2 cores)
or on a GPU machine: ``--plan-baselines`` writes what to train, ``bench/baselines.py``
trains it there under Keras 3, ``--baseline-weights`` brings the weights back (each row
says where its model was trained). Their rows come before the factory's, so they can be
done while the supernet still trains (give ``--baseline-epochs``). ``--archs`` limits a run to one
family of baselines, ``--match-as RESULTS`` matches the baselines as an earlier run did (a
follow-up run on another day then compares against the same ones), and ``--show RESULTS`` prints a
results file's table and verdicts again.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.baselines import baseline, checksum, fine_tuned_stem, load, probe, stem  # noqa: E402
from bench.search import three_budgets  # noqa: E402
from devices.profile import load_profile  # noqa: E402
from devices.runners import get_runner  # noqa: E402
from export.bundle import count_macs, is_complete  # noqa: E402
from export.finetune import qat_epochs  # noqa: E402
from export.parity import keras_accuracy, tflite_accuracy  # noqa: E402
from export.pipeline import ExportConfig, export_subnet  # noqa: E402
from factory.backend import keras, tf  # noqa: E402
from factory.convert import convert  # noqa: E402
from factory.data import normalize  # noqa: E402
from factory.errors import FactoryError  # noqa: E402
from factory.files import atomic_file, read_json, write_json  # noqa: E402
from factory.space import SubnetConfig, load_space  # noqa: E402
from factory.train import TrainConfig, train_model  # noqa: E402
from factory.workflow import load_tables, search_workdir, workdir_data  # noqa: E402

ARCHS = ("MobileNetV3Small", "MobileNetV2")
ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.4)
RESOLUTIONS = (32, 64, 96, 128)


def matching_config(arch, budget_ms, num_classes, representative, runner, cache) -> tuple[int, float]:
    """The (resolution, alpha) whose (random-weight) int8 model measures closest under the budget."""
    for size in RESOLUTIONS:
        images = resize(representative, size)
        for alpha in ALPHAS:
            key = f"{arch}@{size}@{alpha:g}"
            if key not in cache:
                cache[key] = runner.measure(convert(baseline(keras, arch, alpha, size, num_classes), "int8", images)).median_ms
    fits = [(ms, key) for key, ms in cache.items() if key.startswith(f"{arch}@") and ms <= budget_ms]
    _, key = max(fits) if fits else min((ms, key) for key, ms in cache.items() if key.startswith(f"{arch}@"))
    _, size, alpha = key.split("@")
    return int(size), float(alpha)


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of float or uint8 images (uint8 rounded back)."""
    if images.shape[1] == size:
        return images
    out = tf.image.resize(images.astype(np.float32), (size, size)).numpy()
    return np.clip(np.round(out), 0, 255).astype(np.uint8) if images.dtype == np.uint8 else out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="runs/bench-supernet")
    parser.add_argument("--device", default="host-cpu-1t")
    parser.add_argument("--table", help="latency table (default: the shipped one; it must be of this CPU)")
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--baseline-epochs", type=int, help="default: the supernet's epochs")
    parser.add_argument("--n-eval", type=int, default=300)
    parser.add_argument("--budgets-ms", type=float, nargs="+",
                        help="default: 25%%, 50%% and 75%% of the way from the fastest to the largest subnet "
                             "(give the same budgets to compare two spaces)")
    parser.add_argument("--rounds", type=int, default=5, help="side-by-side timing rounds at the end")
    parser.add_argument("--no-train", action="store_true",
                        help="leave baselines not trained yet out (report and time what is done)")
    parser.add_argument("--plan-baselines", metavar="PLAN",
                        help="write the baselines to train (with the recipe and a checksum of the data) to PLAN "
                             "for bench/baselines.py, after choosing them, and stop")
    parser.add_argument("--baseline-weights", metavar="DIR",
                        help="take baselines not trained yet from bench/baselines.py's weights in DIR")
    parser.add_argument("--archs", nargs="+", choices=ARCHS, default=list(ARCHS),
                        help="the baselines to compare against (default: both)")
    parser.add_argument("--match-as", metavar="RESULTS",
                        help="take the baselines' matching timings from another results file, so that a follow-up "
                             "run compares against the same baselines on another day")
    parser.add_argument("--out", default="bench/results/export.json")
    parser.add_argument("--show", metavar="RESULTS", help="print the table of a results file (an --out) and stop")
    return parser.parse_args()


def main():
    args = parse_args()
    if args.show:
        print_table(results_file(args.show))
        return
    run = Run.start(args)
    with get_runner(run.device) as runner:
        configs = match_baselines(run, runner)
        tune = fine_tune_recipe(args.qat_epochs, len(run.data.y_train))
        if args.plan_baselines:
            write_plan(Path(args.plan_baselines), configs, run.raw, run.data, run.epochs, tune)
            return
        add_baselines(run, configs)
        if tune:
            add_fine_tuned_baselines(run, tune)
        if not (run.workdir / "training.json").exists():
            print(f"{run.workdir} holds no trained supernet yet: the baselines' rows are saved; rerun once "
                  f"`factory train --workdir {run.workdir}` has finished")
            return
        add_factory(run, runner)
        time_side_by_side(run, runner)
    run.save()
    print_table(run.doc)
    print(f"wrote {run.out}")


@dataclasses.dataclass
class Run:
    """What the stages of one benchmark run share; its results doc is saved after every row, so an
    interrupted run resumes where it stopped."""

    args: argparse.Namespace
    doc: dict
    workdir: Path
    device: str
    table: object
    budgets: list
    epochs: int
    raw: object
    data: object
    representative: np.ndarray

    @property
    def out(self) -> Path:
        return Path(self.args.out)

    @property
    def models(self) -> Path:
        """One folder of models per results file: runs differ in data and epochs."""
        return Path("runs/bench-export") / self.out.stem

    @property
    def weights(self) -> Path | None:
        return Path(self.args.baseline_weights) if self.args.baseline_weights else None

    @classmethod
    def start(cls, args) -> Run:
        """The run's results doc (resumed from ``--out``), budgets, baseline epochs and data, checked first."""
        workdir, out = Path(args.workdir), Path(args.out)
        doc = read_json(out) if out.exists() else {"rows": {}}
        matched = results_file(args.match_as).get("latency_by_config", {}) if args.match_as else {}
        doc["latency_by_config"] = {**matched, **doc.get("latency_by_config", {})}
        space = load_space(workdir / "space.json")
        device = load_profile(args.device).name
        table = load_tables(space, [device], table_files(device, args.table))[device]
        if not args.baseline_epochs and not (workdir / "training.json").exists():
            raise SystemExit(f"{workdir} holds no trained supernet yet: give --baseline-epochs (the epochs it will have)")
        epochs = args.baseline_epochs or read_json(workdir / "training.json")["epochs"]
        budgets = args.budgets_ms or three_budgets(table, space)
        fastest = table.fastest_ms()
        if min(budgets) < fastest:
            raise SystemExit(f"a budget of {min(budgets):g} ms is under the fastest subnet of {space.name} on "
                             f"{device} ({fastest:.3f} ms): give budgets of at least that")
        raw = workdir_data(workdir)
        data = raw.resized(space.resolutions[-1])
        return cls(args, doc, workdir, device, table, budgets, epochs, raw, data,
                   representative=normalize(data.x_train[:200]).numpy())

    def save(self):
        self.doc.update(date=datetime.date.today().isoformat(), command=" ".join(sys.argv), device=self.device,
                        budgets_ms=self.budgets, baseline_epochs=self.epochs, qat_epochs=self.args.qat_epochs)
        write_json(self.out, self.doc)


def table_files(device: str, table: str | None) -> dict | None:
    """``--table`` as ``load_tables`` and ``search_workdir`` take it (None: the shipped table)."""
    return {device: table} if table else None


def match_baselines(run: Run, runner) -> dict:
    """1. Width and resolution of each baseline for each budget, measured first while nothing else runs."""
    configs = {(arch, budget): matching_config(arch, budget, run.data.num_classes, run.representative, runner,
                                               run.doc["latency_by_config"])
               for budget in run.budgets for arch in run.args.archs}
    run.save()
    return configs


def add_baselines(run: Run, configs: dict):
    """2. The baselines, trained from scratch (or imported), cheapest first; two budgets may pick the same
    one, trained once."""
    data, epochs = run.data, run.epochs
    cost = {key: count_macs(baseline(keras, key[0], alpha, res, data.num_classes))
            for key, (res, alpha) in configs.items()}
    for (arch, budget), (res, alpha) in sorted(configs.items(), key=lambda item: cost[item[0]]):
        key, name = f"{arch}@{budget:g}", stem(arch, res, alpha)
        if key in run.doc["rows"]:
            continue
        trained = next((r for r in run.doc["rows"].values()
                        if r["model"] == arch and (r["resolution"], r["alpha"]) == (res, alpha)), None)
        if trained is None:
            def train():
                print(f"{arch} {res}x{res} alpha {alpha:g} for {budget:g} ms: training {epochs} epochs", flush=True)
                model = baseline(keras, arch, alpha, res, data.num_classes)
                train_model(model, data, TrainConfig(epochs=epochs, seed=0),  # resizes to res
                            backup_dir=run.models / f"{name}.backup")  # resumes by the epoch
                return model

            model = trained_baseline(run.models, name, run.weights, epochs, run.args.no_train, train)
            if model is None:
                continue
            trained = {**score_baseline(model, run.models / f"{name}.tflite", data, run.representative),
                       "qat_int8": None, "macs": cost[(arch, budget)]}
        run.doc["rows"][key] = {**trained, "model": arch, "resolution": res, "alpha": alpha, "budget_ms": budget,
                                "predicted_ms": None}
        run.save()


def add_fine_tuned_baselines(run: Run, tune: dict):
    """2b. Each baseline trained as many epochs more as the export fine-tunes the factory's subnet (its QAT),
    so that the shipped models are also compared at equal training."""
    epochs = run.epochs + tune["epochs"]
    tuned = {r["file"]: r["fine_tuned"] for r in run.doc["rows"].values() if "fine_tuned" in r}
    for r in [r for r in run.doc["rows"].values() if r["model"] != "factory" and "fine_tuned" not in r]:
        if r["file"] not in tuned:
            name = fine_tuned_stem(stem(r["model"], r["resolution"], r["alpha"]), tune["epochs"])
            model = trained_baseline(run.models, name, run.weights, epochs, run.args.no_train,
                                     lambda: train_more(Path(r["file"]).with_suffix(".keras"), run.data, tune,
                                                        run.models / f"{name}.backup"))
            if model is None:
                continue
            tuned[r["file"]] = {"epochs": epochs,
                                **score_baseline(model, run.models / f"{name}.tflite", run.data, run.representative)}
        r["fine_tuned"] = tuned[r["file"]]
        run.save()


def add_factory(run: Run, runner):
    """3. The factory's model for each budget, and at each baseline's own latency (one matched under a budget
    runs faster than the budget; the goal is more accuracy at equal or lower latency); its row is read from
    the bundle's card."""
    baselines = [r for r in run.doc["rows"].values() if r["model"] != "factory"]
    for file in sorted({r["file"] for r in baselines if "equal_budget_ms" not in r}):
        # timed now rather than taken from the matching step: this shared machine's speed drifts by the day
        ms = float(np.median([runner.measure(Path(file).read_bytes()).median_ms for _ in range(3)]))
        for r in baselines:
            if r["file"] == file:
                r["equal_budget_ms"] = equal_latency_budget(ms, run.table)
    run.save()
    fastest = run.table.fastest_ms()
    equal = {r["equal_budget_ms"] for r in baselines}
    for ms in sorted(b for b in equal if b < fastest):
        print(f"{ms:g} ms (a baseline's latency) is under the fastest subnet ({fastest:.3f} ms): not searched")
    # the baselines' own latencies first: they are the goal's like-for-like pairs
    targets = sorted(b for b in equal if b >= fastest) + [b for b in run.budgets if b not in equal]
    results = search_workdir(run.workdir, [run.device], targets, n_eval=run.args.n_eval, reuse=True,
                             tables=table_files(run.device, run.args.table))
    for budget, result in zip(targets, results):
        bundle = run.models / f"factory__{budget:g}ms"
        if not is_complete(bundle):
            export_subnet(run.workdir, SubnetConfig.from_dict(result["subnet"]), run.device, bundle,
                          budget_ms=budget, table=run.args.table,
                          config=ExportConfig(qat_epochs=run.args.qat_epochs, max_drop_points=100.0))
        card = read_json(bundle / "model_card.json")
        run.doc["rows"][f"factory@{budget:g}"] = {
            "model": "factory", "budget_ms": budget, "subnet": card["subnet"],
            **{k: card["accuracy"].get(k) for k in ("float", "ptq_int8", "float_finetuned", "qat_keras", "qat_int8")},
            "size_bytes": card["size_bytes"], "macs": card["macs"], "predicted_ms": card["latency"]["predicted_ms"],
            "file": str(bundle / "model.tflite")}
        run.save()


def time_side_by_side(run: Run, runner):
    """4. Every model timed again, side by side, in rounds (this machine is noisy); the median is reported."""
    rows = list(run.doc["rows"].values())
    samples = {id(r): [] for r in rows}
    for _ in range(run.args.rounds):
        for r in rows:
            samples[id(r)].append(runner.measure(Path(r["file"]).read_bytes()).median_ms)
    for r in rows:
        r["measured_ms"] = float(np.median(samples[id(r)]))
    run.doc["comparisons"] = comparisons(run.doc)


def results_file(path: str) -> dict:
    """A results file this script wrote (an --out), or a one-line exit naming what to give instead."""
    try:
        doc = read_json(path)
    except FactoryError as exc:
        raise SystemExit(f"{exc}: give a results file bench/export.py wrote with --out") from None
    if not isinstance(doc, dict) or "rows" not in doc:
        raise SystemExit(f"{path} is not a results file of bench/export.py: give one it wrote with --out")
    return doc


def equal_latency_budget(measured_ms: float, table) -> float:
    """The budget the factory is searched at to match a model measured at ``measured_ms``: under it by
    the table's cross-validated error (0 without a calibration), so that a prediction off by its typical
    error still measures at or under the model."""
    mape = (table.correction or {}).get("cross_validated", {}).get("mape_percent", 0.0)
    return math.floor(1000 * measured_ms * (1 - mape / 100)) / 1000


def fine_tune_recipe(epochs: int, n_train: int) -> dict | None:
    """The training settings, over the recipe's, of ``export.finetune.fine_tune`` without a teacher (its
    epochs raised to the export's minimum of steps): what a baseline gets to match the factory's QAT."""
    config = ExportConfig(qat_epochs=epochs)
    epochs = qat_epochs(config.qat_epochs, config.min_qat_steps, n_train // config.batch_size)
    return {"epochs": epochs, "learning_rate": config.learning_rate, "warmup_epochs": 0,
            "batch_size": config.batch_size, "label_smoothing": 0.0} if epochs else None


def write_plan(path: Path, configs: dict, raw, data, epochs: int, fine_tune: dict | None):
    """What bench/baselines.py needs to train the chosen baselines elsewhere, exactly as here."""
    models = sorted({(arch, res, alpha) for (arch, _), (res, alpha) in configs.items()})
    write_json(path, {
        "models": [{"arch": arch, "resolution": res, "alpha": alpha} for arch, res, alpha in models],
        "recipe": dataclasses.asdict(TrainConfig(epochs=epochs, seed=0)), "fine_tune": fine_tune,
        # load_data's split of a folder's train/ into train and validation
        "data": {"source": raw.source, "classes": raw.class_names, "val_fraction": 0.1, "seed": 0,
                 "train_sha256": checksum(raw.x_train), "image_size": data.image_size,
                 "resized_train_sha256": checksum(data.x_train)}})
    print(f"wrote {path}: {len(models)} baselines to train with bench/baselines.py")


def trained_baseline(models: Path, name: str, weights: Path | None, epochs: int, no_train: bool, train):
    """The float baseline ``models/name.keras`` (with a .json beside it saying where it was trained),
    made once: imported from bench/baselines.py's weights when ``weights`` holds them, else trained here
    by ``train()`` unless ``no_train`` (then None)."""
    saved = models / f"{name}.keras"
    if not saved.exists():
        if weights and (weights / f"{name}.json").exists():
            model, where = import_baseline(weights, name, epochs)
        elif no_train:
            print(f"{name}: not trained yet (--no-train)")
            return None
        else:
            model, where = train(), "this machine (tf_keras)"
        write_json(saved.with_suffix(".json"), {"trained_on": where})
        with atomic_file(saved) as tmp:
            model.save(tmp)
    return keras.models.load_model(saved)


def train_more(saved: Path, data, tune: dict, backup_dir: Path):
    """The baseline saved at ``saved`` trained ``tune["epochs"]`` more here with ``tune``'s settings over
    the recipe's (``fine_tune_recipe``), as bench/baselines.py does on a GPU machine."""
    print(f"{saved.stem}: training {tune['epochs']} epochs more", flush=True)
    model = keras.models.load_model(saved)
    train_model(model, data, dataclasses.replace(TrainConfig(seed=0), **tune), backup_dir=backup_dir)
    return model


def score_baseline(model, file: Path, data, representative) -> dict:
    """Convert a float baseline to int8 (kept at ``file``) and score both on the test split."""
    res = model.input_shape[1]
    content = convert(model, "int8", resize(representative, res))
    with atomic_file(file) as tmp:
        tmp.write_bytes(content)
    x_test = resize(data.x_test, res)
    origin = file.with_suffix(".json")
    return {"trained_on": read_json(origin)["trained_on"] if origin.exists() else "this machine",
            "float": keras_accuracy(model, x_test, data.y_test),
            "ptq_int8": tflite_accuracy(content, x_test, data.y_test), "size_bytes": len(content), "file": str(file)}


def import_baseline(directory: Path, name: str, epochs: int):
    """A baseline trained by bench/baselines.py (``name`` as its ``stem``, or ``fine_tuned_stem``), as the
    tf_keras model this script converts, and where it was trained."""
    record = read_json(directory / f"{name}.json")
    if record["epochs"] != epochs:
        raise SystemExit(f"{directory / name}.npz was trained {record['epochs']} epochs, not {epochs} as the "
                         "supernet (and its fine-tune): retrain it with bench/baselines.py and the plan's epochs")
    spec = record["model"]
    model = baseline(keras, spec["arch"], spec["alpha"], spec["resolution"], len(record["probe_logits"][0]))
    load(model, directory, name)
    expected = np.asarray(record["probe_logits"])
    if not np.allclose(model(probe(spec["resolution"]), training=False).numpy(), expected, rtol=1e-3,
                       atol=1e-3 * np.abs(expected).max()):
        raise SystemExit(f"{directory / name}.npz: the weights do not reproduce the trained model's outputs here "
                         "(a Keras version with another weight order?): train this baseline here instead")
    where = f"{record['device']} (Keras {record['keras']}, {record['backend']}, {record['seconds']:.0f} s)"
    print(f"{name}: weights from {directory / name}.npz, trained on {where}")
    return model, where


def comparisons(doc: dict) -> list[dict]:
    """Each baseline against the factory's model for its budget and, once per baseline, against the
    factory's model searched at the baseline's own latency. The goal is more int8 accuracy at equal or
    lower measured latency. The factory ships its QAT int8 model, whose fine-tune trained it more epochs
    than the baseline: it is judged against the baseline's int8 as trained and, at equal training, against
    the baseline trained as many epochs more (``fine_tuned``); without that one, against the baseline with
    its own post-training int8 (before its fine-tune) instead. Every gain is reported."""
    rows = list(doc["rows"].values())
    factory = {r["budget_ms"]: r for r in rows if r["model"] == "factory"}
    result, seen = [], set()
    for r in rows:
        if r["model"] == "factory":
            continue
        name = f"{r['model']} {r['resolution']}px alpha {r['alpha']:g}"
        pairs = [("the budget", factory.get(r["budget_ms"]))]
        if name not in seen:
            seen.add(name)
            pairs.append(("its latency", factory.get(r.get("equal_budget_ms"))))
        for where, mine in pairs:
            if mine is None:
                continue
            ratio = mine["measured_ms"] / r["measured_ms"]
            gains = {"qat_int8_gain_points": 100 * (mine["qat_int8"] - r["ptq_int8"]),
                     "ptq_int8_gain_points": 100 * (mine["ptq_int8"] - r["ptq_int8"])}
            if "fine_tuned" in r:
                gains["equal_training_gain_points"] = 100 * (mine["qat_int8"] - r["fine_tuned"]["ptq_int8"])
            judged = ["qat_int8_gain_points", "equal_training_gain_points" if "fine_tuned" in r
                      else "ptq_int8_gain_points"]
            result.append({"budget_ms": r["budget_ms"], "baseline": name, "factory_searched_at": where,
                           "factory_budget_ms": mine["budget_ms"], **gains, "latency_ratio": ratio,
                           "judged_on": judged, "factory_wins": all(gains[k] > 0 for k in judged) and ratio <= 1.0})
    return result


def goal(comparisons: list[dict]) -> dict[str, list[float]]:
    """Each baseline and the factory's budgets (searched at) that beat it: the benchmark's goal is met when
    every baseline has at least one."""
    beaten = {}
    for c in comparisons:
        beaten.setdefault(c["baseline"], [])
        if c["factory_wins"] and c["factory_budget_ms"] not in beaten[c["baseline"]]:
            beaten[c["baseline"]].append(c["factory_budget_ms"])
    return beaten


def _pct(value):
    return "" if value is None else f"{100 * value:.1f}%"


def print_table(doc):
    print("\n| budget (ms) | model | float | PTQ int8 | QAT int8 | size (KB) | MMACs | predicted (ms) | measured (ms) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in sorted(doc["rows"].values(), key=lambda r: (r["budget_ms"], r["model"] != "factory", r["model"])):
        name = row["model"] + (f" ({row['resolution']}px, alpha {row['alpha']:g})" if "alpha" in row else "")
        predicted = "" if row["predicted_ms"] is None else f"{row['predicted_ms']:.3f}"
        print(f"| {row['budget_ms']:g} | {name} | {_pct(row['float'])} | {_pct(row['ptq_int8'])} | "
              f"{_pct(row['qat_int8'])} | {row['size_bytes'] / 1024:.0f} | {row['macs'] / 1e6:.1f} | {predicted} | "
              f"{row['measured_ms']:.3f} |")
        if "fine_tuned" in row:
            tuned = row["fine_tuned"]
            print(f"| {row['budget_ms']:g} | {name}, {tuned['epochs']} epochs | {_pct(tuned['float'])} | "
                  f"{_pct(tuned['ptq_int8'])} |  | {tuned['size_bytes'] / 1024:.0f} | {row['macs'] / 1e6:.1f} |  | "
                  f"{row['measured_ms']:.3f} |")
    print()
    for c in doc.get("comparisons", []):
        print(f"{c['budget_ms']:g} ms, {c['baseline']} against the factory at {c['factory_searched_at']} "
              f"({c['factory_budget_ms']:g} ms): factory QAT int8 {c['qat_int8_gain_points']:+.2f} points, "
              f"post-training int8 {c['ptq_int8_gain_points']:+.2f} points, "
              + (f"QAT int8 against it trained as many epochs {c['equal_training_gain_points']:+.2f} points, "
                 if "equal_training_gain_points" in c else "")
              + f"at {c['latency_ratio']:.2f}x its "
              f"measured latency: {'wins' if c['factory_wins'] else 'does not win'}")
    beaten = goal(doc.get("comparisons", []))
    if beaten:
        print(f"\ngoal (beat each baseline at equal or lower measured latency): "
              f"{'met' if all(beaten.values()) else 'not met'}")
        for name, budgets in beaten.items():
            print(f"- {name}: " + (f"beaten by the factory searched at {', '.join(f'{b:g}' for b in budgets)} ms"
                                   if budgets else "not beaten"))


if __name__ == "__main__":
    main()
