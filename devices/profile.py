"""Device profiles: where a model is timed and how (runner, threads, delegate, precision, runs).

A profile is a JSON file. The shipped ones live in ``devices/profiles/``; anywhere a
profile name is accepted, a path to a user's own JSON file works too.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from factory.core.errors import FactoryError

PROFILE_DIR = Path(__file__).parent / "profiles"
RUNNERS = ("host", "adb")
DELEGATES = {"host": ("xnnpack",), "adb": ("xnnpack", "gpu", "nnapi")}
PRECISIONS = ("int8", "float16", "float32")


@dataclass(frozen=True)
class DeviceProfile:
    """A timing target. ``serial``, ``benchmark_binary`` and ``cpu_mask`` are for adb only."""

    name: str
    runner: str
    threads: int = 1
    delegate: str = "xnnpack"
    precision: str = "int8"
    runs: int = 50
    warmup_runs: int = 10
    repeats: int = 1  # measurements per model; the one with the lowest median is kept
    serial: str | None = None
    benchmark_binary: str | None = None
    cpu_mask: str | None = None
    description: str = ""

    def __post_init__(self):
        def bad(field, why):
            raise FactoryError(f"device profile {self.name!r}: field {field!r} {why}")

        if not isinstance(self.name, str) or not self.name:
            bad("name", "must be a non-empty string")
        if self.runner not in RUNNERS:
            bad("runner", f"must be one of {list(RUNNERS)}, got {self.runner!r}")
        for field in ("threads", "runs", "warmup_runs", "repeats"):
            value = getattr(self, field)
            minimum = 0 if field == "warmup_runs" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                bad(field, f"must be an integer >= {minimum}, got {value!r}")
        if self.delegate not in DELEGATES[self.runner]:
            bad("delegate", f"must be one of {list(DELEGATES[self.runner])} for runner "
                            f"{self.runner!r}, got {self.delegate!r}")
        if self.precision not in PRECISIONS:
            bad("precision", f"must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if self.runner == "host":
            for field in ("serial", "benchmark_binary", "cpu_mask"):
                if getattr(self, field) is not None:
                    bad(field, "only applies to runner 'adb'")
        if self.cpu_mask is not None:
            try:
                int(self.cpu_mask, 16)
            except (TypeError, ValueError):
                bad("cpu_mask", f"must be a hexadecimal CPU mask such as 'f0', got {self.cpu_mask!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "profile") -> "DeviceProfile":
        if not isinstance(data, dict):
            raise FactoryError(f"{source}: a device profile is a JSON object")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise FactoryError(f"{source}: unknown field {unknown[0]!r}; known fields: {sorted(fields)}")
        for required in ("name", "runner"):
            if required not in data:
                raise FactoryError(f"{source}: missing field {required!r}")
        return cls(**data)


def list_profiles() -> list[DeviceProfile]:
    return [load_profile(p) for p in sorted(PROFILE_DIR.glob("*.json"))]


def load_profile(name_or_path: str | Path | DeviceProfile) -> DeviceProfile:
    """A shipped profile by name, or a profile JSON file by path."""
    if isinstance(name_or_path, DeviceProfile):
        return name_or_path
    path = Path(name_or_path)
    if not path.suffix == ".json":
        shipped = PROFILE_DIR / f"{name_or_path}.json"
        if shipped.exists():
            path = shipped
        elif not path.exists():
            names = sorted(p.stem for p in PROFILE_DIR.glob("*.json"))
            raise FactoryError(f"unknown device {name_or_path!r}: use one of {names} or a profile JSON file")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FactoryError(f"device profile {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise FactoryError(f"device profile {path} is not valid JSON: {exc}") from None
    return DeviceProfile.from_dict(data, source=str(path))
