"""Segmentation masks with numpy and PIL only: reading class-index PNGs, bringing them to a model's size with
their images, checking a folder of images and masks, and the built-in digits-on-texture set.

A mask is a one-channel image of class indices, the same size as its image and with its file stem; 255 marks
pixels that no loss or metric counts (``IGNORE``). It goes through its image's square policy (crop, stretch or
pad, the padding unlabelled) and is resized with nearest neighbour, so no pixel gets a class between two.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from factory.core.errors import FactoryError

IGNORE = 255
MASK_SUFFIX = ".png"
DIGITS_SEG_CLASSES = ["background", *(str(c) for c in range(10))]


def resize_mask(mask: np.ndarray, size: int, policy: str = "crop") -> np.ndarray:
    """A ``(H, W)`` class-index mask as ``size`` x ``size`` uint8, the geometry of ``resize_image`` with
    ``policy``, nearest neighbour, the padding of ``pad`` unlabelled."""
    from PIL import Image

    mask = np.asarray(mask, np.uint8)
    h, w = mask.shape
    if w != h and policy == "crop":
        side = min(w, h)
        top, left = (h - side) // 2, (w - side) // 2
        mask = mask[top:top + side, left:left + side]
    elif w != h and policy == "pad":
        side = max(w, h)
        square = np.full((side, side), IGNORE, np.uint8)
        top, left = (side - h) // 2, (side - w) // 2
        square[top:top + h, left:left + w] = mask
        mask = square
    if mask.shape != (size, size):
        mask = np.asarray(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST))
    return mask


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """A batch of square masks resized by :func:`resize_mask` (returned as is when already that size)."""
    if masks.shape[1:3] == (size, size):
        return masks
    return np.stack([resize_mask(m, size) for m in masks]) if len(masks) else np.zeros((0, size, size), np.uint8)


def read_mask(path: Path) -> np.ndarray:
    """A mask file's class indices, ``(H, W)`` uint8: a greyscale or palette PNG (a palette's indices are the
    classes, as Pascal VOC stores them)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode not in ("L", "P", "I", "I;16"):
                raise FactoryError(f"{path} is a {im.mode} image: a mask holds one class index per pixel (a "
                                   "greyscale or palette PNG)")
            values = np.asarray(im)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise FactoryError(f"{path} is not a decodable mask PNG: remove or replace it") from None
    if values.max(initial=0) > IGNORE:
        raise FactoryError(f"{path} holds class {int(values.max())}: classes go up to 254 (255 is unlabelled)")
    return values.astype(np.uint8)


def decode_masks(paths: list[Path], size: int, policy: str) -> np.ndarray:
    """Mask files as one ``(N, size, size)`` uint8 array."""
    out = np.zeros((len(paths), size, size), np.uint8)
    for i, path in enumerate(paths):
        out[i] = resize_mask(read_mask(path), size, policy)
    return out


def is_mask_folder(root: Path) -> bool:
    """Whether a data folder holds images and masks (``images/`` and ``masks/``, or ``train/`` and ``test/``
    each holding both) rather than class folders."""
    return (root / "masks").is_dir() or (root / "train" / "masks").is_dir()


def mask_pairs(root: Path) -> tuple[list[Path], list[Path]]:
    """The images of ``root/images/`` (sorted) and their masks, ``root/masks/<stem>.png``; an image without a
    mask, or a mask without an image, is refused by name."""
    from factory.training.portable.images import is_image_file

    images_dir, masks_dir = root / "images", root / "masks"
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise FactoryError(f"{root} has no {d.name}/ folder: a segmentation folder holds images/ and masks/ "
                               "(masks are PNGs of class indices with their image's file name)")
    images = sorted(p for p in images_dir.iterdir() if is_image_file(p))
    masks = {p.stem: p for p in masks_dir.iterdir() if p.is_file() and not p.name.startswith(".")}
    if not images:
        raise FactoryError(f"{images_dir} holds no images: add them")
    for image in images:
        if image.stem not in masks:
            raise FactoryError(f"{image} has no mask: add {masks_dir / (image.stem + MASK_SUFFIX)} or remove it")
    stems = {p.stem for p in images}
    for stem, mask in sorted(masks.items()):
        if stem not in stems:
            raise FactoryError(f"{mask} has no image in {images_dir}: add it or remove the mask")
    return images, [masks[p.stem] for p in images]


def mask_classes(root: Path, masks: list[Path]) -> list[str]:
    """The class names: ``root/labels.txt`` (one per line, index 0 first), else ``class0`` .. up to the largest
    index the masks hold. Every mask is read once: a mask whose size differs from its image's, or that holds a
    class beyond the labels, is refused by name."""
    labels = root / "labels.txt"
    names = [line.strip() for line in labels.read_text().splitlines() if line.strip()] if labels.is_file() else None
    if names is not None and not 2 <= len(names) <= IGNORE:
        raise FactoryError(f"{labels} names {len(names)} classes: segmentation needs 2 to {IGNORE} (background "
                           "included)")
    largest = 0
    for mask in masks:
        values = read_mask(mask)
        top = int(values[values != IGNORE].max(initial=0))
        if names is not None and top >= len(names):
            raise FactoryError(f"{mask} holds class {top}, beyond the {len(names)} classes of {labels}: fix the "
                               "mask or add the class")
        largest = max(largest, top)
    return names if names is not None else [f"class{c}" for c in range(max(largest + 1, 2))]


def check_sizes(images: list[Path], masks: list[Path]) -> None:
    """Refuse a mask whose size is not its image's, naming both (sizes read from the headers)."""
    from PIL import Image, ImageOps

    for image, mask in zip(images, masks):
        with Image.open(image) as im, Image.open(mask) as m:
            a, b = ImageOps.exif_transpose(im).size, ImageOps.exif_transpose(m).size
        if a != b:
            raise FactoryError(f"{mask} is {b[0]}x{b[1]} but its image {image} is {a[0]}x{a[1]}: a mask labels "
                               "every pixel of its image")


def digits_segmentation(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` smoke-test scenes: one or two of scikit-learn's 8x8 digits, scaled to 14-22 pixels, inked in a
    colour far from a textured background (a smooth colour gradient with faint stripes and noise); each digit's
    inked pixels labelled with its class + 1, the rest background (0). RGB uint8 ``(n, size, size, 3)`` and masks
    ``(n, size, size)``. Not a benchmark of real segmentation: it checks that the pipeline learns and ships
    masks."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size, 3), np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        a, b = rng.uniform(60, 190, (2, 3))
        angle = rng.uniform(0, np.pi)
        ramp = np.cos(angle) * xx + np.sin(angle) * yy
        stripes = 8 * np.sin(2 * np.pi * rng.uniform(2, 6) * (np.sin(angle) * xx - np.cos(angle) * yy))
        scene = a + (b - a) * ramp[..., None] + stripes[..., None] + rng.normal(0, 6, (size, size, 3))
        for _ in range(rng.integers(1, 3)):
            k = rng.integers(len(digits.target))
            side = int(rng.integers(14, min(23, size + 1)))
            ink = np.asarray(Image.fromarray((digits.images[k] * 255 / 16).astype(np.uint8)).resize(
                (side, side), Image.Resampling.BILINEAR)) / 255.0
            y, x = rng.integers(0, size - side + 1, 2)
            region = scene[y:y + side, x:x + side]
            colour = np.where(region.mean((0, 1)) > 128, rng.uniform(0, 50, 3), rng.uniform(205, 255, 3))
            scene[y:y + side, x:x + side] = region * (1 - ink[..., None]) + colour * ink[..., None]
            masks[i, y:y + side, x:x + side][ink > 0.5] = digits.target[k] + 1
        images[i] = np.clip(scene, 0, 255).astype(np.uint8)
    return images, masks


def mask_folder_splits(root: Path) -> dict[str, tuple[list[Path], list[Path]]]:
    """(images, masks) of ``root``: ``{"train": ..., "test": ...}`` for ``train/`` and ``test/`` folders each
    holding ``images/`` and ``masks/``, else ``{"all": ...}`` for ``images/`` and ``masks/`` at the top."""
    train, test = root / "train", root / "test"
    if train.is_dir() != test.is_dir():
        missing = test if train.is_dir() else train
        raise FactoryError(f"{root} has only one of train/ and test/: add {missing} (with images/ and masks/) or "
                           "put images/ and masks/ at the top")
    return {"train": mask_pairs(train), "test": mask_pairs(test)} if train.is_dir() else {"all": mask_pairs(root)}


def check_mask_folder(root: Path) -> list[str]:
    """The class names of a folder of images and masks, every mask checked (its image, size and classes): what
    loading it would refuse, said before anything is decoded or trained."""
    splits = mask_folder_splits(root)
    for images, masks in splits.values():
        check_sizes(images, masks)
    return mask_classes(root, [m for _, masks in splits.values() for m in masks])
