"""Transfer: a supernet trained on one data set starts the training on another (`--init-from`)."""

import numpy as np
import pytest

from factory.app.cli import main
from factory.nas.space import TINY
from factory.nas.supernet import Supernet
from factory.training.portable.recipe import TRANSFER_DEFAULTS, TrainConfig, epochs_for
from factory.training.train import transfer_weights
from factory.training.workdir import Workdir
from helpers import write_photos
from factory.nas.heads import ClassificationHead


def test_every_weight_but_the_classifier_is_copied():
    source, target = Supernet(TINY, ClassificationHead(10), seed=1), Supernet(TINY, ClassificationHead(3), seed=2)
    transfer_weights(source, target)
    for mine, theirs in zip(target.layers, source.layers):
        for a, b in zip(mine.get_weights(), theirs.get_weights()):
            if mine.name == "classifier":  # new classes: its own shape, its own fresh weights
                assert a.shape[-1] == 3 and b.shape[-1] == 10
            else:
                np.testing.assert_array_equal(a, b)


def test_the_transfer_schedule_is_shorter_and_slower_unless_told():
    config = TrainConfig.transfer("/src")
    assert config.init_from == "/src" and config.epochs == TRANSFER_DEFAULTS["epochs"] < TrainConfig().epochs
    assert config.learning_rate < TrainConfig().learning_rate
    # a few hundred images give a dozen steps in 3 epochs: the default schedule runs at least min_steps
    assert epochs_for(config, steps_per_epoch=4) == 75 and epochs_for(config, steps_per_epoch=500) == 3
    told = TrainConfig.transfer("/src", epochs=7)  # epochs given are kept as given
    assert told.epochs == 7 and epochs_for(told, steps_per_epoch=4) == 7
    assert epochs_for(TrainConfig(), steps_per_epoch=1) == TrainConfig().epochs  # training from scratch: as given


def test_a_transferred_supernet_trains_and_its_bundle_names_the_source(tiny_workdir, tiny_table, host, tmp_path,
                                                                       capsys):
    from export.config import ExportConfig
    from factory.app.stages import export_workdir
    from factory.nas.space import SubnetConfig

    write_photos(tmp_path / "photos", n=12)
    work = Workdir(tmp_path / "w")
    # no --space: the source's; no --learning-rate: the transfer schedule's
    assert main(["train", "--data", str(tmp_path / "photos"), "--init-from", str(tiny_workdir), "--batch-size", "8",
                 "--epochs", "2", "--workdir", str(work)]) == 0
    out = capsys.readouterr().out
    assert f"starting from the supernet of {tiny_workdir}" in out and "for 2 classes" in out
    assert work.space() == TINY and work.train_config()["init_from"] == str(tiny_workdir.resolve())
    assert work.training()["epochs"] == 2
    assert work.train_config()["learning_rate"] == TRANSFER_DEFAULTS["learning_rate"]
    init = work.training()["init_from"]
    assert init["data"] == "digits" and len(init["classes"]) == 10 and init["epochs"] == 10
    card = export_workdir(work, SubnetConfig.smallest(TINY), host, tiny_table, tmp_path / "bundle", verbose=0,
                          config=ExportConfig(qat_epochs=0, max_drop_points=100.0, min_agreement=0.0))
    assert card["training"]["supernet_init_from"] == init and card["classes"] == ["cat", "dog"]
    assert f"starting from the supernet of {init['workdir']}" in (tmp_path / "bundle" / "model_card.md").read_text()


@pytest.mark.parametrize("case", ["other-space", "untrained"])
def test_a_source_that_cannot_transfer_is_one_line_before_any_work(case, tiny_workdir, tmp_path, capsys):
    write_photos(tmp_path / "photos")
    source = {"other-space": tiny_workdir, "untrained": tmp_path / "empty"}[case]
    (tmp_path / "empty").mkdir()
    args = ["train", "--data", str(tmp_path / "photos"), "--init-from", str(source), "--workdir", str(tmp_path / "w")]
    assert main(args + (["--space", "default"] if case == "other-space" else [])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert {"other-space": "transfer needs the same space", "untrained": "holds no trained supernet"}[case] in err[0]
    assert not (tmp_path / "w" / "space.json").exists()


def test_make_takes_init_from_too(tiny_workdir, tmp_path, capsys):
    write_photos(tmp_path / "photos")
    assert main(["make", "--data", str(tmp_path / "photos"), "--init-from", str(tiny_workdir), "--space", "res64",
                 "--device", "host-cpu-1t", "--budget-ms", "5", "--workdir", str(tmp_path / "w")]) == 2
    assert "transfer needs the same space" in capsys.readouterr().err
    assert not (tmp_path / "w" / "tables").exists()  # refused before the tables stage
