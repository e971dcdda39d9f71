"""hyperinit.bench.stats: paired differences with standard errors and loss-spike counts."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from hyperinit.bench.stats import SPIKE, loss_spike, mean_se, paired_gain, spike_count
from tests.conftest import REPO


def _rows(base: list[float], other: list[float]) -> list[dict]:
    return [
        {"task": "busi", "arch": "timm:resnet18", "init": init, "seed": s, "score": x}
        for init, xs in (("default", base), ("hyperinit", other))
        for s, x in enumerate(xs)
    ]


def test_mean_se_by_hand():
    # differences 0.1, 0.2, 0.0: mean 0.1, sample sd 0.1, standard error 0.1 / sqrt(3)
    mean, se = mean_se([0.1, 0.2, 0.0])
    assert mean == pytest.approx(0.1)
    assert se == pytest.approx(0.1 / math.sqrt(3))
    assert se == pytest.approx(0.0577350, abs=1e-7)


def test_mean_se_of_one_value_has_no_standard_error():
    mean, se = mean_se([0.25])
    assert mean == 0.25 and math.isnan(se)


def test_mean_se_of_nothing_raises():
    with pytest.raises(statistics.StatisticsError):
        mean_se([])


def test_paired_gain_by_hand():
    rows = _rows([0.5, 0.6, 0.7], [0.6, 0.8, 0.7])
    mean, se, ahead = paired_gain(rows, "busi", "timm:resnet18", "default", "hyperinit")
    assert mean == pytest.approx(0.1)
    assert se == pytest.approx(0.1 / math.sqrt(3))
    assert ahead == 2  # seed 2 is a tie, not ahead
    mean, _, ahead = paired_gain(rows, "busi", "timm:resnet18", "hyperinit", "default")
    assert mean == pytest.approx(-0.1) and ahead == 0


def test_paired_gain_pairs_only_seeds_run_with_both():
    rows = _rows([0.5, 0.6, 0.7], [0.9])  # only seed 0 has both
    rows.append(
        {"task": "ct_covid", "arch": "timm:resnet18", "init": "default", "seed": 0, "score": 0.0}
    )  # another task: ignored
    mean, se, ahead = paired_gain(rows, "busi", "timm:resnet18", "default", "hyperinit")
    assert mean == pytest.approx(0.4) and math.isnan(se) and ahead == 1


def test_paired_gain_without_pairs_raises():
    with pytest.raises(statistics.StatisticsError):
        paired_gain(_rows([0.5], []), "busi", "timm:resnet18", "default", "hyperinit")


def test_paired_gain_reproduces_the_zero_init_control_summary():
    """The summary of research/zero_init_control was made with the same paired differences."""
    result = json.loads((REPO / "research/zero_init_control/zero_init_control.json").read_text())
    checked = 0
    for s in result["summary"]:
        rows = [r for r in result["rows"] if r["task"] == s["task"]]
        for pair, (mean, se, ahead) in s["paired"].items():
            other, base = pair.split(" - ")
            got = paired_gain(rows, s["task"], s["arch"], base, other)
            assert got[0] == pytest.approx(mean, abs=1e-12)
            assert got[1] == pytest.approx(se, abs=1e-12)
            assert got[2] == ahead
            checked += 1
    assert checked >= 20


@pytest.mark.parametrize(
    ("curve", "spike"),
    [
        ([], False),
        ([2.0], False),
        ([1.0, 0.8, 0.6], False),
        ([1.0, 1.5], False),  # exactly 1.5x is not over 1.5x
        ([1.0, 1.51], True),
        ([1.0, 1.4, 2.2], True),  # 2.2 > 1.5 * 1.4 = 2.1
        ([1.0, 1.4, 2.0], False),  # 2.0 < 2.1; rising twice is not a spike
    ],
)
def test_loss_spike_by_hand(curve, spike):
    assert loss_spike(curve) is spike


def test_loss_spike_factor_and_count():
    assert SPIKE == 1.5
    assert loss_spike([1.0, 1.2], factor=1.1)
    assert not loss_spike([1.0, 1.2], factor=1.2)
    curves = [[1.0, 0.5, 1.0], [1.0, 0.9], [0.3, 0.2, 0.35], [1.0, 3.0]]
    # 0.5 -> 1.0 (2x), 0.2 -> 0.35 (1.75x) and 1.0 -> 3.0 (3x); 1.0 -> 0.9 falls
    assert spike_count(curves) == 3
    assert spike_count(curves, factor=2.5) == 1
