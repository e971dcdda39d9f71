"""Plots of learned rates: per layer against depth (MetaLR Fig. 3b) and over training (Fig. 4b).

matplotlib is imported only when a plot is drawn (``pip install hyperinit[plots]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hyperinit.errors import MetaLRConfigError

__all__ = ["plot_lr_by_depth", "plot_lr_over_time"]


def _history(source: Any) -> tuple[list[str], list[int], list[list[float]]]:
    """(group names, steps, rates per record) from an optimizer or a ``lr_history`` mapping."""
    if hasattr(source, "lr_history") and hasattr(source, "lr_history_steps"):
        hist, steps = source.lr_history, source.lr_history_steps
    elif isinstance(source, Mapping):
        hist = dict(source)
        n = len(next(iter(hist.values()), []))
        steps = list(range(n))
    else:
        raise MetaLRConfigError(
            "pass a MetaLROptimizer or its lr_history mapping {group: [rates]}."
        )
    names = list(hist)
    rows = [[hist[name][t] for name in names] for t in range(len(steps))]
    if not names or not rows:
        raise MetaLRConfigError("the learning-rate history is empty; train for a few steps.")
    return names, list(steps), rows


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(6, 3.5))
    return ax


def plot_lr_by_depth(
    source: Any,
    ax: Any = None,
    snapshots: int | Sequence[int] = 4,
    label: str | None = None,
    log_scale: bool = True,
) -> Any:
    """Learned rate of each layer group against its depth (the MetaLR paper's Fig. 3b).

    Args:
        source: a ``MetaLROptimizer`` or its ``lr_history`` mapping.
        ax: matplotlib axes to draw on (a new figure if ``None``).
        snapshots: how many evenly spaced moments of training to draw (the last is always
            drawn, solid), or the record indices to draw.
        label: legend prefix, e.g. the dataset name.
        log_scale: use a log scale for the rates.

    Returns:
        The axes.
    """
    names, steps, rows = _history(source)
    ax = _axes(ax)
    if isinstance(snapshots, int):
        k = max(1, min(snapshots, len(rows)))
        idx = sorted({round(i * (len(rows) - 1) / max(k - 1, 1)) for i in range(k)})
        if k == 1:
            idx = [len(rows) - 1]
    else:
        idx = [i if i >= 0 else len(rows) + i for i in snapshots]
    depth = list(range(1, len(names) + 1))
    for i in idx:
        final = i == len(rows) - 1
        text = f"step {steps[i]}"
        ax.plot(
            depth,
            rows[i],
            marker="o",
            linestyle="-" if final else "--",
            alpha=1.0 if final else 0.5,
            label=f"{label}: {text}" if label else text,
        )
    ax.set_xticks(depth)
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    ax.set_xlabel("layer group (input → output)")
    ax.set_ylabel("learned learning rate")
    if log_scale:
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.figure.tight_layout()
    return ax


def plot_lr_over_time(source: Any, ax: Any = None, log_scale: bool = True) -> Any:
    """Learned rate of each layer group against the training step (the paper's Fig. 4b)."""
    names, steps, rows = _history(source)
    ax = _axes(ax)
    for j, name in enumerate(names):
        ax.plot(steps, [r[j] for r in rows], label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("learned learning rate")
    if log_scale:
        ax.set_yscale("log")
    ax.legend(fontsize=6, ncol=2)
    ax.figure.tight_layout()
    return ax
