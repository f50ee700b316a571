"""The bundle app teams ship: model.tflite, labels.txt, model_card.{json,md}, pareto.png.

The model card is the contract with the app: what the model is, what to feed it
(shape, dtype, normalization, quantization), what comes out, how accurate it is on
named test data, how fast it was measured on which device with which tools.
"""

from __future__ import annotations

import json
from pathlib import Path

from devices.hardware import describe
from factory.backend import keras
from factory.files import atomic_directory


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


def card_markdown(card: dict) -> str:
    """The model card as a page an app developer reads."""
    inp, out, acc, lat = card["input"], card["output"], card["accuracy"], card["latency"]
    measured = lat["measured"]
    budget = "none given" if lat["budget_ms"] is None else f"{lat['budget_ms']:g} ms ({'met' if lat['within_budget'] else 'EXCEEDED'})"
    return f"""# {card['name']}

An int8 image classifier for **{card['device']['name']}** ({card['device']['description']}),
made by mobile-model-factory on {card['date']}.

## Input
- tensor `{inp['name']}`: shape {inp['shape']}, dtype {inp['dtype']}, scale {inp['scale']:.8g}, zero point {inp['zero_point']}
- preprocessing: {inp['normalization']}

## Output
- tensor `{out['name']}`: shape {out['shape']}, dtype {out['dtype']}, scale {out['scale']:.8g}, zero point {out['zero_point']}
- meaning: {out['meaning']}

## Accuracy on the {acc['data']} test split ({acc['images']} images)
| model | top-1 |
|---|---|
| float Keras subnet | {_pct(acc['float'])} |
| post-training int8 (no QAT) | {_pct(acc['ptq_int8'])} |
| **this model** (QAT int8, LiteRT) | **{_pct(acc['qat_int8'])}** |

## Latency on {card['device']['name']}
- measured: median {measured['median_ms']:.3f} ms (p10 {_ms(measured['p10_ms'])}, p90 {_ms(measured['p90_ms'])}, {measured['runs']} runs, {card['device']['threads']} thread(s), {card['device']['delegate']})
- measured on: {describe(lat['hardware'])}
- predicted by the latency table: {lat['predicted_ms']:.3f} ms ({lat['prediction_error_percent']:+.1f}% against measured)
- budget: {budget}
- tools: {', '.join(f'{k} {v}' for k, v in card['tools'].items())}

## Size and cost
- file: {card['size_bytes']:,} bytes; parameters: {card['params']:,}; MACs: {card['macs']:,}
- operators: {', '.join(f'{k} x{v}' for k, v in sorted(card['operators'].items()))}
- float operators: {', '.join(card['float_operators']) or 'none'}

## How it was made
- subnet: `{json.dumps(card['subnet'])}`
- supernet search space {card['space']['name']} (fingerprint {card['space']['fingerprint']}), trained {card['training']['supernet_epochs']} epochs on {card['training']['data']}
- quantization-aware fine-tuning: {card['training']['qat_epochs_run']} epoch(s){', distilled from the largest subnet' if card['training']['distilled'] else ''}
"""


def _ms(value) -> str:
    return "n/a" if value is None else f"{value:.3f} ms"


def write_bundle(path: str | Path, content: bytes, labels: list[str], card: dict, plot=None) -> Path:
    """Write the bundle folder atomically; ``plot(png_path)`` draws the Pareto PNG."""
    path = Path(path)
    with atomic_directory(path) as tmp:
        (tmp / "model.tflite").write_bytes(content)
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
