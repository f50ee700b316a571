"""Export one subnet of a trained work directory as a shippable int8 bundle.

extract (batch norm recalibrated) -> float accuracy -> post-training int8 for
comparison -> QAT fine-tune (distilled from the largest subnet) -> fully int8 .tflite
-> operator check -> parity check on the test split -> latency on the device -> bundle.
Nothing is written unless every check passes.
"""

from __future__ import annotations

import collections
import datetime
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from devices.profile import load_profile
from devices.hardware import check_same_hardware
from devices.runners import get_runner
from export.bundle import count_macs, write_bundle
from export.finetune import fine_tune
from export.parity import keras_accuracy, pixel_shift, quantization, tflite_accuracy
from export.quantize import float_operators, operator_report, quantize_model, to_int8_tflite
from factory.data import OFFSET, SCALE, make_dataset, normalize
from factory.errors import FactoryError
from factory.extract import extract
from factory.files import read_json
from factory.space import SubnetConfig
from factory.train import load_supernet
from factory.workflow import load_tables, pareto_plot, workdir_data
from latency_tables.table import rebuild_hint, tool_versions


@dataclass(frozen=True)
class ExportConfig:
    """QAT and acceptance settings of an export."""

    qat_epochs: int = 2
    min_qat_steps: int = 300  # small data sets run more epochs to reach this many steps
    learning_rate: float = 0.005
    batch_size: int = 128
    distill: bool = True
    max_drop_points: float = 1.0  # int8 may lose at most this many accuracy points against float
    allow_float_ops: bool = False
    representative_images: int = 200
    seed: int = 0


def load_subnet(path: str | Path) -> tuple[SubnetConfig, float | None]:
    """A SubnetConfig from a `factory search` result or a SubnetConfig JSON, with its budget if any."""
    doc = read_json(path)
    if "subnet" in doc:
        return SubnetConfig.from_dict(doc["subnet"]), doc.get("budget_ms")
    return SubnetConfig.from_dict(doc), None


def _tensor(detail: dict) -> dict:
    return {"name": detail["name"], **quantization(detail)}


def export_subnet(workdir: str | Path, subnet: SubnetConfig, device: str, out: str | Path, *,
                  budget_ms: float | None = None, config: ExportConfig = ExportConfig(),
                  data: str | None = None, table: str | Path | None = None, verbose: int = 2) -> dict:
    """Fine-tune, convert, check and measure ``subnet``; write its bundle to ``out``; return the card."""
    workdir = Path(workdir)
    supernet = load_supernet(workdir)
    space = supernet.space
    subnet.validate(space)
    profile = load_profile(device)
    latency_table = load_tables(space, [device], {device: table} if table else None)[profile.name]
    with get_runner(profile) as runner:  # before the fine-tune: a phone that is not the table's fails now
        check_same_hardware(latency_table.hardware, runner.hardware(), latency_table.source,
                            rebuild_hint(space, profile))
    source = workdir_data(workdir, data)
    full = source.resized(space.resolutions[-1])
    calibration = full.calibration()

    teacher = None
    if config.distill and config.qat_epochs > 0:
        largest = SubnetConfig.largest(space)
        supernet.recalibrate(largest, calibration)
        teacher = extract(supernet, largest, name="teacher")
    supernet.recalibrate(subnet, calibration)
    val_accuracy = supernet.evaluate_subnet(subnet, make_dataset(full.x_val, full.y_val, 256, training=False))
    model = extract(supernet, subnet, fold_gate=True)

    local = source.resized(subnet.resolution)  # what an app does: resize its image to the input size
    x_test, y_test = local.x_test, local.y_test
    representative = normalize(local.x_train[:config.representative_images]).numpy()
    accuracy = {"float": keras_accuracy(model, x_test, y_test)}
    accuracy["ptq_int8"] = tflite_accuracy(to_int8_tflite(model, representative), x_test, y_test)
    print(f"float {100 * accuracy['float']:.2f}%, post-training int8 {100 * accuracy['ptq_int8']:.2f}%; "
          "quantization-aware fine-tuning", flush=True)

    qat = quantize_model(model)
    epochs_run = fine_tune(qat, local, config.qat_epochs, min_steps=config.min_qat_steps,
                           learning_rate=config.learning_rate, batch_size=config.batch_size,
                           teacher=teacher, seed=config.seed, verbose=verbose)
    content = to_int8_tflite(qat, representative)
    floats = float_operators(content)
    if floats and not config.allow_float_ops:
        raise FactoryError(f"the int8 model still computes in float in {sorted(set(floats))}: "
                           "pass --allow-float-ops to ship it anyway")
    accuracy["qat_int8"] = tflite_accuracy(content, x_test, y_test)
    drop = 100 * (accuracy["float"] - accuracy["qat_int8"])
    figures = ", ".join(f"{k} {100 * v:.2f}%" for k, v in accuracy.items())
    if drop > config.max_drop_points:
        raise FactoryError(f"the int8 model loses {drop:.2f} points against float ({figures}), more than "
                           f"{config.max_drop_points:g}: fine-tune longer (--qat-epochs) or allow more (--max-drop)")
    print(f"parity on {len(y_test)} test images: {figures}", flush=True)

    with get_runner(profile) as runner:
        timing, hardware = runner.measure(content), runner.hardware()
    predicted = latency_table.predict(subnet)
    within = None if budget_ms is None else timing.median_ms <= budget_ms
    if within is False:
        print(f"warning: measured {timing.median_ms:.3f} ms on {profile.name} exceeds the {budget_ms:g} ms budget "
              f"(predicted {predicted:.3f} ms)", file=sys.stderr, flush=True)

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    input_detail = _tensor(interpreter.get_input_details()[0])
    shift = pixel_shift(input_detail["scale"], input_detail["zero_point"])
    training = read_json(workdir / "training.json")
    card = {
        "name": f"{space.name}-{profile.name}" + (f"-{budget_ms:g}ms" if budget_ms is not None else ""),
        "date": datetime.date.today().isoformat(),
        "subnet": subnet.to_dict(),
        "space": {"name": space.name, "fingerprint": space.fingerprint},
        "device": profile.to_dict(),
        "tools": tool_versions(),
        "input": {**input_detail, "pixel_scale": SCALE, "pixel_offset": OFFSET, "pixel_shift": shift,
                  "normalization": f"resize the RGB image to {subnet.resolution}x{subnet.resolution}; "
                                   + (f"then int8 = pixel {'+' if shift >= 0 else '-'} {abs(shift)} (pixels 0..255), which is exactly "
                                      if shift is not None else "then ")
                                   + f"q = round((pixel * {SCALE:g} + ({OFFSET:g})) / scale) + zero_point, "
                                     "clipped to int8"},
        "output": {**_tensor(interpreter.get_output_details()[0]),
                   "meaning": "one logit per class, in labels.txt order; the argmax is the predicted class; "
                              "softmax((q - zero_point) * scale) gives probabilities"},
        "classes": source.class_names,
        "accuracy": {"data": source.name, "split": "test", "images": int(len(y_test)), **accuracy,
                     "val_supernet": float(val_accuracy)},
        "latency": {"predicted_ms": predicted, "measured": timing.to_dict(), "hardware": hardware,
                    "budget_ms": budget_ms,
                    "within_budget": within,
                    "prediction_error_percent": 100 * (predicted - timing.median_ms) / timing.median_ms},
        "size_bytes": len(content),
        "params": int(model.count_params()),
        "macs": count_macs(model),
        "operators": dict(collections.Counter(op["op"] for op in operator_report(content))),
        "float_operators": floats,
        "training": {"data": source.name, "supernet_epochs": training["epochs"], **asdict(config),
                     "qat_epochs_run": epochs_run, "distilled": teacher is not None},
    }
    result = {"subnet": subnet.to_dict(), "val_accuracy": val_accuracy, "budget_ms": budget_ms}
    write_bundle(out, content, source.class_names, card,
                 plot=lambda png: pareto_plot(workdir, device, png, table, chosen=[result], size=(4.5, 3.2)))
    print(f"wrote {out}: {len(content):,} bytes, int8 test accuracy {100 * accuracy['qat_int8']:.2f}%, "
          f"measured {timing.median_ms:.3f} ms (predicted {predicted:.3f} ms) on {profile.name}", flush=True)
    return card
