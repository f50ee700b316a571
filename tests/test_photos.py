"""Folders of photos as users have them: any size and shape, mixed formats and modes, EXIF rotation."""

import json

import numpy as np
import pytest
from PIL import Image

from factory.core.errors import FactoryError
from factory.training import data as datasets
from factory.training.data import load_data, load_folder
from factory.training.portable.images import RESIZE_POLICIES, resize_image
from helpers import EXIF_ORIENTATION, write_photos


def halves(w, h):
    """Red left half, blue right half: where each colour lands shows what a policy did."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (255, 0, 0)
    a[:, w // 2:] = (0, 0, 255)
    return Image.fromarray(a)


def test_a_mixed_folder_loads_at_one_size_with_its_skips_counted(tmp_path, capsys):
    write_photos(tmp_path / "photos")
    data = load_folder(tmp_path / "photos", image_size=24, test_fraction=0.25)
    assert data.x_train.shape[1:] == (24, 24, 3) and data.x_test.shape[1:] == (24, 24, 3)
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 16 and data.resize == "crop"
    out = capsys.readouterr()
    assert "16 images in 2 classes" in out.out and "skipped 4 files" in out.out
    assert "class cat has only" in out.err  # under 10 images: a warning, not a refusal
    assert json.dumps(data.summary())  # what data.json records
    assert data.summary()["resize"] == "crop" and data.summary()["image_size"] == 24


def test_the_test_split_is_decoded_once_from_the_files_at_any_size(tmp_path):
    write_photos(tmp_path / "photos")
    data = load_data(str(tmp_path / "photos"), image_size=32, resize="pad", test_fraction=0.25)
    files = list(data.test_files)
    assert len(files) == len(data.y_test)
    direct = np.stack([resize_image(Image.open(path), 20, "pad") for path in files])
    np.testing.assert_array_equal(data.test_images(20), direct)  # not 32 first, then 20
    # the card's snippet rebuilds the same files in the same order
    scope = {"labels": data.class_names}
    exec(datasets.test_split_code(data), scope)
    assert [im.filename for im in scope["test_images"]] == [str(p) for p in files]
    assert list(scope["test_labels"]) == list(data.y_test)


@pytest.mark.parametrize("policy", sorted(RESIZE_POLICIES))
def test_each_policy_makes_a_wide_image_square_as_it_says(policy):
    out = resize_image(halves(80, 40), 20, policy).astype(int)
    black_rows = int((out.sum(axis=(1, 2)) == 0).sum())
    if policy == "pad":  # black bars above and below, the image between
        assert 8 <= black_rows <= 10 and out[6:14, 0, 0].min() > 200 and out[6:14, -1, 2].min() > 200
    else:  # crop keeps the middle, stretch the whole: both red on the left, blue on the right, no bars
        assert black_rows == 0 and out[:, 0, 0].min() > 200 and out[:, -1, 2].min() > 200
    red_columns = int((out[10, :, 0] > 128).sum())
    assert red_columns == 10  # the red/blue border stays in the middle under every policy


def test_exif_orientation_alpha_and_modes_become_upright_rgb():
    sideways = halves(40, 20)  # red left, blue right as stored
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # shown rotated 90 degrees clockwise: red on top
    sideways.info["exif"] = exif.tobytes()
    sideways = Image.open(_roundtrip(sideways, exif))
    shown = resize_image(sideways, 20, "stretch").astype(int)
    assert shown[0, :, 0].min() > 200 and shown[-1, :, 2].min() > 200
    clear = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert (resize_image(clear, 10) == 255).all()  # transparent composites on white, not black
    for mode in ("L", "P", "CMYK", "I;16"):
        assert resize_image(Image.new(mode, (12, 8)), 8).shape == (8, 8, 3)


def _roundtrip(image, exif):
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, exif=exif)
    buffer.seek(0)
    return buffer


def test_a_corrupt_photo_is_one_line_naming_it(tmp_path):
    write_photos(tmp_path / "photos")
    (tmp_path / "photos" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(FactoryError, match=r"broken\.jpg is not a decodable image") as err:
        load_data(str(tmp_path / "photos"), image_size=16)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_photo_is_named_before_the_folder_is_judged_too_small_to_split(tmp_path, damage):
    write_photos(tmp_path / "photos", n=1)  # a few images a class: too few to split
    good = next((tmp_path / "photos" / "dog").glob("*.jpg")).read_bytes()
    broken = b"\xff\xd8 not really" if damage == "garbage" else good[:len(good) // 2]
    (tmp_path / "photos" / "dog" / "broken.jpg").write_bytes(broken)
    with pytest.raises(FactoryError, match=r"broken\.jpg is not a decodable image"):
        load_data(str(tmp_path / "photos"), image_size=16)


def test_a_tenfold_imbalance_is_a_warning(tmp_path, capsys):
    for name, n in (("many", 40), ("few", 4)):
        (tmp_path / name).mkdir()
        for i in range(n):
            Image.new("RGB", (9, 7), (i, 0, 0)).save(tmp_path / name / f"{i}.png")
    load_folder(tmp_path, image_size=8)
    err = capsys.readouterr().err
    assert "imbalanced" in err and "class few has only" in err


def test_a_photo_folder_trains_searches_and_exports_with_its_policy_on_the_card(tmp_path, tiny_table_file, capsys):
    from factory.app.cli import main
    from factory.training.workdir import Workdir

    write_photos(tmp_path / "photos", n=12)
    work = Workdir(tmp_path / "w")
    assert main(["train", "--data", str(tmp_path / "photos"), "--space", "tiny", "--epochs", "1", "--batch-size", "8",
                 "--resize", "pad", "--workdir", str(work)]) == 0
    assert work.data_record()["resize"] == "pad" and work.data_record()["image_size"] == 24
    table = ["--device", "host-cpu-1t", "--table", str(tiny_table_file)]
    assert main(["search", "--workdir", str(work), *table, "--budget-ms", "1000", "--n-eval", "10",
                 "--population", "8", "--generations", "2", "--recheck", "2"]) == 0
    bundle = tmp_path / "bundle"
    assert main(["export", "--workdir", str(work), "--subnet", str(work.search_result_file("host-cpu-1t", 1000)),
                 *table, "--out", str(bundle), "--qat-epochs", "0", "--max-drop", "100", "--min-agreement", "0"]) == 0
    card = json.loads((bundle / "model_card.json").read_text())
    assert card["input"]["resize_policy"] == "pad" and "black bars" in card["input"]["resize"]
    assert f"{card['input']['resolution']}, 'pad')" in card["snippets"]["python"]
    assert all("Canvas(square)" in card["snippets"][k] for k in ("kotlin_mediapipe", "kotlin_litert"))
    capsys.readouterr()
    wide = tmp_path / "wide.png"
    halves(120, 30).save(wide)
    assert main(["predict", str(bundle), str(wide)]) == 0
    assert capsys.readouterr().out.startswith(f"{wide}: ")
