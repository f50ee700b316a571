"""bench/export.py's matching of the factory to a baseline's measured latency."""

import copy
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.export import equal_latency_budget  # noqa: E402
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
