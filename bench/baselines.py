"""Train the export benchmark's hand-designed baselines under Keras 3, where TensorFlow is not installed.

    python -m bench.export --workdir runs/bench-res64 --budgets-ms 0.884 1.686 2.487 \\
        --out bench/results/export-res64.json --plan-baselines runs/baselines/plan.json
    KERAS_BACKEND=jax python -m bench.baselines runs/baselines/plan.json --data ~/.cache/mmf/cifar10 \\
        --out runs/baselines
    python -m bench.export ... --baseline-weights runs/baselines

MobileNetV2 at 128x128 trains at 10-14 minutes an epoch on a 2-core CPU; on a GPU
machine with Keras 3 and JAX it takes seconds. The plan, written by ``bench/export.py``,
names the models (architecture, input size, width), the recipe (``factory.training.portable.recipe``'s
TrainConfig and epochs), the data's split and the image size the supernet was trained at,
and a checksum of the training images, so that a different decode or split stops the run
before it trains. Each model is trained as ``factory.training.train.train_model`` trains one on
this machine: the same optimizer, schedule, loss and batch-norm recalibration (all from
``factory.training.portable.recipe``), the same augmentation (zero padding by an eighth of the size, a random
crop, a horizontal flip) and a bilinear resize to the model's input. Weights are saved as
``.npz`` in ``get_weights`` order, the same in Keras 2 and Keras 3 for keras.applications'
MobileNets, with a ``.json`` record beside them; ``bench/export.py --baseline-weights`` loads
them into its tf_keras model and converts, scores and times it there. The plan's ``fine_tune``
(the factory's QAT fine-tune settings) then trains a copy of each as many epochs more, saved
under ``fine_tuned_stem``; models already in the output folder are loaded, not trained again.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import time
from pathlib import Path

import numpy as np

from bench.common import run
from factory.core.errors import FactoryError
from factory.core.files import atomic_file, read_json, write_json
from factory.training.portable.augment import random_crop_flip
from factory.training.portable.images import DEFAULT_RESIZE, OFFSET, SCALE, decode_folder, resize_images, split
from factory.training.portable.recipe import TrainConfig, loss, make_optimizer, recalibrate_batch_norm


def baseline(keras, arch: str, alpha: float, size: int, num_classes: int):
    """keras.applications' MobileNetV3Small or MobileNetV2, untrained, with logits out."""
    if arch == "MobileNetV3Small":
        return keras.applications.MobileNetV3Small(input_shape=(size, size, 3), alpha=alpha, weights=None,
                                                   classes=num_classes, include_preprocessing=False,
                                                   classifier_activation=None)
    return keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, weights=None,
                                          classes=num_classes, classifier_activation=None)


def stem(arch: str, resolution: int, alpha: float) -> str:
    """The file name (without suffix) a baseline's weights and models are saved under."""
    return f"{arch}__{resolution}px__alpha{alpha:g}"


def fine_tuned_stem(name: str, epochs: int) -> str:
    """The file name of a baseline trained ``epochs`` more, as the factory's export fine-tunes its subnets."""
    return f"{name}__plus{epochs}"


def probe(size: int) -> np.ndarray:
    """A fixed input whose logits travel with the weights, so the importer can check the transfer."""
    return np.linspace(-1.0, 1.0, 2 * size * size * 3, dtype=np.float32).reshape(2, size, size, 3)


def checksum(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:16]


def training_images(plan: dict, root: Path):
    """The plan's training split of the folder ``root``, checked against the plan's checksum."""
    data = plan["data"]
    x, y, classes, _, _ = decode_folder(root / "train", size=data.get("decoded_size"),
                                        policy=data.get("resize", DEFAULT_RESIZE))
    x_train, _, y_train, _ = split(x, y, data["val_fraction"], data["seed"])
    if classes != data["classes"] or checksum(x_train) != data["train_sha256"]:
        raise FactoryError(f"{root}: its training split differs from the plan's (classes or pixels): "
                           "give --data the folder the supernet was trained on")
    return x_train, y_train.astype(np.int32)


def augmented_batches(keras, images, labels, config: TrainConfig, num_classes: int):
    """``factory.training.data.make_dataset(training=True)`` as a PyDataset: a reshuffle every epoch, the same
    ``random_crop_flip``, then the model's normalization."""

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(config.seed)
            self.on_epoch_end()

        def __len__(self):
            return len(labels) // config.batch_size

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(labels))

        def __getitem__(self, i):
            idx = self.order[i * config.batch_size:(i + 1) * config.batch_size]
            x = random_crop_flip(images[idx], self.rng).astype(np.float32) * SCALE + OFFSET
            return x, np.eye(num_classes, dtype=np.float32)[labels[idx]]

    return Batches()


def fit(keras, model, name: str, x_train, y_train, config: TrainConfig, num_classes: int) -> float:
    """Train ``model`` as ``factory.training.train.train_model`` does (the images resized to its input by the
    factory's ``resize_images``, the recipe's optimizer and schedule, the augmentation), then recalibrate its
    batch norm; the last epoch's accuracy."""
    x_train = resize_images(x_train, model.input_shape[1])
    batches = augmented_batches(keras, x_train, y_train, config, num_classes)
    model.compile(optimizer=make_optimizer(config, len(batches), model.trainable_variables, keras=keras), loss=loss(config, keras=keras),
                    metrics=[keras.metrics.CategoricalAccuracy(name="acc")])
    print(f"{name}: training {config.epochs} epochs on {len(batches) * config.batch_size} images", flush=True)
    history = model.fit(batches, epochs=config.epochs, verbose=2)
    n = min(config.calibration_images, len(y_train))
    calibration = (x_train[i:i + config.batch_size].astype(np.float32) * SCALE + OFFSET
                   for i in range(0, n, config.batch_size))
    recalibrate_batch_norm(model, calibration, keras=keras)
    return float(history.history["acc"][-1])


def save(keras, model, out: Path, name: str, record: dict):
    """The weights as ``.npz`` and, last (its presence marks the model done), the record with probe logits."""
    with atomic_file(out / f"{name}.npz") as tmp:  # suffix kept, so savez adds none
        np.savez(tmp, *model.get_weights())
    write_json(out / f"{name}.json", {**record, "keras": keras.__version__, "backend": keras.backend.backend(),
                                      "device": device_name(keras), "probe_logits": probe_logits(keras, model)})


def probe_logits(keras, model) -> list:
    """The model's logits on ``probe``, in full float32 (JAX on a GPU otherwise multiplies in TF32,
    off by more than the importer's tolerance)."""
    precision = contextlib.nullcontext()
    if keras.backend.backend() == "jax":
        import jax

        precision = jax.default_matmul_precision("highest")
    with precision:
        return np.asarray(model(probe(model.input_shape[1]), training=False)).tolist()


def load(model, out: Path, name: str):
    """The weights ``save`` wrote, into ``model`` (Keras 2 or 3: the same order)."""
    with np.load(out / f"{name}.npz") as saved:
        model.set_weights([saved[f"arr_{i}"] for i in range(len(saved.files))])


def train_one(keras, model_plan: dict, x_train, y_train, config: TrainConfig, fine_tune: dict | None,
              num_classes: int, out: Path, notes: dict):
    """Train one baseline from scratch and, if the plan asks, fine-tune a copy as the factory fine-tunes
    its subnets (``fine_tuned_stem``); what is already in ``out`` is loaded, not trained again."""
    arch, res, alpha = model_plan["arch"], model_plan["resolution"], model_plan["alpha"]
    name = stem(arch, res, alpha)
    keras.utils.set_random_seed(config.seed)
    model = baseline(keras, arch, alpha, res, num_classes)
    if (out / f"{name}.json").exists():
        print(f"{name}: already trained in {out}")
        load(model, out, name)
    else:
        train_and_save(keras, model, name, x_train, y_train, config, num_classes, out,
                       {"model": model_plan, "epochs": config.epochs, **notes})
    if not fine_tune:
        return
    tuned = fine_tuned_stem(name, fine_tune["epochs"])
    if (out / f"{tuned}.json").exists():
        print(f"{tuned}: already fine-tuned in {out}")
        return
    tune = dataclasses.replace(config, **fine_tune)
    train_and_save(keras, model, tuned, x_train, y_train, tune, num_classes, out,
                   {"model": model_plan, "epochs": config.epochs + tune.epochs, "fine_tune": fine_tune, **notes})


def train_and_save(keras, model, name: str, x_train, y_train, config: TrainConfig, num_classes: int, out: Path,
                   record: dict):
    """``fit``, then ``save`` under ``name`` with ``record``, the seconds and the last training accuracy."""
    start = time.time()
    acc = fit(keras, model, name, x_train, y_train, config, num_classes)
    seconds = time.time() - start
    save(keras, model, out, name, {**record, "seconds": round(seconds, 1), "final_train_acc": acc})
    print(f"{name}: {seconds:.0f} s, final training accuracy {acc:.4f}", flush=True)


def device_name(keras) -> str:
    if keras.backend.backend() == "jax":
        import jax

        return str(jax.devices()[0].device_kind)
    return keras.backend.backend()


def load_plan(path: Path) -> dict:
    """The plan, or one line that says how to get a usable one."""
    fix = "write it with `python -m bench.export ... --plan-baselines PLAN`"
    try:
        plan = read_json(path)
    except FactoryError as exc:
        raise FactoryError(f"{exc}; {fix}") from None
    missing = [key for key in ("recipe", "data", "models") if key not in plan]
    if missing:
        raise FactoryError(f"{path} is not a baseline plan (it has no {', '.join(missing)}): {fix}")
    return plan


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plan", help="the plan bench/export.py --plan-baselines wrote")
    parser.add_argument("--data", required=True, help="the image folder the supernet was trained on")
    parser.add_argument("--out", required=True, help="folder for the .npz weights and .json records")
    parser.add_argument("--only", type=int, help="train only the first N models of the plan (a quick check)")
    parser.add_argument("--epochs", type=int, help="override the plan's epochs (a quick check; not for results)")
    args = parser.parse_args()

    plan = load_plan(Path(args.plan))  # before Keras's import: a wrong path fails at once

    import keras

    recipe = dict(plan["recipe"], **({"epochs": args.epochs} if args.epochs else {}))
    config = TrainConfig(**recipe)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    x_train, y_train = training_images(plan, Path(args.data).expanduser())
    x_train = resize_images(x_train, plan["data"]["image_size"])
    same = checksum(x_train) == plan["data"]["resized_train_sha256"]
    print(f"{len(y_train)} training images at {x_train.shape[1]}px ready in {time.time() - start:.0f} s "
          f"(Keras {keras.__version__}, {keras.backend.backend()} on {device_name(keras)}); resized "
          f"{'bit for bit as' if same else 'with rounding differences from'} the supernet's", flush=True)
    for model_plan in plan["models"][:args.only]:
        train_one(keras, model_plan, x_train, y_train, config, plan.get("fine_tune"), len(plan["data"]["classes"]),
                  out, {"resized_as_supernet": same})


if __name__ == "__main__":
    run(main)
