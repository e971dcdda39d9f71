"""Fine-tuning baselines of the MetaLR paper: which layers train."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from hyperinit.errors import MetaLRConfigError
from hyperinit.metalr import layer_groups
from hyperinit.metalr.schemes import all_layers, bidirectional, last_layer_only, layerwise

MODEL = torchvision.models.resnet18(num_classes=2)
GROUPS = layer_groups(MODEL)


def trainable_layers(model) -> list[int]:
    return [
        i for i, g in enumerate(layer_groups(model), 1) if all(p.requires_grad for p in g.params)
    ]


def test_last_layer_and_all_layers() -> None:
    params = last_layer_only(MODEL)
    assert trainable_layers(MODEL) == [10]
    assert [id(p) for p in params] == [id(p) for p in MODEL.fc.parameters()]
    assert len(all_layers(MODEL)) == len(list(MODEL.parameters()))
    assert trainable_layers(MODEL) == list(range(1, 11))


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 9), st.integers(0, 8))
def test_bidirectional_freezes_exactly_m_to_n(m: int, width: int) -> None:
    n = min(9, m + width)
    params = bidirectional(MODEL, m, n)
    assert trainable_layers(MODEL) == [i for i in range(1, 11) if not m <= i <= n]
    assert sum(p.numel() for p in params) == sum(
        p.numel() for i, g in enumerate(GROUPS, 1) if not m <= i <= n for p in g.params
    )


def test_layerwise_freezes_the_lowest_k_and_frozen_weights_do_not_move() -> None:
    model = torchvision.models.resnet18(num_classes=2)
    params = layerwise(model, 3)
    assert trainable_layers(model) == list(range(4, 11))
    frozen = model.layer1[0].conv1.weight.detach().clone()
    trained = model.layer3[0].conv1.weight.detach().clone()
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 0, 1])
    F.cross_entropy(model(x), y).backward()
    opt.step()
    assert torch.equal(frozen, model.layer1[0].conv1.weight)
    assert not torch.equal(trained, model.layer3[0].conv1.weight)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: layerwise(MODEL, 10), r"k must be in \[0, 9\]"),
        (lambda: layerwise(MODEL, -1), "k must be"),
        (lambda: bidirectional(MODEL, 3, 2), "m <= n"),
        (lambda: bidirectional(MODEL, 1, 10), "head is always trained"),
        (lambda: bidirectional(MODEL, 0, 2), "1 <= m"),
    ],
)
def test_bad_ranges_raise(call, match) -> None:
    with pytest.raises(MetaLRConfigError, match=match):
        call()
