"""Latency tables on a micro space: build (resumable), predict, refuse, validate."""

import dataclasses
import json

import numpy as np
import pytest

from devices.hardware import describe, host_hardware
from devices.host import HostRunner
from devices.profile import DeviceProfile, load_profile
from devices.timing import summarize
from factory.core.errors import FactoryError
from factory.nas.space import SearchSpace, SubnetConfig
from latency_tables.blocks import all_layers
from latency_tables.builder import build_table
from latency_tables.table import LatencyTable
from latency_tables.validate import (correction_report, cross_validated, error_report, fit_correction,
                                     search_like, store_correction, validate_table)
from helpers import FAST, MICRO
from factory.nas.heads import ClassificationHead, SegmentationHead

@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("tables") / "micro.json"
    build_table(MICRO, FAST, path, ClassificationHead(4), verbose=0)
    return path


def test_a_segmentation_table_is_its_own(tmp_path, table_path):
    """A segmenter's table times its backbone at output stride 16 and its head entries, and is refused for the
    other task (and the other's for it)."""
    from latency_tables.table import table_name

    head, space = SegmentationHead(3), dataclasses.replace(MICRO, name="micro2", stages=MICRO.stages * 2)
    doc = build_table(space, FAST, tmp_path / "seg.json", head, verbose=0, passes=1)
    assert {k.id for k in all_layers(space, head)} == set(doc["entries"])
    assert sum(k.startswith("lraspp/") for k in doc["entries"]) == len(space.resolutions)
    table = LatencyTable.load(tmp_path / "seg.json", space, FAST, head)
    assert table.head == head and np.isfinite(table.predict(SubnetConfig.largest(space)))
    with pytest.raises(FactoryError, match="for segmentation, not classification"):
        LatencyTable.load(tmp_path / "seg.json", space, FAST, ClassificationHead(3))
    with pytest.raises(FactoryError, match="for classification, not segmentation"):
        LatencyTable.load(table_path, MICRO, FAST, head)
    assert table_name(space, FAST, head) == "micro2-segmentation__host-fast.json"
    assert table_name(space, FAST, ClassificationHead(3)) == "micro2__host-fast.json"


def test_table_has_every_layer_with_statistics(table_path):
    doc = json.loads(table_path.read_text())
    assert doc["complete"] and doc["space_fingerprint"] == MICRO.fingerprint
    assert set(doc["entries"]) == {k.id for k in all_layers(MICRO, ClassificationHead(4))}
    for entry in doc["entries"].values():
        assert entry["runs"] == 10 and entry["p10_ms"] <= entry["median_ms"] <= entry["p90_ms"]
    assert doc["tools"]["tensorflow"] and doc["device"]["name"] == "host-fast" and doc["precision"] == "int8"


def test_prediction_sums_layers_and_vectorises(table_path):
    table = LatencyTable.load(table_path, MICRO, FAST)
    subnets = [SubnetConfig.smallest(MICRO), SubnetConfig.largest(MICRO)] + [
        SubnetConfig.random(MICRO, s) for s in range(10)]
    single = np.array([table.predict(s) for s in subnets])
    np.testing.assert_allclose(table.predict_many(subnets), single, rtol=1e-12)
    assert single[0] < single[1]
    assert np.all(single > 0)


def test_interrupted_build_resumes(tmp_path, monkeypatch):
    path = tmp_path / "t.json"
    calls = {"n": 0}
    real = HostRunner.measure

    def flaky(self, model):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, model)

    monkeypatch.setattr(HostRunner, "measure", flaky)
    once = dict(head=ClassificationHead(4), verbose=0, passes=1)  # one call per layer
    with pytest.raises(KeyboardInterrupt):
        build_table(MICRO, FAST, path, **once)
    partial = json.loads(path.read_text())  # valid JSON, no half-written file
    assert len(partial["entries"]) == 2 and not partial.get("complete")
    calls["n"] = 100
    build_table(MICRO, FAST, path, **once)
    total = len(all_layers(MICRO, ClassificationHead(4)))
    assert calls["n"] - 100 == total - 2  # only the missing layers were measured
    assert len(json.loads(path.read_text())["entries"]) == total
    assert not list(tmp_path.glob(".*tmp"))


def test_every_figure_is_the_lowest_of_several_passes(tmp_path, monkeypatch, table_path):
    """A burst of other work slows whichever measurement it meets; later passes undo that."""
    seen = {}

    def bursty(self, model):  # the n-th measurement of a model: 5, 1, 3, 5, 1, 3 ... ms
        n = seen[model] = seen.get(model, -1) + 1
        return summarize([(5.0, 1.0, 3.0)[n % 3]] * 3)

    monkeypatch.setattr(HostRunner, "measure", bursty)
    names = iter(range(10**6))  # the measurements are faked, so a conversion need only name its model
    for module in ("latency_tables.builder", "latency_tables.validate"):
        monkeypatch.setattr(f"{module}.convert_for_timing", lambda model, precision: str(next(names)).encode())
    doc = build_table(MICRO, FAST, tmp_path / "t.json", ClassificationHead(4), verbose=0, passes=2)
    assert {(e["median_ms"], e["passes"]) for e in doc["entries"].values()} == {(1.0, 2)}
    table = LatencyTable.load(table_path, MICRO, FAST)
    for passes, expected in ((1, 5.0), (3, 1.0)):
        seen.clear()
        report = validate_table(table, FAST, 3, tmp_path / f"r{passes}", passes=passes, verbose=False)
        assert [r["measured_ms"] for r in report["subnets"]] == [expected] * 3 and report["passes"] == passes


def test_a_float16_table_is_built_from_float16_models_and_refused_for_int8(tmp_path, monkeypatch):
    from ai_edge_litert.interpreter import Interpreter

    real, kinds = HostRunner.measure, set()

    def watch(self, model):  # every layer the build times holds float16 weights and takes float32
        interpreter = Interpreter(model_content=model)
        kinds.add((np.dtype(interpreter.get_input_details()[0]["dtype"]).name,
                   "float16" in {np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}))
        return real(self, model)

    monkeypatch.setattr(HostRunner, "measure", watch)
    half = DeviceProfile("host-fast", "host", precision="float16", runs=5, warmup_runs=1)
    doc = build_table(MICRO, half, tmp_path / "fp16.json", ClassificationHead(4), verbose=0, passes=1)
    assert doc["precision"] == "float16" and doc["complete"]
    assert ("float32", True) in kinds and all(dtype == "float32" for dtype, _ in kinds)
    assert LatencyTable.load(tmp_path / "fp16.json", MICRO, half).predict(SubnetConfig.smallest(MICRO)) > 0
    with pytest.raises(FactoryError, match="holds float16 latencies"):
        LatencyTable.load(tmp_path / "fp16.json", MICRO, FAST)


def test_tables_of_another_space_device_or_precision_are_refused(table_path):
    other_space = SearchSpace.from_dict({**MICRO.to_dict(), "width_multiplier": 2.0})
    with pytest.raises(FactoryError, match="built for space"):
        LatencyTable.load(table_path, other_space)
    with pytest.raises(FactoryError, match="measured on device host-fast, not host-cpu-2t"):
        LatencyTable.load(table_path, MICRO, load_profile("host-cpu-2t"))
    float_profile = DeviceProfile("host-fast", "host", precision="float32")
    with pytest.raises(FactoryError, match="int8 latencies"):
        LatencyTable.load(table_path, MICRO, float_profile)


def foreign(table_path, tmp_path):
    """A copy of the table as if it had been measured on another CPU model."""
    doc = json.loads(table_path.read_text())
    doc["hardware"] = {**doc["hardware"], "model": "999", "cpu": "Other CPU"}
    path = tmp_path / "foreign.json"
    path.write_text(json.dumps(doc))
    return path


def test_a_table_records_this_host_and_is_refused_on_another(table_path, tmp_path):
    assert json.loads(table_path.read_text())["hardware"] == host_hardware()
    other = foreign(table_path, tmp_path)
    with pytest.raises(FactoryError, match=r"measured on Other CPU .*differs in cpu, model.*factory table build"):
        LatencyTable.load(other, MICRO, FAST)
    table = LatencyTable.load(other, MICRO)  # no device named: nothing to compare with
    with pytest.raises(FactoryError, match="validate or calibrate it on the hardware it was measured on"):
        validate_table(table, FAST, 4, tmp_path / "report", verbose=False)
    with pytest.raises(FactoryError, match="pass another --table path"):  # never resumed with other timings
        build_table(MICRO, FAST, other, ClassificationHead(4), verbose=0)
    assert not (tmp_path / "report").exists()


def test_error_report():
    report = error_report([1.0, 2.15, 2.9, 4.5], [1.0, 2.0, 3.0, 4.0])
    assert report["within_5_percent"] == 0.5 and report["within_10_percent"] == 0.75
    assert report["mape_percent"] == pytest.approx(100 * (0 + 0.075 + 1 / 30 + 0.125) / 4)
    assert report["kendall_tau"] == 1.0


def test_validation_measures_whole_subnets(table_path, tmp_path):
    table = LatencyTable.load(table_path, MICRO, FAST)
    report = validate_table(table, FAST, 4, tmp_path / "report", verbose=False)
    assert report["n"] == 4 and len(report["subnets"]) == 4
    assert all(r["measured_ms"] > 0 and r["predicted_ms"] > 0 for r in report["subnets"])
    assert (tmp_path / "report" / "scatter.png").stat().st_size > 1000
    assert json.loads((tmp_path / "report" / "report.json").read_text())["mape_percent"] >= 0


def test_fastest_is_the_exact_minimum(table_path):
    import itertools

    table = LatencyTable.load(table_path, MICRO)
    space = MICRO
    every = []
    for r, d in itertools.product(space.resolutions, space.depths):
        for ks in itertools.product(space.kernel_sizes, repeat=d):
            for es in itertools.product(space.expand_ratios, repeat=d):
                every.append(SubnetConfig(r, (d,), (ks,), (es,)))
    assert table.fastest_ms() == pytest.approx(table.predict_many(every).min())


def user_files(tmp_path) -> list[str]:
    """The quick profile and the micro space as a user's own files, as CLI arguments."""
    profile, space = tmp_path / "fast.json", tmp_path / "micro-space.json"
    profile.write_text(json.dumps(FAST.to_dict()))
    space.write_text(json.dumps(MICRO.to_dict()))
    return ["--device", str(profile), "--space", str(space)]


def test_span_by_resolution_is_the_exact_range_of_every_subnet():
    import itertools

    from factory.nas.space import TINY
    from helpers import synthetic_table

    table = synthetic_table("phone", 1.0)
    per_stage = [(d, ks, es) for d in TINY.depths for ks in itertools.product(TINY.kernel_sizes, repeat=d)
                 for es in itertools.product(TINY.expand_ratios, repeat=d)]
    for r, (lo, hi) in table.span_by_resolution().items():
        every = [SubnetConfig(r, (a[0], b[0]), (a[1], b[1]), (a[2], b[2])) for a, b in itertools.product(per_stage, repeat=2)]
        predicted = table.predict_many(every)
        assert (lo, hi) == (pytest.approx(predicted.min()), pytest.approx(predicted.max()))
    assert table.fastest_ms() == min(lo for lo, _ in table.span_by_resolution().values())


def test_show_names_the_hardware_and_the_budgets_a_table_can_meet(table_path, tmp_path, capsys):
    from factory.app.cli import main

    common = user_files(tmp_path)
    assert main(["table", "show", *common, "--table", str(table_path)]) == 0
    out = capsys.readouterr().out
    table = LatencyTable.load(table_path, MICRO, FAST)
    assert f"measured on  {describe(host_hardware())}" in out and "usable here  yes" in out
    assert "correction   none (`factory table calibrate" in out
    lo, hi = table.span_by_resolution()[16]
    assert f"| 16 | {lo:.3f} | {hi:.3f} |" in out
    assert main(["table", "show", *common, "--table", str(foreign(table_path, tmp_path))]) == 0
    assert "usable here  no: " in capsys.readouterr().out  # shown, with why a search would refuse it
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({**json.loads(table_path.read_text()), "complete": False}))
    assert main(["table", "show", *common, "--table", str(partial)]) == 2
    assert "is not complete: finish it with `factory table build" in capsys.readouterr().err
    with pytest.raises(FactoryError, match="is not complete"):  # nor does a search or make use it
        LatencyTable.load(partial, MICRO, FAST)


@pytest.mark.parametrize("quadratic", [0.0, 0.04])
def test_correction_recovers_the_bias_and_is_judged_held_out(quadratic):
    """A linear bias, or large subnets slower than their layers' sum (as whole networks outgrow the caches)."""
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.2, 3.0, 60)
    measured = (quadratic * raw ** 2 + 1.05 * raw + 0.02) * rng.normal(1.0, 0.01, 60)
    fit = fit_correction(raw, measured)
    assert fit["quadratic"] == pytest.approx(quadratic, abs=0.01)
    assert fit["slope"] == pytest.approx(1.05, abs=0.03) and fit["intercept"] == pytest.approx(0.02, abs=0.02)
    report = correction_report(raw, measured)
    assert report["uncorrected"]["mape_percent"] > 4 > 2 > report["corrected_cross_validated"]["mape_percent"]
    # held out: one wild subnet's own correction must not be fitted on it
    measured[0] *= 3
    assert cross_validated(raw, measured)[0] < 0.5 * measured[0]
    with pytest.raises(FactoryError, match="do not grow"):
        fit_correction([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])


def test_a_correction_that_would_turn_down_is_a_line():
    """A curve fitted on a few points that bends back down within the range searches use would reorder subnets:
    the line is fitted instead."""
    raw = np.array([0.5, 1.0, 1.5, 2.0, 2.5])
    measured = np.array([0.5, 1.2, 1.7, 1.9, 2.0])  # flattening: a negative quadratic term
    fit = fit_correction(raw, measured)
    assert fit["quadratic"] == 0.0 and fit["slope"] > 0


def test_a_stored_correction_applies_to_every_prediction(table_path, tmp_path):
    path = tmp_path / "micro.json"
    path.write_text(table_path.read_text())
    plain = LatencyTable.load(path, MICRO, FAST)
    store_correction(path, {"slope": 1.1, "intercept": 0.01, "n": 10})
    corrected = LatencyTable.load(path, MICRO, FAST)
    subnets = [SubnetConfig.random(MICRO, seed) for seed in range(5)]
    np.testing.assert_allclose(corrected.predict_many(subnets), 1.1 * plain.predict_many(subnets) + 0.01)
    assert corrected.predict(subnets[0]) == pytest.approx(1.1 * plain.predict(subnets[0]) + 0.01)
    assert corrected.predict(subnets[0], corrected=False) == pytest.approx(plain.predict(subnets[0]))
    assert corrected.fastest_ms() == pytest.approx(1.1 * plain.fastest_ms() + 0.01)


def test_calibrate_command_stores_a_correction_validate_then_uses(table_path, tmp_path, capsys):
    from factory.app.cli import main

    path = tmp_path / "micro.json"
    path.write_text(table_path.read_text())
    common = user_files(tmp_path) + ["--table", str(path)]
    assert main(["table", "calibrate", *common, "--n", "5", "--out", str(tmp_path / "cal")]) == 0
    assert "stored correction" in capsys.readouterr().out
    correction = json.loads(path.read_text())["correction"]
    assert correction["fitted_on_subnets"] == 5 and correction["seed"] == 1
    table = LatencyTable.load(path, MICRO, FAST)  # the fitted correction grows over the span it was fitted on
    spans = table.span_by_resolution()
    assert all(lo < hi for lo, hi in spans.values())
    assert main(["table", "calibrate", *common, "--n", "4"]) == 2  # refused before anything is measured
    assert "at least 5 measured subnets" in capsys.readouterr().err
    assert correction["cross_validated"]["p95_slower_percent"] is not None  # the margin searches leave
    assert main(["table", "validate", *common, "--n", "3", "--out", str(tmp_path / "val")]) == 0
    out = capsys.readouterr().out
    assert "with the table's correction" in out and "random: 3 subnets" in out and "search-like: 3 subnets" in out
    for kind in ("random", "search-like"):
        report = json.loads((tmp_path / "val" / kind / "report.json").read_text())
        assert report["table_correction"]["slope"] == correction["slope"] and report["kind"] == kind


def test_search_like_subnets_start_at_the_slowest_and_spread_evenly_on_a_log_scale(tiny_table):
    """Budgets are set as fractions of a reference, so the fast end gets as many calibration subnets per doubling of
    latency as the slow end."""
    from factory.nas.space import TINY

    subnets = search_like(tiny_table, 40, seed=0)
    assert subnets[:2] == [SubnetConfig.largest(TINY), dataclasses.replace(SubnetConfig.largest(TINY), resolution=16)]
    assert search_like(tiny_table, 40, seed=0) == subnets and search_like(tiny_table, 40, seed=1) != subnets
    assert SubnetConfig.largest(TINY) not in search_like(tiny_table, 10, seed=1, extremes=False)
    spread = tiny_table.predict_many(search_like(tiny_table, 200, seed=0, extremes=False))
    lo, hi = tiny_table.predict(SubnetConfig.smallest(TINY)), tiny_table.predict(SubnetConfig.largest(TINY))
    assert spread.min() >= tiny_table.fastest_ms() and spread.max() <= hi
    below_middle = np.mean(spread < np.sqrt(lo * hi))  # the geometric middle of the span
    assert 0.3 < below_middle < 0.7 and np.mean(spread < (lo + hi) / 2) > 0.6


def test_search_like_ends_when_a_larger_choice_measured_faster_than_the_smallest():
    """A noisy device can measure a block faster at kernel 5 than at kernel 3; the budgets then reach below every
    descent's end, and the draw must still end (it once hung `factory make` in CI)."""
    from factory.nas.space import TINY
    from helpers import synthetic_table

    table = synthetic_table("host-cpu-1t", 1.0)
    for key, entry in table.doc["entries"].items():
        if "/k3/" in key:
            entry["median_ms"] *= 5  # kernel 3 measured slower than kernel 5
    table = LatencyTable(table.doc, TINY, "noisy")
    assert table.fastest_ms() < table.predict(SubnetConfig.smallest(TINY))
    subnets = search_like(table, 100, seed=0, extremes=False)
    assert len(subnets) == 100
    assert max(table.predict_many(subnets)) < table.predict(SubnetConfig.largest(TINY)) and len(set(subnets)) > 5
