"""bench.search's results file: a run for some strategies keeps the other rows, and tables come in one order."""

import json
import random
from argparse import Namespace
from pathlib import Path

from bench.search import _key, _plan, _with_earlier, markdown
from factory.search.strategies import STRATEGIES

RESULTS = Path(__file__).parents[1] / "bench" / "results" / "search.json"


def test_a_run_of_one_strategy_keeps_every_other_row_of_the_earlier_run():
    doc = json.loads(RESULTS.read_text())
    earlier = {_key(r): r for r in doc["rows"]}
    rerun = {**doc["rows"][0], "mean": -1.0}  # this run's row replaces the earlier one of the same key
    rows = _with_earlier([rerun], earlier)
    assert rows[0] is rerun and len(rows) == len(doc["rows"])
    assert {_key(r) for r in rows} == set(earlier)
    assert sum(r["mean"] == -1.0 for r in rows) == 1


def test_gradient_runs_at_the_most_evaluations_bayesian_at_the_fewest_and_every_strategy_in_time():
    args = Namespace(evaluations=[2000, 100, 500], evaluation_strategies=list(STRATEGIES), seconds=10.0,
                     time_strategies=list(STRATEGIES))
    assert _plan(args) == [("evaluations", 100, ["evolution", "reinforce", "random", "bayesian"]),
                           ("evaluations", 500, ["evolution", "reinforce", "random"]),
                           ("evaluations", 2000, ["evolution", "reinforce", "gradient", "random"]),
                           ("time", 10.0, list(STRATEGIES))]


def test_tables_come_fewest_evaluations_first_then_time_whatever_order_the_rows_are_in():
    doc = json.loads(RESULTS.read_text())
    shuffled = {**doc, "rows": random.Random(0).sample(doc["rows"], len(doc["rows"]))}
    text = markdown(shuffled)
    assert text == markdown(doc)
    heads = [line for line in text.splitlines() if line.startswith("equal ")]
    assert heads[0].startswith("equal objective evaluations, 100 ")
    assert heads[1].startswith("equal objective evaluations, 2,000 ")
    assert heads[-1].startswith("equal wall time")
