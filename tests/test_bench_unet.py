"""U-Net over timm and torchvision encoders."""

from __future__ import annotations

import pytest
import torch

from hyperinit.bench.unet import UNet
from hyperinit.errors import BenchConfigError


@pytest.mark.parametrize(
    "encoder", ["timm:resnet18", "torchvision:resnet18", "torchvision:mobilenet_v3_small"]
)
@pytest.mark.parametrize("size", [64, 72])
def test_unet_output_has_input_size(encoder, size):
    net = UNet(encoder, in_chans=1, num_classes=2)
    y = net(torch.randn(2, 1, size, size))
    assert y.shape == (2, 2, size, size)
    assert torch.isfinite(y).all()


def test_unet_encoder_is_trainable_and_separate():
    net = UNet("torchvision:resnet18", in_chans=3)
    enc = {id(p) for p in net.encoder.parameters()}
    dec = {id(p) for p in net.decoder.parameters()} | {id(p) for p in net.head.parameters()}
    assert enc and dec and not enc & dec
    net(torch.randn(1, 3, 64, 64)).mean().backward()
    assert net.encoder.stages[0][0].weight.grad is not None


def test_unet_encoder_only_hyperinit_keeps_decoder():
    from hyperinit import initialize

    net = UNet("timm:resnet18", in_chans=3)
    before_dec = net.decoder[0].block[0].weight.clone()
    before_enc = net.encoder.conv1.weight.clone()
    initialize(net, "fundus", exclude=["decoder", "head"], seed=0)
    assert torch.equal(net.decoder[0].block[0].weight, before_dec)
    assert not torch.equal(net.encoder.conv1.weight, before_enc)


def test_unet_unknown_source():
    with pytest.raises(BenchConfigError):
        UNet("keras:resnet18")
