"""compare_inits: layer-by-layer differences between two initialisations, on real X-rays."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

import hyperinit
from hyperinit.init_diagnostics import compare_inits, duplicate_share, effective_rank, layer_stats


def _loss(labels):
    return lambda out: F.cross_entropy(out, labels)


@pytest.fixture(scope="module")
def batch(xray_images):
    return xray_images(1, 64, 8), torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])


def test_zero_init_last_blocks_the_gradient_into_the_residual_branch(batch):
    x, y = batch
    zero = timm.create_model("resnet18", in_chans=1, num_classes=2)
    ones = timm.create_model("resnet18", in_chans=1, num_classes=2, zero_init_last=False)
    stats_zero, stats_ones = layer_stats(zero, x, _loss(y)), layer_stats(ones, x, _loss(y))
    assert stats_zero["layer1.0.conv1"].relative_grad == 0.0  # bn2.weight = 0 cuts it off
    assert stats_ones["layer1.0.conv1"].relative_grad > 0.0
    assert stats_zero["fc"].relative_grad > 0.0


def test_layers_followed_by_a_norm_are_found(batch):
    x, y = batch
    a = timm.create_model("mobilenetv3_small_100", in_chans=1, num_classes=2)
    b = timm.create_model("mobilenetv3_small_100", in_chans=1, num_classes=2)
    hyperinit.initialize(b, modality="xray", seed=0)
    layers, norms = compare_inits(a, b, x, _loss(y))
    by_name = {layer.name: layer for layer in layers}
    assert by_name["conv_stem"].norm_after
    assert by_name["blocks.1.0.conv_pw"].norm_after
    assert not by_name["blocks.0.0.se.conv_reduce"].norm_after  # squeeze-excitation
    assert not by_name["conv_head"].norm_after
    assert not by_name["classifier"].norm_after
    assert [layer.depth for layer in layers] == sorted(layer.depth for layer in layers)
    assert norms and all(n.weight_mean[0] == pytest.approx(1.0) for n in norms)


def test_measuring_leaves_the_model_as_it_was(batch):
    x, y = batch
    model = timm.create_model("resnet18", in_chans=1, num_classes=2).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layer_stats(model, x, _loss(y))
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_effective_rank_and_duplicate_filters_by_hand():
    assert effective_rank(torch.ones(8, 4)) == pytest.approx(1.0)
    assert effective_rank(torch.eye(6)) == pytest.approx(6.0)
    w = torch.eye(4)
    w = torch.cat([w, -w[:1]])  # row 4 is minus row 0: one duplicated pair of 5 * 4 / 2
    assert duplicate_share(w) == pytest.approx(2 / 20)


def test_different_architectures_are_refused(batch):
    x, y = batch
    a = timm.create_model("resnet18", in_chans=1, num_classes=2)
    b = timm.create_model("resnet34", in_chans=1, num_classes=2)
    with pytest.raises(ValueError, match="same architecture"):
        compare_inits(a, b, x, _loss(y))
