"""Building an :class:`~hyperinit.archspace.spec.ArchSpec` as a
:class:`~hyperinit.archspace.blocks.Backbone`: generated families from their blocks, real timm and
torchvision models at their sampled widths and depths, and the named held-out models."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hyperinit.archspace.blocks import Backbone, ConvNeXtBlock, Dense, Residual, ViT, cna
from hyperinit.archspace.spec import FAMILIES, HELD_OUT_MODELS, ArchSpec
from hyperinit.errors import ArchSpaceError

__all__ = ["build"]


def _stem(cfg: dict[str, Any], in_chans: int) -> tuple[nn.Module, int]:
    c, norm, act = cfg["stem_width"], cfg["norm"], cfg["act"]
    if cfg["stem"] == "conv3":
        return cna(in_chans, c, 3, 1, norm, act), c
    if cfg["stem"] == "conv3x2":
        return nn.Sequential(
            cna(in_chans, c // 2, 3, 2, norm, act), cna(c // 2, c, 3, 1, norm, act)
        ), c
    if cfg["stem"] == "patch":
        return cna(in_chans, c, 4, 4, norm, None), c
    return nn.Sequential(cna(in_chans, c, 5, 2, norm, act), nn.MaxPool2d(3, 2, 1)), c


def _stage_strides(n: int) -> list[int]:
    return [1] + [2] * (n - 1)


def _build_generated(spec: ArchSpec, in_chans: int) -> tuple[nn.Module, int]:
    f, cfg = spec.family, spec.config
    norm, act, k = cfg.get("norm", "batch"), cfg.get("act", "relu"), cfg.get("kernel", 3)
    if f == "vit":
        m = ViT(in_chans, cfg["dim"], cfg["depth"], cfg["heads"], cfg["patch"], act)
        return m, cfg["dim"]
    stem, c = _stem(cfg, in_chans)
    layers: list[nn.Module] = [stem]
    widths, depths = cfg["widths"], cfg["depths"]
    for w, d, s in zip(widths, depths, _stage_strides(len(widths))):
        for i in range(d):
            stride = s if i == 0 else 1
            if f == "vgg":
                layers.append(cna(c, w, k, 1, norm, act))
                if stride == 2:
                    layers.append(nn.MaxPool2d(2))
            elif f in ("resnet", "regnet"):
                short = None if (stride == 1 and c == w) else cna(c, w, 1, stride, norm, None)
                if f == "resnet" and cfg["block"] == "basic":
                    body = nn.Sequential(
                        cna(c, w, k, stride, norm, act), cna(w, w, k, 1, norm, None)
                    )
                else:
                    mid = max(8, int(w * cfg.get("bottleneck", 0.25)) // 8 * 8)
                    g = mid // cfg["group_width"] if f == "regnet" else 1
                    body = nn.Sequential(
                        cna(c, mid, 1, 1, norm, act),
                        cna(mid, mid, k, stride, norm, act, groups=max(1, g)),
                        cna(mid, w, 1, 1, norm, None),
                    )
                layers.append(Residual(body, short, act))
            elif f == "mobilenet":
                hid = c * cfg["expand"]
                body = nn.Sequential(
                    cna(c, hid, 1, 1, norm, act),
                    cna(hid, hid, k, stride, norm, act, groups=hid),
                    cna(hid, w, 1, 1, norm, None),
                )
                if stride == 1 and c == w:
                    layers.append(Residual(body, None, None))
                else:
                    layers.append(body)
            elif f == "densenet":  # w is the growth rate
                layers.append(Dense(c, w, k, norm, act))
                c += w
                continue
            elif f == "convnext":
                if stride == 2:
                    layers.append(nn.Sequential(nn.GroupNorm(1, c), nn.Conv2d(c, w, 2, 2)))
                elif c != w:
                    layers.append(nn.Conv2d(c, w, 1))
                layers.append(ConvNeXtBlock(w, k, act, cfg["ratio"]))
            else:
                raise ArchSpaceError(f"unknown architecture family {f!r}; known: {FAMILIES}")
            c = w
        if f == "densenet":  # transition: 1x1 conv halves the channels, then pooling
            out = max(8, c // 2)
            layers.append(nn.Sequential(cna(c, out, 1, 1, norm, act), nn.AvgPool2d(2)))
            c = out
    if f == "convnext":
        layers.append(nn.GroupNorm(1, c))
    return nn.Sequential(*layers), c


def _build_real(spec: ArchSpec, in_chans: int) -> tuple[nn.Module, int, bool]:
    """A real timm / torchvision model without its classifier: (module, channels, pooled)."""
    cfg = spec.config
    name = cfg["model"]
    if name == "torchvision:resnet":
        from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

        block = BasicBlock if cfg["block"] == "basic" else Bottleneck
        width = cfg["width"] if block is Bottleneck else 64  # BasicBlock supports only 64
        m = ResNet(block, cfg["layers"], width_per_group=width)
        m.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
        m.fc = nn.Identity()
        return m, _out_channels(m, in_chans), True
    if name == "torchvision:mobilenet_v2":
        from torchvision.models import mobilenet_v2

        m = mobilenet_v2(weights=None, width_mult=cfg["width_mult"])
        first = m.features[0][0]
        m.features[0][0] = nn.Conv2d(in_chans, first.out_channels, 3, 2, 1, bias=False)
        m.classifier = nn.Identity()
        return m, _out_channels(m, in_chans), True
    import timm

    kwargs = {k: v for k, v in cfg.items() if k != "model"}
    for key in ("depths", "dims", "layers", "channels"):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    m = timm.create_model(
        name.split(":", 1)[1], pretrained=False, in_chans=in_chans, num_classes=0, **kwargs
    )
    return m, _out_channels(m, in_chans), True


def _out_channels(m: nn.Module, in_chans: int) -> int:
    """Feature width of a pooled model, by one small forward pass."""
    with torch.no_grad():
        was = m.training
        m.eval()
        out = m(torch.zeros(1, in_chans, 32, 32))
        m.train(was)
    return int(out.shape[1])


def build(spec: ArchSpec | str, in_chans: int = 1, feature_dim: int = 128) -> Backbone:
    """Build ``spec`` (an :class:`ArchSpec` or a held-out model name) as a :class:`Backbone`."""
    if isinstance(spec, str):
        spec = ArchSpec("real", {"model": spec})
    try:
        if spec.family == "real":
            if spec.config["model"] in HELD_OUT_MODELS and len(spec.config) == 1:
                from hyperinit.models import create_model

                m = create_model(spec.config["model"], in_chans=in_chans, num_classes=0)
                if spec.config["model"].startswith("torchvision:"):
                    m.fc = nn.Identity()
                return Backbone(m, _out_channels(m, in_chans), feature_dim, pool=False)
            m, c, pooled = _build_real(spec, in_chans)
            return Backbone(m, c, feature_dim, pool=not pooled)
        feats, c = _build_generated(spec, in_chans)
        return Backbone(feats, c, feature_dim, pool=spec.family != "vit")
    except (KeyError, TypeError, RuntimeError) as e:
        raise ArchSpaceError(f"cannot build {spec}: {e}") from e
