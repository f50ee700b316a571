"""A latency budget the shipped model keeps: a margin from the table's held-out error, a model measured over its
budget refused before its fine-tune, and make searching again under a tightened budget."""

import numpy as np
import pytest

from export.config import ExportConfig
from export.pipeline import OverBudgetError
from factory.app import stages
from factory.app.stages import MAX_TRIES, export_within_budget, search_budget, search_workdir
from factory.core.errors import FactoryError
from factory.nas.space import TINY, SubnetConfig
from factory.search.strategies import SearchConfig
from factory.training.workdir import Workdir
from helpers import synthetic_table
from latency_tables.validate import error_report

QUICK_SEARCH = SearchConfig(n_eval=10, recheck=2)


def test_the_held_out_error_gives_the_95th_percentile_of_how_much_slower_subnets_measure():
    predicted = np.ones(100)
    measured = 1 + np.arange(100) / 1000  # 0% to 9.9% slower than predicted
    assert error_report(predicted, measured)["p95_slower_percent"] == pytest.approx(9.405, abs=1e-6)


@pytest.mark.parametrize("held_out, margin", [
    ({"p95_slower_percent": 4.0, "mape_percent": 3.0}, 0.04),
    ({"p95_slower_percent": -2.0}, 0.0),  # a table that over-predicts needs no margin
    ({"mape_percent": 3.0}, 0.06),  # calibrated before the percentile was recorded: twice its MAPE
    (None, 0.0),  # uncalibrated: export's measurement is the only check
])
def test_a_tables_margin_comes_from_its_held_out_error(held_out, margin):
    table = synthetic_table("host-cpu-1t", 1.0)
    if held_out is not None:
        table.doc["correction"] = {"slope": 1.0, "intercept": 0.0, "n": 20, "cross_validated": held_out}
    assert table.margin == pytest.approx(margin)
    assert search_budget(table, 10.0) == pytest.approx(10.0 / (1 + margin))
    if margin:  # a budget just above the fastest subnet: the margin would go below it, the search does not
        assert search_budget(table, table.fastest_ms() * 1.001) == table.fastest_ms()


def test_a_model_over_its_budget_is_refused_before_its_fine_tune_and_nothing_is_written(tiny_workdir, tiny_table_file,
                                                                                       tmp_path, capsys):
    from factory.app.cli import main

    subnet = tmp_path / "subnet.json"
    subnet.write_text(SubnetConfig.smallest(TINY).to_json())
    code = main(["export", "--workdir", str(tiny_workdir), "--subnet", str(subnet), "--device", "host-cpu-1t",
                 "--table", str(tiny_table_file), "--budget-ms", "0.000001", "--out", str(tmp_path / "bundle")])
    out = capsys.readouterr()
    assert code == 2 and not (tmp_path / "bundle").exists()
    [line] = out.err.strip().splitlines()
    assert "post-training int8 model measured" in line and "--allow-over-budget" in line
    assert "quantization-aware fine-tuning" not in out.out  # refused before QAT


def test_make_searches_again_under_a_tightened_budget_until_a_model_measures_within(tiny_workdir, tiny_table,
                                                                                     host, tmp_path, monkeypatch):
    """On a device uniformly slower than its table, so that the first pick measures 1.5 times its budget, one
    search under the budget tightened by how far it missed finds a model that measures within."""
    work = Workdir(tiny_workdir)
    budget = (tiny_table.fastest_ms() + tiny_table.predict(SubnetConfig.largest(TINY))) / 2
    [first] = search_workdir(work, {"host-cpu-1t": tiny_table}, [budget], config=QUICK_SEARCH)
    slower = 1.5 * budget / tiny_table.predict(SubnetConfig.from_dict(first["subnet"]))
    exported = []

    def slower_device(workdir, subnet, profile, table, out, *, budget_ms, tries, **kwargs):
        measured = slower * table.predict(subnet)
        if measured > budget_ms:
            raise OverBudgetError(subnet, profile, budget_ms, measured, table.predict(subnet), "post-training int8")
        exported.append((subnet, list(tries)))
        return {"latency": {"measured_ms": measured, "tries": list(tries)}}

    monkeypatch.setattr(stages, "export_workdir", slower_device)
    assert first["search_budget_ms"] == search_budget(tiny_table, budget)
    card = export_within_budget(work, first, host, {"host-cpu-1t": tiny_table}, tmp_path / "b", search=QUICK_SEARCH)
    [miss] = card["latency"]["tries"]
    assert miss["subnet"] == first["subnet"] and miss["measured_ms"] == pytest.approx(1.5 * budget)
    assert card["latency"]["measured_ms"] <= 0.98 * budget + 1e-9
    # the search result on disk is the subnet that shipped
    assert SubnetConfig.from_dict(work.search_result("host-cpu-1t", budget)["subnet"]) == exported[-1][0]


def test_make_gives_up_after_its_tries_in_one_line(tiny_workdir, tiny_table, host, tmp_path, monkeypatch):
    def always_over(workdir, subnet, profile, table, out, *, budget_ms, tries, **kwargs):
        raise OverBudgetError(subnet, profile, budget_ms, budget_ms * 1.01, table.predict(subnet), "int8")

    monkeypatch.setattr(stages, "export_workdir", always_over)
    work = Workdir(tiny_workdir)
    budget = tiny_table.predict(SubnetConfig.largest(TINY)) * 10
    [result] = search_workdir(work, {"host-cpu-1t": tiny_table}, [budget], config=QUICK_SEARCH)
    with pytest.raises(FactoryError, match=f"{MAX_TRIES} subnets searched .* --allow-over-budget"):
        export_within_budget(work, result, host, {"host-cpu-1t": tiny_table}, tmp_path / "b", search=QUICK_SEARCH)


def test_allow_over_budget_is_an_export_setting():
    assert ExportConfig().allow_over_budget is False and ExportConfig(allow_over_budget=True).allow_over_budget
