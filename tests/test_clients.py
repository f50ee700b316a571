"""The default bundle in the clients Android teams use: MediaPipe Tasks and the TFLite Task Library.

Neither installs beside the project's TensorFlow, so each runs from its own virtual
environment under .venvs/ (built by tests/clients/setup, which .ci/run calls) and
classifies the bundle's test images there, as shipped: no metadata or type is fixed by hand.
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from factory.training.data import load_data
from factory.training.portable.images import resize_images

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = {"mediapipe": ("mediapipe_classify.py", "import mediapipe.tasks.python.vision"),
           "tflite-support": ("tasklib_classify.py", "import tflite_support.task.vision")}


def client_python(name: str) -> Path:
    """The Python of a client environment, built if missing; a skip says why when it cannot be built."""
    python = ROOT / ".venvs" / name / "bin" / "python"

    def works():
        return python.exists() and subprocess.run([python, "-c", CLIENTS[name][1]], capture_output=True).returncode == 0

    if not works():
        built = subprocess.run([ROOT / "tests" / "clients" / "setup"], capture_output=True, text=True, timeout=1800)
        if not works():
            check = subprocess.run([python, "-c", CLIENTS[name][1]], capture_output=True, text=True) \
                if python.exists() else None
            why = (check.stderr.strip().splitlines() or ["?"])[-1] if check else built.stderr.strip()[-500:]
            pytest.skip(f"the {name} environment cannot be built here: {why}")
    return python


@pytest.fixture(scope="module")
def card_and_data(trained_bundle):
    card = json.loads((trained_bundle / "model_card.json").read_text())
    data = load_data("digits")
    return card, data


def classify(name: str, bundle: Path, arrays: dict, tmp_path: Path) -> dict:
    python = client_python(name)
    np.savez(tmp_path / "images.npz", **arrays)
    out = tmp_path / f"{name}.json"
    done = subprocess.run([python, ROOT / "tests" / "clients" / CLIENTS[name][0], bundle / "model.tflite",
                           tmp_path / "images.npz", out], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{name} refused the bundle: {done.stderr.strip()[-1500:]}"
    return json.loads(out.read_text())["results"]


def scores(rows, n: int) -> np.ndarray:
    """The clients' categories (sorted by score) back into one score vector per image, by index."""
    out = np.zeros((len(rows), n), np.float32)
    for i, categories in enumerate(rows):
        for index, score, _ in categories:
            out[i, index] = score
    return out


def litert_labels(bundle: Path, images: np.ndarray) -> np.ndarray:
    from export.parity import tflite_labels

    return tflite_labels((bundle / "model.tflite").read_bytes(), images)


@pytest.mark.parametrize("name", list(CLIENTS))
def test_the_default_bundle_works_as_shipped_in_the_client(name, trained_bundle, card_and_data, tmp_path):
    card, data = card_and_data
    r, labels, n = card["input"]["resolution"], card["classes"], len(card["classes"])
    at_input = resize_images(data.x_test, r)
    # every digits image, raw: on the 360 test images one image is 0.28 points, too coarse to see a point
    raw = np.concatenate([data.x_train, data.x_val, data.x_test])
    raw_labels = np.concatenate([data.y_train, data.y_val, data.y_test])
    results = classify(name, trained_bundle, {"at_input": at_input, "raw": raw}, tmp_path)

    # at the model's input size the client sees the same pixels as LiteRT: the same top-1
    mine = scores(results["at_input"], n)
    agree = np.mean(mine.argmax(-1) == litert_labels(trained_bundle, at_input))
    assert agree >= 0.99, f"{name} and LiteRT agree on top-1 for only {100 * agree:.1f}% of the test images"
    shipped = card["accuracy"][card["accuracy"]["shipped"]]
    assert np.mean(mine.argmax(-1) == data.y_test) == pytest.approx(shipped, abs=0.01)

    # every category is named from the model's own packed labels, and scores are probabilities
    for rows in results.values():
        for categories in rows:
            assert len(categories) == n and all(label == labels[index] for index, _, label in categories)
    assert (mine >= 0).all() and (mine <= 1).all() and np.abs(mine.sum(-1) - 1).max() < 0.05

    # fed the images at their own size (32x32), the client resizes them itself: within a point of the
    # card's preprocessing (the factory's resize, then LiteRT) on the same images
    client = np.mean(scores(results["raw"], n).argmax(-1) == raw_labels)
    card_way = np.mean(litert_labels(trained_bundle, resize_images(raw, r)) == raw_labels)
    assert abs(client - card_way) <= 0.01, (f"{name} scores {100 * client:.2f}% on raw images, the card's "
                                            f"preprocessing {100 * card_way:.2f}%")
