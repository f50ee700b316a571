"""The `factory` command as a user runs it: in a subprocess, killed and rerun."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from factory.app.cli import main
from factory.training.workdir import Workdir


def factory(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "factory", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def epochs_logged(workdir):
    path = Workdir(workdir).train_log
    if not path.exists():
        return []
    with open(path) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_killed_training_resumes_where_it_stopped(tmp_path):
    workdir = tmp_path / "w"
    args = ["train", "--data", "digits", "--space", "tiny", "--epochs", "2", "--batch-size", "16",
            "--workdir", str(workdir)]
    proc = factory(*args)
    deadline = time.time() + 300
    while not epochs_logged(workdir) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = epochs_logged(workdir)
    assert done_before and max(done_before) < 1, "the first run should be killed mid-training"
    assert not Workdir(workdir).training_file.exists()

    rerun = factory(*args)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-2000:]
    assert "resuming the interrupted run" in out
    assert epochs_logged(workdir) == [0, 1]  # no epoch trained twice
    assert not Workdir(workdir).backup_dir.exists()
    assert Workdir(workdir).training_file.exists()
    assert "already holds a supernet" in factory(*args).communicate(timeout=600)[0]


@pytest.mark.parametrize("data", ["/no/such/folder", "cifar-ten"])
def test_bad_data_is_one_line_and_writes_nothing(tmp_path, capsys, data):
    workdir = tmp_path / "w"
    code = main(["train", "--data", data, "--space", "tiny", "--workdir", str(workdir)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "does not exist" in err
    assert not workdir.exists()


def test_workdir_of_another_space_is_refused(tiny_workdir, capsys):
    assert Workdir(tiny_workdir).supernet().space.name == "tiny"
    before = sorted(p.name for p in tiny_workdir.iterdir())
    code = main(["train", "--data", "digits", "--space", "default", "--workdir", str(tiny_workdir)])
    assert code == 2 and "another search space" in capsys.readouterr().err
    assert sorted(p.name for p in tiny_workdir.iterdir()) == before


def test_console_script_is_installed():
    exe = shutil.which("factory")
    assert exe, "pip install -e . should install the `factory` command"
    out = subprocess.run([exe, "train", "--help"], capture_output=True, text=True, env=os.environ)
    assert out.returncode == 0 and "--workdir" in out.stdout


def test_devices_list_and_show(capsys):
    assert main(["devices", "list"]) == 0
    listing = capsys.readouterr().out
    assert "host-cpu-1t" in listing and "android-arm64-gpu" in listing
    assert main(["devices", "show", "host-cpu-2t"]) == 0
    assert '"threads": 2' in capsys.readouterr().out
    assert main(["devices", "show", "pixel-99"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown device 'pixel-99'")


def test_table_build_and_validate_from_user_files(tmp_path, capsys):
    import json

    from factory.nas.space import space_document
    from helpers import MICRO

    space = tmp_path / "micro.json"
    space.write_text(json.dumps(space_document(MICRO)))
    device = tmp_path / "quick.json"
    device.write_text(json.dumps({"name": "quick", "runner": "host", "runs": 5, "warmup_runs": 1}))
    table = tmp_path / "t.json"
    common = ["--device", str(device), "--space", str(space), "--table", str(table)]
    assert main(["table", "build", *common, "--classes", "4"]) == 0
    assert "layers measured on quick" in capsys.readouterr().out
    assert main(["table", "validate", *common, "--n", "2", "--out", str(tmp_path / "v")]) == 0
    out = capsys.readouterr().out
    assert "random: 2 subnets on quick: MAPE" in out and "search-like: 2 subnets on quick: MAPE" in out
    assert (tmp_path / "v" / "random" / "scatter.png").exists() and (tmp_path / "v" / "search-like").is_dir()
    assert main(["table", "validate", "--device", "host-cpu-2t", "--space", str(space), "--table", str(table)]) == 2
    assert "measured on device quick, not host-cpu-2t" in capsys.readouterr().err


def test_written_files_are_ordinary_files(tmp_path):
    import stat

    from factory.core.files import write_json

    path = write_json(tmp_path / "x.json", {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_predict_prints_top_k_labels_with_probabilities(trained_bundle, tmp_path, capsys):
    from PIL import Image

    from factory.training.data import load_data

    data = load_data("digits")
    Image.fromarray(data.x_test[0]).save(tmp_path / "a.png")
    Image.fromarray(data.x_test[1]).save(tmp_path / "b.jpg")
    assert main(["predict", str(trained_bundle), str(tmp_path / "a.png"), str(tmp_path / "b.jpg"), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [str(tmp_path / "a.png"), str(tmp_path / "b.jpg")]
    for line in lines:
        pairs = [pair.split() for pair in line.split(": ", 1)[1].split(", ")]
        assert len(pairs) == 2 and all(label in data.class_names and 0 <= float(p) <= 1 for label, p in pairs)
    assert main(["predict", str(trained_bundle), str(tmp_path / "missing.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "missing.png does not exist" in err


def test_export_options_reach_the_bundle(tiny_workdir, tiny_table_file, tmp_path):
    import json

    from factory.nas.space import TINY, SubnetConfig

    subnet = tmp_path / "subnet.json"
    subnet.write_text(SubnetConfig.smallest(TINY).to_json())
    out = tmp_path / "bundle"
    code = main(["export", "--workdir", str(tiny_workdir), "--subnet", str(subnet), "--device", "host-cpu-1t",
                 "--table", str(tiny_table_file), "--out", str(out), "--io", "int8", "--qat-epochs", "0",
                 "--max-drop", "100", "--author", "Test Team", "--license", "Apache-2.0"])
    assert code == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["io"] == "int8" and card["input"]["dtype"] == "int8" and card["output"]["dtype"] == "int8"
    assert card["metadata"]["author"] == "Test Team" and card["metadata"]["license"] == "Apache-2.0"
    from export.metadata import read_metadata

    info, _ = read_metadata((out / "model.tflite").read_bytes())
    assert (info.author, info.license) == ("Test Team", "Apache-2.0")
