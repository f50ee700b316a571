"""Exporting a subnet of a trained work directory as a bundle an app team can ship."""

import json

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from devices.hardware import describe, host_hardware
from export.bundle import write_bundle
from export.finetune import qat_epochs
from export.pipeline import ExportConfig, export_subnet
from factory.data import load_data
from factory.errors import FactoryError
from factory.space import TINY, SubnetConfig
from latency_tables.table import LatencyTable

SUBNETS = {"smallest": SubnetConfig.smallest(TINY), "largest": SubnetConfig.largest(TINY),
           "random": SubnetConfig.random(TINY, 5)}
QUICK = ExportConfig(qat_epochs=1, min_qat_steps=0, max_drop_points=100.0)  # parity is tested on its own below


def app_accuracy(bundle, images, labels):
    """What an app does with the bundle: follow the card's preprocessing, one image at a time."""
    card = json.loads((bundle / "model_card.json").read_text())
    inp = card["input"]
    interpreter = Interpreter(model_path=str(bundle / "model.tflite"))
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    x = images.astype(np.float32) * inp["pixel_scale"] + inp["pixel_offset"]
    q = np.clip(np.round(x / inp["scale"]) + inp["zero_point"], -128, 127).astype(np.int8)
    if inp["pixel_shift"] is not None:  # the card's shortcut is the same thing
        np.testing.assert_array_equal(q, (images.astype(np.int32) + inp["pixel_shift"]).astype(np.int8))
    hits = 0
    for image, label in zip(q, labels):
        interpreter.set_tensor(input_index, image[None])
        interpreter.invoke()
        hits += int(interpreter.get_tensor(output_index)[0].argmax() == label)
    return hits / len(labels)


@pytest.mark.parametrize("epochs, min_steps, steps_per_epoch, expected",
                         [(2, 300, 352, 2), (2, 300, 10, 30), (5, 300, 100, 5), (1, 301, 100, 4), (0, 300, 10, 0)])
def test_small_data_fine_tunes_for_at_least_the_minimum_steps(epochs, min_steps, steps_per_epoch, expected):
    assert qat_epochs(epochs, min_steps, steps_per_epoch) == expected


@pytest.mark.parametrize("name", list(SUBNETS))
def test_bundle_holds_a_fully_int8_model_that_matches_its_card(name, tiny_workdir, tiny_table_file, tmp_path,
                                                               capsys):
    subnet = SUBNETS[name]
    budget = 1e-6 if name == "largest" else 1e3  # one budget no model can meet
    out = tmp_path / "bundle"
    card = export_subnet(tiny_workdir, subnet, "host-cpu-1t", out, budget_ms=budget, config=QUICK,
                         table=tiny_table_file, verbose=0)
    assert sorted(p.name for p in out.iterdir()) == ["labels.txt", "model.tflite", "model_card.json",
                                                      "model_card.md", "pareto.png"]
    assert json.loads((out / "model_card.json").read_text()) == card
    data = load_data("digits")
    assert (out / "labels.txt").read_text().split() == data.class_names
    assert SubnetConfig.from_dict(card["subnet"]) == subnet
    r = subnet.resolution
    assert card["input"]["shape"] == [1, r, r, 3] and card["input"]["dtype"] == "int8"
    assert card["output"]["shape"] == [1, 10] and card["output"]["dtype"] == "int8"
    assert card["float_operators"] == [] and card["size_bytes"] == (out / "model.tflite").stat().st_size
    table = LatencyTable.load(tiny_table_file, TINY)
    assert card["latency"]["predicted_ms"] == pytest.approx(table.predict(subnet))
    assert card["latency"]["measured"]["median_ms"] > 0
    assert card["latency"]["within_budget"] is (name != "largest")
    assert card["params"] == TINY.param_count(subnet, 10) and card["macs"] > card["params"]
    assert card["training"]["qat_epochs_run"] == 1 and card["training"]["distilled"]
    # the reported int8 accuracy is what an app following the card gets on the test split
    test = data.resized(r)
    assert app_accuracy(out, test.x_test, test.y_test) == pytest.approx(card["accuracy"]["qat_int8"])
    assert card["accuracy"]["images"] == len(test.y_test)
    text = (out / "model_card.md").read_text()
    assert "EXCEEDED" in text if name == "largest" else "(met)" in text
    assert ("exceeds the 1e-06 ms budget" in capsys.readouterr().err) is (name == "largest")
    assert card["latency"]["hardware"] == host_hardware() and f"measured on: {describe(host_hardware())}" in text


def test_an_int8_model_losing_too_much_fails_with_three_figures_and_no_bundle(tiny_workdir, tiny_table_file,
                                                                              tmp_path):
    out = tmp_path / "bundle"
    with pytest.raises(FactoryError) as info:  # a threshold no model meets: int8 must beat float by 100 points
        export_subnet(tiny_workdir, SUBNETS["smallest"], "host-cpu-1t", out,
                      config=ExportConfig(qat_epochs=0, max_drop_points=-100.0), table=tiny_table_file, verbose=0)
    message = str(info.value)
    assert all(f"{k} " in message for k in ("float", "ptq_int8", "qat_int8")) and "--max-drop" in message
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_failed_bundle_write_leaves_nothing(tmp_path):
    def broken_plot(path):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_bundle(tmp_path / "b", b"model", ["a"], {}, plot=broken_plot)
    assert list(tmp_path.iterdir()) == []


def test_float_operators_fail_the_export_unless_allowed(tiny_workdir, tiny_table_file, tmp_path, monkeypatch):
    import export.pipeline

    monkeypatch.setattr(export.pipeline, "float_operators", lambda content: ["LOGISTIC"])  # as if left in float
    quick = ExportConfig(qat_epochs=0, max_drop_points=100.0)
    with pytest.raises(FactoryError, match=r"\['LOGISTIC'\].*--allow-float-ops"):
        export_subnet(tiny_workdir, SUBNETS["smallest"], "host-cpu-1t", tmp_path / "b", config=quick,
                      table=tiny_table_file, verbose=0)
    assert not (tmp_path / "b").exists()
    allowed = ExportConfig(qat_epochs=0, max_drop_points=100.0, allow_float_ops=True)
    card = export_subnet(tiny_workdir, SUBNETS["smallest"], "host-cpu-1t", tmp_path / "b", config=allowed,
                         table=tiny_table_file, verbose=0)
    assert card["float_operators"] == ["LOGISTIC"] and "LOGISTIC" in (tmp_path / "b" / "model_card.md").read_text()
