"""Small statistics of benchmark runs: paired differences over seeds and loss spikes.

>>> mean_se([1.0, 2.0, 3.0])
(2.0, 0.5773502691896258)
>>> loss_spike([1.0, 0.8, 1.5])
True
"""

from __future__ import annotations

import itertools
import logging
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "SPIKE",
    "loss_spike",
    "mean_se",
    "paired_by_seed",
    "paired_gain",
    "paired_text",
    "spike_count",
]

log = logging.getLogger(__name__)

#: An epoch whose mean training loss exceeds the previous epoch's by this factor is a spike.
SPIKE = 1.5


def mean_se(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample standard deviation / sqrt(n)) of ``xs``.

    The standard error of a single value is ``nan``.

    Raises:
        statistics.StatisticsError: ``xs`` is empty.
    """
    se = statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan")
    return statistics.mean(xs), se


def paired_text(a: Sequence[float], b: Sequence[float]) -> str:
    """``a - b`` paired by position as ``"+m ± se (k/n)"``: mean, standard error, how many ahead.

    >>> paired_text([0.9, 0.8], [0.7, 0.7])
    '+0.150 ± 0.050 (2/2)'
    """
    mean, se = mean_se([u - v for u, v in zip(a, b)])
    return f"{mean:+.3f} ± {se:.3f} ({sum(u > v for u, v in zip(a, b))}/{len(a)})"


def paired_by_seed(
    by: Mapping[str, Mapping[object, Sequence[float]]], a: str, b: str, index: int = 1
) -> tuple[float, float, int, int] | None:
    """``a - b`` over the seeds both inits have, from ``{init: {seed: scores}}`` (the score is
    ``scores[index]``): mean, standard error, seeds, seeds ``a`` is ahead; ``None`` when fewer
    than two seeds pair up.

    >>> paired_by_seed({"x": {0: (1.0,), 1: (0.5,)}, "y": {0: (0.5,), 1: (0.5,), 2: (0.1,)}},
    ...                "x", "y", index=0)
    (0.25, 0.25, 2, 1)
    """
    seeds = sorted(set(by.get(a, {})) & set(by.get(b, {})))
    if len(seeds) < 2:
        return None
    diffs = [by[a][s][index] - by[b][s][index] for s in seeds]
    mean, se = mean_se(diffs)
    return mean, se, len(seeds), sum(x > 0 for x in diffs)


def paired_gain(
    rows: Iterable[dict], task: str, arch: str, base: str, other: str
) -> tuple[float, float, int]:
    """The paired difference ``other - base`` over seeds for one task and architecture.

    Args:
        rows: one dict per run with ``task``, ``arch``, ``init``, ``seed`` and ``score``.
        task, arch: the runs to compare.
        base, other: the two inits; only seeds run with both are paired.

    Returns:
        The mean and standard error over seeds of ``other - base``, and in how many seeds
        ``other`` is ahead.

    Raises:
        statistics.StatisticsError: no seed has both inits.
    """
    score = {
        (r["init"], r["seed"]): r["score"] for r in rows if (r["task"], r["arch"]) == (task, arch)
    }
    d = [
        score[(other, s)] - score[(base, s)]
        for (n, s) in score
        if n == base and (other, s) in score
    ]
    if not d:
        log.warning("paired_gain: no seed of %s %s has both %s and %s", task, arch, base, other)
    mean, se = mean_se(d)
    return mean, se, sum(x > 0 for x in d)


def loss_spike(train_loss: Sequence[float], factor: float = SPIKE) -> bool:
    """Whether some epoch's mean training loss exceeds the previous epoch's ``factor``-fold."""
    return any(now > factor * before for before, now in itertools.pairwise(train_loss))


def spike_count(curves: Iterable[Sequence[float]], factor: float = SPIKE) -> int:
    """How many of the training-loss curves ``curves`` have a :func:`loss_spike`."""
    return sum(loss_spike(c, factor) for c in curves)
