"""Faults a user can cause: each is one line and exit code 2, found before any expensive work, with no
partial file left; a bug exits 1 with its traceback kept in a log; the console stays quiet."""

import errno
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from factory.app.cli import main
from factory.core.errors import FactoryError, fault_line
from factory.nas.space import TINY, SubnetConfig

ROOT = Path(__file__).resolve().parents[1]


def factory(*args, timeout=600, **kwargs):
    return subprocess.run([sys.executable, "-m", "factory", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, **kwargs)


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def one_line(err: str) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def mounted(tmp_path):
    """A tmpfs mounted at a folder of tmp_path (``mount("ro")`` or ``mount("size=256k")``); needs root."""
    mounts = []

    def mount(options: str) -> Path:
        path = tmp_path / f"mnt{len(mounts)}"
        path.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}): needs root")
        mounts.append(path)
        return path

    yield mount
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_missing_data_folder_is_the_whole_output():
    done = factory("train", "--data", "/no/such/folder", "--workdir", "/tmp/never-made")
    assert done.returncode == 2 and done.stdout == ""
    assert one_line(done.stderr).startswith("error: data folder /no/such/folder does not exist")
    assert not Path("/tmp/never-made").exists()


@pytest.fixture
def user_files(tmp_path):
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "empty.tflite").write_bytes(b"")
    (tmp_path / "text.tflite").write_text("not a model at all")
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "subnet.json").write_text(SubnetConfig.smallest(TINY).to_json())
    return tmp_path


CASES = {
    "typo'd device": (["make", "--device", "nosuch-phone", "--budget-ms", "1", "--workdir", "{w}"],
                      "unknown device 'nosuch-phone'"),
    "negative budget": (["make", "--device", "host-cpu-1t", "--budget-ms", "-1", "--workdir", "{w}"],
                        "argument --budget-ms: -1 must be above 0"),
    "budget not a number": (["search", "--workdir", "{w}", "--device", "host-cpu-1t", "--budget-ms", "fast"],
                            "'fast' is not a number"),
    "zero size budget": (["search", "--workdir", "{w}", "--device", "host-cpu-1t", "--budget-ms", "1",
                          "--size-bytes", "0"], "--size-bytes: 0 must be at least 1"),
    "zero epochs": (["train", "--epochs", "0", "--workdir", "{w}"], "--epochs: 0 must be at least 1"),
    "unknown space": (["train", "--space", "huge", "--workdir", "{w}"], "huge"),
    "work directory is a file": (["train", "--workdir", "{d}/a-file"], "is a file, not a folder"),
    "untrained work directory": (["search", "--workdir", "{w}", "--device", "host-cpu-1t", "--budget-ms", "1"],
                                 "holds no trained supernet"),
    "table holding a list": (["table", "show", "--device", "host-cpu-1t", "--table", "{d}/list.json"],
                             "list.json holds a list, not an object"),
    "missing table": (["search", "--workdir", "{t}", "--device", "host-cpu-1t", "--budget-ms", "1",
                       "--table", "{d}/nope.json"], "latency table {d}/nope.json does not exist"),
    "subnet holding a list": (["export", "--workdir", "{t}", "--subnet", "{d}/list.json", "--device", "host-cpu-1t",
                               "--out", "{d}/b"], "list.json holds a list, not an object"),
    "missing subnet": (["export", "--workdir", "{t}", "--subnet", "{d}/nope.json", "--device", "host-cpu-1t",
                        "--out", "{d}/b"], "nope.json does not exist"),
    "out is a file": (["export", "--workdir", "{t}", "--subnet", "{d}/subnet.json", "--device", "host-cpu-1t",
                       "--out", "{d}/a-file"], "--out {d}/a-file is a file, not a folder"),
    "bench on an empty file": (["bench", "{d}/empty.tflite", "--device", "host-cpu-1t"], "empty.tflite is empty"),
    "bench on a text file": (["bench", "{d}/text.tflite", "--device", "host-cpu-1t"], "is not a .tflite model"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_argument_is_one_line_before_anything_is_written(case, user_files, tiny_workdir, capsys):
    args, expected = CASES[case]
    fill = {"w": user_files / "w", "d": user_files, "t": tiny_workdir}
    before, trained = tree(user_files), tree(tiny_workdir)
    try:
        code = main([a.format(**fill) for a in args])
    except SystemExit as exc:  # argparse's own checks
        code = exc.code
    err = one_line(capsys.readouterr().err)
    assert code == 2 and expected.format(**fill) in err
    assert tree(user_files) == before and tree(tiny_workdir) == trained


def test_a_folder_with_one_class_is_refused_at_load_and_nothing_is_written(tmp_path, capsys):
    (tmp_path / "photos" / "cats").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / "photos" / "cats" / f"{i}.png")
    assert main(["train", "--data", str(tmp_path / "photos"), "--space", "tiny", "--workdir", str(tmp_path / "w")]) == 2
    assert "one class (cats): a classifier needs at least 2" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "w").exists()
    from factory.training.data import load_folder

    with pytest.raises(FactoryError, match="at least 2 class"):
        load_folder(tmp_path / "photos")


def test_a_read_only_work_directory_is_one_line(mounted, capsys):
    ro = mounted("ro,size=1m")
    assert main(["train", "--data", "digits", "--space", "tiny", "--workdir", str(ro / "w")]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"--workdir {ro / 'w'} cannot be written (it would be created in {ro}): read-only file system" in err


def test_a_read_only_out_fails_before_the_fine_tune(mounted, tiny_workdir, tmp_path, capsys):
    ro = mounted("ro,size=1m")
    subnet = tmp_path / "subnet.json"
    subnet.write_text(SubnetConfig.smallest(TINY).to_json())
    assert main(["export", "--workdir", str(tiny_workdir), "--subnet", str(subnet), "--device", "host-cpu-1t",
                 "--out", str(ro / "bundle")]) == 2
    captured = capsys.readouterr()
    assert "read-only file system" in one_line(captured.err) and "fine-tuning" not in captured.out


def test_a_full_disk_during_training_is_one_line_and_the_rerun_says_what_it_resumes(mounted):
    disk = mounted("size=256k")  # room for the work directory's small files, not for the first checkpoint
    args = ["train", "--data", "digits", "--space", "tiny", "--epochs", "2", "--batch-size", "64",
            "--workdir", disk / "w"]
    full = factory(*args)
    assert full.returncode == 2, full.stderr[-2000:]
    assert "no space left on" in one_line(full.stderr) and "rerun the same command" in full.stderr
    subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
    rerun = factory(*args)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming" not in rerun.stdout  # no epoch had completed: nothing to resume from
    assert rerun.stderr == ""


def test_an_unexpected_error_exits_1_with_its_traceback_in_the_log(monkeypatch, tmp_path, capsys):
    def broken():
        raise ValueError("boom")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr("devices.profile.list_profiles", broken)
    assert main(["devices", "list"]) == 1
    err = one_line(capsys.readouterr().err)
    assert "unexpected ValueError: boom (a bug in the factory" in err
    log = Path(err.split("traceback is in ")[1].split(",")[0])
    assert log.is_relative_to(tmp_path) and "Traceback" in log.read_text() and "boom" in log.read_text()
    assert main(["devices", "list", "--debug"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err  # --debug shows it


@pytest.mark.parametrize("exc, expected", [
    (OSError(errno.EROFS, "Read-only file system", "/data/w/space.json"), "/data/w/space.json: the file system is read-only"),
    (OSError(errno.ENOSPC, "No space left on device", "/data/w/x"), "no space left on the device"),
    (PermissionError(errno.EACCES, "Permission denied", "/root/w"), "/root/w: permission denied"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/data/model.tflite"), "a folder is where a file is expected"),
    (MemoryError(), "out of memory: use a smaller --batch-size"),
    (ValueError("a bug"), None),
])
def test_faults_a_user_can_fix_have_their_own_line(exc, expected):
    line = fault_line(exc)
    assert line is None if expected is None else expected in line


def test_tensorflow_faults_are_told_apart_by_their_message():
    from factory.core.backend import tf

    oom = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[4096,4096]")
    disk = tf.errors.ResourceExhaustedError(None, None, "backup/ckpt-1_temp/part-0; No space left on device")
    assert fault_line(oom).startswith("out of memory")
    assert "no space left on device" in fault_line(disk) and "rerun the same command" in fault_line(disk)


def test_table_build_without_a_path_writes_to_the_user_cache_not_the_package(tmp_path, monkeypatch, capsys):
    from helpers import FAST, MICRO

    from factory.nas.space import space_document
    from latency_tables.table import SHIPPED

    shipped = sorted(p.name for p in SHIPPED.iterdir())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "micro.json").write_text(json.dumps(space_document(MICRO)))
    (tmp_path / "fast.json").write_text(json.dumps(FAST.to_dict()))
    assert main(["table", "build", "--device", str(tmp_path / "fast.json"), "--space", str(tmp_path / "micro.json"),
                 "--classes", "4"]) == 0
    built = tmp_path / "cache" / "mobile-model-factory" / "tables" / "micro__host-fast.json"
    assert f"wrote {built}" in capsys.readouterr().out and json.loads(built.read_text())["complete"]
    assert sorted(p.name for p in SHIPPED.iterdir()) == shipped
    assert main(["table", "show", "--device", str(tmp_path / "fast.json"), "--space", str(tmp_path / "micro.json")]) == 0
    assert f"table        {built}" in capsys.readouterr().out  # found again without --table


def test_temporaries_left_by_a_killed_write_are_removed_by_the_next_write(tmp_path):
    from factory.core.files import atomic_directory, write_json

    (tmp_path / ".result.k3j_x9q2.json").write_text("{half")  # as a kill mid-write leaves them
    (tmp_path / ".bundle.a1b2c3d4").mkdir()
    (tmp_path / ".bundle.old").mkdir()
    (tmp_path / ".other.k3j_x9q2.json").write_text("{}")  # another file's: not touched
    write_json(tmp_path / "result.json", {"ok": 1})
    with atomic_directory(tmp_path / "bundle") as tmp:
        (tmp / "model.tflite").write_bytes(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.k3j_x9q2.json", "bundle", "result.json"]
