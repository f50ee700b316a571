"""One writer per work directory: a second writer is refused at once (or waits with --wait), a dead holder's lock
is taken over, and the Python API takes the same lock as the CLI."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from factory.core.errors import FactoryError
from factory.core.lock import LOCK_FILE
from factory.training.workdir import Workdir, writes_workdir

HOLD = """
import sys, time
from factory.training.workdir import Workdir
with Workdir(sys.argv[1]).writing():
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
print("released", flush=True)
"""


def _holder(path, seconds):
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "holding"
    return process


def test_a_second_cli_writer_is_refused_at_once_and_the_first_finishes_intact(tmp_path):
    workdir = tmp_path / "w"
    train = [sys.executable, "-m", "factory", "train", "--data", "digits", "--space", "tiny", "--epochs", "2",
             "--workdir", str(workdir)]
    first = subprocess.Popen(train, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (workdir / LOCK_FILE).exists() or "pid" not in (workdir / LOCK_FILE).read_text():
        assert time.time() < deadline and first.poll() is None
        time.sleep(0.2)
    start = time.time()
    second = subprocess.run(train, capture_output=True, text=True, timeout=120)
    refused_in = time.time() - start
    assert second.returncode == 2 and len(second.stderr.strip().splitlines()) == 1, second.stderr
    assert f"PID {first.pid}" in second.stderr and "factory train" in second.stderr and "--wait" in second.stderr
    assert refused_in < 30
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert Workdir(workdir).training()["epochs"] == 2


def test_a_writer_with_wait_queues_behind_the_holder(tmp_path):
    holder = _holder(tmp_path, 3)
    start = time.time()
    with Workdir(tmp_path, wait=True).writing():
        waited = time.time() - start
    assert holder.wait(timeout=30) == 0 and waited >= 1.0


def test_the_lock_of_a_killed_holder_is_taken_over_with_a_line(tmp_path, capsys):
    holder = _holder(tmp_path, 60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    with Workdir(tmp_path).writing():
        record = json.loads((tmp_path / LOCK_FILE).read_text())
    assert record["pid"] == os.getpid()
    out = capsys.readouterr().out
    assert f"PID {holder.pid}" in out and "no longer running" in out


def test_the_python_api_takes_the_same_lock_and_holds_it_reentrantly(tmp_path):
    calls = []

    @writes_workdir
    def outer(workdir):
        calls.append("outer")
        inner(workdir)  # make() trains, searches and exports under one lock

    @writes_workdir
    def inner(workdir):
        calls.append("inner")

    outer(Workdir(tmp_path))
    assert calls == ["outer", "inner"]
    holder = _holder(tmp_path, 30)
    try:
        with pytest.raises(FactoryError, match=f"in use by .*PID {holder.pid}"):
            outer(Workdir(tmp_path))
    finally:
        holder.kill()
        holder.wait()
