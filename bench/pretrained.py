"""Starting from ImageNet: the factory's bundles against Model Maker's recipe on the same weights.

The factory's bundles from the pretrained lite0 supernet against MediaPipe Model Maker's image-classifier recipe on
the same EfficientNet-Lite0 weights, measured side by side on host-cpu-1t.

    python -m bench.pretrained [--data ~/.cache/mmf/cifar10] [--per-class 100] [--resolutions 224 192 160 128]

The data is ``bench.transfer``'s target: dog, frog, horse, ship and truck with ``--per-class`` training images each
(the same seeded draw) and their whole CIFAR-10 test split. Model Maker's recipe: the frozen network's pooled
features, dropout 0.2 and a softmax classifier with label smoothing 0.1 (trained here with Adam on the cached
features, ``factory.training.teacher.fit_head``), then post-training int8 with uint8 input and probabilities out; one
model per resolution. The factory: a pretrained supernet trained once per ``--starts`` (``inplace``, make's default:
distilled from the largest subnet; ``teacher``: from the frozen network; ``progressive``: OFA's progressive shrinking
from the frozen network), then ``make`` at three budgets: the measured latency of
Lite0 at 224 px (Model Maker's 224 px model in this run), half of it and a quarter. ``--ablation`` scores the same
subnets (the first start's bundles, Lite0, the largest and smallest) from supernets trained each way. Every row says
what it measured and how long each stage took; a rerun resumes from the results file and the work directories.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from bench.common import header, parse, provenance, run, save
from bench.transfer import link_folders
from devices.profile import load_profile
from devices.runners import get_runner
from export.config import ExportConfig
from export.parity import tflite_labels
from factory.core.errors import FactoryError
from factory.core.files import read_json
from factory.nas.pretrained import DEFAULT_PRETRAINED, load_pretrained
from factory.nas.space import LITE0, SubnetConfig
from factory.search.strategies import MAKE_SEARCH, PRETRAINED_N_EVAL
from factory.training.data import load_data, normalize
from factory.training.portable.recipe import TrainConfig
from factory.training.workdir import Workdir

TITLE = "Starting from ImageNet: the factory against Model Maker's recipe"
# how the pretrained supernet is trained: the sandwich rule distilled from the frozen network or in place (from the
# largest subnet), and OFA's progressive shrinking distilled from the frozen network
STARTS = {"teacher": {"teacher": True}, "inplace": {"teacher": False},
          "progressive": {"teacher": True, "schedule": "progressive"}}


def model_maker(weights, data, resolution: int, runner) -> dict:
    """Model Maker's recipe at one resolution: frozen features, softmax head, post-training int8 (uint8 in)."""
    from factory.core.backend import keras
    from factory.core.convert import convert
    from factory.training.teacher import fit_head, teacher_model

    start = time.time()
    at = dataclasses.replace(weights, subnet=dataclasses.replace(weights.subnet, resolution=resolution))
    local = data.resized(resolution)
    head, val = fit_head(at, local, verbose=0)
    logits = teacher_model(at, head)
    classifier = keras.Model(logits.input, keras.layers.Softmax()(logits.output))
    x_test = data.test_images(resolution)
    float_accuracy = float(np.mean(np.argmax(classifier.predict(normalize(x_test).numpy(), batch_size=64, verbose=0),
                                             -1) == data.y_test))
    representative = normalize(local.x_train[:200]).numpy()
    content = convert(classifier, "int8", representative, "uint8")
    accuracy = float(np.mean(tflite_labels(content, x_test) == data.y_test))
    timing = runner.measure(content)
    return {"resolution": resolution, "val_accuracy": val, "float_accuracy": float_accuracy,
            "int8_accuracy": accuracy, "measured_ms": timing.median_ms, "size_bytes": len(content),
            "seconds": round(time.time() - start, 1)}


def statistics(weights, data) -> dict:
    """Lite0's frozen features at 224 px with ImageNet's batch-norm statistics against statistics re-estimated on the
    training photos, each with its own softmax head: why a pretrained supernet anchors its statistics."""
    from factory.training.portable.recipe import recalibrate_batch_norm
    from factory.training.teacher import fit_head, teacher_model

    out = {}
    for name in ("imagenet", "reestimated"):
        body = None
        if name == "reestimated":
            from factory.nas.pretrained import reference_model

            body = reference_model(weights)
            recalibrate_batch_norm(body, [normalize(data.x_train[i:i + 32]).numpy()
                                          for i in range(0, len(data.y_train), 32)])
        head, _ = fit_head(weights, data, verbose=0, body=body)
        model = teacher_model(weights, head, body=body)
        predicted = np.argmax(model.predict(normalize(data.test_images(224)).numpy(), batch_size=64, verbose=0), -1)
        out[name] = float(np.mean(predicted == data.y_test))
    return out


def ranking(workdir: Workdir, k: int, test_images: int, seed: int) -> dict:
    """Kendall's tau against test accuracy, over ``k`` of the subnets the search evaluated, of the scores the search
    could rank them by: validation accuracy, agreement with the teacher, and the predictor fitted to them."""
    from scipy.stats import kendalltau

    from factory.search.predictor import AccuracyPredictor
    from factory.training.data import make_dataset

    supernet, data = workdir.supernet(), workdir.data()
    results = workdir.subnet_evals()
    pick = np.random.default_rng(seed).permutation(len(results))[:k]
    test_pick = np.sort(np.random.default_rng(seed).permutation(len(data.y_test))[:test_images])
    test = make_dataset(data.x_test[test_pick], data.y_test[test_pick], 100, training=False)
    predictor = AccuracyPredictor.load(workdir.predictor_dir, supernet.space)
    rows = []
    for i in pick:
        subnet = SubnetConfig.from_dict(results[i]["subnet"])
        supernet.recalibrate(subnet, data.calibration())
        rows.append({**results[i], "test_accuracy": supernet.evaluate_subnet(subnet, test),
                     "predicted": float(predictor.predict_encoded(supernet.space.encode(subnet)[None])[0])})
    test_acc = [r["test_accuracy"] for r in rows]
    taus = {name: float(kendalltau([r[name] for r in rows], test_acc).statistic)
            for name in ("val_accuracy", "teacher_agreement", "predicted") if all(name in r for r in rows)}
    return {"subnets": len(rows), "test_images": len(test_pick), "kendall_tau": taus,
            "predictor_fitted_to": predictor.report.get("fitted_to"), "rows": rows}


def factory_rows(folder: Path, work: Path, start: str, budgets: list[float], profile, n_eval: int,
                 epochs: int | None, export: ExportConfig, saved) -> dict:
    """Train the pretrained supernet (once), then ``make`` at each budget: its bundles' figures and stage times;
    ``saved(rows)`` after each bundle, so a long run's results are kept as they come."""
    from factory.app.make import make

    workdir = Workdir(work / start)
    config = train_config(start, epochs)
    rows = []
    for budget in budgets:
        began = time.time()
        try:
            [card] = make(str(folder), [profile], [budget], workdir, space=LITE0, train=config,
                          search=dataclasses.replace(MAKE_SEARCH, n_eval=n_eval), export=export)
        except FactoryError as exc:
            rows.append({"budget_ms": budget, "refused": str(exc)})
            saved(rows)
            continue
        acc, lat = card["accuracy"], card["latency"]
        rows.append({"budget_ms": budget, "test_accuracy": acc[acc["shipped"]], "shipped": acc["shipped"],
                     "float_accuracy": acc["float"], "measured_ms": lat["measured"]["median_ms"],
                     "predicted_ms": lat["predicted_ms"], "size_bytes": card["size_bytes"],
                     "subnet": card["subnet"], "seconds": round(time.time() - began, 1),
                     "stages": read_json(workdir.timings_file)["stages"]})
        saved(rows)
    training = workdir.training()
    return {**STARTS[start], "epochs": training["epochs"], "train_seconds": training["seconds_this_run"],
            "val_accuracy_recalibrated": training["val_accuracy_recalibrated"], "bundles": rows}


def train_config(start: str, epochs: int | None) -> TrainConfig:
    return TrainConfig.from_pretrained(DEFAULT_PRETRAINED, **STARTS[start], **({"epochs": epochs} if epochs else {}))


def ablation(data, work: Path, start: str, subnets: dict[str, SubnetConfig], epochs: int | None,
             test_images: int, seed: int, done: dict) -> dict:
    """One way of training the pretrained supernet, judged by the test accuracy (float, batch norm recalibrated) of
    the same subnets: the smallest, those the first start shipped at each budget, Lite0 itself and the largest
    (those in ``done``, a previous run's accuracies, are kept)."""
    from factory.training.data import make_dataset
    from factory.training.train import train_supernet

    workdir = Workdir(work / start)
    supernet = train_supernet(data, LITE0, workdir, train_config(start, epochs), verbose=2)
    pick = np.sort(np.random.default_rng(seed).permutation(len(data.y_test))[:test_images])
    test = make_dataset(data.test_images(LITE0.resolutions[-1])[pick], data.y_test[pick], 100, training=False)
    accuracy = {}
    for name, subnet in subnets.items():
        if name in done:
            accuracy[name] = done[name]
            continue
        supernet.recalibrate(subnet, data.calibration())
        accuracy[name] = supernet.evaluate_subnet(subnet, test)
    training = workdir.training()
    return {**STARTS[start], "epochs": training["epochs"], "train_seconds": training["seconds_this_run"],
            "test_images": len(pick), "test_accuracy": accuracy}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="~/.cache/mmf/cifar10", help="CIFAR-10 as train/<class>/, test/<class>/")
    parser.add_argument("--work", default="runs/bench-pretrained")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[224, 192, 160, 128])
    parser.add_argument("--starts", nargs="*", choices=list(STARTS), default=["inplace"],
                        help="trainings that go through make at the three budgets (default: make's own, in place)")
    parser.add_argument("--ablation", nargs="*", choices=list(STARTS), default=[],
                        help="trainings compared on the same subnets: those the first --starts shipped")
    parser.add_argument("--ablation-test-images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, help="supernet epochs (default: the pretrained schedule's)")
    parser.add_argument("--n-eval", type=int, default=PRETRAINED_N_EVAL)
    parser.add_argument("--qat-epochs", type=int, help="QAT epochs of the bundles (default: the pretrained run's)")
    parser.add_argument("--min-qat-steps", type=int, default=ExportConfig().min_qat_steps)
    parser.add_argument("--ranking-subnets", type=int, default=20,
                        help="evaluated subnets scored on 1,000 test images to judge the search's ranking (0: none)")
    parser.add_argument("--out", default="bench/results/pretrained.json")
    args = parse(parser, markdown, "model_maker")
    if args is None:
        return
    profile = load_profile("host-cpu-1t")
    work = Path(args.work).expanduser()
    _, folder = link_folders(Path(args.data).expanduser(), work, args.per_class, args.seed)
    out = Path(args.out)
    doc = read_json(out) if out.exists() else {}
    doc.update({**provenance(), "per_class": args.per_class, "device": profile.name})
    weights = load_pretrained(DEFAULT_PRETRAINED)
    data = load_data(str(folder), image_size=LITE0.resolutions[-1], seed=args.seed, cache=work / "cache")
    doc["images"] = {"train": len(data.y_train), "val": len(data.y_val), "test": len(data.y_test)}
    doc["lite0"] = weights.subnet.to_dict()
    if "statistics" not in doc:
        doc["statistics"] = statistics(weights, data)
        save(out, doc, markdown)
    done = {row["resolution"]: row for row in doc.get("model_maker", [])}
    with get_runner(profile) as runner:
        for resolution in args.resolutions:
            if resolution not in done:
                done[resolution] = model_maker(weights, data, resolution, runner)
                doc["model_maker"] = [done[r] for r in sorted(done, reverse=True)]
                save(out, doc, markdown)
    lite0_ms = done[224]["measured_ms"]
    budgets = [round(lite0_ms * f, 3) for f in (1.0, 0.5, 0.25)]
    doc["budgets_ms"] = budgets
    doc.setdefault("factory", {})
    for start in args.starts:
        def saved(rows, start=start):
            doc["factory"][start] = {**doc["factory"].get(start, {}), "partial": True, "bundles": rows}
            save(out, doc, markdown)

        ranked = doc["factory"].get(start, {}).get("ranking")
        doc["factory"][start] = factory_rows(folder, work, start, budgets, profile, args.n_eval, args.epochs,
                                             ExportConfig.for_run(True, qat_epochs=args.qat_epochs,
                                                                  min_qat_steps=args.min_qat_steps), saved)
        save(out, doc, markdown)
        if ranked and ranked["subnets"] == args.ranking_subnets:  # the same work directory: kept, not rescored
            doc["factory"][start]["ranking"] = ranked
        elif args.ranking_subnets:
            doc["factory"][start]["ranking"] = ranking(Workdir(work / start), args.ranking_subnets, 1000, args.seed)
            save(out, doc, markdown)
    shipped = doc["factory"].get(args.starts[0], {}).get("bundles", []) if args.starts else []
    lite0 = weights.subnet
    subnets = {"smallest": SubnetConfig.smallest(LITE0),
               **{f"{b['budget_ms']:g} ms": SubnetConfig.from_dict(b["subnet"]) for b in shipped if "subnet" in b},
               **{f"Lite0 {r} px": dataclasses.replace(lite0, resolution=r) for r in (128, 224)},
               "largest": SubnetConfig.largest(LITE0)}
    doc.setdefault("ablation", {})
    for start in args.ablation:
        done = doc["ablation"].get(start, {}).get("test_accuracy", {})
        if set(done) != set(subnets):
            doc["ablation"][start] = ablation(data, work, start, subnets, args.epochs, args.ablation_test_images,
                                              args.seed, done)
            save(out, doc, markdown)
    transfer = Path("bench/results/transfer.json")
    if transfer.exists():
        doc["transfer"] = {k: v["bundle"] for k, v in read_json(transfer)["starts"].items()}
    save(out, doc, markdown)


def _subnet(subnet: dict, doc: dict) -> str:
    """A shipped subnet in words: Lite0 at a resolution, or how its depths, kernels and expand ratios differ."""
    lite0 = doc.get("lite0")
    if lite0 and {**subnet, "resolution": 0} == {**lite0, "resolution": 0}:
        return f"Lite0 at {subnet['resolution']} px"
    return (f"{subnet['resolution']} px, depths {'/'.join(map(str, subnet['depths']))}, kernels "
            f"{'/'.join(''.join(map(str, k)) for k in subnet['kernel_sizes'])}, expand "
            f"{'/'.join(''.join(map(str, e)) for e in subnet['expand_ratios'])}")


def _training(row: dict) -> str:
    schedule = "progressive shrinking" if row.get("schedule") == "progressive" else "sandwich rule"
    return f"{schedule}, {'distilled from the frozen network' if row['teacher'] else 'in-place distillation'}"


def _best_within(model_maker: list[dict], budget: float) -> dict | None:
    fits = [r for r in model_maker if r["measured_ms"] <= budget]
    return max(fits, key=lambda r: r["int8_accuracy"]) if fits else None


def markdown(doc: dict) -> str:
    images = doc.get("images", {})
    lines = [f"{header(doc)}. Dog, frog, horse, ship and truck, {doc['per_class']} training photos per class "
             f"({images.get('train')} train, {images.get('val')} val, {images.get('test')} test), measured on "
             f"{doc['device']} in one run.", "",
             "Model Maker's recipe on EfficientNet-Lite0 (frozen ImageNet features, softmax head; post-training int8, "
             "uint8 in):", "",
             "| resolution | float | int8 | measured ms | size | seconds |", "|---|---|---|---|---|---|"]
    stats = doc.get("statistics")
    for r in doc.get("model_maker", []):
        lines.append(f"| {r['resolution']} | {100 * r['float_accuracy']:.2f}% | {100 * r['int8_accuracy']:.2f}% | "
                     f"{r['measured_ms']:.3f} | {r['size_bytes']:,} | {r['seconds']:.0f} |")
    if stats:
        lines += ["", f"Lite0's frozen features at 224 px, float, each with its own head: ImageNet's batch-norm "
                      f"statistics {100 * stats['imagenet']:.2f}%, statistics re-estimated on the training photos "
                      f"{100 * stats['reestimated']:.2f}%."]
    for start, f in doc.get("factory", {}).items():
        trained = ("an unfinished run: the bundles so far" if f.get("partial") else
                   f"{_training(f)}; {f['epochs']} epochs, {f['train_seconds']:.0f} s")
        lines += ["", f"The factory from the pretrained supernet ({start}: {trained}), int8 bundles by `make` at "
                      "its defaults for a pretrained run (post-training int8):", "",
                  "| budget ms | bundle | subnet | measured ms | best Model Maker model within it | difference | "
                  "seconds |", "|---|---|---|---|---|---|---|"]
        for b in f["bundles"]:
            mm = _best_within(doc.get("model_maker", []), b["budget_ms"])
            theirs = f"{100 * mm['int8_accuracy']:.2f}% ({mm['resolution']} px, {mm['measured_ms']:.3f} ms)" if mm \
                else "none fits"
            if "refused" in b:
                lines.append(f"| {b['budget_ms']:.3f} | refused: {b['refused']} | | | {theirs} | | |")
                continue
            diff = f"{100 * (b['test_accuracy'] - mm['int8_accuracy']):+.2f} pt" if mm else ""
            seconds = f"{b['seconds']:.0f}" if b["seconds"] >= 1 else "made by an earlier run"
            lines.append(f"| {b['budget_ms']:.3f} | {100 * b['test_accuracy']:.2f}% | {_subnet(b['subnet'], doc)} | "
                         f"{b['measured_ms']:.3f} | {theirs} | {diff} | {seconds} |")
        if f.get("ranking"):
            r = f["ranking"]
            lines += ["", f"Ranking, over {r['subnets']} of the evaluated subnets scored on {r['test_images']} test "
                          "images: Kendall's tau with test accuracy of " + ", ".join(
                              f"{name.replace('_', ' ')} {tau:.3f}" for name, tau in r["kendall_tau"].items())
                      + f" (the predictor fitted {str(r['predictor_fitted_to']).replace('_', ' ')})."]
    if doc.get("qat"):
        q = doc["qat"]
        lines += ["", f"Quantization-aware fine-tuning instead of post-training int8 (`{q['command']}`, {q['date']}: "
                      f"--qat-epochs {q['qat_epochs']} --min-qat-steps {q['min_qat_steps']}, the defaults of a run "
                      f"from scratch but for the steps), at {q['row']['budget_ms']:g} ms: {q['row']['refused']}"]
    if doc.get("ablation"):
        names = list(next(iter(doc["ablation"].values()))["test_accuracy"])
        first = next(iter(doc["ablation"].values()))
        lines += ["", f"Ablation: the same subnets from supernets trained each way, float test accuracy on "
                      f"{first['test_images']} test images after batch-norm recalibration (the budgets' subnets are "
                      "those the first make row shipped):", "",
                  "| training | " + " | ".join(names) + " | epochs | seconds |",
                  "|---" * (len(names) + 3) + "|"]
        for start, a in doc["ablation"].items():
            lines.append(f"| {start}: {_training(a)} | " + " | ".join(
                f"{100 * a['test_accuracy'][n]:.2f}%" for n in names) + f" | {a['epochs']} | {a['train_seconds']:.0f} |")
    if doc.get("transfer"):
        lines += ["", "Beside them, `bench.transfer`'s bundles (default space, 1.5 ms): " + "; ".join(
            f"{k}: " + (f"refused ({v['refused'][:60]}...)" if "refused" in v else f"{100 * v['test_accuracy']:.2f}% at "
                        f"{v['measured_ms']:.3f} ms") for k, v in doc["transfer"].items())]
    return "\n".join(lines)


if __name__ == "__main__":
    run(main)
