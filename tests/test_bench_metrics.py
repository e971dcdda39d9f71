"""Benchmark metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hyperinit.bench.metrics import accuracy, binary_auc, dice, macro_auc, quadratic_kappa


def test_auc_matches_pair_count():
    # positives 0.35 and 0.8 against negatives 0.1 and 0.4: 3 of 4 pairs ordered right
    assert binary_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)


def test_auc_ties_count_half_and_torch_input():
    assert binary_auc(torch.tensor([0.5, 0.5, 0.9]), torch.tensor([0, 1, 1])) == pytest.approx(0.75)


def test_auc_brute_force_random():
    rng = np.random.default_rng(0)
    s, y = rng.integers(0, 5, 60).astype(float), rng.integers(0, 2, 60)
    pos, neg = s[y == 1], s[y == 0]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (
        len(pos) * len(neg)
    )
    assert binary_auc(s, y) == pytest.approx(brute)


def test_auc_one_class_is_nan():
    assert math.isnan(binary_auc([0.2, 0.3], [1, 1]))


def test_macro_auc_is_mean_of_one_vs_rest():
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.1, 0.5, 0.4]])
    labels = np.array([0, 1, 2, 2])
    expected = np.mean([binary_auc(probs[:, k], labels == k) for k in range(3)])
    assert macro_auc(probs, labels) == pytest.approx(expected)
    # class 2: scores 0.4, 0.4 (pos) vs 0.1, 0.1 (neg) -> 1; class 1: 0.7 vs 0.1, 0.3, 0.5 -> 1
    assert binary_auc(probs[:, 0], labels == 0) == pytest.approx(1.0)
    assert accuracy(probs, labels) == pytest.approx(0.75)


def test_quadratic_kappa_by_hand():
    # observed: (0,0) (1,2) (2,2) (2,1); sum w*O = 2 * 1/4; sum w*E = 22 / 16
    assert quadratic_kappa([0, 2, 2, 1], [0, 1, 2, 2], 3) == pytest.approx(1 - 0.5 / 1.375)
    assert quadratic_kappa([0, 1, 2], [0, 1, 2], 3) == pytest.approx(1.0)
    # reversed grades disagree systematically: negative kappa
    assert quadratic_kappa([2, 1, 0], [0, 1, 2], 3) < 0


def test_dice_with_and_without_mask():
    pred = np.array([[1, 1], [0, 0]])
    target = np.array([[1, 0], [0, 0]])
    assert dice(pred, target) == pytest.approx(2 / 3)
    assert dice(pred, target, mask=np.array([[1, 0], [1, 1]])) == pytest.approx(1.0)
    assert dice(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    assert dice(np.ones((2, 2)), np.zeros((2, 2))) == 0.0
