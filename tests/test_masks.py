"""Segmentation data: folders of images and masks, their checks, the built-in digits-seg set, masks through the
resize policies and the training pipeline with their images."""

import numpy as np
import pytest
from PIL import Image

from factory.core.errors import FactoryError
from factory.training.data import load_data, make_dataset
from factory.training.portable.augment import random_crop_flip
from factory.training.portable.images import check_data, resize_image
from factory.training.portable.masks import IGNORE, digits_segmentation, resize_mask


def write_scenes(root, n=12, size=(20, 16), classes=3, seed=0, palette=False):
    """``n`` images, each a few flat rectangles, and masks of which rectangle (class) covers each pixel."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    w, h = size
    for i in range(n):
        mask = np.zeros((h, w), np.uint8)
        for c in range(1, classes):
            y, x = rng.integers(0, h - 6), rng.integers(0, w - 6)
            mask[y:y + 6, x:x + 6] = c
        mask[0, 0] = IGNORE
        image = (np.eye(3)[mask % 3] * 200 + rng.integers(0, 40, (h, w, 3))).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"scene{i}.jpg")
        m = Image.fromarray(mask)
        if palette:
            m = m.convert("P")
        m.save(root / "masks" / f"scene{i}.png")


def test_a_folder_of_images_and_masks_loads_with_its_masks_resized_as_its_images(tmp_path):
    write_scenes(tmp_path, n=20)
    (tmp_path / "labels.txt").write_text("background\nroad\ncar\n")
    assert check_data(str(tmp_path)) == ["background", "road", "car"]
    d = load_data(str(tmp_path), image_size=16, resize="crop", seed=3)
    assert d.task == "segmentation" and d.head.num_classes == 3 and d.class_names == ["background", "road", "car"]
    assert d.x_train.shape[1:] == (16, 16, 3) and d.y_train.shape[1:] == (16, 16) and d.y_train.dtype == np.uint8
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 20 and len(d.y_test) == 4
    assert set(np.unique(np.concatenate([d.y_train.ravel(), d.y_test.ravel()]))) <= {0, 1, 2, IGNORE}
    big = d.resized(32)
    assert big.y_val.shape[1:] == (32, 32) and set(np.unique(big.y_val)) <= set(np.unique(d.y_val))
    assert d.summary()["task"] == "segmentation"


def test_train_and_test_folders_and_palette_masks(tmp_path):
    write_scenes(tmp_path / "train", n=10, palette=True)
    write_scenes(tmp_path / "test", n=4, seed=1)
    d = load_data(str(tmp_path), image_size=16)
    assert d.class_names == ["class0", "class1", "class2"] and len(d.y_test) == 4 and d.test_split == "folder"


@pytest.mark.parametrize("breakage, message", [
    ("no_mask", "scene3.jpg has no mask: add"),
    ("stray_mask", "stray.png has no image"),
    ("size", "scene2.png is 8x8 but its image"),
    ("class", "holds class 5, beyond the 3 classes of"),
    ("rgb", "is a RGB image: a mask holds one class index"),
    ("no_images", "has no images/ folder"),
    ("one_split", "has only one of train/ and test/"),
])
def test_bad_masks_are_one_line_naming_the_file(tmp_path, breakage, message):
    write_scenes(tmp_path)
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    masks = tmp_path / "masks"
    if breakage == "no_mask":
        (masks / "scene3.png").unlink()
    elif breakage == "stray_mask":
        Image.fromarray(np.zeros((16, 20), np.uint8)).save(masks / "stray.png")
    elif breakage == "size":
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(masks / "scene2.png")
    elif breakage == "class":
        Image.fromarray(np.full((16, 20), 5, np.uint8)).save(masks / "scene4.png")
    elif breakage == "rgb":
        Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(masks / "scene1.png")
    elif breakage == "no_images":
        (tmp_path / "images").rename(tmp_path / "pictures")
    elif breakage == "one_split":
        (tmp_path / "train" / "masks").mkdir(parents=True)
    with pytest.raises(FactoryError, match=message) as caught:
        check_data(str(tmp_path))
    assert "\n" not in str(caught.value)
    with pytest.raises(FactoryError, match=message):
        load_data(str(tmp_path), image_size=16)


@pytest.mark.parametrize("policy", ["crop", "stretch", "pad"])
def test_a_mask_takes_its_images_geometry(policy):
    """A wide image and its mask (left half class 1, right half 2) through each policy: every pixel of the mask
    still names the colour its image shows there; padding is unlabelled."""
    image = np.zeros((10, 30, 3), np.uint8)
    image[:, :15] = (255, 0, 0)
    image[:, 15:] = (0, 0, 255)
    mask = np.where(np.arange(30) < 15, 1, 2).astype(np.uint8)[None].repeat(10, 0)
    square, m = resize_image(image, 24, policy).astype(int), resize_mask(mask, 24, policy)
    assert m.shape == (24, 24)
    labelled = m != IGNORE
    red = square[..., 0] > square[..., 2] + 100
    blue = square[..., 2] > square[..., 0] + 100
    assert np.all(m[labelled & red] == 1) and np.all(m[labelled & blue] == 2)
    assert (~labelled).any() == (policy == "pad")
    assert set(np.unique(m)) <= {1, 2, IGNORE}


def test_crops_and_flips_move_a_mask_with_its_image():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 16, 16, 3)).astype(np.uint8)
    masks = images[..., 0] // 64  # classes 0..3 read off the image itself
    crops, cropped = random_crop_flip(images, np.random.default_rng(1), True, masks=masks)
    same = random_crop_flip(images, np.random.default_rng(1), True)
    assert np.array_equal(crops, same)  # the images are augmented as without masks
    labelled = cropped != IGNORE
    assert np.array_equal(cropped[labelled], crops[..., 0][labelled] // 64)
    assert (~labelled).any() and not np.any(crops[~labelled])  # padding: black pixels, unlabelled


def test_digits_seg_is_a_fixed_smoke_set():
    images, masks = digits_segmentation(20, seed=0)
    again, _ = digits_segmentation(20, seed=0)
    assert np.array_equal(images, again) and images.shape == (20, 32, 32, 3) and masks.shape == (20, 32, 32)
    assert set(np.unique(masks)) <= set(range(11)) and 0.02 < np.mean(masks > 0) < 0.4
    d = load_data("digits-seg")
    assert d.task == "segmentation" and d.class_names[0] == "background" and d.head.num_classes == 11
    assert check_data("digits-seg") == d.class_names and d.flip is False


def test_pipeline_batches_masks_with_their_images():
    d = load_data("digits-seg")
    x, y = next(iter(make_dataset(d.x_train, d.y_train, 16, training=True, flip=False)))
    assert x.shape == (16, 32, 32, 3) and y.shape == (16, 32, 32) and y.dtype.name == "uint8"
    x, y = next(iter(make_dataset(d.x_val, d.y_val, 16, training=False)))
    assert np.array_equal(y.numpy(), d.y_val[:16])
