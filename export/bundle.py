"""The bundle app teams ship: model.tflite, labels.txt, model_card.{json,md}, pareto.png.

The model card is the contract with the app: what the model is, what to feed it
(shape, dtype, resizing, normalization, quantization), what comes out, how accurate it
is on a test split it says how to rebuild (with code that reproduces the figure), how
fast it was measured on which device with which tools. The model's TFLite metadata is
derived from the same facts.
"""

from __future__ import annotations

import datetime
import inspect
import json
from pathlib import Path

from devices.hardware import describe
from export.metadata import ModelInfo, TensorInfo
from factory.core.backend import keras
from factory.core.files import atomic_directory
from factory.training.portable.images import OFFSET, SCALE, resize_policy


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


def classifier_metadata(name: str, resolution: int, io: str, labels: list[str], fingerprint: str,
                        config, resize: str) -> ModelInfo:
    """The TFLite metadata of an exported classifier (``io``: its input type, uint8, int8 or float32; ``resize``:
    the policy that made its images square)."""
    mean, std = -OFFSET / SCALE, 1 / SCALE
    low, high = {"uint8": (0.0, 255.0), "int8": (-128.0, 127.0),
                 "float32": ((0 - mean) / std, (255 - mean) / std)}[io]
    image = TensorInfo(
        name="image",
        description=f"RGB image, {resolution}x{resolution}, {io}; {resize_policy(resize)}",
        image=(resolution, resolution), mean=(mean,), std=(std,), min=(low,), max=(high,))
    if io == "int8":
        output = TensorInfo(name="logits", description="int8 logits, one per class of the labels file",
                            labels_file="labels.txt")
    else:
        output = TensorInfo(name="probability", description="probability of each class of the labels file",
                            min=(0.0,), max=(1.0,), labels_file="labels.txt")
    return ModelInfo(name=name, description=f"Classifies an image into one of {len(labels)} classes: "
                                            f"{', '.join(labels[:10])}{', ...' if len(labels) > 10 else ''}. "
                                            "Made by mobile-model-factory.",
                     version=f"space {fingerprint}, {datetime.date.today().isoformat()}",
                     author=config.author, license=config.license, inputs=(image,), outputs=(output,))


_TO_INPUT = {"uint8": "resize_image(image, {r}, {p!r})[None]",  # uint8 pixels, as they are
             "int8": "(resize_image(image, {r}, {p!r}).astype(np.int16) - 128).astype(np.int8)[None]",
             "float32": "((resize_image(image, {r}, {p!r}).astype(np.float32) - 128) / 128)[None]"}
_KOTLIN_PIXEL = {"uint8": ("ByteBuffer.allocateDirect(size * size * 3)", "input.put((v and 0xFF).toByte())",
                           "FloatArray"),
                 "int8": ("ByteBuffer.allocateDirect(size * size * 3)", "input.put(((v and 0xFF) - 128).toByte())",
                          "ByteArray"),
                 "float32": ("ByteBuffer.allocateDirect(size * size * 3 * 4)",
                             "input.putFloat(((v and 0xFF) - 128) / 128f)", "FloatArray")}


_KOTLIN_SQUARE = {  # the card's resize policy, in Android's Bitmap calls
    "crop": "val side = minOf(bitmap.width, bitmap.height)  // centre-crop to a square\n"
            "val square = Bitmap.createBitmap(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2, side, side)",
    "stretch": "val square = bitmap  // the whole image, stretched to a square by the scaling below",
    "pad": "val side = maxOf(bitmap.width, bitmap.height)  // pad to a square with black bars, the image centred\n"
           "val square = Bitmap.createBitmap(side, side, Bitmap.Config.ARGB_8888)\n"
           "Canvas(square).apply { drawColor(Color.BLACK); drawBitmap(bitmap, ((side - bitmap.width) / 2).toFloat(), "
           "((side - bitmap.height) / 2).toFloat(), null) }",
}


def snippets(card: dict, split_code: str) -> dict[str, str]:
    """Code an app developer runs: Python that reproduces the card's accuracy, Kotlin for Android."""
    from factory.training.portable import images

    r, io, n = card["input"]["resolution"], card["io"], len(card["classes"])
    acc = card["accuracy"]
    python = f"""# Reproduces this card's accuracy: {100 * acc[acc['shipped']]:.2f}% ({acc['correct']} of {acc['images']}) on the
# {acc['data']} test split. Run it in the bundle folder (pip install ai-edge-litert numpy pillow scikit-learn).
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

labels = Path("labels.txt").read_text().splitlines()

{inspect.getsource(images.resize_image)}
{split_code}
interpreter = Interpreter(model_path="model.tflite")
interpreter.allocate_tensors()
inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
hits = 0
for image, label in zip(test_images, test_labels):
    interpreter.set_tensor(inp["index"], {_TO_INPUT[io].format(r=r, p=card["input"]["resize_policy"])})
    interpreter.invoke()
    hits += int(np.argmax(interpreter.get_tensor(out["index"])[0]) == label)
print(f"{{hits}} of {{len(test_labels)}} correct: {{100 * hits / len(test_labels):.2f}}%")
"""
    square = _KOTLIN_SQUARE[card["input"]["resize_policy"]]
    mediapipe = f"""// build.gradle: implementation("com.google.mediapipe:tasks-vision:0.10.20"); model.tflite in src/main/assets
import com.google.mediapipe.framework.image.BitmapImageBuilder
import com.google.mediapipe.tasks.core.BaseOptions
import com.google.mediapipe.tasks.vision.imageclassifier.ImageClassifier

val classifier = ImageClassifier.createFromOptions(
    context,
    ImageClassifier.ImageClassifierOptions.builder()
        .setBaseOptions(BaseOptions.builder().setModelAssetPath("model.tflite").build())
        .setMaxResults(3)
        .build())
// MediaPipe resizes the image to the model's input itself; make it square first as the card's figures were
// measured, and the labels come from the model's own metadata
{square}
val result = classifier.classify(BitmapImageBuilder(square).build())
for (category in result.classificationResult().classifications()[0].categories()) {{
    Log.i("classifier", "${{category.categoryName()}}: ${{category.score()}}")
}}
""" if io != "int8" else "// MediaPipe Tasks take uint8 or float32 input: export with the default --io uint8 for them\n"
    allocate, put, out_type = _KOTLIN_PIXEL[io]
    litert = f"""// build.gradle: implementation("com.google.ai.edge.litert:litert:1.4.0"); model.tflite in src/main/assets
import org.tensorflow.lite.Interpreter
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel

val file = context.assets.openFd("model.tflite")
val model = FileInputStream(file.fileDescriptor).channel
    .map(FileChannel.MapMode.READ_ONLY, file.startOffset, file.declaredLength)
val interpreter = Interpreter(model, Interpreter.Options().setNumThreads({card['device']['threads']}))
val size = {r}
{square}
val pixels = IntArray(size * size)
Bitmap.createScaledBitmap(square, size, size, true).getPixels(pixels, 0, size, 0, 0, size, size)
val input = {allocate}.order(ByteOrder.nativeOrder())
for (p in pixels) for (v in intArrayOf(p shr 16, p shr 8, p)) {put}  // R, G, B
val output = Array(1) {{ {out_type}({n}) }}
interpreter.run(input.rewind(), output)
val best = output[0].indices.maxByOrNull {{ output[0][it] }}!!  // index into labels.txt
"""
    return {"python": python, "kotlin_mediapipe": mediapipe, "kotlin_litert": litert}


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


_ROWS = [("float", "float Keras subnet, before fine-tuning"),
         ("ptq_int8", "post-training int8 (no QAT), for comparison"),
         ("float_finetuned", "float twin of this model (fine-tuned weights, quantizers removed)"),
         ("qat_keras", "QAT model simulated in Keras (what was converted)")]


def card_markdown(card: dict) -> str:
    """The model card as a page an app developer reads."""
    inp, out, acc, lat = card["input"], card["output"], card["accuracy"], card["latency"]
    measured, checks, code = lat["measured"], card["parity"], card["snippets"]
    budget = "none given" if lat["budget_ms"] is None else f"{lat['budget_ms']:g} ms ({'met' if lat['within_budget'] else 'EXCEEDED'})"
    rows = "\n".join(f"| {label} | {_pct(acc[key])} |" for key, label in _ROWS if key in acc)
    quant = (f"- quantization parameters: scale {inp['scale']:.8g}, zero point {inp['zero_point']}\n"
             if inp["dtype"] != "float32" else "")
    out_quant = (f"- quantization parameters: scale {out['scale']:.8g}, zero point {out['zero_point']}\n"
                 if out["dtype"] != "float32" else "")
    return f"""# {card['name']}

{'An' if card['precision'][0] in 'aeiou' else 'A'} {card['precision']} image classifier for **{card['device']['name']}** ({card['device']['description']}),
made by mobile-model-factory on {card['date']}. It carries TFLite metadata (input image properties and
normalization, output labels packed in the model) that MediaPipe Tasks' `ImageClassifier`, the TFLite Task
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

| model | top-1 |
|---|---|
{rows}
| **this model** ({card['precision']} .tflite through LiteRT) | **{_pct(acc[acc['shipped']])}** |

{_parity(checks)}

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
- Intended use: classifying images like those of {acc['data']} into its {len(card['classes'])} classes
  ({', '.join(card['classes'][:10])}{', ...' if len(card['classes']) > 10 else ''}) on {card['device']['name']}.
- The figures hold for images drawn like the test split; other cameras, lighting or framing can score lower.
  The model always answers one of its classes: it has no "none of these".
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


def _parity(checks: dict) -> str:
    agreement = (f"at least {100 * checks['min_agreement']:g}% required; where its int8 scores tie, one of the tied "
                 "classes agreeing counts" if checks["min_agreement"] is not None else
                 "not gated: post-training int8 has no Keras model simulating it")
    low, high = checks["drop_interval_95"]
    a_low, a_high = checks["agreement_interval_95"]
    return (f"Parity: against the {checks['reference']} model, this model loses {checks['drop_points']:.2f} points "
            f"(negative: it gains; 95% interval {low:.2f} to {high:.2f}, from the {checks['images_lost']} test images "
            f"it gets wrong where the reference is right and the {checks['images_gained']} the other way round); at "
            f"most {checks['max_drop_points']:g} allowed at 95% confidence: {checks['drop_verdict']}. It agrees on "
            f"top-1 with the Keras model it was converted from on {100 * checks['top1_agreement']:.2f}% of the test "
            f"images (95% interval {100 * a_low:.2f} to {100 * a_high:.2f}%; {agreement}).")


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
