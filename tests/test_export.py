"""Exporting a subnet of a trained work directory as a bundle an app team can ship."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from devices.hardware import describe, host_hardware
from devices.profile import DeviceProfile
from export.bundle import write_bundle
from export.metadata import read_metadata
from export.finetune import qat_epochs
from export.config import ExportConfig
from factory.app.stages import export_workdir
from factory.training.workdir import Workdir
from factory.training.data import load_data
from factory.core.errors import FactoryError
from factory.training.portable.images import resize_images
from factory.nas.space import TINY, SubnetConfig
from latency_tables.table import LatencyTable
from factory.nas.heads import ClassificationHead

SUBNETS = {"smallest": SubnetConfig.smallest(TINY), "largest": SubnetConfig.largest(TINY),
           "random": SubnetConfig.random(TINY, 5)}
# parity is tested on its own below: a one-epoch tiny supernet is near chance, where int8 and Keras disagree on ties
QUICK = ExportConfig(qat_epochs=1, min_qat_steps=0, max_drop_points=100.0, min_agreement=0.0)


def app_accuracy(bundle, images, labels):
    """What an app does with the bundle: follow the card's preprocessing, one image at a time."""
    card = json.loads((bundle / "model_card.json").read_text())
    inp = card["input"]
    interpreter = Interpreter(model_path=str(bundle / "model.tflite"))
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    x = images.astype(np.float32) * inp["pixel_scale"] + inp["pixel_offset"]
    if inp["dtype"] != "float32":
        info = np.iinfo(inp["dtype"])
        x = np.clip(np.round(x / inp["scale"]) + inp["zero_point"], info.min, info.max).astype(inp["dtype"])
        # the card's plain statement of the same thing: pixels as they are (uint8) or pixel - 128 (int8)
        np.testing.assert_array_equal(x, (images.astype(np.int32) + inp["pixel_shift"]).astype(inp["dtype"]))
    hits = 0
    for image, label in zip(x, labels):
        interpreter.set_tensor(input_index, image[None])
        interpreter.invoke()
        hits += int(interpreter.get_tensor(output_index)[0].argmax() == label)
    return hits / len(labels)


def test_top1_agreement_counts_a_tie_as_agreeing_with_either_class():
    from export.parity import top1_agreement

    keras = np.array([[0.1, 0.5, 0.4], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])
    tflite = np.array([[0.1, 0.45, 0.45], [0.4, 0.4, 0.2], [0.5, 0.3, 0.2]])  # two ties, one real miss
    assert top1_agreement(keras, tflite) == pytest.approx(2 / 3) == top1_agreement(tflite, keras)


@pytest.mark.parametrize("epochs, min_steps, steps_per_epoch, expected",
                         [(2, 300, 352, 2), (2, 300, 10, 30), (5, 300, 100, 5), (1, 301, 100, 4), (0, 300, 10, 0)])
def test_small_data_fine_tunes_for_at_least_the_minimum_steps(epochs, min_steps, steps_per_epoch, expected):
    assert qat_epochs(epochs, min_steps, steps_per_epoch) == expected


@pytest.mark.parametrize("name, io", [("smallest", "uint8"), ("largest", "uint8"), ("random", "uint8"),
                                      ("smallest", "int8")])
def test_bundle_holds_a_fully_int8_model_that_matches_its_card(name, io, tiny_workdir, host, tiny_table, tmp_path,
                                                               capsys):
    subnet = SUBNETS[name]
    budget = 1e-6 if name == "largest" else 1e3  # one budget no model can meet: shipped only when allowed
    out = tmp_path / "bundle"
    card = export_workdir(Workdir(tiny_workdir), subnet, host, tiny_table, out, budget_ms=budget,
                          config=dataclasses.replace(QUICK, io=io, allow_over_budget=True), verbose=0)
    assert sorted(p.name for p in out.iterdir()) == ["labels.txt", "model.tflite", "model_card.json",
                                                      "model_card.md", "pareto.png"]
    assert json.loads((out / "model_card.json").read_text()) == card
    data = load_data("digits")
    assert (out / "labels.txt").read_text().split() == data.class_names
    assert SubnetConfig.from_dict(card["subnet"]) == subnet
    r = subnet.resolution
    assert card["input"]["shape"] == [1, r, r, 3] and card["input"]["dtype"] == io
    assert card["output"]["shape"] == [1, 10] and card["output"]["dtype"] == {"uint8": "float32", "int8": "int8"}[io]
    assert card["float_operators"] == [] and card["size_bytes"] == (out / "model.tflite").stat().st_size
    # MediaPipe and the Task Library take uint8 pixels; only the I/O conversions are not int8
    assert card["io_operators"] == ({"uint8": ["QUANTIZE", "DEQUANTIZE"], "int8": []}[io])
    assert card["latency"]["predicted_ms"] == pytest.approx(tiny_table.predict(subnet))
    assert card["latency"]["measured"]["median_ms"] > 0
    assert card["latency"]["within_budget"] is (name != "largest")
    # peak memory: the search's prediction is the arena LiteRT lays out for the shipped model (QAT weights, I/O)
    memory = card["memory"]
    assert memory["predicted"]["arena_bytes"] == memory["measured"]["arena_bytes"] > 0
    # weights: QAT's conversion holds a few dozen bytes of constants more or less than the layers' (1.6% of the
    # smallest tiny subnet's 4.6 KB, 0.01% of a real one's)
    assert memory["predicted"]["weights_bytes"] == pytest.approx(memory["measured"]["weights_bytes"], rel=0.01, abs=256)
    assert memory["measured"]["weights_bytes"] < card["size_bytes"]
    assert card["params"] == TINY.param_count(subnet, ClassificationHead(10)) and card["macs"] > card["params"]
    assert card["training"]["qat_epochs_run"] == 1 and card["training"]["distilled"]
    # the reported int8 accuracy is what an app following the card gets on the test split
    test = data.resized(r)
    assert app_accuracy(out, test.x_test, test.y_test) == pytest.approx(card["accuracy"]["qat_int8"])
    assert card["accuracy"]["images"] == len(test.y_test)
    text = (out / "model_card.md").read_text()
    assert "EXCEEDED" in text if name == "largest" else "(met)" in text
    assert "## Peak memory" in text and "predicted against measured" in text
    assert ("exceeds the 1e-06 ms budget" in capsys.readouterr().err) is (name == "largest")
    assert card["latency"]["hardware"] == host_hardware() and f"measured on: {describe(host_hardware())}" in text
    # the model carries its own metadata: an RGB image input with its normalization, labels packed for the output
    info, files = read_metadata((out / "model.tflite").read_bytes())
    assert files == {"labels.txt": (out / "labels.txt").read_bytes()}
    [image], [scores] = info.inputs, info.outputs
    assert image.image == (r, r) and image.mean == (128.0,) and image.std == (128.0,)
    assert (image.min, image.max) == {"uint8": ((0.0,), (255.0,)), "int8": ((-128.0,), (127.0,))}[io]
    assert scores.labels_file == "labels.txt" and info.min_parser_version == "1.0.0"
    assert info.author == "mobile-model-factory" and info.license and info.version and info.name == card["name"]
    # parity measures quantization: against the float twin of the same weights, and agreement with Keras QAT
    acc = card["accuracy"]
    assert {"float", "ptq_int8", "float_finetuned", "qat_keras", "qat_int8"} <= set(acc)
    assert card["parity"]["reference"] == "float_finetuned"
    assert card["parity"]["drop_points"] == pytest.approx(100 * (acc["float_finetuned"] - acc["qat_int8"]))
    assert 0 <= card["parity"]["top1_agreement"] <= 1
    assert "float twin of this model" in text and "QAT model simulated in Keras" in text


def probabilities(bundle, images):
    interpreter = Interpreter(model_path=str(bundle / "model.tflite"))
    interpreter.allocate_tensors()
    out = []
    for image in images:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
        interpreter.invoke()
        out.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0])
    return np.array(out)


@pytest.fixture
def bundle(trained_bundle):
    return trained_bundle


def resolution(bundle) -> int:
    return json.loads((bundle / "model_card.json").read_text())["input"]["resolution"]


def test_the_default_bundle_returns_probabilities(bundle):
    test = load_data("digits").resized(resolution(bundle))
    p = probabilities(bundle, test.x_test[:50])
    assert p.dtype == np.float32 and (p >= 0).all() and (p <= 1).all()
    assert np.abs(p.sum(-1) - 1).max() < 0.05  # an int8 softmax: steps of 1/256 per class


def test_onnx_beside_the_tflite_matches_keras_in_onnx_runtime(bundle):
    import onnxruntime

    card = json.loads((bundle / "model_card.json").read_text())
    onnx = card["onnx"]
    assert (bundle / "model.onnx").stat().st_size == onnx["size_bytes"]
    assert onnx["top1_agreement"] == 1.0 and onnx["max_abs_logit_difference"] < 1e-3
    assert onnx["accuracy"] == pytest.approx(card["accuracy"]["float_finetuned"])  # the fine-tuned float weights
    session = onnxruntime.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    r = resolution(bundle)
    x = np.zeros((3, r, r, 3), np.float32)
    assert session.run(None, {session.get_inputs()[0].name: x})[0].shape == (3, 10)  # any batch size
    assert "## ONNX" in (bundle / "model_card.md").read_text()


def test_predict_labels_images_of_any_size_as_the_card_prepares_them(bundle, tmp_path):
    from PIL import Image

    from export.predict import predict

    data = load_data("digits")
    big = np.kron(data.x_test[0], np.ones((3, 3, 1), np.uint8))  # 96x96: resized by the bundle's preprocessing
    Image.fromarray(big).save(tmp_path / "big.png")
    Image.fromarray(data.x_test[1][:, 4:28]).save(tmp_path / "narrow.jpg", quality=95)  # 24x32, not square
    [first, second] = predict(bundle, [tmp_path / "big.png", tmp_path / "narrow.jpg"], top_k=3)
    assert len(first) == 3 and all(label in data.class_names for label, _ in first + second)
    scores = [p for _, p in first]
    assert scores == sorted(scores, reverse=True) and 0 <= scores[-1] <= scores[0] <= 1
    r = resolution(bundle)
    expected = probabilities(bundle, resize_images(big[None], r))[0]
    assert first[0] == (data.class_names[int(expected.argmax())], pytest.approx(float(expected.max())))


@pytest.mark.parametrize("bad, message", [("missing.png", "does not exist"), ("notes.txt", "not a decodable image")])
def test_predict_refuses_a_bad_image_in_one_line(bundle, tmp_path, bad, message):
    from export.predict import predict

    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FactoryError, match=message):
        predict(bundle, [tmp_path / bad])


def test_predict_refuses_a_folder_without_a_bundle(tmp_path):
    from export.predict import predict

    with pytest.raises(FactoryError, match="give a bundle folder"):
        predict(tmp_path, [tmp_path / "x.png"])


def run_card_snippet(bundle) -> str:
    """The card's Python snippet, taken from model_card.md as a reader would copy it, run in the bundle."""
    text = (bundle / "model_card.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    done = subprocess.run([sys.executable, "-c", code], cwd=bundle, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("io", ["uint8", "int8"])
def test_the_cards_python_snippet_reproduces_its_accuracy_exactly(io, bundle, tiny_workdir, host, tiny_table,
                                                                  tmp_path):
    out = bundle
    if io != "uint8":
        out = tmp_path / "bundle"
        export_workdir(Workdir(tiny_workdir), SUBNETS["random"], host, tiny_table, out, verbose=0,
                       config=dataclasses.replace(QUICK, io=io))
    acc = json.loads((out / "model_card.json").read_text())["accuracy"]
    assert run_card_snippet(out) == (f"{acc['correct']} of {acc['images']} correct: "
                                     f"{100 * acc['qat_int8']:.2f}%")


def test_the_cards_snippet_rebuilds_a_folders_split(tmp_path):
    """A <class>/ folder split by the seed: the snippet's file list is the factory's test split."""
    from PIL import Image

    from factory.training.data import load_folder, test_split_code
    from factory.training.portable.images import resize_image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(15):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3)).astype(np.uint8)).save(tmp_path / "data" / c / f"{i}.png")
    data = load_folder(tmp_path / "data", seed=3)
    data = dataclasses.replace(data, source=str(tmp_path / "data"))
    scope = {"labels": data.class_names}
    exec(test_split_code(data), scope)
    rebuilt = np.stack([resize_image(image, 12) for image in scope["test_images"]])
    np.testing.assert_array_equal(rebuilt, data.x_test)
    np.testing.assert_array_equal(scope["test_labels"], data.y_test)


def test_an_int8_model_losing_too_much_fails_with_three_figures_and_no_bundle(tiny_workdir, host, tiny_table,
                                                                              tmp_path, monkeypatch):
    import export.pipeline

    def real_loss(head, reference, shipped):  # as if the int8 model lost 40 of the 360 test images for certain
        return {"points": 11.1, "low": 8.0, "high": 14.2, "images": len(reference), "lost": 45, "gained": 5}

    monkeypatch.setattr(export.pipeline.task_export("classification"), "drop", real_loss)
    out = tmp_path / "bundle"
    with pytest.raises(FactoryError) as info:
        export_workdir(Workdir(tiny_workdir), SUBNETS["smallest"], host, tiny_table, out,
                       config=ExportConfig(qat_epochs=0, max_drop_points=1.0), verbose=0)
    message = str(info.value)  # with no QAT the post-training int8 model is what would ship
    assert message.startswith("the ptq_int8 model loses 11.10 points (95% interval 8.00 to 14.20")
    assert "against float (float " in message and "more than 1 at 95% confidence" in message
    assert "--max-drop" in message and not out.exists() and list(tmp_path.iterdir()) == []


def test_no_fine_tune_ships_post_training_int8_with_the_pixels_own_input_scale(tiny_workdir, host, tiny_table,
                                                                                tmp_path):
    out = tmp_path / "bundle"
    card = export_workdir(Workdir(tiny_workdir), SUBNETS["random"], host, tiny_table, out, verbose=0,
                          config=ExportConfig(qat_epochs=0, max_drop_points=100.0))
    acc = card["accuracy"]
    assert acc["shipped"] == "ptq_int8" and card["parity"]["reference"] == "float" and "qat_keras" not in acc
    assert card["input"]["dtype"] == "uint8" and card["input"]["pixel_shift"] == 0  # raw pixels, exactly
    test = load_data("digits").resized(SUBNETS["random"].resolution)
    assert app_accuracy(out, test.x_test, test.y_test) == pytest.approx(acc["ptq_int8"])


def test_a_tflite_that_disagrees_with_its_keras_model_fails_with_no_bundle(tiny_workdir, host, tiny_table, tmp_path,
                                                                           monkeypatch):
    import export.pipeline

    monkeypatch.setattr(export.pipeline, "proportion_interval", lambda k, n: (0.50, 0.60))  # surely under 98%
    out = tmp_path / "bundle"
    with pytest.raises(FactoryError, match=r"agrees with its Keras model on only .*95% interval 50\.00 to 60\.00%"):
        export_workdir(Workdir(tiny_workdir), SUBNETS["smallest"], host, tiny_table, out, verbose=0,
                       config=dataclasses.replace(QUICK, max_drop_points=100.0, min_agreement=0.98))
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def float16_device(tmp_path_factory):
    """A host profile timing float16 models, and a synthetic float16 table of the tiny space for it."""
    from helpers import synthetic_table

    path = tmp_path_factory.mktemp("fp16")
    profile = {"name": "host-fp16", "runner": "host", "precision": "float16", "runs": 5, "warmup_runs": 1}
    (path / "host-fp16.json").write_text(json.dumps(profile))
    doc = synthetic_table("host-fp16", 1.0).doc
    doc["device"], doc["precision"] = profile, "float16"
    (path / "table.json").write_text(json.dumps(doc))
    return DeviceProfile(**profile), LatencyTable.load(path / "table.json", TINY, DeviceProfile(**profile))


def test_a_float16_profile_exports_a_float16_model_with_normalization_metadata(float16_device, tiny_workdir,
                                                                              tmp_path):
    profile, table = float16_device
    out = tmp_path / "bundle"
    card = export_workdir(Workdir(tiny_workdir), SUBNETS["random"], profile, table, out, verbose=0,
                          config=dataclasses.replace(QUICK, min_agreement=0.99))
    interpreter = Interpreter(model_path=str(out / "model.tflite"))
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    weights = {np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    assert "float16" in weights and "int8" not in weights  # float16 weights, float compute
    assert card["precision"] == "float16" and card["io"] == "float32" and card["training"]["qat_epochs_run"] == 0
    acc = card["accuracy"]
    assert acc["shipped"] == "float16" and card["parity"]["reference"] == "float"
    assert card["parity"]["top1_agreement"] >= 0.99  # float16 weights barely move a float model
    [image], _ = read_metadata((out / "model.tflite").read_bytes())[0].inputs, None
    assert image.mean == (128.0,) and image.std == (128.0,)  # MediaPipe normalizes float input from these
    assert image.min == (-1.0,) and image.max == (pytest.approx(127 / 128),)
    test = load_data("digits").resized(SUBNETS["random"].resolution)
    assert app_accuracy(out, test.x_test, test.y_test) == pytest.approx(acc["float16"], abs=0.01)


def test_a_failed_bundle_write_leaves_nothing(tmp_path):
    def broken_plot(path):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_bundle(tmp_path / "b", b"model", ["a"], {}, plot=broken_plot)
    assert list(tmp_path.iterdir()) == []


def test_float_operators_fail_the_export_unless_allowed(tiny_workdir, host, tiny_table, tmp_path, monkeypatch):
    import export.pipeline

    monkeypatch.setattr(export.pipeline, "float_operators", lambda content: ["LOGISTIC"])  # as if left in float
    quick = ExportConfig(qat_epochs=0, max_drop_points=100.0, min_agreement=0.0)
    with pytest.raises(FactoryError, match=r"\['LOGISTIC'\].*--allow-float-ops"):
        export_workdir(Workdir(tiny_workdir), SUBNETS["smallest"], host, tiny_table, tmp_path / "b", config=quick,
                       verbose=0)
    assert not (tmp_path / "b").exists()
    allowed = dataclasses.replace(quick, allow_float_ops=True)
    card = export_workdir(Workdir(tiny_workdir), SUBNETS["smallest"], host, tiny_table, tmp_path / "b", config=allowed,
                          verbose=0)
    assert card["float_operators"] == ["LOGISTIC"] and "LOGISTIC" in (tmp_path / "b" / "model_card.md").read_text()
