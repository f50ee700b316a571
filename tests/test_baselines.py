"""The baseline comparison's baselines trained elsewhere (bench.baselines, Keras 3) are the models
bench.compare_baselines converts and times here (tf_keras)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.compare_baselines.train import fine_tune_recipe, import_baseline, train_more, trained_baseline, write_plan
from factory.core.errors import FactoryError
from factory.training.data import load_folder

ROOT = Path(__file__).resolve().parents[1]

NAME = "MobileNetV3Small__32px__alpha0.35"
KERAS3 = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"} | {"KERAS_BACKEND": "tensorflow"}


def test_the_recipe_and_the_folder_split_import_without_tensorflow():
    code = ("import sys, factory.training.portable.recipe, factory.training.portable.images, bench.baselines; "
            "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=KERAS3, check=True)


@pytest.mark.parametrize("content", [None, "{not json", '{"models": []}'], ids=["missing", "malformed", "not-a-plan"])
def test_a_missing_or_wrong_plan_is_one_line_naming_the_fix(content, tmp_path):
    plan = tmp_path / "plan.json"
    if content is not None:
        plan.write_text(content)
    run = subprocess.run([sys.executable, "-m", "bench.baselines", str(plan), "--data", str(tmp_path), "--out",
                          str(tmp_path / "out")], cwd=ROOT, env=KERAS3, capture_output=True, text=True)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "--plan-baselines" in run.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A MobileNetV3Small trained one epoch by bench/baselines.py on a 16x16 folder upsampled to 32, and a
    copy of it fine-tuned one epoch more as the factory's export fine-tunes (here: 2 steps of 8)."""
    tmp = tmp_path_factory.mktemp("baselines")
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("test", 4)):
        for c, name in enumerate(("dark", "light")):
            (tmp / "data" / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 128, (16, 16, 3)) + 127 * c
                Image.fromarray(pixels.astype(np.uint8)).save(tmp / "data" / split / name / f"{i}.png")
    raw = load_folder(tmp / "data")
    plan = tmp / "plan.json"
    write_plan(plan, {("MobileNetV3Small", 1.0): (32, 0.35)}, raw, raw.resized(32), epochs=1,
               fine_tune=dict(fine_tune_recipe(1, len(raw.y_train)), epochs=1))
    doc = json.loads(plan.read_text())
    doc["recipe"]["batch_size"] = doc["fine_tune"]["batch_size"] = 8  # 36 training images
    plan.write_text(json.dumps(doc))
    subprocess.run([sys.executable, "-m", "bench.baselines", str(plan), "--data", str(tmp / "data"),
                    "--out", str(tmp / "out")], cwd=ROOT, env=KERAS3, check=True)
    return tmp / "out"


def test_weights_trained_under_keras3_reproduce_their_outputs_in_tf_keras(trained):
    record = json.loads((trained / f"{NAME}.json").read_text())
    assert record["epochs"] == 1 and record["backend"] == "tensorflow"
    assert record["resized_as_supernet"]  # the 16 -> 32 upsample matched ImageData.resized bit for bit
    model, where = import_baseline(trained, NAME, epochs=1)  # checks the probe's logits
    assert "tensorflow" in where
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 2)


def test_the_fine_tuned_copy_trained_on_from_the_trained_weights(trained):
    record = json.loads((trained / f"{NAME}__plus1.json").read_text())
    assert record["epochs"] == 2 and record["fine_tune"]["label_smoothing"] == 0.0
    tuned, _ = import_baseline(trained, f"{NAME}__plus1", epochs=2)
    first, _ = import_baseline(trained, NAME, epochs=1)
    assert not all(np.array_equal(a, b) for a, b in zip(tuned.get_weights(), first.get_weights()))


@pytest.mark.parametrize("n_train,epochs", [(45000, 2), (1000, 43)], ids=["cifar10", "small"])
def test_the_baselines_fine_tune_matches_the_exports(n_train, epochs):
    recipe = fine_tune_recipe(2, n_train)  # 300 steps at least, as export_subnet's QAT
    assert recipe["epochs"] == epochs and recipe["learning_rate"] == 0.005 and recipe["warmup_epochs"] == 0
    assert fine_tune_recipe(0, n_train) is None


def test_import_refuses_other_epochs_and_weights_that_do_not_reproduce(trained, tmp_path):
    with pytest.raises(FactoryError, match="trained 1 epochs, not 8"):
        import_baseline(trained, NAME, epochs=8)
    record = json.loads((trained / f"{NAME}.json").read_text())
    record["probe_logits"] = (np.asarray(record["probe_logits"]) + 1.0).tolist()
    (tmp_path / f"{NAME}.json").write_text(json.dumps(record))
    (tmp_path / f"{NAME}.npz").write_bytes((trained / f"{NAME}.npz").read_bytes())
    with pytest.raises(FactoryError, match="do not reproduce"):
        import_baseline(tmp_path, NAME, epochs=1)


def test_a_baseline_is_made_once_from_the_weights_or_by_training_here(trained, tmp_path):
    def must_not_train():
        raise AssertionError("trained although it was there")

    assert trained_baseline(tmp_path, NAME, None, 1, True, must_not_train) is None  # --no-train, no weights
    imported = trained_baseline(tmp_path, NAME, trained, 1, False, must_not_train)
    assert "tensorflow" in json.loads((tmp_path / f"{NAME}.json").read_text())["trained_on"]
    again = trained_baseline(tmp_path, NAME, None, 1, True, must_not_train)  # the saved model, even with --no-train
    assert all(np.array_equal(a, b) for a, b in zip(again.get_weights(), imported.get_weights()))
    here = trained_baseline(tmp_path, f"{NAME}__plus1", None, 2, False, lambda: imported)
    assert here is not None and json.loads((tmp_path / f"{NAME}__plus1.json").read_text())["trained_on"] == (
        "this machine (tf_keras)")


def test_a_baseline_trained_here_is_trained_more_from_its_saved_model(trained, tmp_path):
    """The path of bench.compare_baselines without a GPU machine: the saved tf_keras model, fine-tuned here."""
    first, _ = import_baseline(trained, NAME, epochs=1)
    first.save(tmp_path / f"{NAME}.keras")
    data = load_folder(trained.parent / "data").resized(32)
    tune = dict(fine_tune_recipe(1, len(data.y_train)), epochs=1, batch_size=8)
    more = train_more(tmp_path / f"{NAME}.keras", data, tune, tmp_path / "backup")
    assert more.input_shape == first.input_shape
    assert not all(np.array_equal(a, b) for a, b in zip(more.get_weights(), first.get_weights()))
