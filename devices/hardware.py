"""What hardware a latency was measured on, so a table is never applied to other hardware.

A latency table holds one machine's timings: in this project's own runs, a table built
on one day's x86 server under-predicted every subnet on the next day's by 1.6 to 3.1
times. A table therefore records the identity of the hardware it was measured on, and
it is refused where that identity differs. The
identity is what decides kernel speed (CPU model and the instruction-set extensions
XNNPACK dispatches on, or a phone's SoC), not what drifts (clock, OS build).
"""

from __future__ import annotations

import platform
import re
import subprocess
from pathlib import Path

from factory.core.errors import FactoryError

# Instruction-set extensions that select different int8/float kernels in XNNPACK and TFLite.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8",
             "asimd", "asimddp", "asimdhp", "i8mm", "bf16", "sve", "sve2", "sme")
# Android properties that name the phone and its chip.
PHONE_PROPERTIES = {"manufacturer": "ro.product.manufacturer", "model": "ro.product.model",
                    "device": "ro.product.device", "soc_manufacturer": "ro.soc.manufacturer",
                    "soc_model": "ro.soc.model", "platform": "ro.board.platform", "abi": "ro.product.cpu.abi"}


def parse_cpuinfo(text: str) -> dict:
    """The first processor block of Linux's /proc/cpuinfo, as the fields that identify the CPU."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    return {
        "cpu": fields.get("model name") or fields.get("hardware") or fields.get("cpu part") or "unknown",
        "vendor": fields.get("vendor_id") or fields.get("cpu implementer") or "unknown",
        "family": fields.get("cpu family") or fields.get("cpu architecture") or "",
        "model": fields.get("model") or fields.get("cpu part") or "",
        "stepping": fields.get("stepping") or fields.get("cpu variant") or "",
        "isa": sorted(flags.intersection(ISA_FLAGS)),
    }


def host_hardware() -> dict:
    """This machine's CPU identity (Linux reads /proc/cpuinfo; elsewhere what ``platform`` knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        identity = parse_cpuinfo(cpuinfo.read_text(errors="replace"))
    else:
        brand = ""
        if platform.system() == "Darwin":
            brand = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                   text=True).stdout.strip()
        identity = {"cpu": brand or platform.processor() or "unknown"}
    return {"kind": "host", "machine": platform.machine(), **identity}


def parse_getprop(text: str) -> dict:
    """``adb shell getprop`` (every property, ``[key]: [value]`` per line) as the phone's identity."""
    props = dict(re.findall(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text, re.MULTILINE))
    return {"kind": "android", **{name: props.get(key, "") for name, key in PHONE_PROPERTIES.items()}}


def describe(identity: dict | None) -> str:
    """One line naming the hardware."""
    if not identity:
        return "unrecorded hardware"
    if identity.get("kind") == "android":
        soc = " ".join(v for v in (identity.get("soc_manufacturer"), identity.get("soc_model")) if v)
        return f"{identity.get('manufacturer', '')} {identity.get('model', '')} ({soc or identity.get('platform')})"
    detail = ", ".join(f"{k} {identity[k]}" for k in ("family", "model", "stepping") if identity.get(k))
    return f"{identity.get('cpu')} ({identity.get('machine')}{', ' + detail if detail else ''})"


def check_same_hardware(recorded: dict | None, current: dict, source: str, fix: str):
    """Refuse latencies measured on other hardware than ``current``, naming both and the fix."""
    if recorded == current:
        return
    differs = sorted(k for k in set(recorded or {}) | set(current) if (recorded or {}).get(k) != current.get(k))
    raise FactoryError(f"{source} was measured on {describe(recorded)}, not on this {describe(current)} "
                       f"(differs in {', '.join(differs)}): its latencies do not hold here; {fix}")
