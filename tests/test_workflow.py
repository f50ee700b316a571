"""`factory search` and `factory pareto` on a tiny supernet trained on digits."""

import json

import numpy as np
import pytest

from factory.app.cli import main
from factory.app.stages import EVALUATED_RECHECK
from factory.nas.space import SubnetConfig
from factory.training.workdir import Workdir
from latency_tables.memory import MemoryModel
from latency_tables.table import LatencyTable
from factory.nas.heads import ClassificationHead


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
        assert 0 <= result["val_accuracy"] <= 1 and 3 <= len(result["rechecked"]) <= 3 + EVALUATED_RECHECK
        assert result["val_accuracy"] == max(r["val_accuracy"] for r in result["rechecked"])
        evals = json.loads(work.subnet_evals_file.read_text())["results"]  # the best evaluated one that fits
        best = max((r for r in evals if table.predict(SubnetConfig.from_dict(r["subnet"])) <= result["search_budget_ms"]),
                   key=lambda r: r["val_accuracy"])
        assert best["subnet"] in [r["subnet"] for r in result["rechecked"]]
    assert len(json.loads(work.subnet_evals_file.read_text())["results"]) == 12
    assert (work.predictor_dir / "predictor.json").exists()
    assert main(["pareto", "--workdir", str(workdir), "--device", "host-cpu-1t", "--table", str(table_file)]) == 0
    assert work.pareto_png("host-cpu-1t").stat().st_size > 5000
    memory = MemoryModel(TINY, "int8", ClassificationHead(10))
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


@pytest.mark.parametrize("strategy, options", [("reinforce", ["--reinforce-steps", "20", "--int8-recheck", "2"]),
                                               ("gradient", ["--gradient-steps", "4"])])
def test_every_strategy_ends_in_a_rechecked_subnet_within_the_budget(strategy, options, tiny_workdir, tiny_table_file):
    from factory.nas.space import TINY

    work, table = Workdir(tiny_workdir), LatencyTable(json.loads(tiny_table_file.read_text()), TINY)
    budget = round(table.fastest_ms() * 1.3, 3)
    assert main(["search", "--workdir", str(tiny_workdir), "--device", "host-cpu-1t", "--budget-ms", str(budget),
                 "--table", str(tiny_table_file), "--n-eval", "12", "--recheck", "2", "--strategy", strategy,
                 *options]) == 0
    result = json.loads(work.search_result_file("host-cpu-1t", budget).read_text())
    assert result["strategy"] == strategy and 2 <= len(result["rechecked"]) <= 2 + EVALUATED_RECHECK
    assert table.predict(SubnetConfig.from_dict(result["subnet"])) <= budget
    assert 0 < result["predicted_accuracy"] <= 1.2  # the predictor's figure, whatever ordered the candidates
    if "--int8-recheck" in options:  # the choice is the int8 model's best validation score
        int8 = result["int8_rechecked"]
        assert len(int8) == 2 and result["chosen_by"] == "int8 validation accuracy"
        assert result["subnet"] == int8[0]["subnet"] and int8[0]["int8_val_accuracy"] >= int8[1]["int8_val_accuracy"]
        assert all(0 < r["int8_val_accuracy"] <= 1 for r in int8)
    else:
        assert result["int8_rechecked"] is None


def test_pareto_diverse_picks_k_subnets_near_the_front_unlike_each_other(tiny_workdir, tiny_table_file, capsys):
    from factory.nas.space import TINY
    from factory.search.diverse import mean_pairwise_distance

    work = Workdir(tiny_workdir)
    assert main(["pareto", "--workdir", str(tiny_workdir), "--device", "host-cpu-1t", "--table", str(tiny_table_file),
                 "--diverse", "4", "--n-eval", "12"]) == 0
    doc = json.loads(work.diverse_file("host-cpu-1t").read_text())
    out = capsys.readouterr().out
    assert "4 diverse subnets" in out and work.diverse_file("host-cpu-1t", ".png").stat().st_size > 5000
    subnets = [SubnetConfig.from_dict(r["subnet"]) for r in doc["subnets"]]
    assert len(set(subnets)) == 4
    latencies = [r["predicted_latency_ms"] for r in doc["subnets"]]
    assert latencies == sorted(latencies)
    assert all(r["below_front_points"] < 5 for r in doc["subnets"])  # near the front, by the predictor
    encoded = np.stack([TINY.encode(s) for s in subnets])
    assert doc["mean_pairwise_distance"] == pytest.approx(mean_pairwise_distance(TINY, encoded))


def test_proxies_rank_against_the_supernets_evaluations(tiny_workdir, capsys):
    from factory.search.evaluate import evaluate_subnets

    work = Workdir(tiny_workdir)
    evaluate_subnets(work.supernet(), work.data(), work.subnet_evals_file, n=12, verbose=0)  # as `search` leaves them
    assert main(["proxies", "--workdir", str(tiny_workdir), "--n", "12"]) == 0
    out = capsys.readouterr().out
    doc = json.loads((work.path / "proxies.json").read_text())
    assert doc["subnets"] == 12 and set(doc["kendall_tau"]) == {"snip", "synflow", "naswot", "params"}
    assert all(-1 <= t <= 1 for t in doc["kendall_tau"].values()) and "naswot" in out
    assert all(v > 0 for v in doc["scores"]["snip"] + doc["scores"]["synflow"])
    assert all(np.isfinite(doc["scores"]["naswot"])) and len(set(doc["scores"]["naswot"])) > 1
    assert doc["proxy_seconds_per_subnet"] > 0 and doc["evaluation_seconds_per_subnet"] > 0


def test_proxies_need_evaluations_first(tmp_path, tiny_workdir, capsys):
    import shutil

    copy = tmp_path / "work"
    shutil.copytree(tiny_workdir, copy)
    Workdir(copy).subnet_evals_file.unlink(missing_ok=True)
    assert main(["proxies", "--workdir", str(copy)]) == 2
    assert "run `factory search` there first" in capsys.readouterr().err
