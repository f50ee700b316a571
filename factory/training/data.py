"""Image classification data: an image folder, scikit-learn digits (offline default), or CIFAR-10.

Images are decoded once into uint8 arrays (every file is checked up front, so a bad
file fails before anything is written) and served by tf.data pipelines with
random-crop and flip augmentation. A validation split is always carved from the
training data, never from test: later stages score subnets on it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from factory.core.backend import tf
from factory.core.errors import FactoryError
from factory.training.portable.augment import random_crop_flip
from factory.training.portable.images import (CIFAR10_CLASSES, DEFAULT_RESIZE, DIGITS_CLASSES, IMAGE_SUFFIXES, OFFSET,
                                              SCALE, check_folder, class_warnings, decode_files, decode_folder,
                                              digits_images, resize_images, split)


@dataclass
class ImageData:
    """Decoded splits: uint8 ``(N, H, W, 3)`` images and int32 labels."""

    name: str
    class_names: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    flip: bool = True  # horizontal flips are label-preserving (not for digits)
    source: str = ""  # what load_data was given, so later stages can load the same data
    seed: int = 0  # the seed of the splits drawn from the data
    test_split: str = ""  # how the test split is drawn: "digits", "cifar10", "folder" (test/) or "fraction"
    test_fraction: float = 0.2
    resize: str = DEFAULT_RESIZE  # how a folder's images became square (``portable.images.RESIZE_POLICIES``)
    test_files: tuple = ()  # a folder's test images, so they can be decoded again at any size in one resize

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[1])

    def summary(self) -> dict:
        return {"name": self.name, "source": self.source, "classes": self.class_names,
                "image_size": self.image_size, "resize": self.resize, "seed": self.seed,
                "train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    def calibration(self, images: int = 2000, batch_size: int = 256) -> "tf.data.Dataset":
        """The first ``images`` training images, un-augmented: what batch-norm recalibration reads."""
        n = min(images, len(self.y_train))
        return make_dataset(self.x_train[:n], self.y_train[:n], batch_size, training=False)

    def test_images(self, size: int) -> np.ndarray:
        """The test split at ``size`` x ``size`` as an app gets it: a folder's files resized once from the
        originals (``portable.images.resize_image``), not again from an already resized copy."""
        return decode_files(list(self.test_files), size, self.resize) if self.test_files else \
            resize_images(self.x_test, size)

    def resized(self, size: int) -> "ImageData":
        """The same data at ``size`` x ``size`` (``factory.training.portable.images.resize_image``), e.g. a space's largest resolution."""
        if size == self.image_size:
            return self
        return dataclasses.replace(self, x_train=resize_images(self.x_train, size),
                                   x_val=resize_images(self.x_val, size), x_test=resize_images(self.x_test, size))


def normalize(images):
    return tf.cast(images, tf.float32) * SCALE + OFFSET


def make_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, *, training: bool,
                 flip: bool = True, seed: int = 0) -> tf.data.Dataset:
    """Batches of normalized float images; training adds shuffling, random crops and flips
    (``portable.augment.random_crop_flip``, the augmentation Keras 3 baselines get too)."""
    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))
    if training:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=training and len(labels) >= batch_size)
    if training:
        rng = np.random.default_rng(seed)

        def augment(x, y):
            crops = tf.numpy_function(lambda batch: random_crop_flip(batch, rng, flip), [x], tf.uint8, stateful=True)
            return tf.ensure_shape(crops, x.shape), y

        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda x, y: (normalize(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def load_data(spec: str, *, image_size: int | None = None, resize: str = DEFAULT_RESIZE, val_fraction: float = 0.1,
              test_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """``digits``, ``cifar10`` or the path of an image folder, whose images are brought to ``image_size``
    by ``resize`` (``portable.images.RESIZE_POLICIES``; without a size they must share one square size)."""
    if spec == "digits":
        data = _digits(val_fraction, test_fraction, seed)
    elif spec == "cifar10":
        data = _cifar10(val_fraction, seed)
    else:
        data = load_folder(spec, image_size=image_size, resize=resize, val_fraction=val_fraction,
                           test_fraction=test_fraction, seed=seed)
        spec = str(Path(spec).expanduser().resolve())
    return dataclasses.replace(data, source=spec)


def _with_val(name, classes, x_train, y_train, x_test, y_test, val_fraction, seed, test_split, test_fraction=0.2,
              flip=True):
    x_tr, x_val, y_tr, y_val = split(x_train, y_train, val_fraction, seed)
    return ImageData(name, classes, x_tr, y_tr.astype(np.int32), x_val, y_val.astype(np.int32),
                     x_test, y_test.astype(np.int32), flip, seed=seed, test_split=test_split,
                     test_fraction=test_fraction)


def _digits(val_fraction, test_fraction, seed) -> ImageData:
    """scikit-learn's 8x8 digits, upsampled to 32x32 RGB so the spaces' resolutions apply."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = digits_images(d.images)
    x_train, x_test, y_train, y_test = split(x, d.target, test_fraction, seed)
    return _with_val("digits", DIGITS_CLASSES, x_train, y_train, x_test, y_test,
                     val_fraction, seed, "digits", test_fraction, flip=False)


def _cifar10(val_fraction, seed) -> ImageData:
    from factory.core.backend import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as exc:  # any download failure: offline, proxy, corrupt cache
        raise FactoryError(
            f"could not download CIFAR-10 ({type(exc).__name__}): when offline, pass an "
            "unpacked image folder instead, e.g. --data ~/.cache/mmf/cifar10"
        ) from None
    return _with_val("cifar10", CIFAR10_CLASSES, x_train, y_train.ravel(), x_test, y_test.ravel(),
                     val_fraction, seed, "cifar10")


# ------------------------------------------------------------------ folders
def load_folder(path: str | os.PathLike, *, image_size: int | None = None, resize: str = DEFAULT_RESIZE,
                val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """``root/train/<class>/*`` and ``root/test/<class>/*``, or ``root/<class>/*`` split by ``seed``; every image
    brought to ``image_size`` by ``resize``. Prints the class counts, what was skipped and any imbalance."""
    root = Path(path).expanduser()
    check_folder(root)
    train_dir, test_dir = root / "train", root / "test"
    test_split = "folder" if train_dir.is_dir() else "fraction"
    if train_dir.is_dir():
        x_train, y_train, classes, _, skipped = decode_folder(train_dir, size=image_size, policy=resize)
        x_test, y_test, _, test_files, skipped_test = decode_folder(test_dir, classes, x_train.shape[1], resize)
        skipped += skipped_test
    else:
        x, y, classes, files, skipped = decode_folder(root, size=image_size, policy=resize)
        train_idx, test_idx, y_train, y_test = split(np.arange(len(y)), y, test_fraction, seed)
        x_train, x_test, test_files = x[train_idx], x[test_idx], [files[i] for i in test_idx]
    counts = np.bincount(y_train, minlength=len(classes)).tolist()
    print(f"{root}: {len(y_train) + len(y_test)} images in {len(classes)} classes ("
          + ", ".join(f"{c} {n}" for c, n in zip(classes, counts)) + " for training)"
          + (f"; skipped {skipped} files that are hidden or not {'/'.join(IMAGE_SUFFIXES)}" if skipped else ""),
          flush=True)
    for line in class_warnings(classes, counts):
        print(f"warning: {line}", file=sys.stderr, flush=True)
    data = _with_val(root.name, classes, x_train, y_train, x_test, y_test, val_fraction, seed, test_split,
                     test_fraction)
    return dataclasses.replace(data, resize=resize, test_files=tuple(test_files))


# ------------------------------------------------------------------ reproducing the test split
_FILES = f"""SUFFIXES = {IMAGE_SUFFIXES!r}


def image_files(folder):
    \"\"\"(path, label) of every image of folder/<class>/, classes in labels.txt order, files sorted.\"\"\"
    return [(path, label) for label, name in enumerate(labels) for path in sorted((folder / name).iterdir())
            if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in SUFFIXES]
"""


def test_split_code(data: ImageData) -> str:
    """Python that rebuilds ``data``'s test split, as the factory draws it, into ``test_images``
    (PIL images or uint8 arrays, before resizing) and ``test_labels``; ``labels`` is labels.txt."""
    import inspect

    from factory.training.portable import images

    if data.test_split == "digits":
        return (f"{inspect.getsource(images.digits_images)}\n"
                "from sklearn.datasets import load_digits\n"
                "from sklearn.model_selection import train_test_split\n\n"
                "digits = load_digits()\n"
                "_, test_images, _, test_labels = train_test_split(\n"
                f"    digits_images(digits.images), digits.target, test_size={data.test_fraction:g}, "
                f"random_state={data.seed}, stratify=digits.target)\n")
    if data.test_split == "cifar10":
        return ("from keras.datasets import cifar10\n\n"
                "_, (test_images, test_labels) = cifar10.load_data()  # the 10,000 test images\n"
                "test_labels = test_labels.ravel()\n")
    root = repr(data.source)
    if data.test_split == "folder":
        return (f"from pathlib import Path\n\nfrom PIL import Image\n\n{_FILES}\n"
                f"files = image_files(Path({root}) / \"test\")\n"
                "test_images = [Image.open(path) for path, _ in files]\n"
                "test_labels = [label for _, label in files]\n")
    return (f"from pathlib import Path\n\nfrom PIL import Image\n"
            "from sklearn.model_selection import train_test_split\n\n"
            f"{_FILES}\n"
            f"files = image_files(Path({root}))\n"
            "_, test_files = train_test_split(files, test_size="
            f"{data.test_fraction:g}, random_state={data.seed}, stratify=[label for _, label in files])\n"
            "test_images = [Image.open(path) for path, _ in test_files]\n"
            "test_labels = [label for _, label in test_files]\n")


def test_split_description(data: ImageData) -> str:
    """In words, how ``data``'s test split is drawn (the model card's)."""
    if data.test_split == "digits":
        return (f"scikit-learn's digits (1,797 8x8 images, values 0..16), each made an RGB image by "
                f"round(v * 255 / 16) as uint8 then PIL bilinear to 32x32, grey in R, G and B; the test split is "
                f"sklearn.model_selection.train_test_split(test_size={data.test_fraction:g}, "
                f"random_state={data.seed}, stratify=labels) of them")
    if data.test_split == "cifar10":
        return "the 10,000 test images of CIFAR-10 as keras.datasets.cifar10.load_data() gives them"
    if data.test_split == "folder":
        return f"every image of {data.source}/test/<class>/"
    return (f"the images of {data.source}/<class>/ (classes and files sorted by name), split by "
            f"sklearn.model_selection.train_test_split(test_size={data.test_fraction:g}, "
            f"random_state={data.seed}, stratify=labels)")
