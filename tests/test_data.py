import numpy as np
import pytest
from PIL import Image

from factory.training.data import SCALE, OFFSET, load_data, load_folder, make_dataset
from factory.core.errors import FactoryError

CLASSES = ["cat", "dog", "fox"]


def write_images(root, classes=CLASSES, per_class=6, size=12, seed=0):
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def test_digits_default_has_disjoint_val_carved_from_train():
    d = load_data("digits")
    assert d.x_train.shape[1:] == (32, 32, 3) and d.x_train.dtype == np.uint8
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 1797
    assert len(d.y_test) == 360  # 20% test, untouched by the validation split
    assert abs(len(d.y_val) - 0.1 * (1797 - 360)) <= 1
    assert d.flip is False and d.num_classes == 10


def test_train_test_folders(tmp_path):
    write_images(tmp_path / "train", per_class=10)
    write_images(tmp_path / "test", per_class=3, seed=1)
    d = load_folder(tmp_path, val_fraction=0.2)
    assert d.class_names == CLASSES
    assert len(d.y_test) == 9 and len(d.y_train) + len(d.y_val) == 30 and len(d.y_val) == 6
    assert d.image_size == 12


def test_single_folder_is_split_by_seed(tmp_path):
    write_images(tmp_path, per_class=10)
    a, b = load_folder(tmp_path, seed=1), load_folder(tmp_path, seed=1)
    assert len(a.y_test) == 6
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(load_folder(tmp_path, seed=2).x_test, a.x_test)


@pytest.mark.parametrize("breakage, message", [
    ("missing", "does not exist"),
    ("empty_class", "has no images"),
    ("not_an_image", "is not a decodable image"),
    ("mixed_sizes", "not all one square size .*give an image size"),
    ("test_classes", "differ from the training classes"),
    ("no_test", "only one of train/ and test/"),
])
def test_bad_folders_give_one_clear_line(tmp_path, breakage, message):
    root = tmp_path / "data"
    write_images(root / "train", per_class=10)  # enough for a validation split: only the breakage is wrong
    write_images(root / "test", seed=1)
    bad = {
        "missing": lambda: root.rename(tmp_path / "elsewhere"),
        "empty_class": lambda: (root / "train" / "owl").mkdir(),
        "not_an_image": lambda: (root / "train" / "dog" / "notes.jpg").write_text("hello"),
        "mixed_sizes": lambda: Image.new("RGB", (20, 20)).save(root / "train" / "cat" / "big.png"),
        "test_classes": lambda: (root / "test" / "fox").rename(root / "test" / "wolf"),
        "no_test": lambda: [p.unlink() for p in (root / "test").rglob("*.png")] and __import__("shutil").rmtree(root / "test"),
    }
    bad[breakage]()
    with pytest.raises(FactoryError, match=message) as err:
        load_folder(root)
    assert "\n" not in str(err.value)


def test_pipeline_normalizes_and_augments(digits):
    x, y = digits.x_train[:8], digits.y_train[:8]
    plain = next(iter(make_dataset(x, y, 8, training=False)))[0].numpy()
    np.testing.assert_allclose(plain, x * SCALE + OFFSET, atol=1e-6)
    augmented = next(iter(make_dataset(x, y, 8, training=True)))[0].numpy()
    assert augmented.shape == plain.shape
    assert augmented.min() >= -1 and augmented.max() <= 1
