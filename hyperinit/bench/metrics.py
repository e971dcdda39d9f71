"""Metrics of the benchmark tasks: AUC, macro AUC, accuracy, quadratic kappa and Dice."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["accuracy", "binary_auc", "dice", "macro_auc", "quadratic_kappa"]


def _np(x: torch.Tensor | np.ndarray | list) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def binary_auc(scores: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """Area under the ROC curve from positive-class scores (Mann-Whitney U, ties count half).

    Returns ``nan`` when only one class is present.
    """
    s, y = _np(scores).astype(np.float64).ravel(), _np(labels).astype(bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def macro_auc(probs: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """Unweighted mean of the one-vs-rest AUCs of the classes present in ``labels``.

    Args:
        probs: ``(N, K)`` class scores or probabilities.
        labels: ``(N,)`` class indices.
    """
    p, y = _np(probs), _np(labels).ravel()
    aucs = [binary_auc(p[:, k], y == k) for k in range(p.shape[1]) if 0 < (y == k).sum() < len(y)]
    return float(np.mean(aucs)) if aucs else float("nan")


def accuracy(probs: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """Fraction of ``argmax(probs) == labels``."""
    p, y = _np(probs), _np(labels).ravel()
    return float((p.argmax(1) == y).mean())


def quadratic_kappa(
    pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, n_classes: int
) -> float:
    """Cohen's kappa with quadratic weights between predicted and true ordinal grades."""
    a, b = _np(pred).astype(int).ravel(), _np(target).astype(int).ravel()
    observed = np.zeros((n_classes, n_classes))
    np.add.at(observed, (b, a), 1)
    expected = np.outer(observed.sum(1), observed.sum(0)) / max(len(a), 1)
    idx = np.arange(n_classes)
    weights = (idx[:, None] - idx[None, :]) ** 2 / max((n_classes - 1) ** 2, 1)
    denom = (weights * expected).sum()
    return float(1.0 - (weights * observed).sum() / denom) if denom > 0 else 1.0


def dice(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None = None,
) -> float:
    """Dice overlap ``2|P∩T| / (|P|+|T|)`` of binary maps, counted inside ``mask`` if given.

    Pooled over all images (micro Dice); 1.0 when both maps are empty.
    """
    p, t = _np(pred).astype(bool), _np(target).astype(bool)
    if mask is not None:
        m = _np(mask).astype(bool)
        p, t = p & m, t & m
    inter, total = np.logical_and(p, t).sum(), p.sum() + t.sum()
    return float(2.0 * inter / total) if total else 1.0
