"""`factory search` and `factory pareto` on a tiny supernet trained on digits."""

import json

import pytest

from factory.app.cli import main
from factory.nas.space import SubnetConfig
from factory.training.workdir import Workdir
from latency_tables.memory import MemoryModel
from latency_tables.table import LatencyTable


def test_search_writes_a_result_per_budget_and_a_pareto_plot(tiny_workdir, tiny_table_file, capsys):
    workdir, table_file, work = tiny_workdir, tiny_table_file, Workdir(tiny_workdir)
    from factory.nas.space import TINY

    table = LatencyTable(json.loads(table_file.read_text()), TINY)
    budgets = [round(table.fastest_ms() * 1.5, 3), round(table.predict(SubnetConfig.largest(TINY)), 3)]
    args = ["search", "--workdir", str(workdir), "--device", "host-cpu-1t", "--budget-ms", *map(str, budgets),
            "--table", str(table_file), "--n-eval", "12", "--population", "12", "--generations", "4",
            "--recheck", "3"]
    assert main(args) == 0
    for budget in budgets:
        result = json.loads(work.search_result_file("host-cpu-1t", budget).read_text())
        subnet = SubnetConfig.from_dict(result["subnet"]).validate(TINY)
        assert table.predict(subnet) <= budget
        assert 0 <= result["val_accuracy"] <= 1 and len(result["rechecked"]) == 3
        assert result["val_accuracy"] == max(r["val_accuracy"] for r in result["rechecked"])
    assert len(json.loads(work.subnet_evals_file.read_text())["results"]) == 12
    assert (work.predictor_dir / "predictor.json").exists()
    assert main(["pareto", "--workdir", str(workdir), "--device", "host-cpu-1t", "--table", str(table_file)]) == 0
    assert work.pareto_png("host-cpu-1t").stat().st_size > 5000
    memory = MemoryModel(TINY, "int8", 10)
    limit = (memory.predict(SubnetConfig.smallest(TINY))["peak_bytes"]
             + memory.predict(SubnetConfig.largest(TINY))["peak_bytes"]) / 2 / 1024
    assert main(args[:6] + [str(budgets[1])] + args[8:] + ["--memory-kb", f"{limit:.1f}"]) == 0
    result = json.loads(work.search_result_file("host-cpu-1t", budgets[1]).read_text())
    assert result["memory_kb"] == pytest.approx(limit, abs=0.1)
    assert result["predicted_memory"] == memory.predict(SubnetConfig.from_dict(result["subnet"]))
    assert result["predicted_memory"]["peak_bytes"] <= limit * 1024
    capsys.readouterr()
    too_low = ["search", "--workdir", str(workdir), "--device", "host-cpu-1t", "--budget-ms", "0.0001",
               "--table", str(table_file), "--n-eval", "12"]
    assert main(too_low) == 2
    assert "below the fastest subnet" in capsys.readouterr().err
