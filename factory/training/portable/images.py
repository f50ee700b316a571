"""Decoding, resizing and splitting images, with numpy, PIL and scikit-learn only.

No TensorFlow here, so the exact images the factory scores can be rebuilt where
TensorFlow is not installed: ``bench/baselines.py`` trains baselines under Keras 3 on
other backends, and a bundle's model card tells an app developer to prepare images with
the same PIL calls (:func:`resize_policy`) to reproduce its accuracy.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from factory.core.errors import FactoryError

# Model input = uint8 pixel * SCALE + OFFSET, i.e. [-1, 127/128]: a power-of-two step, so an
# int8 input quantized over that range is exactly ``pixel - 128`` (no rounding ties). Kept out of the graph and
# recorded with every exported model.
SCALE, OFFSET = 1.0 / 128, -1.0

# How an image that is not square becomes one, before the resize to the model's resolution.
RESIZE_POLICIES = {
    "crop": "centre-crop to a square (the shorter side)",
    "stretch": "no crop: the whole image is stretched to a square",
    "pad": "pad to a square (the longer side) with black bars on both sides, the image centred",
}
DEFAULT_RESIZE = "crop"
# Files a class folder may hold; anything else (and hidden files) is skipped, and counted.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def resize_policy(policy: str = DEFAULT_RESIZE) -> str:
    """The one way the factory brings an image to a model's input size, in words: every model card states it."""
    if policy not in RESIZE_POLICIES:
        raise FactoryError(f"resize policy {policy!r} is not one of {sorted(RESIZE_POLICIES)}")
    return (f"apply the EXIF orientation; convert to RGB (an alpha channel composited on white, the first frame of "
            f"an animation); {RESIZE_POLICIES[policy]}; resize to the model's resolution with PIL's "
            "Image.resize(size, Image.Resampling.BILINEAR), which is antialiased when shrinking (the filter widens "
            "with the scale factor); keep uint8 pixels")


def resize_image(image, size: int, policy: str = "crop") -> np.ndarray:
    """One image (a PIL image or an HxWx3 uint8 array) as a ``size`` x ``size`` x 3 uint8 array.

    ``policy``: ``crop`` (centre-crop to a square), ``stretch`` or ``pad`` (black bars)."""
    from PIL import Image, ImageOps

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    image = ImageOps.exif_transpose(image)  # a phone's photo stored sideways with a rotation tag
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    image = image.convert("RGB")  # greyscale, palette, CMYK, 16-bit
    w, h = image.size
    if w != h and policy == "crop":
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
    elif w != h and policy == "pad":
        side = max(w, h)
        square = Image.new("RGB", (side, side), (0, 0, 0))
        square.paste(image, ((side - w) // 2, (side - h) // 2))
        image = square
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """A batch of square uint8 images resized by :func:`resize_image` (returned as is when already that size)."""
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
    """Split by class (stratified) for labels, at random for masks: (x_kept, x_split_off, y_kept, y_split_off)."""
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=y if np.ndim(y) == 1 else None)
    except ValueError as exc:
        raise FactoryError(
            f"cannot split {len(y)} images by class ({exc}): give every class more images"
        ) from None


def is_image_file(path: Path) -> bool:
    """What a class folder's listing keeps: visible files with an image suffix."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def list_images(root: Path, classes: list[str] | None = None) -> tuple[list[str], list[list[Path]], int]:
    """The class names (sorted) of ``root/<class>/``, each class's image files (sorted) and how many other
    files were skipped (hidden, or not images by their suffix), checked without decoding: at least two
    classes, none without images, the same classes as ``classes`` when given (a test folder)."""
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
    files, skipped = [], 0
    for d in dirs:
        listing = sorted(p for p in d.iterdir() if p.is_file())
        files.append([p for p in listing if is_image_file(p)])
        skipped += len(listing) - len(files[-1])
        if not files[-1]:
            raise FactoryError(f"class folder {d} has no images ({', '.join(IMAGE_SUFFIXES)}): add images or remove "
                               "the folder")
    return names, files, skipped


def class_warnings(names: list[str], counts: list[int]) -> list[str]:
    """What a user should hear about a folder's balance: classes under 10 images, a 10x imbalance."""
    out = [f"class {name} has only {n} images: its accuracy will be noisy; add images"
           for name, n in zip(names, counts) if n < 10]
    if max(counts) >= 10 * min(counts):
        big, small = names[int(np.argmax(counts))], names[int(np.argmin(counts))]
        out.append(f"classes are imbalanced {max(counts) // min(counts)}x ({big} {max(counts)}, {small} "
                   f"{min(counts)} images): the model will favour {big}; add images of the small classes")
    return out


DIGITS_CLASSES = [str(c) for c in range(10)]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def check_data(spec: str) -> list[str]:
    """The class names of a data argument, refusing what ``factory.training.data.load_data`` would refuse before
    decoding anything (no TensorFlow here: the CLI checks its arguments before the slow imports)."""
    from factory.training.portable.masks import DIGITS_SEG_CLASSES, check_mask_folder, is_mask_folder

    if spec == "digits":
        return DIGITS_CLASSES
    if spec == "digits-seg":
        return DIGITS_SEG_CLASSES
    if spec == "cifar10":
        return CIFAR10_CLASSES
    root = Path(spec).expanduser()
    return check_mask_folder(root) if is_mask_folder(root) else check_folder(root)


def data_task(spec: str, task: str | None = None) -> str:
    """The task a data argument holds (masks: segmentation; labels: classification), refusing a ``task`` asked for
    that it does not hold."""
    from factory.training.portable.masks import is_mask_folder

    held = "segmentation" if spec == "digits-seg" or is_mask_folder(Path(spec).expanduser()) else "classification"
    if task is not None and task != held:
        what = {"segmentation": "masks (images/ and masks/, or digits-seg)",
                "classification": "a label per image (class folders, digits or cifar10)"}
        raise FactoryError(f"--task {task} needs {what[task]}; --data {spec} holds {what[held]}")
    return held


def check_folder(root: Path) -> list[str]:
    """The class names of an image folder: train/ and test/ with the same classes, or <class>/ folders."""
    if not root.is_dir():
        raise FactoryError(
            f"data folder {root} does not exist: pass 'digits', 'digits-seg', 'cifar10' or a folder of "
            "train/<class>/ and test/<class>/ (or <class>/) images, or of images/ and masks/"
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


def decode_image(path: Path, size: int, policy: str = DEFAULT_RESIZE) -> np.ndarray:
    """An image file as a ``size`` x ``size`` RGB uint8 array, by ``resize_image`` with ``policy``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return resize_image(im, size, policy)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise FactoryError(f"{path} is not a decodable image ({', '.join(IMAGE_SUFFIXES)}): remove or replace it") \
            from None


def check_decodable(paths: list[Path]) -> None:
    """Refuse a folder holding an image that does not decode, naming it, before anything depends on the folder's
    size or splits. JPEGs decode at an eighth of their size (``draft``), which still reads every byte of them."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image, UnidentifiedImageError

    def broken(path: Path) -> bool:
        try:
            with Image.open(path) as im:
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
            return False
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return True

    with ThreadPoolExecutor(max_workers=4) as pool:
        for path, bad in zip(paths, pool.map(broken, paths)):
            if bad:
                raise FactoryError(f"{path} is not a decodable image ({', '.join(IMAGE_SUFFIXES)}): remove or replace it")


def decode_files(paths: list[Path], size: int, policy: str = DEFAULT_RESIZE) -> np.ndarray:
    """Image files as one ``(N, size, size, 3)`` uint8 array."""
    out = np.zeros((len(paths), size, size, 3), np.uint8)
    for i, path in enumerate(paths):
        out[i] = decode_image(path, size, policy)
    return out


def folder_files(root: Path, classes: list[str] | None = None) -> tuple[list[str], list[Path], np.ndarray, int]:
    """The class names (sorted) of ``root/<class>/``, every image file (classes in that order, files sorted),
    their labels and how many files were skipped (``list_images``)."""
    names, files, skipped = list_images(root, classes)
    paths = [path for class_files in files for path in class_files]
    labels = np.asarray([label for label, class_files in enumerate(files) for _ in class_files], np.int32)
    return names, paths, labels, skipped


def common_size(paths: list[Path], root: Path) -> int:
    """The one square size all the images share, for a folder given without a size to bring them to."""
    from PIL import Image

    sizes = {}
    for path in paths:
        with contextlib.suppress(OSError, ValueError, SyntaxError), Image.open(path) as im:
            sizes.setdefault(im.size, path)
    if len(sizes) > 1 or any(w != h for w, h in sizes):
        (a, pa), (b, pb) = (list(sizes.items()) * 2)[:2]
        raise FactoryError(f"images of {root} are not all one square size ({pa} is {a[0]}x{a[1]}, {pb} is "
                           f"{b[0]}x{b[1]}): give an image size to bring them to (the CLI uses the space's "
                           "largest resolution)")
    return next(iter(sizes))[0] if sizes else 1


def decode_folder(root: Path, classes: list[str] | None = None, size: int | None = None,
                  policy: str = DEFAULT_RESIZE):
    """Every image under ``root/<class>/`` brought to ``size`` x ``size`` by ``policy``, as one uint8 array;
    labels, class names (sorted), files in that order and how many files were skipped.

    Without ``size``, the images must already share one square size (they are kept as they are)."""
    names, paths, labels, skipped = folder_files(root, classes)
    size = common_size(paths, root) if size is None else size
    return decode_files(paths, size, policy), labels, names, paths, skipped
