"""bench.compare_baselines: matching the factory to a baseline's measured latency, the verdicts, a small run."""

import copy
import json
import sys

import pytest

from bench.compare_baselines.__main__ import main
from bench.compare_baselines.compare import comparisons, goal
from bench.compare_baselines.match import equal_latency_budget
from devices.profile import load_profile
from factory.core.errors import FactoryError
from factory.nas.space import get_space
from latency_tables.table import LatencyTable, default_table_path
from factory.nas.heads import ClassificationHead


@pytest.mark.parametrize("space", ["default", "res64"])
def test_the_equal_latency_budget_leaves_the_tables_typical_error_below_the_baseline(space):
    space = get_space(space)
    table = LatencyTable.load(default_table_path(space, load_profile("host-cpu-1t"), ClassificationHead(10)), space)
    mape = table.correction["cross_validated"]["mape_percent"]
    budget = equal_latency_budget(1.25, table)
    assert budget < 1.25 and budget * (1 + mape / 100) <= 1.25 + 1e-3
    uncalibrated = LatencyTable({k: v for k, v in copy.deepcopy(table.doc).items() if k != "correction"}, space)
    assert equal_latency_budget(1.25, uncalibrated) == 1.25


def _doc(factory_qat, factory_ptq, baseline_ptq, tuned_ptq=None, factory_ms=1.0, baseline_ms=1.0):
    base = {"model": "MobileNetV3Small", "resolution": 128, "alpha": 0.75, "budget_ms": 1.0, "equal_budget_ms": 0.98,
            "ptq_int8": baseline_ptq, "measured_ms": baseline_ms}
    if tuned_ptq is not None:
        base["fine_tuned"] = {"epochs": 10, "ptq_int8": tuned_ptq}
    factory = {"model": "factory", "qat_int8": factory_qat, "ptq_int8": factory_ptq, "measured_ms": factory_ms}
    return {"rows": {"b": base, "f@1": dict(factory, budget_ms=1.0), "f@0.98": dict(factory, budget_ms=0.98)}}


@pytest.mark.parametrize("case,wins", [
    (dict(factory_qat=0.77, factory_ptq=0.72, baseline_ptq=0.745), False),  # the extracted subnet loses like for like
    (dict(factory_qat=0.77, factory_ptq=0.72, baseline_ptq=0.745, tuned_ptq=0.76), True),  # wins at equal training
    (dict(factory_qat=0.77, factory_ptq=0.72, baseline_ptq=0.745, tuned_ptq=0.78), False),
    (dict(factory_qat=0.77, factory_ptq=0.76, baseline_ptq=0.745, factory_ms=1.01), False),  # slower
], ids=["no-fine-tuned-baseline", "equal-training", "fine-tuned-baseline-better", "slower"])
def test_the_goal_is_judged_at_equal_training_when_the_baseline_was_fine_tuned(case, wins):
    result = comparisons(_doc(**case))
    assert [c["factory_searched_at"] for c in result] == ["the budget", "its latency"]
    assert all(c["factory_wins"] is wins for c in result)
    assert all(("equal_training_gain_points" in c) == ("tuned_ptq" in case) for c in result)


@pytest.mark.parametrize("tuned_ptq,beaten_at", [(0.76, [1.0, 0.98]), (0.78, [])], ids=["beaten", "not-beaten"])
def test_the_goal_is_met_when_every_baseline_loses_a_pair(tuned_ptq, beaten_at):
    doc = _doc(factory_qat=0.77, factory_ptq=0.72, baseline_ptq=0.745, tuned_ptq=tuned_ptq)
    assert goal(comparisons(doc)) == {"MobileNetV3Small 128px alpha 0.75": beaten_at}


def test_show_prints_a_results_files_table_and_verdicts_to_the_hundredth_of_a_point(tmp_path, monkeypatch, capsys):
    doc = _doc(factory_qat=0.7597, factory_ptq=0.72, baseline_ptq=0.745, tuned_ptq=0.76)
    for row in doc["rows"].values():
        row.update({"float": 0.75, "size_bytes": 2048, "macs": 20e6, "predicted_ms": None,
                    "qat_int8": row.get("qat_int8")})
    doc["rows"]["b"]["fine_tuned"].update(float=0.77, size_bytes=2048)
    doc["comparisons"] = comparisons(doc)
    doc.update(latency_by_config={}, device="host-cpu-1t", baseline_epochs=8, qat_epochs=2, date="2026-12-04",
               command="python -m bench.compare_baselines --out results.json", machine="Some CPU")
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc))
    monkeypatch.setattr(sys, "argv", ["compare_baselines", "--show", str(path)])
    main()
    out = capsys.readouterr().out
    assert out.startswith("`python -m bench.compare_baselines --out results.json`, 2026-12-04, Some CPU, host-cpu-1t")
    assert "| 1 | MobileNetV3Small (128px, alpha 0.75), 10 epochs | 77.0% | 76.0% |" in out
    verdicts = [line for line in out.splitlines() if "against the factory" in line]
    assert len(verdicts) == 2
    assert all("trained as many epochs -0.03 points" in line and line.endswith("does not win") for line in verdicts)
    assert "goal (beat each baseline at equal or lower measured latency): not met" in out
    assert "- MobileNetV3Small 128px alpha 0.75: not beaten" in out
    # its factory rows hold no export measurement: a results file from before export kept budgets, said so
    assert "no search again when measured over): 1 of 2 measured over theirs here" in out


@pytest.mark.parametrize("text", [None, '{"a": 1}'], ids=["missing", "not-a-results-file"])
def test_show_refuses_what_is_not_a_results_file_in_one_line(tmp_path, monkeypatch, text):
    path = tmp_path / "results.json"
    if text is not None:
        path.write_text(text)
    monkeypatch.setattr(sys, "argv", ["compare_baselines", "--show", str(path)])
    with pytest.raises(FactoryError, match="does not exist|give one it wrote with --out") as exc:
        main()
    assert "\n" not in str(exc.value)


@pytest.mark.slow
def test_a_small_run_compares_trains_exports_times_and_resumes(tiny_workdir, tiny_table_file, tmp_path, monkeypatch,
                                                                capsys):
    """The whole benchmark on the tiny digits supernet, against one small MobileNetV3Small trained here; a
    second run finds every row done and trains and exports nothing again."""
    from bench.compare_baselines.match import ALPHAS, ARCHS, RESOLUTIONS

    from factory.nas.space import SubnetConfig
    from latency_tables.table import LatencyTable

    table = LatencyTable.load(tiny_table_file, get_space("tiny"))
    budget = round(table.fastest_ms() + 0.5 * (table.predict(SubnetConfig.largest(get_space("tiny")))
                                               - table.fastest_ms()), 3)
    # matching timings of an earlier run: only MobileNetV3Small at 32px, alpha 0.35, fits under the budget
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"rows": {}, "latency_by_config": {
        f"{arch}@{size}@{alpha:g}": budget / 2 if (arch, size, alpha) == ("MobileNetV3Small", 32, 0.35) else 1e3
        for arch in ARCHS for size in RESOLUTIONS for alpha in ALPHAS}}))
    monkeypatch.chdir(tmp_path)
    argv = ["compare_baselines", "--workdir", str(tiny_workdir), "--table", str(tiny_table_file), "--budgets-ms", str(budget),
            "--archs", "MobileNetV3Small", "--match-as", str(earlier), "--baseline-epochs", "1", "--qat-epochs", "1",
            "--n-eval", "12", "--rounds", "1", "--out", "small.json"]
    monkeypatch.setattr(sys, "argv", argv)
    main()
    doc = json.loads((tmp_path / "small.json").read_text())
    rows = doc["rows"]
    base = rows[f"MobileNetV3Small@{budget:g}"]
    assert (base["resolution"], base["alpha"]) == (32, 0.35)
    assert base["trained_on"].startswith("this machine") and base["fine_tuned"]["epochs"] > 1
    factory = [r for r in rows.values() if r["model"] == "factory"]
    assert budget in {r["budget_ms"] for r in factory}
    assert all(r["qat_int8"] > 0.2 and r["predicted_ms"] <= r["budget_ms"] for r in factory)  # chance is 0.1
    assert all(r["export_measured_ms"] <= r["budget_ms"] for r in factory)  # shipped as `make` ships: within it
    assert all(r["measured_ms"] > 0 for r in rows.values())
    assert [(c["baseline"], c["factory_searched_at"]) for c in doc["comparisons"]] == [
        ("MobileNetV3Small 32px alpha 0.35", "the budget"), ("MobileNetV3Small 32px alpha 0.35", "its latency")]
    printed = capsys.readouterr().out
    assert "goal (beat each baseline at equal or lower measured latency): " in printed
    assert "exported before export kept budgets" not in printed

    models = tmp_path / "runs" / "bench-export" / "small"
    made = {p: p.stat().st_mtime_ns for p in models.rglob("*") if p.suffix in (".keras", ".tflite")}
    main()
    assert {p: p.stat().st_mtime_ns for p in models.rglob("*") if p.suffix in (".keras", ".tflite")} == made
    assert json.loads((tmp_path / "small.json").read_text())["rows"].keys() == rows.keys()
