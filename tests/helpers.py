"""What several test modules share: small spaces and profiles, fakes, synthetic tables."""

from pathlib import Path

import numpy as np
from PIL import Image

from devices.hardware import host_hardware
from devices.profile import DeviceProfile
from factory.nas.space import TINY, SearchSpace, StageSpec
from latency_tables.blocks import all_layers
from latency_tables.table import LatencyTable, new_table
from factory.nas.heads import ClassificationHead

MICRO = SearchSpace(name="micro", stages=(StageSpec(8, 2, "hard_swish", True),), resolutions=(16,),
                    kernel_sizes=(3, 5), expand_ratios=(3, 6), depths=(1, 2), stem_width=8,
                    head_width=16, feature_width=16)
FAST = DeviceProfile("host-fast", "host", threads=1, runs=10, warmup_runs=2)

FAKES = Path(__file__).parent / "fakes"
EXIF_ORIENTATION = 0x0112
AARCH64_ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 11 + (0xB7).to_bytes(2, "little") + b"\x00" * 40
X86_64_ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 11 + (0x3E).to_bytes(2, "little") + b"\x00" * 40


def synthetic_table(name, scale, space=TINY, head=ClassificationHead(10)):
    """Cost grows with spatial size, channels, kernel and expand ratio, like real layers."""
    doc = new_table(space, DeviceProfile(name, "host"), head, host_hardware())  # as if measured here
    doc["overhead"] = {"median_ms": 0.01}
    for key in all_layers(space, head):
        work = key.size ** 2 * key.in_channels * max(key.expand, 1) * max(key.kernel, 1) ** 2
        doc["entries"][key.id] = {"median_ms": 0.01 + scale * work * 1e-6}
    doc["complete"] = True  # every layer measured, as a finished build
    return LatencyTable(doc, space, name)


def randomize_statistics(supernet, seed=0):
    """Give every batch norm non-trivial statistics, so parity tests can fail."""
    rng = np.random.default_rng(seed)
    for var in supernet.weights:
        name = var.name.split("/")[-1]
        if name.startswith(("moving_", "gamma", "beta")):
            var.assign(rng.uniform(0.5, 1.5, var.shape).astype("float32"))


def write_photos(root, n=6):
    """Two classes of photos no two alike: sizes, aspect ratios, formats, modes, EXIF tags; a hidden file and a
    text file beside them."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog")):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(n):
            w, h = int(rng.integers(20, 90)), int(rng.integers(20, 90))
            pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            pixels[..., c] = 255  # a class's colour, so a model can learn it
            image = Image.fromarray(pixels)
            kind = i % 6
            if kind == 0:
                image.save(folder / f"{i}.jpg", quality=95)
            elif kind == 1:
                image.convert("L").save(folder / f"{i}.png")
            elif kind == 2:
                rgba = image.convert("RGBA")
                rgba.putalpha(128)
                rgba.save(folder / f"{i}.PNG")
            elif kind == 3:
                exif = Image.Exif()
                exif[EXIF_ORIENTATION] = 6  # stored sideways, shown rotated
                image.save(folder / f"{i}.jpeg", exif=exif)
            elif kind == 4:
                image.convert("P").save(folder / f"{i}.gif")
            else:
                image.save(folder / f"{i}.webp")
        image.convert("CMYK").save(folder / "cmyk.jpg")
        image.save(folder / "plain.bmp")
        (folder / ".DS_Store").write_bytes(b"\0\0")
        (folder / "notes.txt").write_text("taken on holiday")
