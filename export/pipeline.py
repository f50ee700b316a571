"""Export one subnet of a trained supernet as a bundle app teams load as shipped.

extract (batch norm recalibrated) -> float accuracy -> in the device profile's precision:
int8: post-training int8 for comparison -> QAT fine-tune (distilled from the largest
subnet) -> fully int8 .tflite (uint8 pixels in, probabilities out by default) -> operator
check; float16/float32: the float model converted -> TFLite metadata and labels packed
into the model -> parity on the test split (against the float twin of the shipped
weights, and top-1 agreement with the Keras model converted) -> latency on the device
-> bundle. Nothing is written unless every check passes. It knows nothing of work
directories: the app layer loads the supernet, data and table and draws the plot.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from devices.hardware import check_same_hardware
from devices.profile import DeviceProfile
from devices.runners import get_runner
from devices.timing import SPREAD_S
from export.config import ExportConfig
from export.bundle import count_macs, write_bundle
from export.finetune import fine_tune
from export.metadata import embed
from export.onnx import onnx_check, to_onnx
from export.parity import keras_predict, pixel_shift, proportion_interval, quantization, tflite_predict
from export.tasks import task_export
from export.quantize import dequantized, float_operators, io_operators, operator_report, pin_input_range, \
    quantize_model, wrapped
from factory.core.backend import keras
from factory.core.convert import convert
from factory.core.errors import FactoryError
from factory.nas.extract import extract
from factory.nas.space import SubnetConfig
from factory.nas.supernet import Supernet
from factory.training.data import (OFFSET, SCALE, ImageData, make_dataset, normalize, test_split_code,
                                   test_split_description)
from factory.training.portable.images import resize_policy
from latency_tables.memory import MemoryModel
from latency_tables.table import LatencyTable, rebuild_hint, tool_versions


def _tensor(detail: dict) -> dict:
    return {"name": detail["name"], **quantization(detail)}


def with_softmax(model: keras.Model) -> keras.Model:
    """The model as apps want it: probabilities (per image, or per pixel), a softmax in the graph after the
    logits."""
    return keras.Model(model.input, keras.layers.Softmax(name="probabilities")(model.output), name=model.name)


class Scores(dict):
    """The task's test score (top-1 accuracy, mean IoU) by model name, and each model's records on the test split:
    which images it gets right, or each image's pixel counts (what the gate compares)."""

    def __init__(self, head):
        super().__init__()
        self.head, self.task = head, task_export(head.task)
        self.records: dict[str, np.ndarray] = {}

    def add(self, name: str, outputs, targets) -> float:
        """Score a model's outputs (logits or probabilities) on the test targets."""
        self.records[name] = self.task.records(self.head, np.asarray(outputs), np.asarray(targets))
        self[name] = self.task.score(self.head, self.records[name])
        return self[name]


class OverBudgetError(FactoryError):
    """The model measured over its latency budget on the device; nothing was written."""

    def __init__(self, subnet: SubnetConfig, profile: DeviceProfile, budget_ms: float, measured_ms: float,
                 predicted_ms: float, stage: str):
        self.subnet, self.budget_ms, self.measured_ms, self.predicted_ms = subnet, budget_ms, measured_ms, predicted_ms
        self.stage = stage
        super().__init__(f"the {stage} model measured {measured_ms:.3f} ms on {profile.name}, over its "
                         f"{budget_ms:g} ms budget (predicted {predicted_ms:.3f} ms): search under a lower budget, "
                         "or pass --allow-over-budget to ship it with a warning")

    def record(self) -> dict:
        return {"subnet": self.subnet.to_dict(), "predicted_ms": self.predicted_ms, "measured_ms": self.measured_ms,
                "stage": self.stage}


def _int8(model, classifier, local, ptq: bytes, representative, teacher, config: ExportConfig, accuracy: dict,
          verbose: int):
    """Post-training int8 (``ptq``, converted already), then (unless ``qat_epochs`` is 0) the QAT fine-tune and
    its conversion.

    Returns the .tflite, the Keras model it was converted from (the QAT model, simulating
    int8, or the float classifier for post-training int8), the float twin of its weights
    (``model``'s logits), the epochs run, and the names of the shipped and reference
    figures, which it adds to ``accuracy``."""
    x_test, y_test = local.x_test, local.y_test
    content = ptq
    accuracy.add("ptq_int8", tflite_predict(content, x_test), y_test)
    if config.qat_epochs < 1:
        print(f"float {100 * accuracy['float']:.2f}%, post-training int8 {100 * accuracy['ptq_int8']:.2f}% "
              "(no quantization-aware fine-tuning)", flush=True)
        converted, twin, epochs_run, names = classifier, model, 0, ("ptq_int8", "float")
    else:
        print(f"float {100 * accuracy['float']:.2f}%, post-training int8 {100 * accuracy['ptq_int8']:.2f}%; "
              "quantization-aware fine-tuning", flush=True)
        converted = quantize_model(classifier)
        pin_input_range(converted, OFFSET, OFFSET + 255 * SCALE)
        logits = keras.Model(converted.input, wrapped(converted, model.layers[-1].name).output)  # shares weights
        epochs_run = fine_tune(logits, local, accuracy.head, config.qat_epochs, min_steps=config.min_qat_steps,
                               learning_rate=config.learning_rate, batch_size=config.batch_size,
                               teacher=teacher, seed=config.seed, verbose=verbose)
        content = convert(converted, "int8", representative, config.io)
        twin = dequantized(converted, model)
        accuracy.add("float_finetuned", keras_predict(twin, x_test), y_test)
        names = ("qat_int8", "float_finetuned")
    floats = float_operators(content)
    if floats and not config.allow_float_ops:
        raise FactoryError(f"the int8 model still computes in float in {sorted(set(floats))}: "
                           "pass --allow-float-ops to ship it anyway")
    return content, converted, twin, epochs_run, names


def pinned(images: np.ndarray) -> np.ndarray:
    """Normalized calibration images whose range is exactly the pixels' (one black and one white pixel
    put in the first image), so post-training quantization gives the input tensor the pixels' own scale."""
    images = images.copy()
    images[0, 0, 0], images[0, 0, -1] = OFFSET, OFFSET + 255 * SCALE
    return images


def _check_input(content: bytes, io: str):
    """A shipped int8 model takes pixels exactly: uint8 as they are, int8 as ``pixel - 128``."""
    from ai_edge_litert.interpreter import Interpreter

    detail = quantization(Interpreter(model_content=content).get_input_details()[0])
    want = {"uint8": 0, "int8": -128}[io]
    if pixel_shift(detail["scale"], detail["zero_point"]) != want:
        raise FactoryError(f"the int8 input is quantized with scale {detail['scale']} and zero point "
                           f"{detail['zero_point']}, not as pixels: a bug in the factory, please report it")


def parity(accuracy: Scores, reference: str, shipped: str, agreement: tuple[float, int], config: ExportConfig) -> dict:
    """The gate, judged with statistics on the test images: the shipped model is refused when its loss against
    ``reference`` exceeds ``max_drop_points`` at 95% confidence (the low end of the paired interval is over it), or
    when its agreement with the Keras model it was converted from (top class per image, or per pixel; ``agreement``
    is the share and how many it is over) is under ``min_agreement`` at 95% confidence (the high end of Wilson's
    interval is under it). Verdicts, estimates and intervals go to the card.

    Post-training int8 has no Keras model that simulates it: its agreement with the float
    model is quantization's own effect, so it is reported, and only the drop is gated."""
    drop = accuracy.task.drop(accuracy.head, accuracy.records[reference], accuracy.records[shipped])
    n = drop["images"]
    agreement, units = agreement
    low, high = proportion_interval(round(agreement * units), units)
    figures = ", ".join(f"{k} {100 * v:.2f}%" for k, v in accuracy.items() if isinstance(v, float))
    loss = (f"{drop['points']:.2f} points (95% interval {drop['low']:.2f} to {drop['high']:.2f}: {drop['lost']} "
            f"images lost, {drop['gained']} gained, of {n})")
    if drop["low"] > config.max_drop_points:
        raise FactoryError(f"the {shipped} model loses {loss} against {reference} ({figures}): more than "
                           f"{config.max_drop_points:g} at 95% confidence; fine-tune longer (--qat-epochs) or allow "
                           "more (--max-drop)")
    gated = shipped != "ptq_int8"
    if gated and high < config.min_agreement:
        raise FactoryError(f"the .tflite agrees with its Keras model on only {100 * agreement:.2f}% of the test "
                           f"{accuracy.task.unit} (95% interval {100 * low:.2f} to {100 * high:.2f}%; {figures}), under "
                           f"{100 * config.min_agreement:g}% at 95% confidence: if {shipped} and the Keras model score "
                           "alike, the disagreements are close calls of an unsure model (train longer, or lower "
                           "--min-agreement to ship it); if not, the conversion changed the model: report it with the "
                           "subnet")
    return {"reference": reference, "shipped": shipped, "drop_points": drop["points"],
            "drop_interval_95": [drop["low"], drop["high"]], "images_lost": drop["lost"],
            "images_gained": drop["gained"], "max_drop_points": config.max_drop_points,
            "drop_verdict": "within the tolerance at 95% confidence" if drop["high"] <= config.max_drop_points else
            "passed: not shown to exceed the tolerance at 95% confidence",
            "top1_agreement": agreement, "agreement_interval_95": [low, high], "agreement_over": units,
            "min_agreement": config.min_agreement if gated else None,
            **({"resamples": drop["resamples"]} if "resamples" in drop else {})}


def export_subnet(supernet: Supernet, subnet: SubnetConfig, source: ImageData, profile: DeviceProfile,
                  latency_table: LatencyTable, out: str | Path, *, budget_ms: float | None = None,
                  config: ExportConfig = ExportConfig(), supernet_training: dict | None = None,
                  plot: Callable[[Path, dict], None] | None = None, tries: list[dict] = (), verbose: int = 2) -> dict:
    """Convert ``subnet`` in the profile's precision, check and measure it; write its bundle to ``out``; return the card.

    ``source`` is the data the supernet was trained on, at its own size; ``supernet_training`` what its training
    recorded (epochs, and ``init_from``: the supernet it was transferred from); ``plot(png, result)``,
    when given, draws the bundle's Pareto PNG with ``result`` (subnet, validation accuracy, budget).

    With a budget (and not ``config.allow_over_budget``) the model is measured on the device right after its first
    conversion, before any fine-tuning, and again as shipped; over the budget, :class:`OverBudgetError` is raised
    and nothing is written. ``tries``: the earlier subnets that measured over (the card records them)."""
    space, head = supernet.space, supernet.task_head
    task = task_export(head.task)
    subnet.validate(space)
    if head.task != "classification" and "onnx" in config.formats:
        raise FactoryError(f"--format onnx exports classifiers; leave it out for a {head.task} model")
    precision = profile.precision
    with get_runner(profile) as runner:  # before the fine-tune: a phone that is not the table's fails now
        check_same_hardware(latency_table.hardware, runner.hardware(), latency_table.source,
                            rebuild_hint(space, profile))
    full = source.resized(space.resolutions[-1])
    calibration = full.calibration()

    teacher = None
    if precision == "int8" and config.distill and config.qat_epochs > 0:
        largest = SubnetConfig.largest(space)
        supernet.recalibrate(largest, calibration)
        teacher = extract(supernet, largest, name="teacher")
    supernet.recalibrate(subnet, calibration)
    val_accuracy = supernet.evaluate_subnet(subnet, make_dataset(full.x_val, full.y_val, 256, training=False))
    model = extract(supernet, subnet, fold_gate=True)
    io = config.io if precision == "int8" else "float32"
    classifier = model if io == "int8" else with_softmax(model)

    # what an app does: its image resized once to the input size (the test split from the original files)
    local = dataclasses.replace(source.resized(subnet.resolution), x_test=source.test_images(subnet.resolution))
    x_test, y_test = local.x_test, local.y_test
    representative = pinned(normalize(local.x_train[:config.representative_images]).numpy())
    accuracy = Scores(head)
    accuracy.add("float", keras_predict(model, x_test), y_test)
    predicted = latency_table.predict(subnet)
    enforce = budget_ms is not None and not config.allow_over_budget
    fine_tune_next = precision == "int8" and config.qat_epochs > 0  # then the first conversion is never shipped
    first = convert(classifier, precision, representative if precision == "int8" else None, io,
                    signature=not fine_tune_next)
    if enforce:  # before the fine-tune: a model over its budget costs one conversion, not a QAT run
        _keep_budget(first, profile, subnet, budget_ms, predicted, "post-training int8" if precision == "int8"
                     else precision)
    epochs_run = 0
    if precision == "int8":
        content, converted, twin, epochs_run, (shipped, reference) = _int8(
            model, classifier, local, first, representative, teacher, config, accuracy, verbose)
        _check_input(content, io)
    else:
        content, converted, twin = first, classifier, model
        reference, shipped = "float", precision
    name = f"{space.name}-{profile.name}" + (f"-{budget_ms:g}ms" if budget_ms is not None else "")
    content = embed(content, task.metadata(name, subnet.resolution, io, source.class_names, space.fingerprint,
                                           config, source.resize),
                    {"labels.txt": ("\n".join(source.class_names) + "\n").encode()})
    outputs, converted_outputs = tflite_predict(content, x_test), keras_predict(converted, x_test)
    accuracy.add(shipped, outputs, y_test)
    if shipped == "qat_int8":
        accuracy.add("qat_keras", converted_outputs, y_test)
    checks = parity(accuracy, reference, shipped, task.agreement(outputs, converted_outputs), config)
    figures = ", ".join(f"{k} {100 * v:.2f}%" for k, v in accuracy.items())
    print(f"parity on {len(y_test)} test images ({task.metric}): {figures}; .tflite and Keras agree on "
          f"{100 * checks['top1_agreement']:.2f}% of the {task.unit}", flush=True)
    extra, onnx = {}, None
    if "onnx" in config.formats:
        extra["model.onnx"] = to_onnx(twin)
        onnx = {"file": "model.onnx", "size_bytes": len(extra["model.onnx"]),
                "weights": "the float weights the .tflite was made from" + (" (fine-tuned)" if epochs_run else ""),
                "input": "float32 NHWC, (pixel - 128) / 128, after the same resize",
                "output": "logits, one per class in labels.txt order",
                **onnx_check(extra["model.onnx"], twin, x_test, y_test)}
        if onnx["top1_agreement"] < config.min_agreement:
            raise FactoryError(f"ONNX Runtime agrees with the Keras model on only {100 * onnx['top1_agreement']:.2f}% "
                               "of the test images: the ONNX conversion changed the model; report it with the subnet")
        print(f"ONNX: top-1 agrees with Keras on {100 * onnx['top1_agreement']:.2f}%, largest logit difference "
              f"{onnx['max_abs_logit_difference']:.2g}", flush=True)

    timing, hardware = _keep_budget(content, profile, subnet, budget_ms if enforce else None, predicted, shipped)
    within = None if budget_ms is None else timing.median_ms <= budget_ms
    if within is False:
        print(f"warning: measured {timing.median_ms:.3f} ms on {profile.name} exceeds the {budget_ms:g} ms budget "
              f"(predicted {predicted:.3f} ms)", file=sys.stderr, flush=True)

    memory = predicted_and_measured_memory(content, profile, MemoryModel(space, precision, supernet.task_head),
                                           subnet, io)

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    input_detail = _tensor(interpreter.get_input_details()[0])
    card = {
        "name": name,
        "date": datetime.date.today().isoformat(),
        "subnet": subnet.to_dict(),
        "space": {"name": space.name, "fingerprint": space.fingerprint},
        "device": profile.to_dict(),
        "precision": precision,
        "io": io,
        "tools": tool_versions(),
        "input": {**input_detail, "resolution": subnet.resolution, "pixel_scale": SCALE, "pixel_offset": OFFSET,
                  "pixel_shift": pixel_shift(input_detail["scale"], input_detail["zero_point"]),
                  "resize": resize_policy(source.resize), "resize_policy": source.resize, "values": _INPUT_VALUES[io],
                  "normalization": {"mean": -OFFSET / SCALE, "std": 1 / SCALE}},
        "output": {**_tensor(interpreter.get_output_details()[0]), "meaning": task.output_meaning(io)},
        "task": head.task,
        "classes": source.class_names,
        "accuracy": {"data": source.name, "split": "test", "images": int(len(y_test)), "shipped": shipped,
                     "metric": task.metric, "reference": reference, **accuracy,
                     "val_supernet": float(val_accuracy), **task.card_accuracy(head, accuracy.records[shipped]),
                     "test_split": test_split_description(source)},
        "parity": checks,
        "latency": {"predicted_ms": predicted, "measured": timing.to_dict(), "hardware": hardware,
                    "budget_ms": budget_ms,
                    "within_budget": within, "enforced": enforce, "tries": list(tries),
                    "prediction_error_percent": 100 * (predicted - timing.median_ms) / timing.median_ms},
        "memory": memory,
        "size_bytes": len(content),
        "params": int(model.count_params()),
        "macs": count_macs(model),
        "operators": dict(collections.Counter(op["op"] for op in operator_report(content))),
        "float_operators": float_operators(content) if precision == "int8" else [],
        "io_operators": io_operators(content) if precision == "int8" else [],
        "onnx": onnx,
        "metadata": {"author": config.author, "license": config.license, "labels_file": "labels.txt"},
        "training": {"data": source.name, "supernet_epochs": (supernet_training or {}).get("epochs"),
                     "supernet_init_from": (supernet_training or {}).get("init_from"),
                     "supernet_pretrained": (supernet_training or {}).get("pretrained"), **dataclasses.asdict(config),
                     "formats": list(config.formats),
                     "qat_epochs_run": epochs_run, "distilled": teacher is not None},
    }
    card["snippets"] = task.snippets(card, test_split_code(source))
    result = {"subnet": subnet.to_dict(), "val_accuracy": val_accuracy, "budget_ms": budget_ms}
    write_bundle(out, content, source.class_names, card, extra=extra,
                 plot=None if plot is None else lambda png: plot(png, result))
    print(f"wrote {out}: {len(content):,} bytes, {shipped} test {task.metric} {100 * accuracy[shipped]:.2f}%, "
          f"measured {timing.median_ms:.3f} ms (predicted {predicted:.3f} ms) on {profile.name}", flush=True)
    return card


def predicted_and_measured_memory(content: bytes, profile: DeviceProfile, model: MemoryModel, subnet: SubnetConfig,
                                  io: str) -> dict:
    """The subnet's peak memory as the search predicted it and as the device's runner measures the shipped model
    (in a run of its own), with the prediction's error where both count the same bytes."""
    predicted = model.predict(subnet, io)
    with get_runner(profile) as runner:
        measured = runner.measure_memory(content)
    return {"predicted": predicted, "measured": measured,
            "error_percent": 100 * (predicted["peak_bytes"] - measured["peak_bytes"]) / measured["peak_bytes"]
            if "arena_bytes" in measured else None}


def _keep_budget(content: bytes, profile: DeviceProfile, subnet: SubnetConfig, budget_ms: float | None,
                 predicted_ms: float, stage: str):
    """The model's timing and the hardware it ran on; over ``budget_ms`` (when given), OverBudgetError."""
    with get_runner(profile) as runner:
        timing, hardware = runner.measure(content, SPREAD_S), runner.hardware()
    if budget_ms is not None and timing.median_ms > budget_ms:
        raise OverBudgetError(subnet, profile, budget_ms, timing.median_ms, predicted_ms, stage)
    return timing, hardware


_INPUT_VALUES = {"uint8": "uint8 RGB pixels 0..255, as they are (the model normalizes them itself)",
                 "int8": "int8 = pixel - 128 for RGB pixels 0..255",
                 "float32": "float32 = (pixel - 128) / 128 for RGB pixels 0..255"}
