"""The export gate judges with statistics on the test images: a real loss is refused, a few images' noise is not."""

import numpy as np
import pytest

from export.config import ExportConfig
from export.parity import paired_drop, proportion_interval
from export.pipeline import Scores, parity
from factory.core.errors import FactoryError
from factory.nas.heads import ClassificationHead


def scores(n: int, right: int, lost: int, gained: int, seed: int = 0) -> Scores:
    """A reference right on ``right`` of ``n`` images and a shipped model that loses ``lost`` of those and gains
    ``gained`` of the others."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, int)
    reference = np.where(np.arange(n) < right, 0, 1)
    shipped = reference.copy()
    shipped[rng.choice(right, lost, replace=False)] = 1
    shipped[right + rng.choice(n - right, gained, replace=False)] = 0
    out = Scores(ClassificationHead(2))
    out.add("float_finetuned", np.eye(2)[reference], labels)  # one-hot outputs: the predicted class
    out.add("qat_int8", np.eye(2)[shipped], labels)
    return out


def test_paired_interval_is_mcnemars():
    hits = scores(400, 300, 30, 10)
    drop = paired_drop(hits.records["float_finetuned"], hits.records["qat_int8"])
    assert drop["points"] == pytest.approx(5.0) and (drop["lost"], drop["gained"]) == (30, 10)
    spread = 1.959964 * np.sqrt(40 - 20 ** 2 / 400) / 400 * 100
    assert (drop["low"], drop["high"]) == pytest.approx((5.0 - spread, 5.0 + spread))


def test_a_real_loss_on_a_large_split_is_refused_with_its_interval():
    hits = scores(5000, 4000, 200, 50)  # 3 points net, 250 discordant images
    with pytest.raises(FactoryError, match=r"loses 3\.00 points \(95% interval 2\.\d\d to 3\.\d\d: 200 images lost, "
                                           r"50 gained, of 5000\).*more than 1 at 95% confidence"):
        parity(hits, "float_finetuned", "qat_int8", (1.0, len(hits.records["qat_int8"])), ExportConfig(max_drop_points=1.0))


def test_six_images_on_360_of_an_unsure_model_are_not_a_loss():
    hits = scores(360, 216, 20, 14)  # an unsure model (60%) changes its mind on 34 images, 6 net: 1.67 points
    checks = parity(hits, "float_finetuned", "qat_int8", (0.99, len(hits.records["qat_int8"])), ExportConfig(max_drop_points=1.0))
    assert checks["drop_points"] == pytest.approx(100 * 6 / 360)
    low, high = checks["drop_interval_95"]
    assert low < 1.0 < high and checks["drop_verdict"].startswith("passed: not shown")


def test_the_agreement_gate_needs_its_shortfall_to_be_real():
    hits = scores(360, 300, 0, 0)
    assert parity(hits, "float_finetuned", "qat_int8", (350 / 360, len(hits.records["qat_int8"])), ExportConfig())["agreement_interval_95"][1] > 0.98
    big = scores(5000, 4000, 0, 0)
    with pytest.raises(FactoryError, match=r"agrees with its Keras model on only 97\.00%.*95% interval"):
        parity(big, "float_finetuned", "qat_int8", (0.97, len(big.records["qat_int8"])), ExportConfig())


@pytest.mark.parametrize("k, n", [(0, 10), (10, 10), (350, 360), (4850, 5000)])
def test_wilson_interval_brackets_the_share(k, n):
    low, high = proportion_interval(k, n)
    assert 0 <= low <= k / n + 1e-12 and k / n - 1e-12 <= high <= 1 and high - low < 0.5
