"""The baselines: trained here from scratch (or imported from ``bench.baselines``' weights), trained as many
epochs more as the factory's fine-tune, and scored as int8."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from bench.baselines import baseline, checksum, fine_tuned_stem, load, probe, stem
from bench.compare_baselines.match import representative_at
from export.bundle import count_macs
from export.config import ExportConfig
from export.finetune import qat_epochs
from export.parity import keras_accuracy, tflite_accuracy
from factory.core.backend import keras
from factory.core.convert import convert
from factory.core.errors import FactoryError
from factory.core.files import atomic_file, read_json, write_json
from factory.training.portable.images import resize_images
from factory.training.portable.recipe import TrainConfig
from factory.training.train import train_model


def add_baselines(run, configs: dict):
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


def add_fine_tuned_baselines(run, tune: dict):
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


def fine_tune_recipe(epochs: int, n_train: int) -> dict | None:
    """The training settings, over the recipe's, of ``export.finetune.fine_tune`` without a teacher (its
    epochs raised to the export's minimum of steps): what a baseline gets to match the factory's QAT."""
    config = ExportConfig(qat_epochs=epochs)
    epochs = qat_epochs(config.qat_epochs, config.min_qat_steps, n_train // config.batch_size)
    return {"epochs": epochs, "learning_rate": config.learning_rate, "warmup_epochs": 0,
            "batch_size": config.batch_size, "label_smoothing": 0.0} if epochs else None


def write_plan(path: Path, configs: dict, raw, data, epochs: int, fine_tune: dict | None):
    """What bench.baselines needs to train the chosen baselines elsewhere, exactly as here."""
    models = sorted({(arch, res, alpha) for (arch, _), (res, alpha) in configs.items()})
    write_json(path, {
        "models": [{"arch": arch, "resolution": res, "alpha": alpha} for arch, res, alpha in models],
        "recipe": dataclasses.asdict(TrainConfig(epochs=epochs, seed=0)), "fine_tune": fine_tune,
        # load_data's split of a folder's train/ into train and validation
        "data": {"source": raw.source, "classes": raw.class_names, "val_fraction": 0.1, "seed": 0,
                 "train_sha256": checksum(raw.x_train), "image_size": data.image_size, "decoded_size": raw.image_size, "resize": raw.resize,
                 "resized_train_sha256": checksum(data.x_train)}})
    print(f"wrote {path}: {len(models)} baselines to train with bench.baselines")


def trained_baseline(models: Path, name: str, weights: Path | None, epochs: int, no_train: bool, train):
    """The float baseline ``models/name.keras`` (with a .json beside it saying where it was trained),
    made once: imported from bench.baselines's weights when ``weights`` holds them, else trained here
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
    the recipe's (``fine_tune_recipe``), as bench.baselines does on a GPU machine."""
    print(f"{saved.stem}: training {tune['epochs']} epochs more", flush=True)
    model = keras.models.load_model(saved)
    train_model(model, data, dataclasses.replace(TrainConfig(seed=0), **tune), backup_dir=backup_dir)
    return model


def score_baseline(model, file: Path, data, representative) -> dict:
    """Convert a float baseline to int8 (kept at ``file``) and score both on the test split."""
    res = model.input_shape[1]
    content = convert(model, "int8", representative_at(representative, res))
    with atomic_file(file) as tmp:
        tmp.write_bytes(content)
    x_test = resize_images(data.x_test, res)
    origin = file.with_suffix(".json")
    return {"trained_on": read_json(origin)["trained_on"] if origin.exists() else "this machine",
            "float": keras_accuracy(model, x_test, data.y_test),
            "ptq_int8": tflite_accuracy(content, x_test, data.y_test), "size_bytes": len(content), "file": str(file)}


def import_baseline(directory: Path, name: str, epochs: int):
    """A baseline trained by bench.baselines (``name`` as its ``stem``, or ``fine_tuned_stem``), as the
    tf_keras model this script converts, and where it was trained."""
    record = read_json(directory / f"{name}.json")
    if record["epochs"] != epochs:
        raise FactoryError(f"{directory / name}.npz was trained {record['epochs']} epochs, not {epochs} as the "
                         "supernet (and its fine-tune): retrain it with bench.baselines and the plan's epochs")
    spec = record["model"]
    model = baseline(keras, spec["arch"], spec["alpha"], spec["resolution"], len(record["probe_logits"][0]))
    load(model, directory, name)
    expected = np.asarray(record["probe_logits"])
    if not np.allclose(model(probe(spec["resolution"]), training=False).numpy(), expected, rtol=1e-3,
                       atol=1e-3 * np.abs(expected).max()):
        raise FactoryError(f"{directory / name}.npz: the weights do not reproduce the trained model's outputs here "
                         "(a Keras version with another weight order?): train this baseline here instead")
    where = f"{record['device']} (Keras {record['keras']}, {record['backend']}, {record['seconds']:.0f} s)"
    print(f"{name}: weights from {directory / name}.npz, trained on {where}")
    return model, where
