"""Which table a (space, device) pair uses: the one given, the user's or shipped one, or one built here."""

from __future__ import annotations

from pathlib import Path

from devices.hardware import describe, host_hardware
from devices.profile import DeviceProfile
from factory.core.errors import FactoryError
from factory.core.files import read_json
from factory.nas.space import SearchSpace
from latency_tables.blocks import all_layers
from latency_tables.builder import build_table
from latency_tables.table import CALIBRATE_N, MIN_CALIBRATION, LatencyTable, default_table_path
from latency_tables.validate import calibrate_table


def load_tables(space: SearchSpace, profiles: list[DeviceProfile], head, paths: list | None = None
                ) -> dict[str, LatencyTable]:
    """One table per profile, by profile name: ``paths[i]`` when given, else the default table of ``head``'s
    task."""
    if paths is not None and len(paths) != len(profiles):
        raise FactoryError("give one --table per --device, in the same order")
    out = {}
    for i, profile in enumerate(profiles):
        path = Path(paths[i] if paths is not None and paths[i] else default_table_path(space, profile, head))
        if not path.exists():
            raise FactoryError(f"no latency table of space {space.name} for {profile.name} at {path}: run "
                               f"`factory table build --device {profile.name} --space {space.name}` first")
        out[profile.name] = LatencyTable.load(path, space, profile, head)
    return out


def ensure_table(space: SearchSpace, profile: DeviceProfile, path: Path, calibration_dir: Path, head,
                 calibrate_n: int = CALIBRATE_N) -> LatencyTable:
    """The shipped (or user's) table when it was measured on this hardware, else one built at ``path``
    (resumably) and calibrated on ``calibrate_n`` whole subnets measured into ``calibration_dir``."""
    shipped = default_table_path(space, profile, head)
    if shipped.exists():
        try:
            table = LatencyTable.load(shipped, space, profile, head)
            print(f"{profile.name}: shipped latency table {shipped}")
            return table
        except FactoryError as exc:
            recorded, here = read_json(shipped).get("hardware"), host_hardware()
            reason = (f"it was measured on {describe(recorded)}, not on this {describe(here)}"
                      if profile.runner == "host" and recorded != here else str(exc))
            print(f"{profile.name}: not using the shipped table {shipped.name}: {reason}")
    if not (path.exists() and read_json(path).get("complete")):
        print(f"{profile.name}: measuring this device's own table first: {len(all_layers(space, head))} layers "
              f"of space {space.name} into {path}, then {calibrate_n} whole subnets to calibrate it (once per device; "
              "an interrupted build resumes)")
        build_table(space, profile, path, head)
    table = LatencyTable.load(path, space, profile, head)
    if calibrate_n >= MIN_CALIBRATION and table.correction is None:
        print(f"{profile.name}: calibrating {path} on {calibrate_n} whole subnets")
        report = calibrate_table(table, profile, calibrate_n, calibration_dir, verbose=False)
        held_out = report["corrected_cross_validated"]
        print(f"{profile.name}: stored correction; held-out MAPE {held_out['mape_percent']:.2f}% "
              f"(table alone {report['uncorrected']['mape_percent']:.2f}%)")
        table = LatencyTable.load(path, space, profile, head)
    print(f"{profile.name}: latency table {path}")
    return table
