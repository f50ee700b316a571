"""A segmenter's bundle: per-pixel class probabilities at the input's size, judged by mean IoU.

The output is what both segmenter clients read. MediaPipe Tasks' ``ImageSegmenter`` takes float32 outputs as they
are (a quantized one it dequantizes) and applies the activation that the ``SEGMENTER_METADATA`` custom metadata
names: NONE for the float32 probabilities of the default ``--io uint8``, SOFTMAX for ``--io int8`` logits. The
TFLite Task Library's ``ImageSegmenter`` takes one float32 or uint8 output of at most 256 classes, so only the
default interface loads there. Both name the classes from the output tensor's ``TENSOR_AXIS_LABELS`` file.
"""

from __future__ import annotations

import datetime
import inspect

import numpy as np

from export.metadata import CUSTOM_PARSER_VERSION, SEGMENTER_METADATA, ModelInfo, TensorInfo, segmenter_options
from export.parity import top1_agreement
from export.tasks.common import class_list, KOTLIN_SQUARE, TO_INPUT, image_input, kotlin_litert_input

BOOTSTRAP = 1000  # resamples of the test images behind the gate's interval on the mIoU drop
_OUTPUT_MEANING = {
    "uint8": "per-pixel probabilities (a softmax in the graph) at the input's size, one channel per class in "
             "labels.txt order; the argmax over channels is the pixel's class",
    "int8": "int8 per-pixel logits at the input's size, one channel per class in labels.txt order; the argmax over "
            "channels is the pixel's class",
    "float32": "per-pixel probabilities (a softmax in the graph) at the input's size, one channel per class in "
               "labels.txt order; the argmax over channels is the pixel's class"}


class SegmentationExport:
    """The segmentation parts of an export: per-image confusion matrices as the gate's records, the metadata both
    ``ImageSegmenter`` clients read, the card's words and the app code."""

    noun = "image segmenter"
    client = "ImageSegmenter"
    metric = "mean IoU"
    unit = "pixels"

    def records(self, head, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Each test image's (true, predicted) pixel counts, ``(N, C, C)``."""
        return head.image_confusions(outputs, targets)

    def score(self, head, records: np.ndarray) -> float:
        from factory.nas.heads.segmentation import mean_iou

        return mean_iou(records.sum(0))

    def drop(self, head, reference: np.ndarray, shipped: np.ndarray, seed: int = 0) -> dict:
        """mIoU points lost against the reference, with a 95% interval from ``BOOTSTRAP`` resamples of the test
        images (both models scored on the same resample: the interval is of the paired difference)."""
        from factory.nas.heads.segmentation import mean_iou

        n = len(reference)
        drop = 100 * (mean_iou(reference.sum(0)) - mean_iou(shipped.sum(0)))
        picks = np.random.default_rng(seed).integers(0, n, (BOOTSTRAP, n))
        counts = np.stack([np.bincount(p, minlength=n) for p in picks])  # how often each image is drawn
        ref, ship = (np.einsum("bn,nij->bij", counts, r) for r in (reference, shipped))
        spread = [100 * (mean_iou(a) - mean_iou(b)) for a, b in zip(ref, ship)]
        right = lambda r: np.trace(r, axis1=1, axis2=2)  # noqa: E731 - pixels right per image
        return {"points": drop, "low": float(np.percentile(spread, 2.5)), "high": float(np.percentile(spread, 97.5)),
                "images": n, "lost": int(np.sum(right(shipped) < right(reference))),
                "gained": int(np.sum(right(shipped) > right(reference))), "resamples": BOOTSTRAP}

    def agreement(self, a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
        """Per-pixel agreement of two models' top classes (a tie agreeing with either), and the pixels counted."""
        return top1_agreement(a, b), int(np.prod(a.shape[:-1]))

    def card_accuracy(self, head, records: np.ndarray) -> dict:
        from factory.nas.heads.segmentation import class_iou

        total = records.sum(0)
        return {"pixels": int(total.sum()), "pixel_accuracy": float(np.trace(total) / max(total.sum(), 1)),
                "class_iou": class_iou(total)}

    def output_meaning(self, io: str) -> str:
        return _OUTPUT_MEANING[io]

    def metadata(self, name: str, resolution: int, io: str, labels: list[str], fingerprint: str, config,
                 resize: str) -> ModelInfo:
        """The input's image metadata, the output's labels, and MediaPipe's segmenter options: NONE over
        probabilities, SOFTMAX over int8 logits."""
        if io == "int8":
            output = TensorInfo(name="logits", description=f"int8 logits per pixel, {resolution}x{resolution}, one "
                                                           "channel per class of the labels file",
                                labels_file="labels.txt")
        else:
            output = TensorInfo(name="probabilities", description=f"probability of each class of the labels file "
                                                                  f"per pixel, {resolution}x{resolution}",
                                min=(0.0,), max=(1.0,), labels_file="labels.txt")
        activation = "SOFTMAX" if io == "int8" else "NONE"
        return ModelInfo(name=name, description=f"Labels every pixel of an image with one of {len(labels)} classes: "
                                                f"{class_list(labels)}. "
                                                "Made by mobile-model-factory.",
                         version=f"space {fingerprint}, {datetime.date.today().isoformat()}",
                         author=config.author, license=config.license,
                         inputs=(image_input(resolution, io, resize),), outputs=(output,),
                         custom=((SEGMENTER_METADATA, segmenter_options(activation)),),
                         min_parser_version=CUSTOM_PARSER_VERSION)

    def drop_basis(self, checks: dict) -> str:
        return (f"from {checks.get('resamples', BOOTSTRAP)} bootstrap resamples of the test images; it gets fewer "
                f"pixels right than the reference on {checks['images_lost']} images and more on "
                f"{checks['images_gained']}")

    def accuracy_details(self, card: dict) -> str:
        acc = card["accuracy"]
        rows = "\n".join(f"| {name} | {'not in the test masks' if iou is None else f'{100 * iou:.2f}%'} |"
                         for name, iou in zip(card["classes"], acc["class_iou"]))
        return (f"Masks are scored at the model's input size ({card['input']['resolution']}x"
                f"{card['input']['resolution']}, brought there with the image's own square and nearest neighbour); "
                f"pixel accuracy {100 * acc['pixel_accuracy']:.2f}% over {acc['pixels']:,} labelled pixels. IoU per "
                f"class:\n\n| class | IoU |\n|---|---|\n{rows}\n\n")

    def intended_use(self, card: dict) -> str:
        acc = card["accuracy"]
        return (f"labelling every pixel of images like those of {acc['data']} with one of its "
                f"{len(card['classes'])} classes\n  ({class_list(card['classes'])}) on {card['device']['name']}.\n- The figures hold "
                "for images drawn like the test split; other cameras, lighting or framing can score lower.\n  Every "
                "pixel gets one of the classes.")

    def snippets(self, card: dict, split_code: str) -> dict[str, str]:
        return _snippets(card, split_code)


def _snippets(card: dict, split_code: str) -> dict[str, str]:
    """Python that reproduces the card's mean IoU, Kotlin for Android (MediaPipe's ImageSegmenter, LiteRT)."""
    from factory.training.portable import images, masks

    r, io, n = card["input"]["resolution"], card["io"], len(card["classes"])
    acc, policy = card["accuracy"], card["input"]["resize_policy"]
    python = f"""# Reproduces this card's mean IoU: {100 * acc[acc['shipped']]:.2f}% on the {acc['data']} test split
# ({acc['images']} images). Run it in the bundle folder (pip install ai-edge-litert numpy pillow scikit-learn).
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

labels = Path("labels.txt").read_text().splitlines()
IGNORE = 255

{inspect.getsource(images.resize_image)}
{inspect.getsource(masks.resize_mask)}
{split_code}
interpreter = Interpreter(model_path="model.tflite")
interpreter.allocate_tensors()
inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
n = len(labels)
confusion = np.zeros((n, n), np.int64)
for image, mask in zip(test_images, test_masks):
    interpreter.set_tensor(inp["index"], {TO_INPUT[io].format(r=r, p=policy)})
    interpreter.invoke()
    predicted = interpreter.get_tensor(out["index"])[0].argmax(-1)
    truth = resize_mask(np.asarray(mask), {r}, {policy!r}).astype(np.int64)
    keep = truth != IGNORE
    confusion += np.bincount(truth[keep] * n + predicted[keep], minlength=n * n).reshape(n, n)
union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
iou = np.diag(confusion)[union > 0] / union[union > 0]
print(f"mean IoU {{100 * iou.mean():.2f}}% over the {{len(iou)}} classes present")
"""
    square = KOTLIN_SQUARE[policy]
    mediapipe = f"""// build.gradle: implementation("com.google.mediapipe:tasks-vision:0.10.20"); model.tflite in src/main/assets
import com.google.mediapipe.framework.image.BitmapImageBuilder
import com.google.mediapipe.framework.image.ByteBufferExtractor
import com.google.mediapipe.tasks.core.BaseOptions
import com.google.mediapipe.tasks.vision.imagesegmenter.ImageSegmenter

val segmenter = ImageSegmenter.createFromOptions(
    context,
    ImageSegmenter.ImageSegmenterOptions.builder()
        .setBaseOptions(BaseOptions.builder().setModelAssetPath("model.tflite").build())
        .setOutputCategoryMask(true)
        .setOutputConfidenceMasks(false)
        .build())
val labels = segmenter.labels  // from the model's own metadata
// MediaPipe resizes the image to the model's input and the mask back to the image; make it square first as the
// card's figures were measured
{square}
val result = segmenter.segment(BitmapImageBuilder(square).build())
val mask = ByteBufferExtractor.extract(result.categoryMask().get())  // one class index per pixel of `square`
"""
    out_type = "ByteArray" if io == "int8" else "FloatArray"
    litert = kotlin_litert_input(card, square) + f"""val output = Array(1) {{ Array(size) {{ Array(size) {{ {out_type}({n}) }} }} }}
interpreter.run(input.rewind(), output)
val classes = Array(size) {{ y -> IntArray(size) {{ x -> output[0][y][x].indices.maxByOrNull {{ output[0][y][x][it] }}!! }} }}
"""
    return {"python": python, "kotlin_mediapipe": mediapipe, "kotlin_litert": litert}
