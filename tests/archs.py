"""Random architectures for property tests: convolutions of any kernel, stride and grouping,
norms, activations, residual additions, concatenations, reused layers and Python control flow."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st
from torch import nn


@dataclass
class BlockSpec:
    kind: str  # conv | residual | concat | depthwise | attention
    width: int
    kernel: int
    stride: int
    norm: str
    act: str
    repeat: int


ACTS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "hardswish": nn.Hardswish,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}


def _norm(kind: str, c: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(c)
    if kind == "gn":
        return nn.GroupNorm(1, c)
    if kind == "in":
        return nn.InstanceNorm2d(c, affine=True)
    return nn.Identity()


class Block(nn.Module):
    def __init__(self, spec: BlockSpec, c_in: int):
        super().__init__()
        self.spec = spec
        c = spec.width
        k, s = spec.kernel, spec.stride
        if spec.kind == "depthwise":
            c = c_in
            self.conv = nn.Conv2d(c_in, c_in, k, s, k // 2, groups=c_in, bias=False)
        else:
            self.conv = nn.Conv2d(c_in, c, k, s, k // 2, bias=spec.norm == "none")
        self.norm = _norm(spec.norm, c)
        self.act = ACTS[spec.act]()
        if spec.kind in ("residual", "concat"):
            self.branch = nn.Conv2d(c, c, 3, 1, 1)
        if spec.kind == "attention":
            self.attn = nn.MultiheadAttention(c, 1, batch_first=True)
        self.out_channels = 2 * c if spec.kind == "concat" else c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm(self.conv(x)))
        if self.spec.kind == "residual":
            for _ in range(self.spec.repeat):  # Python control flow, reused layer
                x = x + self.branch(x)
        elif self.spec.kind == "concat":
            x = torch.cat([x, self.branch(x)], dim=1)
        if self.spec.kind == "attention":
            b, c, h, w = x.shape
            t = x.flatten(2).transpose(1, 2)
            t = t + self.attn(t, t, t, need_weights=False)[0]
            x = t.transpose(1, 2).reshape(b, c, h, w)
        return x


class RandomNet(nn.Module):
    def __init__(self, specs: list[BlockSpec], in_chans: int = 3, num_classes: int = 3):
        super().__init__()
        blocks = []
        c = in_chans
        strides = 0
        for spec in specs:
            if spec.stride > 1:  # at most 3 downsamplings: a 16 px input keeps 2 x 2 pixels
                strides += 1
                if strides > 3:
                    spec = BlockSpec(**{**spec.__dict__, "stride": 1})
            blocks.append(Block(spec, c))
            c = blocks[-1].out_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(x)
        if x.shape[-1] > 1:
            x = x.mean(dim=(2, 3))
        else:
            x = x.flatten(1)
        return self.head(x)


block_specs = st.builds(
    BlockSpec,
    kind=st.sampled_from(["conv", "residual", "concat", "depthwise", "attention"]),
    width=st.sampled_from([4, 8, 12, 16]),
    kernel=st.sampled_from([1, 3, 5, 7]),
    stride=st.sampled_from([1, 1, 2]),
    norm=st.sampled_from(["bn", "gn", "in", "none"]),
    act=st.sampled_from(sorted(ACTS)),
    repeat=st.integers(0, 2),
)
architectures = st.lists(block_specs, min_size=1, max_size=6)
