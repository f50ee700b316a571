"""Every number a user gives is finite and in range, at the CLI and in the Python API's settings, refused in one
line before any work (issue: a `--budget-ms nan` once trained a supernet before failing)."""

import argparse

import pytest

from export.config import ExportConfig
from factory.app.cli import build_parser, main
from factory.core.errors import FactoryError
from factory.search.evolution import EvolutionConfig
from factory.search.gradient import GradientConfig
from factory.search.reinforce import ReinforceConfig
from factory.search.strategies import Constraints, SearchConfig
from factory.training.portable.recipe import TrainConfig


def _number_options():
    """(command, option) for every option of every command that takes a number."""
    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    out = []
    for name, sub in commands.choices.items():
        for action in sub._actions:
            nested = isinstance(action, argparse._SubParsersAction)
            for inner_name, inner in (action.choices.items() if nested else [(None, None)]):
                actions = inner._actions if nested else [action]
                for a in actions:
                    if a.option_strings and a.type is not None and getattr(a.type, "__name__", "") in ("parse", "int"):
                        out.append(tuple(filter(None, (name, inner_name))) + (a.option_strings[-1],))
    return sorted(set(out))


OPTIONS = _number_options()


def test_the_cli_has_number_options_to_check():
    assert ("make", "--budget-ms") in OPTIONS and ("make", "--memory-kb") in OPTIONS and len(OPTIONS) > 20


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1"])
@pytest.mark.parametrize("option", OPTIONS, ids=" ".join)
def test_every_number_option_refuses_non_finite_and_negative_values(option, value, capsys):
    *command, flag = option
    with pytest.raises(SystemExit) as exit_:
        main([*command, flag, value])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and flag in err, err


BAD = [
    (TrainConfig, "epochs", 0), (TrainConfig, "learning_rate", float("nan")), (TrainConfig, "learning_rate", 0.0),
    (TrainConfig, "warmup_epochs", -1.0), (TrainConfig, "weight_decay", float("inf")),
    (TrainConfig, "label_smoothing", 1.0), (TrainConfig, "momentum", float("nan")), (TrainConfig, "seed", -1),
    (ExportConfig, "max_drop_points", float("nan")), (ExportConfig, "max_drop_points", -0.5),
    (ExportConfig, "min_agreement", 1.5), (ExportConfig, "learning_rate", float("inf")),
    (ExportConfig, "qat_epochs", -1),
    (SearchConfig, "memory_kb", float("nan")), (SearchConfig, "size_bytes", -5), (SearchConfig, "n_eval", 0),
    (SearchConfig, "time_limit_s", float("inf")),
    (EvolutionConfig, "mutation_prob", 1.5), (EvolutionConfig, "parent_ratio", float("nan")),
    (ReinforceConfig, "learning_rate", -1.0), (GradientConfig, "weight", float("nan")),
    (GradientConfig, "temperature", (5.0, 0.0)),
]


@pytest.mark.parametrize("config, field, value", BAD, ids=[f"{c.__name__}.{f}={v}" for c, f, v in BAD])
def test_python_settings_refuse_out_of_range_numbers(config, field, value):
    with pytest.raises(FactoryError, match=field if field != "temperature" else "temperature"):
        config(**{field: value})


@pytest.mark.parametrize("budget", [float("nan"), float("inf"), 0.0, -1.0])
def test_a_latency_budget_must_be_a_finite_positive_number(budget):
    with pytest.raises(FactoryError, match="latency budget for host-cpu-1t"):
        Constraints({"host-cpu-1t": budget})


def test_the_defaults_pass():
    for config in (TrainConfig, ExportConfig, SearchConfig, EvolutionConfig, ReinforceConfig, GradientConfig):
        config()
    Constraints({"host-cpu-1t": 1.0}, size_bytes=1000, memory_kb=500.0)
