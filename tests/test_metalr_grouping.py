"""Layer grouping on real torchvision and timm models."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch import nn

from hyperinit.errors import ParamGroupingError
from hyperinit.metalr import MetaLROptimizer, layer_groups

RESNET18_GROUPS = ["conv1"] + [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)] + ["fc"]


def covers_once(model: nn.Module, groups) -> bool:
    ids = [id(p) for g in groups for p in g.params]
    return len(ids) == len(set(ids)) == len(list(model.parameters()))


@pytest.mark.parametrize(
    "make",
    [lambda: torchvision.models.resnet18(), lambda: timm.create_model("resnet18")],
    ids=["torchvision", "timm"],
)
def test_resnet18_gives_stem_eight_blocks_head(make) -> None:
    model = make()
    groups = layer_groups(model)
    assert [g.name for g in groups] == RESNET18_GROUPS
    assert covers_once(model, groups)
    assert groups[0].param_names == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert groups[-1].param_names == ["fc.weight", "fc.bias"]
    opt = MetaLROptimizer(torch.optim.SGD(model.parameters(), lr=1e-3), model)
    assert len(opt.group_names) == 10
    assert list(opt.lrs.values()) == pytest.approx([1e-3] * 9 + [1e-2])


@pytest.mark.parametrize(
    ("make", "first", "last", "n"),
    [
        (lambda: torchvision.models.resnet50(), "conv1", "fc", 18),
        (lambda: torchvision.models.vgg11_bn(), "features.0", "classifier.6", 11),
        (lambda: torchvision.models.mobilenet_v3_small(), "features.0", "classifier.3", 15),
        (lambda: timm.create_model("efficientnet_b0"), "conv_stem", "classifier", 19),
        (lambda: timm.create_model("vit_tiny_patch16_224"), "patch_embed.proj", "head", 15),
    ],
    ids=["tv-resnet50", "tv-vgg11bn", "tv-mobilenetv3", "timm-effnetb0", "timm-vit"],
)
def test_auto_groups_other_models_in_depth_order(make, first, last, n) -> None:
    model = make()
    groups = layer_groups(model)
    assert (groups[0].name, groups[-1].name, len(groups)) == (first, last, n)
    assert covers_once(model, groups)


def test_vit_tokens_join_the_stem() -> None:
    groups = layer_groups(timm.create_model("vit_tiny_patch16_224"))
    assert {"cls_token", "pos_embed"} <= set(groups[0].param_names)


def test_module_and_mapping_groups() -> None:
    model = torchvision.models.resnet18()
    by_module = layer_groups(model, "module")
    n_modules = sum(1 for m in model.modules() if list(m.parameters(recurse=False)))
    assert len(by_module) == n_modules
    assert covers_once(model, by_module)
    mapping = {"stem": r"(conv1|bn1)\.", "body": r"layer", "head": model.fc}
    groups = layer_groups(model, mapping)
    assert [g.name for g in groups] == ["stem", "body", "head"]
    assert covers_once(model, groups)
    with pytest.raises(ParamGroupingError, match="no parameters"):
        layer_groups(model, {"none": r"nothing"})
    with pytest.raises(ParamGroupingError, match=r"nn\.Parameter"):
        layer_groups(model, {"bad": [torch.zeros(1)]})


def test_frozen_parameters_outside_the_optimizer_are_left_out() -> None:
    model = torchvision.models.resnet18()
    for p in model.layer1.parameters():
        p.requires_grad_(False)
    opt = MetaLROptimizer(
        torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1), model
    )
    assert "layer1.0" not in opt.group_names
    assert len(opt.group_names) == 8
