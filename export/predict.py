"""Classify or segment image files with a bundle, as an app would: the bundle's own preprocessing, its own labels.

Any image size: each is prepared by ``factory.training.portable.images.resize_image`` at the model's
input resolution (the function the model card states), fed in the model's input type,
and the output is read as probabilities (a softmax over int8 logits for ``--io int8``
models). The labels come from the model's packed metadata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from export.metadata import read_metadata
from export.parity import quantize_images
from factory.core.errors import FactoryError
from factory.core.files import read_json
from factory.training.portable.images import DEFAULT_RESIZE, resize_image


def _decode(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except FileNotFoundError:
        raise FactoryError(f"{path} does not exist: give image files") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise FactoryError(f"{path} is not a decodable image (JPEG, PNG, BMP, GIF or WebP): give image files") from None


def load_bundle(bundle: str | Path) -> tuple[bytes, list[str], str]:
    """The model of a bundle folder (or a .tflite path), the labels packed in it, and the resize policy its card
    states (``crop`` for a model without its card)."""
    path = Path(bundle)
    model = path / "model.tflite" if path.is_dir() else path
    if not model.is_file():
        raise FactoryError(f"{model} does not exist: give a bundle folder written by `factory export` or `make`")
    content = model.read_bytes()
    info, files = read_metadata(content)
    name = info.outputs[0].labels_file if info.outputs else None
    if name not in files:
        raise FactoryError(f"{model} holds no packed labels: export it again with this version of the factory")
    card = model.parent / "model_card.json"
    policy = read_json(card)["input"].get("resize_policy", DEFAULT_RESIZE) if card.is_file() else DEFAULT_RESIZE
    return content, files[name].decode().splitlines(), policy


def _outputs(bundle: str | Path, images: list[str | Path]):
    """The bundle's labels and its probabilities for each image (per image, or per pixel), with the images."""
    from ai_edge_litert.interpreter import Interpreter

    content, labels, policy = load_bundle(bundle)
    decoded = [_decode(Path(p)) for p in images]  # every file checked before anything runs
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    resolution = int(inp["shape"][1])
    for image in decoded:
        interpreter.set_tensor(inp["index"], quantize_images(resize_image(image, resolution, policy)[None], inp))
        interpreter.invoke()
        scores = interpreter.get_tensor(out["index"])[0].astype(np.float32)
        if out["dtype"] != np.float32:  # int8 logits: dequantize, then softmax over the classes
            scale, zero_point = out["quantization"]
            logits = (scores - zero_point) * scale
            scores = np.exp(logits - logits.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
        yield labels, policy, image, scores


def is_segmenter(bundle: str | Path) -> bool:
    """Whether a bundle's model labels pixels (a four-dimensional output) rather than images."""
    from ai_edge_litert.interpreter import Interpreter

    content = load_bundle(bundle)[0]
    return len(Interpreter(model_content=content).get_output_details()[0]["shape"]) == 4


def predict(bundle: str | Path, images: list[str | Path], top_k: int = 3) -> list[list[tuple[str, float]]]:
    """The ``top_k`` (label, probability) pairs of each image, most probable first."""
    if top_k < 1:
        raise FactoryError(f"--top-k must be at least 1, got {top_k}")
    results = []
    for labels, _, _, scores in _outputs(bundle, images):
        order = np.argsort(-scores, kind="stable")[:top_k]
        results.append([(labels[i], float(scores[i])) for i in order])
    return results


def palette(n: int) -> np.ndarray:
    """``n`` distinct RGB colours, class 0 black (Pascal VOC's bit-interleaved colour map)."""
    colours = np.zeros((n, 3), np.uint8)
    for c in range(n):
        value = c
        for shift in range(7, -1, -1):
            for channel in range(3):
                colours[c, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
    return colours


def segment(bundle: str | Path, images: list[str | Path]) -> list[tuple[Path, list[tuple[str, float]]]]:
    """Each image's mask as a coloured PNG beside it (``<name>.mask.png``: the square the model saw, at the
    image's scale, written atomically) and each class's share of its pixels, largest first."""
    from PIL import Image

    from factory.core.files import atomic_file

    results = []
    for path, (labels, policy, image, scores) in zip(images, _outputs(bundle, images)):
        classes = scores.argmax(-1).astype(np.uint8)
        w, h = image.size
        side = {"crop": (min(w, h),) * 2, "pad": (max(w, h),) * 2}.get(policy, (w, h))
        mask = Image.fromarray(palette(len(labels))[classes]).resize(side, Image.Resampling.NEAREST)
        out = Path(path).with_name(Path(path).stem + ".mask.png")
        with atomic_file(out) as tmp:
            mask.save(tmp, format="PNG")
        share = np.bincount(classes.ravel(), minlength=len(labels)) / classes.size
        results.append((out, [(labels[c], float(share[c])) for c in np.argsort(-share, kind="stable") if share[c]]))
    return results
