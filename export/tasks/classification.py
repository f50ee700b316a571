"""A classifier's bundle: probabilities over labels.txt, judged by top-1 accuracy on images."""

from __future__ import annotations

import datetime
import inspect

import numpy as np

from export.metadata import ModelInfo, TensorInfo
from export.parity import paired_drop, top1_agreement
from export.tasks.common import class_list, KOTLIN_PIXEL, KOTLIN_SQUARE, TO_INPUT, image_input, kotlin_litert_input

_OUTPUT_MEANING = {"uint8": "probabilities (a softmax in the graph), one per class in labels.txt order, summing to 1",
                   "int8": "int8 logits, one per class in labels.txt order; the argmax is the predicted class, "
                           "softmax((q - zero_point) * scale) gives probabilities",
                   "float32": "probabilities (a softmax in the graph), one per class in labels.txt order, "
                              "summing to 1"}


class ClassificationExport:
    """The classification parts of an export: the gate's records (which test images a model gets right), the
    metadata MediaPipe's and the Task Library's ``ImageClassifier`` read, the card's words and the app code."""

    noun = "image classifier"
    client = "ImageClassifier"  # MediaPipe Tasks' and the Task Library's
    metric = "top-1"
    unit = "images"  # what the gate's paired comparison counts

    def records(self, head, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Which test images the outputs (logits or probabilities) classify right."""
        return np.argmax(outputs, axis=-1) == np.asarray(targets)

    def score(self, head, records: np.ndarray) -> float:
        return float(np.mean(records))

    def drop(self, head, reference: np.ndarray, shipped: np.ndarray) -> dict:
        """Points lost against the reference with McNemar's 95% interval (``export.parity.paired_drop``)."""
        return paired_drop(reference, shipped)

    def agreement(self, a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
        """Top-1 agreement of two models' outputs and the number of images it is over."""
        return top1_agreement(a, b), len(a)

    def card_accuracy(self, head, records: np.ndarray) -> dict:
        return {"correct": int(np.sum(records))}

    def output_meaning(self, io: str) -> str:
        return _OUTPUT_MEANING[io]

    def metadata(self, name: str, resolution: int, io: str, labels: list[str], fingerprint: str, config,
                 resize: str) -> ModelInfo:
        """The TFLite metadata of an exported classifier (``io``: its input type, uint8, int8 or float32;
        ``resize``: the policy that made its images square)."""
        if io == "int8":
            output = TensorInfo(name="logits", description="int8 logits, one per class of the labels file",
                                labels_file="labels.txt")
        else:
            output = TensorInfo(name="probability", description="probability of each class of the labels file",
                                min=(0.0,), max=(1.0,), labels_file="labels.txt")
        return ModelInfo(name=name, description=f"Classifies an image into one of {len(labels)} classes: "
                                                f"{class_list(labels)}. "
                                                "Made by mobile-model-factory.",
                         version=f"space {fingerprint}, {datetime.date.today().isoformat()}",
                         author=config.author, license=config.license,
                         inputs=(image_input(resolution, io, resize),), outputs=(output,))

    def drop_basis(self, checks: dict) -> str:
        """Where the card's drop interval comes from."""
        return (f"from the {checks['images_lost']} test images it gets wrong where the reference is right and the "
                f"{checks['images_gained']} the other way round")

    def accuracy_details(self, card: dict) -> str:
        return ""

    def snippets(self, card: dict, split_code: str) -> dict[str, str]:
        return _snippets(card, split_code)

    def intended_use(self, card: dict) -> str:
        acc = card["accuracy"]
        return (f"classifying images like those of {acc['data']} into its {len(card['classes'])} classes\n"
                f"  ({class_list(card['classes'])}) on "
                f"{card['device']['name']}.\n- The figures hold for images drawn like the test split; other cameras, "
                "lighting or framing can score lower.\n  The model always answers one of its classes: it has no "
                '"none of these".')


def _snippets(card: dict, split_code: str) -> dict[str, str]:
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
    interpreter.set_tensor(inp["index"], {TO_INPUT[io].format(r=r, p=card["input"]["resize_policy"])})
    interpreter.invoke()
    hits += int(np.argmax(interpreter.get_tensor(out["index"])[0]) == label)
print(f"{{hits}} of {{len(test_labels)}} correct: {{100 * hits / len(test_labels):.2f}}%")
"""
    square = KOTLIN_SQUARE[card["input"]["resize_policy"]]
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
    out_type = KOTLIN_PIXEL[io][2]
    litert = kotlin_litert_input(card, square) + f"""val output = Array(1) {{ {out_type}({n}) }}
interpreter.run(input.rewind(), output)
val best = output[0].indices.maxByOrNull {{ output[0][it] }}!!  // index into labels.txt
"""
    return {"python": python, "kotlin_mediapipe": mediapipe, "kotlin_litert": litert}
