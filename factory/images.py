"""Decoding image folders and splitting them, with numpy, PIL and scikit-learn only.

No TensorFlow here, so the exact training split can be rebuilt where TensorFlow is not
installed (``bench/baselines.py`` trains baselines under Keras 3 on other backends).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from factory.errors import FactoryError

# Model input = uint8 pixel * SCALE + OFFSET, i.e. [-1, 127/128]: a power-of-two step, so an
# int8 input quantized over that range is exactly ``pixel - 128`` (no rounding ties). Kept out of the graph and
# recorded with every exported model.
SCALE, OFFSET = 1.0 / 128, -1.0


def split(x, y, fraction, seed):
    """Stratified split: (x_kept, x_split_off, y_kept, y_split_off)."""
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=y)
    except ValueError as exc:
        raise FactoryError(
            f"cannot split {len(y)} images by class ({exc}): give every class more images"
        ) from None


def _class_dirs(root: Path) -> list[Path]:
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise FactoryError(f"{root} has no class subfolders: put images in {root}/<class>/")
    return dirs


def _files(class_dir: Path) -> list[Path]:
    files = sorted(p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise FactoryError(f"class folder {class_dir} has no images: add images or remove the folder")
    return files


def decode_folder(root: Path, classes: list[str] | None = None):
    """Every image under ``root/<class>/`` as one uint8 array, labels, class names (sorted)."""
    dirs = _class_dirs(root)
    names = [d.name for d in dirs]
    if classes is not None and names != classes:
        raise FactoryError(
            f"the classes of {root} {names} differ from the training classes {classes}: "
            "give train/ and test/ the same class subfolders"
        )
    from PIL import Image, UnidentifiedImageError

    images, labels, first = [], [], None
    for label, d in enumerate(dirs):
        for path in _files(d):
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
