"""A segmenter from end to end on digits-seg: trained, exported with its card and metadata, reproduced by the
card's own code, run by `factory predict`, and loaded as shipped by MediaPipe's and the Task Library's
ImageSegmenter (each from its own environment)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import synthetic_table
from PIL import Image

from export.metadata import SEGMENTER_METADATA, read_metadata, segmenter_activation
from export.parity import tflite_predict
from factory.app.cli import main
from factory.nas.heads import SegmentationHead
from factory.nas.space import TINY, SubnetConfig
from factory.training.data import load_data
from factory.training.portable.images import resize_images
from factory.training.portable.masks import resize_masks
from test_clients import ROOT, client_python

HEAD = SegmentationHead(11)
SEGMENTERS = {"mediapipe": "mediapipe_segment.py", "tflite-support": "tasklib_segment.py"}


@pytest.fixture(scope="module")
def seg_bundle(tmp_path_factory, host):
    """The tiny space trained 30 epochs on digits-seg (a minute), its largest subnet exported as `factory export` does by
    default (uint8 pixels in, probabilities out, QAT)."""
    from export.config import ExportConfig
    from factory.app.stages import export_workdir
    from factory.training.train import TrainConfig, train_supernet
    from factory.training.workdir import Workdir

    path = tmp_path_factory.mktemp("seg-work")
    train_supernet(load_data("digits-seg"), TINY, Workdir(path), TrainConfig(epochs=30, batch_size=64), verbose=0)
    out = tmp_path_factory.mktemp("seg") / "bundle"
    export_workdir(Workdir(path), SubnetConfig.largest(TINY), host, synthetic_table("host-cpu-1t", 1.0, head=HEAD),
                   out, verbose=0, config=ExportConfig(max_drop_points=5.0))
    return out


@pytest.fixture(scope="module")
def card(seg_bundle):
    return json.loads((seg_bundle / "model_card.json").read_text())


def test_the_segmenter_learns_and_its_card_says_so(card, seg_bundle):
    acc = card["accuracy"]
    assert card["task"] == "segmentation" and acc["metric"] == "mean IoU"
    assert card["output"]["shape"] == [1, 24, 24, 11] and card["output"]["dtype"] == "float32"
    masks = resize_masks(load_data("digits-seg").y_test, 24)
    background = HEAD.score([(np.eye(11)[np.zeros(masks.shape, int)], masks)])  # every pixel called background
    assert acc[acc["shipped"]] > background + 0.01
    assert len(acc["class_iou"]) == 11 and acc["class_iou"][0] > 0.8  # the background is found
    assert card["parity"]["agreement_over"] == acc["images"] * 24 * 24 and card["parity"]["resamples"] == 1000
    text = (seg_bundle / "model_card.md").read_text()
    assert "image segmenter" in text and "| class | IoU |" in text and "ImageSegmenter" in text


def test_metadata_names_the_labels_and_the_segmenters_activation(seg_bundle):
    info, files = read_metadata((seg_bundle / "model.tflite").read_bytes())
    [output] = info.outputs
    assert files[output.labels_file].decode().splitlines() == load_data("digits-seg").class_names
    [(name, data)] = info.custom
    assert name == SEGMENTER_METADATA and segmenter_activation(data) == "NONE"  # probabilities already
    assert info.min_parser_version == "1.5.0" and info.inputs[0].image == (24, 24)


def test_the_cards_code_reproduces_its_mean_iou(card, seg_bundle):
    done = subprocess.run([sys.executable, "-c", card["snippets"]["python"]], cwd=seg_bundle, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-1500:]
    shipped = card["accuracy"][card["accuracy"]["shipped"]]
    assert f"mean IoU {100 * shipped:.2f}%" in done.stdout


def test_predict_writes_a_coloured_mask_beside_each_image(seg_bundle, tmp_path, capsys):
    data = load_data("digits-seg")
    for i in range(2):
        Image.fromarray(np.kron(data.x_test[i], np.ones((2, 2, 1), np.uint8))).save(tmp_path / f"scene{i}.png")
    assert main(["predict", str(seg_bundle), str(tmp_path / "scene0.png"), str(tmp_path / "scene1.png")]) == 0
    out = capsys.readouterr().out
    for i in range(2):
        mask = Image.open(tmp_path / f"scene{i}.mask.png")
        assert mask.size == (64, 64) and mask.mode == "RGB"
        assert f"scene{i}.mask.png; background " in out
    line = out.splitlines()[0]
    shares = [float(part.rsplit(" ", 1)[1].rstrip("%")) for part in line.split("; ", 1)[1].split(", ")]
    assert sum(shares) == pytest.approx(100, abs=0.5)


def test_task_must_match_the_data(capsys):
    assert main(["train", "--task", "segmentation", "--data", "digits", "--workdir", "/tmp/never"]) == 2
    assert "--task segmentation needs masks" in capsys.readouterr().err


def segment(name: str, bundle, arrays: dict, tmp_path) -> dict:
    python = client_python(name)
    np.savez(tmp_path / "images.npz", **arrays)
    out = tmp_path / f"{name}.npz"
    done = subprocess.run([python, ROOT / "tests" / "clients" / SEGMENTERS[name], bundle / "model.tflite",
                           tmp_path / "images.npz", out], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{name} refused the bundle: {done.stderr.strip()[-1500:]}"
    with np.load(out) as results:
        return {k: results[k] for k in results.files}


@pytest.mark.parametrize("name", list(SEGMENTERS))
def test_the_bundle_works_as_shipped_in_the_segmenter(name, seg_bundle, card, tmp_path):
    data = load_data("digits-seg")
    at_input = resize_images(data.x_test, card["input"]["resolution"])
    results = segment(name, seg_bundle, {"test": at_input}, tmp_path)
    litert = tflite_predict((seg_bundle / "model.tflite").read_bytes(), at_input)
    category, confidence = results["test_category"], results["test_confidence"]
    assert category.shape == litert.shape[:3] and confidence.shape == litert.shape
    agree = np.mean(category == litert.argmax(-1))
    assert agree >= 0.99, f"{name}'s category masks agree with LiteRT on only {100 * agree:.2f}% of the pixels"
    assert np.mean(confidence.argmax(-1) == category) >= 0.99
    assert np.abs(confidence.sum(-1) - 1).max() < 0.05  # probabilities, no second softmax
    assert list(results["labels"]) == card["classes"]
