"""The notebooks run top to bottom through the Python API."""

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from factory.nas.space import space_document
from helpers import AARCH64_ELF, FAKES, MICRO

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"


def run(name: str, tmp_path, cell_timeout: int = 1800) -> str:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    return "".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", ""))
                   for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)


@pytest.mark.slow  # about 3 minutes: it trains, searches and exports (the stored notebook shows its outputs)
def test_quickstart_notebook_executes(tmp_path):
    outputs = run("01_quickstart.ipynb", tmp_path)
    assert "ms predicted" in outputs and "val acc" in outputs
    assert "'model.tflite', 'model_card.json', 'model_card.md', 'pareto.png'" in outputs
    assert "(int8 .tflite through LiteRT)" in outputs  # the model card is displayed


def test_android_notebook_executes_against_the_adb_double(tmp_path, monkeypatch):
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(AARCH64_ELF)
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MMF_BENCHMARK_MODEL", str(binary))
    space = tmp_path / "micro-space.json"  # the notebook's steps on a space of a few layers: each is a conversion
    space.write_text(json.dumps(space_document(MICRO)))
    monkeypatch.setenv("MMF_SPACE", str(space))
    monkeypatch.setenv("MMF_VALIDATE_N", "3")
    monkeypatch.setenv("FAKE_ADB_LOG", str(tmp_path / "adb.log"))
    outputs = run("03_android.ipynb", tmp_path)
    assert "R58M123ABC arm64-v8a samsung SM-S901B (Samsung s5e9925)" in outputs and '"median_ms": 4.718' in outputs
    assert "layers; fastest subnet" in outputs and "'n': 3" in outputs
    assert '"--use_xnnpack=true"' in (tmp_path / "adb.log").read_text()


@pytest.mark.slow
def test_cifar10_notebook_executes(tmp_path, monkeypatch, cifar10_folder):
    monkeypatch.setenv("MMF_CIFAR10", str(cifar10_folder))
    monkeypatch.setenv("MMF_EPOCHS", "1")
    monkeypatch.setenv("MMF_N_EVAL", "30")
    monkeypatch.setenv("MMF_QAT_EPOCHS", "1")
    outputs = run("02_cifar10_pareto.ipynb", tmp_path, cell_timeout=5400)  # its make cell runs the whole factory
    assert outputs.count("wrote ") >= 3
