import json

import pytest

from factory.search.evaluate import as_arrays, best_evaluated, evaluate_subnets, subnets_to_evaluate
from factory.nas.space import TINY, SubnetConfig
from factory.nas.supernet import Supernet
from factory.nas.heads import ClassificationHead


def test_always_includes_the_extremes_and_is_seeded():
    subnets = subnets_to_evaluate(TINY, 12, seed=3)
    assert subnets[0] == SubnetConfig.smallest(TINY) and subnets[1] == SubnetConfig.largest(TINY)
    assert len(set(subnets)) == 12 and subnets == subnets_to_evaluate(TINY, 12, seed=3)


def test_anchors_follow_the_extremes_and_keep_the_randoms_seeded():
    anchor = SubnetConfig.random(TINY, 99)
    subnets = subnets_to_evaluate(TINY, 12, seed=3, anchors=[anchor])
    assert subnets[:3] == [SubnetConfig.smallest(TINY), SubnetConfig.largest(TINY), anchor]
    assert subnets[3:] == [s for s in subnets_to_evaluate(TINY, 13, seed=3)[2:] if s != anchor][:9]


def test_the_best_evaluated_subnets_within_the_constraints_are_kept_as_candidates():
    subnets = subnets_to_evaluate(TINY, 8, seed=0)
    results = [{"subnet": s.to_dict(), "val_accuracy": 0.1 * i} for i, s in enumerate(subnets)]
    at_24 = lambda encoded: encoded[:, 0] == 24  # noqa: E731 - a constraint on the resolution alone
    best = best_evaluated(TINY, results, at_24, 2)
    expected = [(s, pytest.approx(0.1 * i)) for i, s in reversed(list(enumerate(subnets))) if s.resolution == 24][:2]
    assert best == expected and len(best) == 2
    assert best_evaluated(TINY, results, lambda e: e[:, 0] == 0, 2) == []


def test_evaluations_are_cached_and_resumed(digits, tmp_path, monkeypatch):
    net = Supernet(TINY, ClassificationHead(10))
    path = tmp_path / "evals.json"
    calls = {"n": 0}
    real = Supernet.evaluate_subnet

    def interrupted(self, subnet, dataset):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, subnet, dataset)

    monkeypatch.setattr(Supernet, "evaluate_subnet", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_subnets(net, digits, path, n=5, verbose=0)
    assert len(json.loads(path.read_text())["results"]) == 2
    calls["n"] = 100
    results = evaluate_subnets(net, digits, path, n=5, verbose=0)
    assert calls["n"] == 103 and len(results) == 5
    assert all(0 <= r["val_accuracy"] <= 1 for r in results)
    encoded, acc = as_arrays(TINY, results)
    assert encoded.shape == (5, TINY.encoding_length) and acc.shape == (5,)
