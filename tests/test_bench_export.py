"""bench/export.py's matching of the factory to a baseline's measured latency."""

import copy
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.export import comparisons, equal_latency_budget, main  # noqa: E402
from devices.profile import load_profile  # noqa: E402
from factory.space import get_space  # noqa: E402
from latency_tables.table import LatencyTable, default_table_path  # noqa: E402


@pytest.mark.parametrize("space", ["default", "res64"])
def test_the_equal_latency_budget_leaves_the_tables_typical_error_below_the_baseline(space):
    space = get_space(space)
    table = LatencyTable.load(default_table_path(space, load_profile("host-cpu-1t")), space)
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


def test_show_prints_a_results_files_table_and_verdicts_to_the_hundredth_of_a_point(tmp_path, monkeypatch, capsys):
    doc = _doc(factory_qat=0.7597, factory_ptq=0.72, baseline_ptq=0.745, tuned_ptq=0.76)
    for row in doc["rows"].values():
        row.update({"float": 0.75, "size_bytes": 2048, "macs": 20e6, "predicted_ms": None,
                    "qat_int8": row.get("qat_int8")})
    doc["rows"]["b"]["fine_tuned"].update(float=0.77, size_bytes=2048)
    doc["comparisons"] = comparisons(doc)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc))
    monkeypatch.setattr(sys, "argv", ["export.py", "--show", str(path)])
    main()
    out = capsys.readouterr().out
    assert "| 1 | MobileNetV3Small (128px, alpha 0.75), 10 epochs | 77.0% | 76.0% |" in out
    verdicts = [line for line in out.splitlines() if "against the factory" in line]
    assert len(verdicts) == 2
    assert all("trained as many epochs -0.03 points" in line and line.endswith("does not win") for line in verdicts)


@pytest.mark.parametrize("text", [None, '{"a": 1}'], ids=["missing", "not-a-results-file"])
def test_show_refuses_what_is_not_a_results_file_in_one_line(tmp_path, monkeypatch, text):
    path = tmp_path / "results.json"
    if text is not None:
        path.write_text(text)
    monkeypatch.setattr(sys, "argv", ["export.py", "--show", str(path)])
    with pytest.raises(SystemExit, match="give .*wrote with --out") as exc:
        main()
    assert "\n" not in str(exc.value)
