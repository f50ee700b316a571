"""Decoding, resizing and splitting images, with numpy, PIL and scikit-learn only.

No TensorFlow here, so the exact images the factory scores can be rebuilt where
TensorFlow is not installed: ``bench/baselines.py`` trains baselines under Keras 3 on
other backends, and a bundle's model card tells an app developer to prepare images with
the same PIL calls (:data:`RESIZE_POLICY`) to reproduce its accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from factory.core.errors import FactoryError

# Model input = uint8 pixel * SCALE + OFFSET, i.e. [-1, 127/128]: a power-of-two step, so an
# int8 input quantized over that range is exactly ``pixel - 128`` (no rounding ties). Kept out of the graph and
# recorded with every exported model.
SCALE, OFFSET = 1.0 / 128, -1.0

# The one way the factory brings an image to a model's input size, stated in every model card.
RESIZE_POLICY = ("convert to RGB; centre-crop to a square (the shorter side); resize to the model's "
                 "resolution with PIL's Image.resize(size, Image.Resampling.BILINEAR), which is "
                 "antialiased when shrinking (the filter widens with the scale factor); keep uint8 pixels")


def resize_image(image, size: int) -> np.ndarray:
    """One image (a PIL image or an HxWx3 uint8 array) as a ``size`` x ``size`` x 3 uint8 array."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    image = image.convert("RGB")
    w, h = image.size
    side = min(w, h)
    if w != h:
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """A batch of uint8 images resized by :func:`resize_image` (returned as is when already that size)."""
    if images.shape[1:3] == (size, size):
        return images
    return np.stack([resize_image(image, size) for image in images]) if len(images) else \
        np.zeros((0, size, size, 3), np.uint8)


def digits_images(values: np.ndarray, size: int = 32) -> np.ndarray:
    """scikit-learn's 8x8 digits (values 0..16) as RGB uint8 images of ``size`` pixels.

    round(v * 255 / 16) to uint8, then PIL bilinear to ``size`` x ``size``, grey copied to
    R, G and B: the model card states exactly this so the test split can be rebuilt.
    """
    grey = np.round(values * (255.0 / 16.0)).astype(np.uint8)
    return np.stack([resize_image(np.repeat(g[..., None], 3, axis=-1), size) for g in grey])


def split(x, y, fraction, seed):
    """Stratified split: (x_kept, x_split_off, y_kept, y_split_off)."""
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=y)
    except ValueError as exc:
        raise FactoryError(
            f"cannot split {len(y)} images by class ({exc}): give every class more images"
        ) from None


def list_images(root: Path, classes: list[str] | None = None) -> tuple[list[str], list[list[Path]]]:
    """The class names (sorted) of ``root/<class>/`` and each class's files, checked without decoding:
    at least two classes, none empty, the same classes as ``classes`` when given (a test folder)."""
    if not root.is_dir():
        raise FactoryError(f"{root} is not a folder: put images in {root}/<class>/")
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise FactoryError(f"{root} has no class subfolders: put images in {root}/<class>/")
    names = [d.name for d in dirs]
    if classes is not None and names != classes:
        raise FactoryError(
            f"the classes of {root} {names} differ from the training classes {classes}: "
            "give train/ and test/ the same class subfolders"
        )
    if len(dirs) < 2:
        raise FactoryError(f"{root} has one class ({names[0]}): a classifier needs at least 2 class subfolders")
    files = []
    for d in dirs:
        files.append(sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")))
        if not files[-1]:
            raise FactoryError(f"class folder {d} has no images: add images or remove the folder")
    return names, files


DIGITS_CLASSES = [str(c) for c in range(10)]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def check_data(spec: str) -> list[str]:
    """The class names of a data argument, refusing what ``factory.training.data.load_data`` would refuse before
    decoding anything (no TensorFlow here: the CLI checks its arguments before the slow imports)."""
    if spec == "digits":
        return DIGITS_CLASSES
    if spec == "cifar10":
        return CIFAR10_CLASSES
    return check_folder(Path(spec).expanduser())


def check_folder(root: Path) -> list[str]:
    """The class names of an image folder: train/ and test/ with the same classes, or <class>/ folders."""
    if not root.is_dir():
        raise FactoryError(
            f"data folder {root} does not exist: pass 'digits', 'cifar10' or a folder of "
            "train/<class>/ and test/<class>/ (or <class>/) images"
        )
    train_dir, test_dir = root / "train", root / "test"
    if train_dir.is_dir() != test_dir.is_dir():
        missing = test_dir if train_dir.is_dir() else train_dir
        raise FactoryError(f"{root} has only one of train/ and test/: add {missing} or use <class>/ folders")
    if train_dir.is_dir():
        names = list_images(train_dir)[0]
        list_images(test_dir, names)
        return names
    return list_images(root)[0]


def decode_folder(root: Path, classes: list[str] | None = None):
    """Every image under ``root/<class>/`` as one uint8 array, labels, class names (sorted)."""
    names, files = list_images(root, classes)
    from PIL import Image, UnidentifiedImageError

    images, labels, first = [], [], None
    for label, paths in enumerate(files):
        for path in paths:
            try:
                with Image.open(path) as im:
                    arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
            except (UnidentifiedImageError, OSError, ValueError):
                raise FactoryError(
                    f"{path} is not a decodable image (JPEG, PNG, BMP or GIF): remove or replace it"
                ) from None
            if first is None:
                first = (path, arr.shape)
            elif arr.shape != first[1]:
                raise FactoryError(
                    f"images must all have one size: {path} is {arr.shape[1]}x{arr.shape[0]} but "
                    f"{first[0]} is {first[1][1]}x{first[1][0]}; resize the folder to one size first"
                )
            images.append(arr)
            labels.append(label)
    return np.stack(images), np.asarray(labels, np.int32), names
