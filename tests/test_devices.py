"""Device profiles, the host runner on a real .tflite, and the adb runner against a test double
that answers like a phone and prints real benchmark_model output."""

import json
import os

import pytest

from devices.adb import REMOTE_BINARY, AdbRunner, parse_benchmark_output
from devices.hardware import check_same_hardware, describe, host_hardware, parse_cpuinfo, parse_getprop
from devices.host import HostRunner
from devices.profile import DeviceProfile, list_profiles, load_profile
from devices.runners import get_runner
from devices.timing import fastest_of, summarize
from factory.core.backend import keras, tf
from factory.core.errors import FactoryError
from helpers import AARCH64_ELF, FAKES, X86_64_ELF




@pytest.fixture(scope="module")
def tflite_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    return tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs)).convert()


# ------------------------------------------------------------------ profiles
def test_shipped_profiles():
    names = {p.name for p in list_profiles()}
    assert {"host-cpu-1t", "host-cpu-2t", "android-arm64-cpu4", "android-arm64-gpu"} <= names
    assert load_profile("host-cpu-2t").threads == 2
    assert load_profile("android-arm64-gpu").delegate == "gpu"


def test_profile_file_path_works_like_a_name(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "mine", "runner": "host", "threads": 2, "runs": 5}))
    assert load_profile(str(path)) == DeviceProfile("mine", "host", threads=2, runs=5)


@pytest.mark.parametrize("change, field", [
    ({"runner": "ssh"}, "runner"),
    ({"threads": 0}, "threads"),
    ({"runs": "many"}, "runs"),
    ({"repeats": 0}, "repeats"),
    ({"delegate": "gpu"}, "delegate"),  # gpu is for phones, not the host runner
    ({"precision": "fp16"}, "precision"),
    ({"serial": "R58M"}, "serial"),  # adb-only field on a host profile
    ({"colour": "red"}, "colour"),
])
def test_malformed_profile_names_the_bad_field(tmp_path, change, field):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "bad", "runner": "host", **change}))
    with pytest.raises(FactoryError, match=f"'{field}'"):
        load_profile(path)


def test_unknown_profile_lists_the_shipped_ones():
    with pytest.raises(FactoryError, match="host-cpu-1t"):
        load_profile("pixel-99")


# --------------------------------------------------------------- host runner
@pytest.mark.parametrize("threads", [1, 2])
def test_host_runner_times_a_tflite_model(tflite_model, threads):
    profile = DeviceProfile("t", "host", threads=threads, runs=20, warmup_runs=3)
    affinity = os.sched_getaffinity(0)
    with get_runner(profile) as runner:
        assert isinstance(runner, HostRunner)
        timing = runner.measure(tflite_model)
    assert timing.runs == 20
    assert 0 < timing.min_ms <= timing.p10_ms <= timing.median_ms <= timing.p90_ms <= timing.max_ms
    assert timing.cv >= 0 and timing.init_ms > 0
    assert os.sched_getaffinity(0) == affinity  # pinned only while measuring


def test_the_fastest_of_repeated_measurements_is_kept(tflite_model):
    medians = iter([3.0, 1.0, 2.0])
    timing = fastest_of(lambda: summarize([next(medians)] * 4), 3)
    assert timing.median_ms == 1.0 and timing.repeats == 3
    with HostRunner(DeviceProfile("t", "host", runs=5, warmup_runs=1, repeats=3)) as runner:
        assert runner.measure(tflite_model).repeats == 3
        spread = runner.measure(tflite_model, spread_s=0.5)  # a model measured once for a decision outlasts a slow spell
        assert spread.repeats > 3


def test_host_runner_refuses_a_non_model():
    with pytest.raises(FactoryError, match="cannot load the model"):
        HostRunner(load_profile("host-cpu-1t")).measure(b"not a flatbuffer" * 10)


# ------------------------------------------------------------ output parsing
def fake_output(kind, graph="/data/local/tmp/m.tflite"):
    import subprocess

    env = {**os.environ, "FAKE_BENCH": kind}
    proc = subprocess.run([str(FAKES / "adb"), "shell", REMOTE_BINARY, f"--graph={graph}", "--num_threads=4",
                           "--warmup_runs=10", "--num_runs=50"], capture_output=True, text=True, env=env)
    return proc.stdout


@pytest.mark.parametrize("kind, mean, median, memory, count", [
    ("new", 4.7415, 4.718, 12.6523, 211),
    ("logcat", 4.7415, 4.718, 12.6523, 211),
    ("old", 1240.27, 1240.27, 31.6602, 50),  # scientific notation, no median printed
    ("gpu_partial", 2.8113, 2.805, 48.2891, 356),
])
def test_parse_benchmark_model_output(kind, mean, median, memory, count):
    timing = parse_benchmark_output(fake_output(kind))
    assert timing.mean_ms == pytest.approx(mean)
    assert timing.median_ms == pytest.approx(median)
    assert timing.peak_memory_mb == pytest.approx(memory)
    assert timing.runs == count
    assert timing.init_ms is not None


def test_parse_reports_delegate_fallback():
    assert parse_benchmark_output(fake_output("gpu_partial")).delegated_nodes == (58, 64)


def test_parse_without_timings_quotes_the_last_line():
    with pytest.raises(FactoryError, match="Benchmarking failed"):
        parse_benchmark_output(fake_output("crash"))


# ---------------------------------------------------------------- adb runner
@pytest.fixture
def phone(tmp_path, monkeypatch):
    """The fake adb first on PATH, a call log, and a user's arm64 benchmark_model binary."""
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    log = tmp_path / "adb.log"
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(AARCH64_ELF)
    profile = DeviceProfile("phone", "adb", threads=4, runs=50, warmup_runs=10,
                            benchmark_binary=str(binary), cpu_mask="f0")

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()]

    return profile, calls, binary


def test_adb_memory_is_a_run_of_its_own(phone, tflite_model):
    """Peak memory comes from a benchmark_model run apart from the timing runs, with the tool's memory flag."""
    profile, calls, _ = phone
    with get_runner(profile) as runner:
        memory = runner.measure_memory(tflite_model)
    runs = [c for c in calls() if any(a.startswith("--graph=") for a in c)]
    assert len(runs) == 1 and runs[0][-1] == "--report_peak_memory_footprint=true"
    assert memory["peak_bytes"] == int(12.6523 * 2**20) and "a run apart from the timing" in memory["by"]


def test_adb_runner_runs_benchmark_model_with_exact_flags(phone, tflite_model):
    profile, calls, binary = phone
    with get_runner(profile) as runner:
        assert isinstance(runner, AdbRunner) and runner.abi == "arm64-v8a"
        assert runner.hardware() == {"kind": "android", "manufacturer": "samsung", "model": "SM-S901B",
                                     "device": "r0s", "soc_manufacturer": "Samsung", "soc_model": "s5e9925",
                                     "platform": "s5e9925", "abi": "arm64-v8a"}
        timing = runner.measure(tflite_model)
    assert timing.median_ms == pytest.approx(4.718) and timing.runs == 211
    log = calls()
    serial = ["-s", "R58M123ABC"]
    assert log[0] == ["devices"]
    assert log[1] == serial + ["shell", "getprop"]
    assert log[2] == serial + ["push", str(binary), REMOTE_BINARY]
    assert log[3] == serial + ["shell", "chmod", "755", REMOTE_BINARY]
    assert log[4][:3] == serial + ["push"] and log[4][-1].startswith("/data/local/tmp/mmf_")
    remote = log[4][-1]
    assert log[5] == serial + ["shell", "taskset", "f0", REMOTE_BINARY, f"--graph={remote}", "--num_threads=4",
                               "--warmup_runs=10", "--num_runs=50", "--use_xnnpack=true"]
    assert log[6] == serial + ["shell", "rm", "-f", remote]
    assert log[7] == serial + ["shell", "rm", "-f", REMOTE_BINARY]


@pytest.mark.parametrize("delegate, flag", [("gpu", "--use_gpu=true"), ("nnapi", "--use_nnapi=true")])
def test_adb_delegate_flags(phone, delegate, flag):
    profile, calls, _ = phone
    runner = AdbRunner(DeviceProfile("p", "adb", delegate=delegate, benchmark_binary=profile.benchmark_binary))
    assert runner.command("/data/local/tmp/m.tflite")[-1] == flag
    assert "taskset" not in runner.command("/data/local/tmp/m.tflite")


@pytest.mark.parametrize("devices, message", [
    ("R58M123ABC:offline", "is offline"),
    ("R58M123ABC:unauthorized", "is unauthorized"),
    ("", "no Android device attached"),
    ("A:device,B:device", "several devices attached"),
])
def test_adb_device_states(phone, monkeypatch, devices, message):
    monkeypatch.setenv("FAKE_ADB_DEVICES", devices)
    with pytest.raises(FactoryError, match=message):
        with AdbRunner(phone[0]):
            pass


def test_adb_repeats_keep_the_fastest_run_of_one_pushed_model(phone, monkeypatch, tflite_model):
    profile, calls, _ = phone
    monkeypatch.setenv("FAKE_BENCH", "new,gpu_partial,new")  # medians 4.718, 2.805, 4.718 ms
    with AdbRunner(DeviceProfile(**{**profile.to_dict(), "repeats": 3})) as runner:
        timing = runner.measure(tflite_model)
    assert timing.median_ms == pytest.approx(2.805) and timing.repeats == 3
    log = calls()
    assert sum(REMOTE_BINARY in call and "--num_runs=50" in call for call in log) == 3
    assert sum("push" in call[:3] for call in log) == 2  # the binary and the model, each once


def test_adb_serial_picks_one_of_several(phone, monkeypatch, tflite_model):
    monkeypatch.setenv("FAKE_ADB_DEVICES", "A:device,B:device")
    profile = DeviceProfile(**{**phone[0].to_dict(), "serial": "B"})
    with AdbRunner(profile) as runner:
        runner.measure(tflite_model)
    assert all(call[:2] == ["-s", "B"] for call in phone[1]()[1:])


def test_adb_missing_from_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FactoryError, match="adb is not on PATH"):
        AdbRunner(load_profile("android-arm64-cpu4")).connect()


def test_adb_missing_or_wrong_binary(phone, tmp_path):
    profile, _, binary = phone
    missing = DeviceProfile(**{**profile.to_dict(), "benchmark_binary": str(tmp_path / "nope")})
    with pytest.raises(FactoryError, match="benchmark_model binary .* not found"):
        with AdbRunner(missing):
            pass
    binary.write_bytes(X86_64_ELF)
    with pytest.raises(FactoryError, match="not a arm64-v8a executable"):
        with AdbRunner(profile):
            pass


def test_adb_benchmark_failure_is_one_line(phone, monkeypatch, tflite_model):
    monkeypatch.setenv("FAKE_BENCH", "crash")
    with pytest.raises(FactoryError, match="benchmark_model failed on R58M123ABC: .*Failed to initialize") as err:
        with AdbRunner(phone[0]) as runner:
            runner.measure(tflite_model)
    assert "\n" not in str(err.value)
    assert phone[1]()[-1][-1] == REMOTE_BINARY  # cleaned up even so


EPYC = """processor	: 0
vendor_id	: AuthenticAMD
cpu family	: 25
model		: 17
model name	: AMD EPYC 9R14 96-Core Processor
stepping	: 1
cpu MHz		: 2596.136
cache size	: 1024 KB
flags		: fpu sse4_2 avx avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni avx512_bf16 sha_ni

processor	: 1
vendor_id	: AuthenticAMD
cpu MHz		: 3700.000
"""
NEOVERSE = """processor	: 0
BogoMIPS	: 243.75
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x3
CPU part	: 0xd0c
CPU revision	: 1
"""


@pytest.mark.parametrize("text, expected", [
    (EPYC, {"cpu": "AMD EPYC 9R14 96-Core Processor", "vendor": "AuthenticAMD", "family": "25", "model": "17",
            "stepping": "1", "isa": ["avx", "avx2", "avx512_bf16", "avx512_vnni", "avx512bw", "avx512f",
                                     "avx512vl", "f16c", "fma", "sse4_2"]}),
    (NEOVERSE, {"cpu": "0xd0c", "vendor": "0x41", "family": "8", "model": "0xd0c", "stepping": "0x3",
                "isa": ["asimd", "asimddp", "asimdhp"]}),
])
def test_cpu_identity_keeps_what_decides_kernel_speed_not_the_clock(text, expected):
    assert parse_cpuinfo(text) == expected  # the first CPU only; MHz (which drifts) is left out


def test_host_identity_and_phone_identity_describe_themselves():
    identity = host_hardware()
    assert identity["kind"] == "host" and identity["cpu"] and identity == HostRunner(None).hardware()
    assert describe(identity).startswith(identity["cpu"])
    phone = parse_getprop("[ro.product.model]: [Pixel 8]\n[ro.product.manufacturer]: [Google]\n"
                          "[ro.soc.manufacturer]: [Google]\n[ro.soc.model]: [Tensor G3]\n[ro.product.cpu.abi]: [arm64-v8a]")
    assert phone["model"] == "Pixel 8" and phone["abi"] == "arm64-v8a" and phone["platform"] == ""
    assert describe(phone) == "Google Pixel 8 (Google Tensor G3)"
    with pytest.raises(FactoryError, match=r"measured on Google Pixel 8 .*differs in model"):
        check_same_hardware(phone, {**phone, "model": "Pixel 9"}, "t.json", "rebuild it")
