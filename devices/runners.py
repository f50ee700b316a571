"""The runner of a device profile: host (LiteRT interpreter) or adb (benchmark_model on a phone)."""

from __future__ import annotations

from devices.adb import AdbRunner
from devices.host import HostRunner
from devices.profile import DeviceProfile


def get_runner(profile: DeviceProfile):
    """A context-managed runner with ``measure(model) -> Timing``."""
    return {"host": HostRunner, "adb": AdbRunner}[profile.runner](profile)
