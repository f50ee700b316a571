"""The runner of a device profile: host (LiteRT interpreter) or adb (benchmark_model on a phone)."""

from __future__ import annotations

from devices.adb import AdbRunner
from devices.host import HostRunner
from devices.profile import DeviceProfile, load_profile


def get_runner(profile: DeviceProfile | str):
    """A context-managed runner with ``measure(model) -> Timing``."""
    profile = load_profile(profile)
    return {"host": HostRunner, "adb": AdbRunner}[profile.runner](profile)
