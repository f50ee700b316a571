"""Timing a .tflite model on an Android phone over adb with TFLite's ``benchmark_model``.

The flow a mobile engineer would type by hand, as argument lists (never a joined
shell string): check the device's state, read its ABI, push the user's
``benchmark_model`` binary and the model to ``/data/local/tmp``, run
``[taskset MASK] benchmark_model --graph=... --num_threads=... --warmup_runs=...
--num_runs=... --use_xnnpack|--use_gpu|--use_nnapi=true``, parse what it prints, and
remove what was pushed.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

from devices.hardware import parse_getprop
from devices.profile import DeviceProfile
from devices.timing import Timing, fastest_of
from factory.core.errors import FactoryError

REMOTE_DIR = "/data/local/tmp"
REMOTE_BINARY = f"{REMOTE_DIR}/mmf_benchmark_model"
DELEGATE_FLAGS = {"xnnpack": "--use_xnnpack=true", "gpu": "--use_gpu=true", "nnapi": "--use_nnapi=true"}
# ELF e_machine of the binary for each Android ABI.
ABI_MACHINES = {"arm64-v8a": 0xB7, "armeabi-v7a": 0x28, "x86_64": 0x3E, "x86": 0x03}

_NUMBER = r"([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)"


def parse_benchmark_output(text: str) -> Timing:
    """Read ``benchmark_model``'s output (any version; with or without ``INFO:``/logcat prefixes)."""
    counts = [dict(re.findall(r"(\w+)=" + _NUMBER, line)) for line in text.splitlines()
              if re.search(r"\bcount=\d+", line)]
    summary = re.search(r"Inference timings in us:(.*)", text)
    if not counts and not summary:
        tail = [line for line in text.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
        raise FactoryError(f"benchmark_model printed no timings; its last line: {tail[0].strip()}")
    timed = {k: float(v) for k, v in counts[-1].items()} if counts else {}
    fields = dict(re.findall(r"([A-Za-z][A-Za-z ()]*?):\s*" + _NUMBER, summary.group(1))) if summary else {}

    def us(key, *fallbacks):
        for name in (key, *fallbacks):
            if name in timed:
                return timed[name] / 1e3
            if name in fields:
                return float(fields[name]) / 1e3
        return None

    mean = us("avg", "Inference (avg)")
    memory = re.search(r"peak memory footprint \(MB\)[^:]*:\s*" + _NUMBER, text, re.IGNORECASE)
    overall = re.search(r"overall=" + _NUMBER, text)
    delegated = re.search(r"Replacing (\d+) out of (\d+) node\(s\)", text)
    return Timing(
        median_ms=us("median") or mean,
        mean_ms=mean,
        std_ms=us("std") or 0.0,
        min_ms=us("min") or mean,
        max_ms=us("max") or mean,
        runs=int(timed.get("count", 0)),
        p10_ms=None,
        p90_ms=None,
        init_ms=us("Init"),
        peak_memory_mb=float((memory or overall).group(1)) if (memory or overall) else None,
        delegated_nodes=(int(delegated.group(1)), int(delegated.group(2))) if delegated else None,
    )


def _elf_machine(path: Path) -> int | None:
    header = path.read_bytes()[:20]
    if header[:4] != b"\x7fELF":
        return None
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


class AdbRunner:
    """Runs a profile whose runner is ``adb``. Use as a context manager: the binary is
    pushed once on entry and removed on exit."""

    def __init__(self, profile: DeviceProfile, timeout_s: float = 600):
        self.profile = profile
        self.timeout_s = timeout_s
        self.serial: str | None = None
        self.abi: str | None = None
        self._identity: dict | None = None

    # ------------------------------------------------------------- adb calls
    def _adb(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [self._exe, *(("-s", self.serial) if self.serial else ()), *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            raise FactoryError(f"`adb {' '.join(args[:2])}` did not answer in {self.timeout_s:.0f} s: "
                               "check the phone's connection") from None
        if check and proc.returncode != 0:
            message = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
            raise FactoryError(f"`adb {' '.join(args[:2])}` failed on {self.serial}: {message}")
        return proc

    def connect(self) -> str:
        """Find the profile's phone, check that it is usable, and return its serial."""
        exe = shutil.which("adb")
        if exe is None:
            raise FactoryError("adb is not on PATH: install Android SDK platform-tools and add them to PATH")
        self._exe = exe
        listing = self._adb("devices").stdout
        states = dict(re.findall(r"^(\S+)\s+(device|offline|unauthorized|no permissions.*|recovery|sideload|bootloader)\s*$",
                                 listing, re.MULTILINE))
        wanted = self.profile.serial
        if wanted is None:
            if not states:
                raise FactoryError("no Android device attached: connect a phone with USB debugging on "
                                   "(`adb devices` lists none)")
            if len(states) > 1:
                raise FactoryError(f"several devices attached ({', '.join(states)}): set 'serial' in "
                                   f"the {self.profile.name} profile")
            wanted = next(iter(states))
        state = states.get(wanted)
        if state is None:
            raise FactoryError(f"device {wanted} is not attached (`adb devices` lists "
                               f"{', '.join(states) or 'none'}): connect it or fix 'serial'")
        if state == "offline":
            raise FactoryError(f"device {wanted} is offline: reconnect the USB cable or run `adb reconnect`")
        if state == "unauthorized":
            raise FactoryError(f"device {wanted} is unauthorized: unlock the phone and accept the "
                               "'Allow USB debugging' prompt")
        if state != "device":
            raise FactoryError(f"device {wanted} is in state {state!r}: boot it normally with USB debugging on")
        self.serial = wanted
        self._identity = parse_getprop(self._adb("shell", "getprop").stdout)
        self.abi = self._identity["abi"]
        return wanted

    def hardware(self) -> dict:
        """The attached phone's identity (model and SoC), which its latency tables record."""
        if self.serial is None:
            raise RuntimeError("use AdbRunner as a context manager: `with AdbRunner(profile) as r:`")
        return self._identity

    def __enter__(self):
        self.connect()
        binary = Path(self.profile.benchmark_binary or "").expanduser()
        if not self.profile.benchmark_binary or not binary.is_file():
            raise FactoryError(
                f"benchmark_model binary {str(binary) or '(unset)'} not found: download TFLite's "
                "prebuilt android_aarch64_benchmark_model (or build //tensorflow/lite/tools/benchmark:"
                f"benchmark_model with bazel) and set 'benchmark_binary' in the {self.profile.name} profile"
            )
        machine, expected = _elf_machine(binary), ABI_MACHINES.get(self.abi)
        if expected is not None and machine != expected:
            raise FactoryError(f"{binary} is not a {self.abi} executable (the phone's ABI): use the "
                               f"benchmark_model build for {self.abi}")
        self._adb("push", str(binary), REMOTE_BINARY)
        self._adb("shell", "chmod", "755", REMOTE_BINARY)
        return self

    def __exit__(self, *exc):
        if self.serial:
            self._adb("shell", "rm", "-f", REMOTE_BINARY, check=False)
        return False

    def command(self, remote_model: str) -> list[str]:
        """The ``adb shell`` arguments that run the benchmark."""
        p = self.profile
        prefix = ["taskset", p.cpu_mask] if p.cpu_mask else []
        return ["shell", *prefix, REMOTE_BINARY, f"--graph={remote_model}", f"--num_threads={p.threads}",
                f"--warmup_runs={p.warmup_runs}", f"--num_runs={p.runs}", DELEGATE_FLAGS[p.delegate]]

    def measure(self, model: bytes | str | Path, spread_s: float = 0.0) -> Timing:
        """The fastest of the profile's repeats of ``benchmark_model`` (more while under ``spread_s`` seconds)."""
        return self._pushed(model, lambda remote: fastest_of(lambda: self._benchmark(remote), self.profile.repeats,
                                                             spread_s))

    def measure_memory(self, model: bytes) -> dict:
        """benchmark_model's peak memory footprint, from a run of its own: the tool's polling thread, which reads
        it, disturbs the timing runs."""
        timing = self._pushed(model, lambda remote: self._benchmark(remote, "--report_peak_memory_footprint=true"))
        if timing.peak_memory_mb is None:
            raise FactoryError(f"benchmark_model on {self.serial} printed no peak memory footprint: use a build that "
                               "has --report_peak_memory_footprint")
        return {"peak_bytes": int(timing.peak_memory_mb * 2**20),
                "by": f"benchmark_model --report_peak_memory_footprint on {self.serial} (a run apart from the timing "
                      "runs): the process's peak resident memory, the runtime's own included"}

    def _pushed(self, model: bytes | str | Path, run):
        """``run(remote_path)`` on the model pushed to the phone, removed again afterwards."""
        if self.serial is None:
            raise RuntimeError("use AdbRunner as a context manager: `with AdbRunner(profile) as r:`")
        content = model if isinstance(model, bytes) else Path(model).read_bytes()
        remote = f"{REMOTE_DIR}/mmf_{hashlib.sha256(content).hexdigest()[:16]}.tflite"
        local = Path(model) if not isinstance(model, bytes) else None
        if local is None:
            import tempfile

            with tempfile.NamedTemporaryFile(suffix=".tflite", delete=False) as f:
                f.write(content)
                local = Path(f.name)
        try:
            self._adb("push", str(local), remote)
            return run(remote)
        finally:
            self._adb("shell", "rm", "-f", remote, check=False)
            if isinstance(model, bytes):
                local.unlink(missing_ok=True)

    def _benchmark(self, remote_model: str, *flags: str) -> Timing:
        """One run of benchmark_model on a pushed model."""
        proc = self._adb(*self.command(remote_model), *flags, check=False)
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            errors = [line for line in output.splitlines() if "ERROR" in line or "Failed" in line]
            last = (errors or output.strip().splitlines() or ["no output"])[-1].strip()
            raise FactoryError(f"benchmark_model failed on {self.serial}: {last}")
        return parse_benchmark_output(output)
