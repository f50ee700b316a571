"""Starting from ImageNet at small scale: the lite0 space at low resolutions, trained from EfficientNet-Lite0's weights
on photos cut from scikit-learn's two sample images (a temple and a flower), exported as a QAT int8 bundle that
MediaPipe and the Task Library load as shipped; and which runs start from ImageNet by default."""

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

from export.config import ExportConfig
from factory.app.cli import main, pretrained_choice
from factory.nas.pretrained import load_pretrained
from factory.nas.space import LITE0, SubnetConfig
from factory.training.data import load_data, make_dataset
from factory.training.portable.images import resize_images
from factory.training.portable.recipe import TrainConfig
from factory.training.teacher import load_head
from factory.training.train import train_supernet
from factory.training.workdir import Workdir
from helpers import synthetic_table
from test_clients import CLIENTS, classify, litert_labels, scores
from factory.nas.heads import ClassificationHead

SMALL = dataclasses.replace(LITE0, name="lite0-96", resolutions=(64, 96))  # Lite0's widths and weights, small inputs


def write_sample_crops(root, n: int = 14):
    """Two classes of real photo content: random crops of the temple photo and of the flower photo."""
    rng = np.random.default_rng(0)
    for name, photo in zip(("temple", "flower"), load_sample_images().images):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(n):
            size = int(rng.integers(120, 300))
            y, x = (int(rng.integers(0, photo.shape[d] - size)) for d in (0, 1))
            Image.fromarray(photo[y:y + size, x:x + size]).save(folder / f"{i}.jpg", quality=90)


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lite0")
    write_sample_crops(root / "photos")
    data = load_data(str(root / "photos"), image_size=SMALL.resolutions[-1], test_fraction=0.25)
    workdir = Workdir(root / "work")
    config = TrainConfig.from_pretrained("efficientnet-lite0", epochs=1, batch_size=8, calibration_images=16,
                                         n_random=0,  # the largest and smallest: a smaller graph to trace
                                         schedule="progressive",  # its first third: kernels elastic only
                                         teacher=True)  # the frozen network's path (in place is the scratch runs')
    supernet = train_supernet(data, SMALL, workdir, config, verbose=0)
    return supernet, data, workdir


def test_training_starts_from_imagenet_with_statistics_kept_and_records_it(pretrained_run):
    supernet, data, workdir = pretrained_run
    weights = load_pretrained("efficientnet-lite0", SMALL)
    recorded = workdir.training()["pretrained"]
    assert recorded["name"] == "efficientnet-lite0" and recorded["licence"] == "Apache-2.0" and recorded["teacher"]
    # batch norm is anchored to ImageNet's statistics: the anchors are untouched by training, the largest subnet is
    # normalised with them after recalibration, and a smaller one with them shifted by its own difference
    np.testing.assert_array_equal(supernet.stem.bn.anchor_mean.numpy(), weights.layers["stem_bn"][2])
    block = supernet.get_layer("stage1_block0").project_bn
    np.testing.assert_array_equal(block.anchor_variance.numpy(), weights.layers["stage1_block0_project_bn"][3])
    assert supernet.recalibrate(SubnetConfig.largest(SMALL), data.calibration(16, 8)) == 2
    np.testing.assert_allclose(block.moving_variance.numpy(), block.anchor_variance.numpy(), rtol=1e-4)
    supernet.recalibrate(SubnetConfig.smallest(SMALL), data.calibration(16, 8))
    assert not np.allclose(block.moving_variance.numpy(), block.anchor_variance.numpy(), rtol=1e-2)
    # the teacher's classifier, trained on the frozen features, separates the two photos' crops
    head, accuracy = load_head(workdir.teacher_head_file)
    assert head[0].shape == (1280, 2) and accuracy >= 0.75
    assert workdir.train_config()["pretrained"] == "efficientnet-lite0"
    assert workdir.train_config()["schedule"] == "progressive" and supernet.sandwich_configs(0)[1].depths == (4,) * 5


@pytest.mark.parametrize("pick", ["largest", "reference"])
def test_subnets_holding_lite0_tell_the_photos_apart_from_the_start(pretrained_run, pick):
    """Two training steps cannot teach the small subnets (``bench.pretrained`` measures that); the subnets that
    hold Lite0 start with its features and the teacher's classifier."""
    supernet, data, _ = pretrained_run
    subnet = SubnetConfig.largest(SMALL) if pick == "largest" else load_pretrained("efficientnet-lite0", SMALL).subnet
    test = make_dataset(data.x_test, data.y_test, 16, training=False)
    supernet.recalibrate(subnet, data.calibration(16, 8))
    assert supernet.evaluate_subnet(subnet, test) >= 0.75


@pytest.fixture(scope="module")
def lite0_bundle(pretrained_run, host, tmp_path_factory):
    from export.pipeline import export_subnet

    supernet, data, workdir = pretrained_run
    out = tmp_path_factory.mktemp("lite0-bundle") / "bundle"
    subnet = SubnetConfig.random(SMALL, 0)
    export_subnet(supernet, subnet, data, host, synthetic_table("host-cpu-1t", 1.0, SMALL, ClassificationHead(2)), out, verbose=0,
                  supernet_training=workdir.training(),
                  config=ExportConfig(qat_epochs=1, min_qat_steps=2, batch_size=8, max_drop_points=100.0,
                                      min_agreement=0.0, representative_images=16))
    return out, subnet, data


def test_the_bundle_is_fully_int8_and_its_card_names_the_pretrained_source(lite0_bundle):
    out, subnet, _ = lite0_bundle
    card = json.loads((out / "model_card.json").read_text())
    assert card["input"]["dtype"] == "uint8" and card["float_operators"] == []
    assert card["params"] == SMALL.param_count(subnet, ClassificationHead(2))
    assert card["training"]["supernet_pretrained"]["name"] == "efficientnet-lite0"
    text = (out / "model_card.md").read_text()
    assert "EfficientNet-Lite0 trained on ImageNet" in text and "licence Apache-2.0" in text


@pytest.mark.parametrize("name", list(CLIENTS))
def test_the_bundle_works_as_shipped_in_the_client(lite0_bundle, name, tmp_path):
    out, subnet, data = lite0_bundle
    card = json.loads((out / "model_card.json").read_text())
    at_input = resize_images(data.x_test, subnet.resolution)
    results = classify(name, out, {"at_input": at_input}, tmp_path)
    mine = scores(results["at_input"], 2)
    assert np.mean(mine.argmax(-1) == litert_labels(out, at_input)) >= 0.99
    assert all(label == card["classes"][index] for rows in results.values() for c in rows for index, _, label in c)


@pytest.mark.parametrize("data, pretrained, space, init_from, expected", [
    ("photos/", None, None, None, "efficientnet-lite0"),
    ("photos/", None, "lite0", None, "efficientnet-lite0"),
    ("photos/", None, "default", None, ""),
    ("photos/", "none", None, None, ""),
    ("photos/", None, None, "runs/other", ""),
    ("digits", None, None, None, ""),
    ("digits", "efficientnet-lite0", None, None, "efficientnet-lite0"),
])
def test_a_folder_of_photos_starts_from_imagenet_by_default(data, pretrained, space, init_from, expected):
    assert pretrained_choice(data, pretrained, space, init_from) == expected


def test_weights_that_do_not_fit_the_named_space_are_refused_before_any_work(tmp_path, capsys):
    code = main(["train", "--data", "digits", "--pretrained", "efficientnet-lite0", "--space", "mobilenetv3",
                 "--workdir", str(tmp_path / "w")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "does not fit search space 'mobilenetv3'" in err
    assert not (tmp_path / "w" / "space.json").exists()


def test_subnets_are_also_ranked_by_agreement_with_the_teacher_on_every_unlabelled_image(pretrained_run, tmp_path):
    from factory.search.evaluate import as_arrays, evaluate_subnets, ranking_target

    supernet, data, workdir = pretrained_run
    teacher = workdir.teacher()
    assert teacher is not None and teacher.input_shape[1] == SMALL.resolutions[-1]
    results = evaluate_subnets(supernet, data, tmp_path / "evals.json", n=3, calibration_images=16, teacher=teacher,
                               verbose=0)
    assert ranking_target(results) == "teacher_agreement"
    _, target = as_arrays(SMALL, results)
    assert [float(t) for t in target] == pytest.approx([r["teacher_agreement"] for r in results])
    images = len(data.y_train) + len(data.y_val)  # every agreement is a count over the train and val images
    for r in results:
        assert r["teacher_agreement"] * images == pytest.approx(round(r["teacher_agreement"] * images))
    assert ranking_target([{"val_accuracy": 0.5}, {"val_accuracy": 0.6, "teacher_agreement": 0.9}]) == "val_accuracy"


def test_a_run_from_imagenet_evaluates_fewer_subnets_and_ships_post_training_int8_unless_told(pretrained_run,
                                                                                            tiny_workdir):
    from factory.app.cli import _n_eval, _space_and_recipe, build_parser
    from factory.search.strategies import PRETRAINED_N_EVAL

    _, _, workdir = pretrained_run
    assert workdir.pretrained["name"] == "efficientnet-lite0" and Workdir(tiny_workdir).pretrained is None
    make = ["make", "--data", "photos/", "--device", "host-cpu-1t", "--budget-ms", "1", "--workdir", "w"]
    args = build_parser().parse_args(make)
    assert _n_eval(args, True) == PRETRAINED_N_EVAL < _n_eval(args, False) == 300
    assert ExportConfig.for_run(True, qat_epochs=args.qat_epochs).qat_epochs == 0
    assert ExportConfig.for_run(False, qat_epochs=args.qat_epochs).qat_epochs == ExportConfig().qat_epochs == 2
    given = build_parser().parse_args(make + ["--n-eval", "40", "--qat-epochs", "3"])
    assert _n_eval(given, True) == 40 and ExportConfig.for_run(True, qat_epochs=given.qat_epochs).qat_epochs == 3
    # subnets learn in place from the largest unless --teacher asks for the frozen network (in place measured better)
    _, recipe = _space_and_recipe(args)
    _, taught = _space_and_recipe(build_parser().parse_args(make + ["--teacher"]))
    assert recipe.pretrained == "efficientnet-lite0" and not recipe.teacher and taught.teacher
