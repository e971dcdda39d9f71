"""The layers generated architectures are made of: conv-norm-activation, residual, dense,
ConvNeXt and ViT blocks, and :class:`Backbone`, the pooled feature extractor every architecture
is wrapped in."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "Backbone",
    "ConvNeXtBlock",
    "Dense",
    "Residual",
    "ViT",
    "activation",
    "cna",
    "norm_layer",
]


class Backbone(nn.Module):
    """``features`` (any image model) followed by global pooling and a linear neck."""

    def __init__(self, features: nn.Module, channels: int, feature_dim: int, pool: bool = True):
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1) if pool else nn.Identity()
        self.neck = nn.Linear(channels, feature_dim)
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(torch.flatten(self.pool(self.features(x)), 1))


# -- building blocks ---------------------------------------------------------------------------
def activation(name: str) -> nn.Module:
    return {
        "relu": nn.ReLU,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "relu6": nn.ReLU6,
        "hardswish": nn.Hardswish,
        "leaky_relu": nn.LeakyReLU,
    }[name]()


def norm_layer(kind: str, c: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(c)
    if kind == "group":
        return nn.GroupNorm(math.gcd(c, 8), c)
    return nn.Identity()


def cna(
    cin: int, cout: int, k: int, s: int, norm: str, act: str | None, groups: int = 1
) -> nn.Sequential:
    """Conv (``k`` x ``k``, stride ``s``), norm and, unless ``act`` is None, activation."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=norm == "none"),
        norm_layer(norm, cout),
    ]
    if act:
        layers.append(activation(act))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    def __init__(self, body: nn.Module, short: nn.Module | None, act: str | None):
        super().__init__()
        self.body, self.short = body, short or nn.Identity()
        self.act = activation(act) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.short(x))


class Dense(nn.Module):
    def __init__(self, cin: int, growth: int, k: int, norm: str, act: str):
        super().__init__()
        self.body = nn.Sequential(
            cna(cin, growth * 2, 1, 1, norm, act), cna(growth * 2, growth, k, 1, norm, act)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


class ConvNeXtBlock(nn.Module):
    def __init__(self, c: int, k: int, act: str, ratio: int):
        super().__init__()
        self.dw = nn.Conv2d(c, c, k, 1, k // 2, groups=c)
        self.norm = nn.GroupNorm(1, c)
        self.pw1, self.act, self.pw2 = (
            nn.Conv2d(c, c * ratio, 1),
            activation(act),
            nn.Conv2d(c * ratio, c, 1),
        )
        self.gamma = nn.Parameter(torch.full((c, 1, 1), 1e-2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma * self.pw2(self.act(self.pw1(self.norm(self.dw(x)))))


class ViT(nn.Module):
    def __init__(self, in_chans: int, dim: int, depth: int, heads: int, patch: int, act: str):
        super().__init__()
        self.patch = nn.Conv2d(in_chans, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        layer = nn.TransformerEncoderLayer(
            dim,
            heads,
            dim * 2,
            dropout=0.0,
            activation="gelu" if act == "gelu" else "relu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], 1)
        return self.norm(self.blocks(t))[:, 0]
