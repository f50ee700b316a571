"""A folder decoded once into files on disk and streamed a batch at a time, the same images as in memory."""

import numpy as np
import pytest
from PIL import Image

from factory.core.errors import FactoryError
from factory.training.data import load_folder, make_dataset
from factory.training.portable import cache as caching
from factory.training.portable.cache import ImageCache, decode_to_cache
from factory.training.portable.images import resize_images
from helpers import write_photos


@pytest.fixture
def photos(tmp_path):
    write_photos(tmp_path / "photos", n=12)
    return tmp_path / "photos"


def test_a_cached_folder_holds_the_images_a_memory_load_holds(photos, tmp_path):
    memory = load_folder(photos, image_size=20, resize="pad")
    cached = load_folder(photos, image_size=20, resize="pad", cache=tmp_path / "cache")
    for split in ("x_train", "x_val", "x_test"):
        assert isinstance(getattr(cached, split), ImageCache)
        np.testing.assert_array_equal(getattr(cached, split)[:], getattr(memory, split))
    np.testing.assert_array_equal(cached.y_train, memory.y_train)
    assert cached.test_files == memory.test_files and cached.summary() == memory.summary()


def test_the_cache_is_reused_and_redone_when_a_file_changes(photos, tmp_path, capsys):
    cache = tmp_path / "cache"
    load_folder(photos, image_size=16, cache=cache)
    [folder] = cache.iterdir()
    stamp = (folder / "train.npy").stat().st_mtime_ns
    assert "decoding train" in capsys.readouterr().out
    load_folder(photos, image_size=16, cache=cache)
    assert "decoding" not in capsys.readouterr().out and (folder / "train.npy").stat().st_mtime_ns == stamp
    Image.new("RGB", (30, 20), (9, 9, 9)).save(photos / "cat" / "0.jpg")  # a photo replaced
    load_folder(photos, image_size=16, cache=cache)
    assert [p for p in cache.iterdir()] != [folder] and len(list(cache.iterdir())) == 1  # the old one removed


@pytest.mark.parametrize("index", [3, slice(2, 7), np.array([0, 5, 6]), np.array([], int)])
def test_a_cache_indexes_like_the_array(tmp_path, index):
    images = np.random.default_rng(0).integers(0, 255, (9, 4, 4, 3), dtype=np.uint8)
    caching.write_npy(tmp_path / "x.npy", images.shape, [images[:5], images[5:]])
    cache = ImageCache(tmp_path / "x.npy")
    assert len(cache) == 9 and cache.shape == images.shape
    np.testing.assert_array_equal(cache[index], images[index])
    np.testing.assert_array_equal(cache.resized(6)[:], resize_images(images, 6))


def test_a_short_write_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="2 images written, 3 announced"):
        caching.write_npy(tmp_path / "x.npy", (3, 2, 2, 3), [np.zeros((2, 2, 2, 3), np.uint8)])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("training", [False, True])
def test_batches_from_a_cache_are_the_batches_from_memory(photos, tmp_path, training):
    data = load_folder(photos, image_size=16, cache=tmp_path / "cache")
    x = data.x_train[:]
    a = list(make_dataset(data.x_train, data.y_train, 4, training=training, seed=3))
    b = list(make_dataset(x, data.y_train, 4, training=training, seed=3))
    assert len(a) == len(b) > 1
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.shape[1:] == (16, 16, 3) and xa.dtype.name == "float32"
        if not training:  # augmentation draws differ between two pipelines; the order and labels do not
            np.testing.assert_array_equal(xa.numpy(), xb.numpy())
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())


def test_many_images_decode_on_every_core_to_the_same_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(caching, "CHUNK", 8)
    monkeypatch.setattr(caching, "PARALLEL_FROM", 16)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(40):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (int(rng.integers(10, 30)), 20, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    parallel = decode_to_cache(paths, 12, "crop", tmp_path / "parallel.npy", workers=2)
    serial = decode_to_cache(paths, 12, "crop", tmp_path / "serial.npy", workers=1)
    np.testing.assert_array_equal(parallel[:], serial[:])
    (tmp_path / "bad.png").write_text("not a picture")
    with pytest.raises(FactoryError, match="bad.png is not a decodable image"):
        decode_to_cache(paths + [tmp_path / "bad.png"], 12, "crop", tmp_path / "broken.npy", workers=2)
    assert not any(p.name.startswith((".broken", "broken")) for p in tmp_path.iterdir())


def test_a_trained_work_directory_streams_its_folder_from_its_cache(photos, tmp_path):
    from factory.app.cli import main
    from factory.training.workdir import Workdir

    work = Workdir(tmp_path / "w")
    assert main(["train", "--data", str(photos), "--space", "tiny", "--epochs", "1", "--batch-size", "8",
                 "--workdir", str(work)]) == 0
    assert sorted(p.name for p in next(work.cache_dir.iterdir()).iterdir()) == ["test.npy", "train.npy", "val.npy"]
    assert isinstance(work.data().x_train, ImageCache)
