"""The bundle app teams ship: model.tflite, labels.txt, model_card.{json,md}, pareto.png.

The model card is the contract with the app: what the model is, what to feed it
(shape, dtype, resizing, normalization, quantization), what comes out, how accurate it
is on a test split it says how to rebuild (with code that reproduces the figure), how
fast it was measured on which device with which tools. The model's TFLite metadata is
derived from the same facts.
"""

from __future__ import annotations

import json
from pathlib import Path

from devices.hardware import describe
from factory.core.backend import keras
from factory.core.files import atomic_directory


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one inference: convolutions and dense layers, batch 1."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output_shape
            total += h * w * c * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c = layer.output_shape
            total += h * w * c * layer.kernel_size[0] * layer.kernel_size[1] * layer.input_shape[-1] // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input_shape[-1] * layer.units
    return int(total)


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


_ROWS = [("float", "float Keras subnet, before fine-tuning"),
         ("ptq_int8", "post-training int8 (no QAT), for comparison"),
         ("float_finetuned", "float twin of this model (fine-tuned weights, quantizers removed)"),
         ("qat_keras", "QAT model simulated in Keras (what was converted)")]


def card_markdown(card: dict) -> str:
    """The model card as a page an app developer reads."""
    from export.tasks import task_export

    task = task_export(card.get("task", "classification"))
    inp, out, acc, lat = card["input"], card["output"], card["accuracy"], card["latency"]
    measured, checks, code = lat["measured"], card["parity"], card["snippets"]
    budget = "none given" if lat["budget_ms"] is None else f"{lat['budget_ms']:g} ms ({'met' if lat['within_budget'] else 'EXCEEDED'})"
    rows = "\n".join(f"| {label} | {_pct(acc[key])} |" for key, label in _ROWS if key in acc)
    quant = (f"- quantization parameters: scale {inp['scale']:.8g}, zero point {inp['zero_point']}\n"
             if inp["dtype"] != "float32" else "")
    out_quant = (f"- quantization parameters: scale {out['scale']:.8g}, zero point {out['zero_point']}\n"
                 if out["dtype"] != "float32" else "")
    return f"""# {card['name']}

{'An' if card['precision'][0] in 'aeiou' else 'A'} {card['precision']} {task.noun} for **{card['device']['name']}** ({card['device']['description']}),
made by mobile-model-factory on {card['date']}. It carries TFLite metadata (input image properties and
normalization, output labels packed in the model) that MediaPipe Tasks' `{task.client}`, the TFLite Task
Library and Android Studio's ML Model Binding read; `labels.txt` holds the same labels.

## Input
- tensor `{inp['name']}`: shape {inp['shape']}, dtype {inp['dtype']}
{quant}- values: {inp['values']}
- preprocessing: {inp['resize']}; {inp['resolution']}x{inp['resolution']} pixels, colour order R, G, B
- normalization inside the model: (pixel - {inp['normalization']['mean']:g}) / {inp['normalization']['std']:g}

## Output
- tensor `{out['name']}`: shape {out['shape']}, dtype {out['dtype']}
{out_quant}- meaning: {out['meaning']}

## Accuracy on the {acc['data']} test split ({acc['images']} images)
The test split: {acc['test_split']}.

| model | {task.metric} |
|---|---|
{rows}
| **this model** ({card['precision']} .tflite through LiteRT) | **{_pct(acc[acc['shipped']])}** |

{task.accuracy_details(card)}{_parity(checks, task)}

Reproduce the figure with Python (the preprocessing is the factory's own function):

```python
{code['python']}```

## On Android
MediaPipe Tasks:

```kotlin
{code['kotlin_mediapipe']}```

LiteRT `Interpreter` (Android's `createScaledBitmap` is bilinear without PIL's antialiasing, so pixels differ
slightly from the card's when shrinking much):

```kotlin
{code['kotlin_litert']}```

{_onnx_section(card.get('onnx'))}## Latency on {card['device']['name']}
- measured: median {measured['median_ms']:.3f} ms (p10 {_ms(measured['p10_ms'])}, p90 {_ms(measured['p90_ms'])}, {measured['runs']} runs, {card['device']['threads']} thread(s), {card['device']['delegate']})
- measured on: {describe(lat['hardware'])}
- predicted by the latency table: {lat['predicted_ms']:.3f} ms ({lat['prediction_error_percent']:+.1f}% against measured)
- budget: {budget}
- tools: {', '.join(f'{k} {v}' for k, v in card['tools'].items())}

{_memory_section(card.get('memory'))}## Size and cost
- file: {card['size_bytes']:,} bytes; parameters: {card['params']:,}; MACs: {card['macs']:,}
- operators: {', '.join(f'{k} x{v}' for k, v in sorted(card['operators'].items()))}
- float operators: {', '.join(card['float_operators']) or 'none'}{f" (besides the input and output conversions {', '.join(card['io_operators'])})" if card['io_operators'] else ''}

## Intended use and limitations
- Intended use: {task.intended_use(card)}
- Latency was measured on the hardware named above; other devices, thread counts or delegates differ.
- Author: {card['metadata']['author']}; licence: {card['metadata']['license']}.

## How it was made
- subnet: `{json.dumps(card['subnet'])}`
- supernet search space {card['space']['name']} (fingerprint {card['space']['fingerprint']}), trained {card['training']['supernet_epochs']} epochs on {card['training']['data']}{_transfer(card['training'].get('supernet_init_from'), card['training'].get('supernet_pretrained'))}
- quantization-aware fine-tuning: {card['training']['qat_epochs_run']} epoch(s){', distilled from the largest subnet' if card['training']['distilled'] else ''}
"""


def _transfer(init: dict | None, pretrained: dict | None = None) -> str:
    if pretrained:
        return (f", starting from pretrained weights: {pretrained['origin']} (`{pretrained['name']}`, licence "
                f"{pretrained['licence']}); its ImageNet classifier replaced by one trained first on its frozen "
                f"features{', and every subnet distilled from that frozen network' if pretrained['teacher'] else ''}")
    if not init:
        return " from random weights"
    return (f", starting from the supernet of {init['workdir']} (trained {init['epochs']} epochs on {init['data']}, "
            f"{len(init['classes'])} classes; its classifier replaced)")


def _parity(checks: dict, task) -> str:
    agreement = (f"at least {100 * checks['min_agreement']:g}% required; where its int8 scores tie, one of the tied "
                 "classes agreeing counts" if checks["min_agreement"] is not None else
                 "not gated: post-training int8 has no Keras model simulating it")
    low, high = checks["drop_interval_95"]
    a_low, a_high = checks["agreement_interval_95"]
    return (f"Parity: against the {checks['reference']} model, this model loses {checks['drop_points']:.2f} points "
            f"(negative: it gains; 95% interval {low:.2f} to {high:.2f}, {task.drop_basis(checks)}); at "
            f"most {checks['max_drop_points']:g} allowed at 95% confidence: {checks['drop_verdict']}. It agrees on "
            f"the top class with the Keras model it was converted from on {100 * checks['top1_agreement']:.2f}% of "
            f"the test {task.unit} (95% interval {100 * a_low:.2f} to {100 * a_high:.2f}%; {agreement}).")


def _memory_section(memory: dict | None) -> str:
    if not memory:
        return ""
    p, m = memory["predicted"], memory["measured"]
    measured = (f"{m['peak_bytes'] / 1024:,.1f} KiB (arena {m['arena_bytes'] / 1024:,.1f} KiB, weights "
                f"{m['weights_bytes'] / 1024:,.1f} KiB; {memory['error_percent']:+.2f}% predicted against measured)"
                if "arena_bytes" in m else f"{m['peak_bytes'] / 1024:,.1f} KiB")
    return f"""## Peak memory
- predicted: {p['peak_bytes'] / 1024:,.1f} KiB (activation arena {p['arena_bytes'] / 1024:,.1f} KiB, weights {p['weights_bytes'] / 1024:,.1f} KiB)
- measured: {measured}, by {m['by']}

"""


def _onnx_section(onnx: dict | None) -> str:
    if not onnx:
        return ""
    return f"""## ONNX
`{onnx['file']}` ({onnx['size_bytes']:,} bytes, opset {onnx['opset']}): {onnx['weights']}; input {onnx['input']};
output {onnx['output']}. In ONNX Runtime it scores {_pct(onnx['accuracy'])} on the same test split and agrees
on top-1 with the Keras model on {100 * onnx['top1_agreement']:.2f}% of the images (largest logit difference
{onnx['max_abs_logit_difference']:.2g}).

"""


def _ms(value) -> str:
    return "n/a" if value is None else f"{value:.3f} ms"


def write_bundle(path: str | Path, content: bytes, labels: list[str], card: dict, plot=None,
                 extra: dict[str, bytes] | None = None) -> Path:
    """Write the bundle folder atomically; ``plot(png_path)`` draws the Pareto PNG; ``extra``: more files."""
    path = Path(path)
    with atomic_directory(path) as tmp:
        (tmp / "model.tflite").write_bytes(content)
        for name, data in (extra or {}).items():
            (tmp / name).write_bytes(data)
        (tmp / "labels.txt").write_text("\n".join(labels) + "\n")
        if plot is not None:
            plot(tmp / "pareto.png")
        (tmp / "model_card.md").write_text(card_markdown(card))
        (tmp / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    return path


def is_complete(path: str | Path) -> bool:
    """A bundle folder holding every file (a later ``factory make`` skips it)."""
    path = Path(path)
    return all((path / name).is_file() for name in ("model.tflite", "labels.txt", "model_card.json", "model_card.md"))
