"""What several test modules share: small spaces and profiles, fakes, synthetic tables."""

from pathlib import Path

import numpy as np

from devices.hardware import host_hardware
from devices.profile import DeviceProfile
from factory.nas.space import TINY, SearchSpace, StageSpec
from latency_tables.blocks import all_layers
from latency_tables.table import LatencyTable, new_table

MICRO = SearchSpace(name="micro", stages=(StageSpec(8, 2, "hard_swish", True),), resolutions=(16,),
                    kernel_sizes=(3, 5), expand_ratios=(3, 6), depths=(1, 2), stem_width=8,
                    head_width=16, feature_width=16)
FAST = DeviceProfile("host-fast", "host", threads=1, runs=10, warmup_runs=2)

FAKES = Path(__file__).parent / "fakes"
AARCH64_ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 11 + (0xB7).to_bytes(2, "little") + b"\x00" * 40
X86_64_ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 11 + (0x3E).to_bytes(2, "little") + b"\x00" * 40


def synthetic_table(name, scale):
    """Cost grows with spatial size, channels, kernel and expand ratio, like real layers."""
    doc = new_table(TINY, DeviceProfile(name, "host"), 10, host_hardware())  # as if measured here
    doc["overhead"] = {"median_ms": 0.01}
    for key in all_layers(TINY, 10):
        work = key.size ** 2 * key.in_channels * max(key.expand, 1) * max(key.kernel, 1) ** 2
        doc["entries"][key.id] = {"median_ms": 0.01 + scale * work * 1e-6}
    doc["complete"] = True  # every layer measured, as a finished build
    return LatencyTable(doc, TINY, name)


def randomize_statistics(supernet, seed=0):
    """Give every batch norm non-trivial statistics, so parity tests can fail."""
    rng = np.random.default_rng(seed)
    for var in supernet.weights:
        name = var.name.split("/")[-1]
        if name.startswith(("moving_", "gamma", "beta")):
            var.assign(rng.uniform(0.5, 1.5, var.shape).astype("float32"))
