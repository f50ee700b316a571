"""`factory make` end to end on digits (a micro space and a user's own device profile, real latency table),
`factory export` and `factory bench`."""

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from devices.hardware import describe, host_hardware
from devices.profile import load_profile
from factory.app.cli import main
from factory.training.workdir import Workdir
from factory.nas.space import SubnetConfig, space_document
from latency_tables.blocks import all_layers
from latency_tables.table import LatencyTable
from helpers import MICRO
from factory.nas.heads import ClassificationHead

# A user's own profile file (one quick measurement of each model), as a team with its own device writes one.
QUICK = {"name": "host-quick", "runner": "host", "threads": 1, "runs": 10, "warmup_runs": 2}
MAKE = ["make", "--data", "digits", "--epochs", "1", "--batch-size", "64", "--n-eval", "12", "--calibrate-n", "5",
        "--qat-epochs", "1", "--min-qat-steps", "0", "--max-drop", "100", "--min-agreement", "0"]
# TensorFlow's, absl's and the converter's native lines: none may reach a user's console
NATIVE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages|.*(cuda|oneDNN|fully_quantize|XNNPACK))",
                    re.MULTILINE)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One make run; its budget is the middle of what the measured table allows."""
    workdir = tmp_path_factory.mktemp("make")
    files = tmp_path_factory.mktemp("user-files")
    profile, space = files / "host-quick.json", files / "micro.json"
    profile.write_text(json.dumps(QUICK))
    space.write_text(json.dumps(space_document(MICRO)))  # a few layers: each costs a conversion to measure
    make = MAKE + ["--space", str(space), "--device", str(profile), "--workdir", str(workdir)]
    with pytest.raises(SystemExit):  # argparse: a budget is required
        main(make)
    done = subprocess.run([sys.executable, "-m", "factory", *make, "--budget-ms", "1000"], capture_output=True,
                          text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "measuring this device's own table first" in done.stdout and "whole subnets to calibrate it" in done.stdout
    assert not NATIVE.search(done.stdout + done.stderr), NATIVE.search(done.stdout + done.stderr).group(0)
    assert "fully_quantize" in Workdir(workdir).log_file.read_text()  # the converter's chatter is in the log
    table = LatencyTable.load(Workdir(workdir).table_file(MICRO, "host-quick", ClassificationHead(10)), MICRO, load_profile(profile))
    return SimpleNamespace(make=make, workdir=workdir, table=table, profile=profile)


def shipped(workdir, tmp_path, monkeypatch, **hardware) -> Path:
    """The work directory's table put where shipped tables live, as measured on ``hardware``."""
    doc = json.loads(Workdir(workdir).table_file(MICRO, "host-quick", ClassificationHead(10)).read_text())
    doc["hardware"].update(hardware)
    monkeypatch.setattr("latency_tables.table.SHIPPED", tmp_path)
    path = tmp_path / "micro__host-quick.json"
    path.write_text(json.dumps(doc))
    return path


def test_make_writes_a_bundle_per_budget_and_skips_what_is_done(made, capsys, tmp_path, monkeypatch):
    make, workdir, table = made.make, made.workdir, made.table
    assert table.correction["fitted_on_subnets"] == 5  # the table make built was calibrated
    budget = round((table.fastest_ms() + table.predict(SubnetConfig.largest(MICRO))) / 2, 4)
    capsys.readouterr()
    shipped(workdir, tmp_path, monkeypatch, cpu="Other CPU")  # a shipped table of another machine is not used
    assert main(make + ["--budget-ms", "1000", str(budget)]) == 0
    out = capsys.readouterr().out
    assert "already holds a trained supernet" in out and "host-quick__1000ms is already there" in out
    assert "not using the shipped table" in out and "was measured on Other CPU" in out
    assert "factory table build" not in out  # make says what it does, not what another command would do
    assert f"latency table {Workdir(workdir).table_file(MICRO, 'host-quick', ClassificationHead(10))}" in out
    for b in (1000, budget):
        bundle = Workdir(workdir).bundle_dir("host-quick", b)
        card = json.loads((bundle / "model_card.json").read_text())
        subnet = SubnetConfig.from_dict(card["subnet"])
        assert table.predict(subnet) <= b and card["latency"]["budget_ms"] == b
        assert card["float_operators"] == [] and (bundle / "pareto.png").stat().st_size > 5000
        assert card["input"]["dtype"] == "uint8" and card["input"]["pixel_shift"] == 0  # the pixels, exactly
    for result in Workdir(workdir).search_results("host-quick"):  # make chose on int8 accuracy, as it ships
        assert result["chosen_by"] == "int8 validation accuracy" and len(result["int8_rechecked"]) >= 1
    assert table.doc.get("complete") and len(table.doc["entries"]) == len(all_layers(MICRO, ClassificationHead(10)))
    # where the time went: each stage of this run (the first three skipped, so quick), and the total
    timings = json.loads(Workdir(workdir).timings_file.read_text())
    assert [s["stage"] for s in timings["stages"]] == ["1/4 latency tables", "2/4 supernet",
                                                       "3/4 accuracy predictor and search", "4/4 export"]
    # each figure rounded to 0.1 s: the stages' sum may pass the total by their rounding
    assert timings["total_seconds"] + 0.05 * len(timings["stages"]) >= sum(s["seconds"] for s in timings["stages"]) > 0
    assert "time per stage:" in out and "total" in out


def test_make_names_the_fastest_latency_for_a_budget_too_low(made, capsys, tmp_path, monkeypatch):
    make, workdir, table = made.make, made.workdir, made.table
    path = shipped(workdir, tmp_path, monkeypatch)  # measured on this machine: used
    assert main(make + ["--budget-ms", "0.00001"]) == 2
    captured = capsys.readouterr()
    assert f"shipped latency table {path}" in captured.out
    assert f"at least {table.fastest_ms():.3f} ms" in captured.err


def test_a_budget_too_low_for_a_shipped_table_fails_before_anything_is_trained(made, capsys, tmp_path,
                                                                               monkeypatch):
    fresh = tmp_path / "fresh"
    shipped(made.workdir, tmp_path, monkeypatch)
    make = [a if a != str(made.workdir) else str(fresh) for a in made.make]
    assert main(make + ["--budget-ms", "0.00001"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: a 1e-05 ms budget") and err.count("\n") == 1
    assert not Workdir(fresh).supernet_dir.exists() and not Workdir(fresh).space_file.exists()


def test_export_and_bench_commands(made, tmp_path, capsys):
    workdir = made.workdir
    result = Workdir(workdir).search_result_file("host-quick", 1000)
    out = tmp_path / "bundle"
    assert main(["export", "--workdir", str(workdir), "--subnet", str(result), "--device", str(made.profile),
                 "--table", str(Workdir(workdir).table_file(MICRO, "host-quick", ClassificationHead(10))), "--out", str(out),
                 "--qat-epochs", "0", "--max-drop", "100", "--min-agreement", "0"]) == 0
    assert json.loads((out / "model_card.json").read_text())["latency"]["budget_ms"] == 1000
    capsys.readouterr()
    assert main(["bench", str(out / "model.tflite"), "--device", "host-cpu-2t"]) == 0
    text = capsys.readouterr().out
    assert "host-cpu-2t (host, 2 thread(s), xnnpack)" in text and "median (ms)" in text
    assert re.search(rf"hardware\s+{re.escape(describe(host_hardware()))}\n", text)
    assert main(["bench", str(tmp_path / "missing.tflite"), "--device", "host-cpu-1t"]) == 2
    assert "is not a file" in capsys.readouterr().err


def test_bench_times_a_model_on_a_phone_over_adb(made, tmp_path, monkeypatch, capsys):
    import os

    from helpers import AARCH64_ELF, FAKES

    workdir = made.workdir
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(AARCH64_ELF)
    profile = tmp_path / "phone.json"
    profile.write_text(json.dumps({"name": "phone", "runner": "adb", "threads": 4, "delegate": "gpu",
                                   "benchmark_binary": str(binary)}))
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_BENCH", "gpu_partial")
    model = Workdir(workdir).bundle_dir("host-quick", 1000) / "model.tflite"
    capsys.readouterr()
    assert main(["bench", str(model), "--device", str(profile)]) == 0
    text = capsys.readouterr().out
    assert "phone (adb, 4 thread(s), gpu)" in text and re.search(r"delegated nodes\s+58 of 64", text)
    assert "peak memory (MB)" in text
