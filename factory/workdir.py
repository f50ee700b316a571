"""What a work directory must hold before a stage reads it, checked without TensorFlow."""

from __future__ import annotations

from pathlib import Path

from factory.errors import FactoryError
from factory.files import read_json
from factory.space import SubnetConfig


def check_trained(workdir: str | Path) -> Path:
    """A work directory holding a trained supernet (``factory train`` finished in it)."""
    workdir = Path(workdir).expanduser()
    if not (workdir / "supernet" / "config.json").is_file():
        raise FactoryError(f"{workdir} holds no trained supernet: run `factory train --workdir {workdir}` first")
    return workdir


def load_subnet(path: str | Path) -> tuple[SubnetConfig, float | None]:
    """A SubnetConfig from a `factory search` result or a SubnetConfig JSON, with its budget if any."""
    doc = read_json(path)
    if "subnet" in doc:
        return SubnetConfig.from_dict(doc["subnet"]), doc.get("budget_ms")
    return SubnetConfig.from_dict(doc), None
