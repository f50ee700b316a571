"""Image classification data: an image folder, scikit-learn digits (offline default), or CIFAR-10.

Images are decoded once into uint8 arrays, in memory or, for a folder given a cache
folder (a work directory's ``cache/``), into ``.npy`` files on disk read a batch at a
time (``portable.cache``), and served by tf.data pipelines with random-crop and flip
augmentation. A validation split is always carved from the training data, never from
test: later stages score subnets on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from factory.core.backend import tf
from factory.core.errors import FactoryError
from factory.training.portable.augment import random_crop_flip
from factory.training.portable.cache import ImageCache, decode_to_cache
from factory.training.portable.masks import (DIGITS_SEG_CLASSES, check_mask_folder, decode_masks,
                                             digits_segmentation, is_mask_folder, mask_folder_splits, resize_masks)
from factory.training.portable.images import (CIFAR10_CLASSES, DEFAULT_RESIZE, DIGITS_CLASSES, IMAGE_SUFFIXES, OFFSET,
                                              SCALE, check_decodable, check_folder, class_warnings, common_size, decode_files,
                                              digits_images, folder_files, resize_images, split)


@dataclass
class ImageData:
    """Decoded splits: uint8 ``(N, H, W, 3)`` images (arrays, or ``ImageCache`` files read a batch at a time)
    and their targets: int32 labels, or uint8 ``(N, H, W)`` masks of class indices (255: unlabelled)."""

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
    def task(self) -> str:
        return "segmentation" if np.ndim(self.y_train) == 3 else "classification"

    @property
    def head(self):
        """The task head these targets train: a label per image (classification) or per pixel (segmentation)."""
        from factory.nas.heads import make_head

        return make_head(self.task, self.num_classes)

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[1])

    def summary(self) -> dict:
        return {"name": self.name, "source": self.source, "task": self.task, "classes": self.class_names,
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
        masks = {f"y_{s}": resize_masks(getattr(self, f"y_{s}"), size)
                 for s in ("train", "val", "test")} if self.task == "segmentation" else {}
        return dataclasses.replace(self, x_train=_resized(self.x_train, size), x_val=_resized(self.x_val, size),
                                   x_test=_resized(self.x_test, size), **masks)


def _resized(images, size: int):
    """``resize_images``, chunk by chunk into a cache file beside a cached split."""
    return images.resized(size) if isinstance(images, ImageCache) else resize_images(images, size)


def normalize(images):
    return tf.cast(images, tf.float32) * SCALE + OFFSET


def make_dataset(images, labels: np.ndarray, batch_size: int, *, training: bool,
                 flip: bool = True, seed: int = 0) -> tf.data.Dataset:
    """Batches of normalized float images and their labels (int32) or masks (uint8); training adds shuffling,
    random crops and flips (``portable.augment.random_crop_flip``, the augmentation Keras 3 baselines get too;
    a mask is cropped and flipped with its image).

    Only indices go through tf.data; each batch is read from ``images`` (an array or an ``ImageCache``) when it
    is needed, in parallel and ahead of the model, so the pipeline never copies the data set into a tensor."""
    masks = np.ndim(labels) == 3
    targets = np.asarray(labels, np.uint8 if masks else np.int32)
    ds = tf.data.Dataset.range(len(targets))
    if training:
        ds = ds.shuffle(len(targets), seed=seed, reshuffle_each_iteration=True)
    drop = training and len(targets) >= batch_size
    ds = ds.batch(batch_size, drop_remainder=drop)
    rng = np.random.default_rng(seed)

    def read(index):
        index = np.sort(index)  # a cache file is read front to back
        batch, y = images[index], targets[index]
        if not training:
            return batch, y
        return random_crop_flip(batch, rng, flip, masks=y) if masks else (random_crop_flip(batch, rng, flip), y)

    def load(index):
        x, y = tf.numpy_function(read, [index], (tf.uint8, tf.as_dtype(targets.dtype)), stateful=training)
        n = batch_size if drop else None
        return normalize(tf.ensure_shape(x, (n, *images.shape[1:]))), tf.ensure_shape(y, (n, *targets.shape[1:]))

    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def load_data(spec: str, *, image_size: int | None = None, resize: str = DEFAULT_RESIZE, val_fraction: float = 0.1,
              test_fraction: float = 0.2, seed: int = 0, cache: str | os.PathLike | None = None) -> ImageData:
    """``digits``, ``cifar10`` or the path of an image folder, whose images are brought to ``image_size``
    by ``resize`` (``portable.images.RESIZE_POLICIES``; without a size they must share one square size) and,
    with ``cache``, decoded once into files there that later loads reuse."""
    if spec == "digits":
        data = _digits(val_fraction, test_fraction, seed)
    elif spec == "digits-seg":
        data = _digits_seg(val_fraction, test_fraction, seed)
    elif spec == "cifar10":
        data = _cifar10(val_fraction, seed)
    elif is_mask_folder(Path(spec).expanduser()):
        data = load_mask_folder(spec, image_size=image_size, resize=resize, val_fraction=val_fraction,
                                test_fraction=test_fraction, seed=seed, cache=cache)
        spec = str(Path(spec).expanduser().resolve())
    else:
        data = load_folder(spec, image_size=image_size, resize=resize, val_fraction=val_fraction,
                           test_fraction=test_fraction, seed=seed, cache=cache)
        spec = str(Path(spec).expanduser().resolve())
    return dataclasses.replace(data, source=spec)


def _with_val(name, classes, x_train, y_train, x_test, y_test, val_fraction, seed, test_split, test_fraction=0.2,
              flip=True):
    x_tr, x_val, y_tr, y_val = split(x_train, y_train, val_fraction, seed)
    kind = np.uint8 if np.ndim(y_train) == 3 else np.int32
    return ImageData(name, classes, x_tr, y_tr.astype(kind), x_val, y_val.astype(kind),
                     x_test, y_test.astype(kind), flip, seed=seed, test_split=test_split,
                     test_fraction=test_fraction)


def _digits(val_fraction, test_fraction, seed) -> ImageData:
    """scikit-learn's 8x8 digits, upsampled to 32x32 RGB so the spaces' resolutions apply."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = digits_images(d.images)
    x_train, x_test, y_train, y_test = split(x, d.target, test_fraction, seed)
    return _with_val("digits", DIGITS_CLASSES, x_train, y_train, x_test, y_test,
                     val_fraction, seed, "digits", test_fraction, flip=False)


DIGITS_SEG_SCENES = 1500


def _digits_seg(val_fraction, test_fraction, seed) -> ImageData:
    """``portable.masks.digits_segmentation``: digits on textured backgrounds, 32x32, a smoke-test set."""
    x, masks = digits_segmentation(DIGITS_SEG_SCENES, seed=0)
    x_train, x_test, y_train, y_test = split(x, masks, test_fraction, seed)
    return _with_val("digits-seg", DIGITS_SEG_CLASSES, x_train, y_train, x_test, y_test, val_fraction, seed,
                     "digits-seg", test_fraction, flip=False)


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
                val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0,
                cache: str | os.PathLike | None = None) -> ImageData:
    """``root/train/<class>/*`` and ``root/test/<class>/*``, or ``root/<class>/*`` split by ``seed``; every image
    brought to ``image_size`` by ``resize``. Prints the class counts, what was skipped and any imbalance.

    The splits are drawn from the file list, then decoded: into memory, or with ``cache`` into one file per split
    under it (kept for the next load of the same files, size and splits; other cached versions are removed)."""
    root = Path(path).expanduser()
    check_folder(root)
    train_dir, test_dir = root / "train", root / "test"
    test_split = "folder" if train_dir.is_dir() else "fraction"
    if train_dir.is_dir():
        classes, files, y_train, skipped = folder_files(train_dir)
        _, test_files, y_test, skipped_test = folder_files(test_dir, classes)
        skipped += skipped_test
        check_decodable(files + test_files)
    else:
        classes, all_files, y, skipped = folder_files(root)
        check_decodable(all_files)
        train_idx, test_idx, y_train, y_test = split(np.arange(len(y)), y, test_fraction, seed)
        files, test_files = [all_files[i] for i in train_idx], [all_files[i] for i in test_idx]
    counts = np.bincount(y_train, minlength=len(classes)).tolist()
    print(f"{root}: {len(y_train) + len(y_test)} images in {len(classes)} classes ("
          + ", ".join(f"{c} {n}" for c, n in zip(classes, counts)) + " for training)"
          + (f"; skipped {skipped} files that are hidden or not {'/'.join(IMAGE_SUFFIXES)}" if skipped else ""),
          flush=True)
    for line in class_warnings(classes, counts):
        print(f"warning: {line}", file=sys.stderr, flush=True)
    size = common_size(files, train_dir if train_dir.is_dir() else root) if image_size is None else image_size
    train_idx, val_idx, y_tr, y_val = split(np.arange(len(y_train)), y_train, val_fraction, seed)
    splits = {"train": [files[i] for i in train_idx], "val": [files[i] for i in val_idx], "test": test_files}
    if cache is None:
        x = {name: decode_files(paths, size, resize) for name, paths in splits.items()}
    else:
        folder = _cache_folder(Path(cache), root, splits, size, resize)
        x = {name: decode_to_cache(paths, size, resize, folder / f"{name}.npy", name) for name, paths in splits.items()}
    return ImageData(root.name, classes, x["train"], y_tr.astype(np.int32), x["val"], y_val.astype(np.int32),
                     x["test"], y_test.astype(np.int32), seed=seed, test_split=test_split, test_fraction=test_fraction,
                     resize=resize, test_files=tuple(test_files))


def load_mask_folder(path: str | os.PathLike, *, image_size: int | None = None, resize: str = DEFAULT_RESIZE,
                     val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0,
                     cache: str | os.PathLike | None = None) -> ImageData:
    """Images and their masks (``portable.masks``): ``root/train/`` and ``root/test/`` each holding ``images/``
    and ``masks/``, or ``root/images/`` and ``root/masks/`` split by ``seed``. Every mask is checked first (its
    image, its size, its classes); images go through ``resize`` and masks the same geometry with nearest
    neighbour. Images decode into the streaming cache with ``cache``; masks, a third of their size, stay in
    memory."""
    root = Path(path).expanduser()
    classes = check_mask_folder(root)
    splits = mask_folder_splits(root)
    check_decodable([p for images, _ in splits.values() for p in images])
    if "all" in splits:
        images, masks = splits["all"]
        kept, held = _shuffled(len(images), test_fraction, seed)
        splits = {"train": ([images[i] for i in kept], [masks[i] for i in kept]),
                  "test": ([images[i] for i in held], [masks[i] for i in held])}
    (images, masks), (test_images, test_masks) = splits["train"], splits["test"]
    size = common_size(images, root) if image_size is None else image_size
    kept, held = _shuffled(len(images), val_fraction, seed)
    files = {"train": ([images[i] for i in kept], [masks[i] for i in kept]),
             "val": ([images[i] for i in held], [masks[i] for i in held]), "test": (test_images, test_masks)}
    print(f"{root}: {len(images) + len(test_images)} images with masks, {len(classes)} classes "
          f"({', '.join(classes)})", flush=True)
    if cache is None:
        x = {name: decode_files(paths, size, resize) for name, (paths, _) in files.items()}
    else:
        folder = _cache_folder(Path(cache), root, {n: p for n, (p, _) in files.items()}, size, resize)
        x = {name: decode_to_cache(paths, size, resize, folder / f"{name}.npy", name)
             for name, (paths, _) in files.items()}
    y = {name: decode_masks(paths, size, resize) for name, (_, paths) in files.items()}
    return ImageData(root.name, classes, x["train"], y["train"], x["val"], y["val"], x["test"], y["test"], seed=seed,
                     test_split="folder" if (root / "train").is_dir() else "fraction", test_fraction=test_fraction,
                     resize=resize, test_files=tuple(test_images))


def _shuffled(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices kept and split off at random (masks have no one class to stratify by)."""
    from sklearn.model_selection import train_test_split

    if n < 2:
        raise FactoryError(f"cannot split {n} images with masks {fraction:g} off: add images")
    return tuple(train_test_split(np.arange(n), test_size=fraction, random_state=seed))


def _cache_folder(cache: Path, root: Path, splits: dict, size: int, policy: str) -> Path:
    """Where a folder's decoded splits live under ``cache``: named by a hash of every file's path, size and
    modification time in its split, and of the image size and resize policy, so any change decodes again."""
    digest = hashlib.sha256(f"{size} {policy}".encode())
    for name, paths in splits.items():
        for path in paths:
            stat = path.stat()
            digest.update(f"{name} {path} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    folder = cache / f"{root.name}-{size}px-{policy}-{digest.hexdigest()[:16]}"
    if cache.is_dir():
        for old in cache.iterdir():
            if old.is_dir() and old != folder:
                shutil.rmtree(old, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ------------------------------------------------------------------ reproducing the test split
_FILES = f"""SUFFIXES = {IMAGE_SUFFIXES!r}


def image_files(folder):
    \"\"\"(path, label) of every image of folder/<class>/, classes in labels.txt order, files sorted.\"\"\"
    return [(path, label) for label, name in enumerate(labels) for path in sorted((folder / name).iterdir())
            if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in SUFFIXES]
"""


_MASK_FILES = """def mask_pairs(folder):
    \"\"\"(image, mask) paths of folder/images/ and folder/masks/<stem>.png, images sorted.\"\"\"
    return [(path, folder / "masks" / (path.stem + ".png")) for path in sorted((folder / "images").iterdir())
            if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in SUFFIXES]
"""


def _mask_split_code(data: ImageData) -> str:
    """A segmentation test split's code: ``test_images`` and ``test_masks`` (class-index arrays)."""
    import inspect

    from factory.training.portable import masks

    if data.test_split == "digits-seg":
        return (f"{inspect.getsource(masks.digits_segmentation)}\n"
                "from sklearn.model_selection import train_test_split\n\n"
                f"scenes, scene_masks = digits_segmentation({DIGITS_SEG_SCENES}, seed=0)\n"
                "_, test_images, _, test_masks = train_test_split(\n"
                f"    scenes, scene_masks, test_size={data.test_fraction:g}, random_state={data.seed})\n")
    head = (f"from pathlib import Path\n\nfrom PIL import Image\n\nSUFFIXES = {IMAGE_SUFFIXES!r}\n\n\n"
            f"{_MASK_FILES}\n")
    pairs = (f"pairs = mask_pairs(Path({data.source!r}) / \"test\")\n" if data.test_split == "folder" else
             "from sklearn.model_selection import train_test_split\n\n"
             f"_, pairs = train_test_split(mask_pairs(Path({data.source!r})), test_size={data.test_fraction:g}, "
             f"random_state={data.seed})\n")
    return (head + pairs + "test_images = [Image.open(image) for image, _ in pairs]\n"
            "test_masks = [np.asarray(Image.open(mask)) for _, mask in pairs]\n")


def test_split_code(data: ImageData) -> str:
    """Python that rebuilds ``data``'s test split, as the factory draws it, into ``test_images``
    (PIL images or uint8 arrays, before resizing) and ``test_labels`` (or ``test_masks``); ``labels`` is
    labels.txt."""
    import inspect

    from factory.training.portable import images

    if data.task == "segmentation":
        return _mask_split_code(data)

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
    if data.test_split == "digits-seg":
        return (f"factory.training.portable.masks.digits_segmentation({DIGITS_SEG_SCENES}, seed=0): scikit-learn's "
                "digits pasted on textured backgrounds, 32x32, a smoke-test set; the test split is "
                f"sklearn.model_selection.train_test_split(test_size={data.test_fraction:g}, random_state={data.seed})"
                " of them")
    if data.task == "segmentation":
        where = (f"every image of {data.source}/test/images/ with its mask" if data.test_split == "folder" else
                 f"the images of {data.source}/images/ with their masks (sorted by name), split by "
                 f"sklearn.model_selection.train_test_split(test_size={data.test_fraction:g}, "
                 f"random_state={data.seed})")
        return where
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
