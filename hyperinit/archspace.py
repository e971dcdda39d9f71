"""Seeded random architectures to train and evaluate the hypernetwork on (seed section 2).

Every architecture is a :class:`Backbone`: an ``nn.Module`` taking ``(B, in_chans, H, W)`` images
and returning ``(B, feature_dim)`` features for a task head. Families follow the seed's design
space: VGG-like, ResNet (basic / bottleneck blocks), MobileNet (depthwise, inverted residual),
RegNet-like (grouped bottlenecks), DenseNet-like (concatenation), ConvNeXt-like and a small ViT,
each with random depth, width, kernel, stride, stem, norm and activation; plus real timm and
torchvision models built at random widths and depths.

``sample_spec(seed)`` is a pure function of the seed. :data:`HELD_OUT_SEEDS` and
:data:`HELD_OUT_MODELS` are never returned by :func:`training_spec` and are used for evaluation.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hyperinit.errors import ArchSpaceError

__all__ = [
    "FAMILIES",
    "HELD_OUT_MODELS",
    "HELD_OUT_SEEDS",
    "ArchSpaceError",
    "ArchSpec",
    "Backbone",
    "build",
    "held_out_specs",
    "sample_spec",
    "training_spec",
]

FAMILIES: tuple[str, ...] = (
    "vgg",
    "resnet",
    "mobilenet",
    "regnet",
    "densenet",
    "convnext",
    "vit",
    "real",
)
#: Seeds of the generated held-out architectures (never trained on).
HELD_OUT_SEEDS: tuple[int, ...] = tuple(range(900_000, 900_016))
#: Named real models held out of training (their exact configurations are never sampled).
HELD_OUT_MODELS: tuple[str, ...] = (
    "torchvision:resnet18",
    "timm:mobilenetv3_small_100",
    "timm:regnetx_002",
    "timm:convnext_atto",
)
_ACTS = ("relu", "gelu", "silu", "relu6", "hardswish", "leaky_relu")
_NORMS = ("batch", "group", "none")


@dataclass(frozen=True)
class ArchSpec:
    """A buildable architecture: its family and the choices that define it."""

    family: str
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A stable identifier (sha1 of the canonical JSON)."""
        blob = json.dumps({"family": self.family, **self.config}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    def __str__(self) -> str:
        return f"{self.family}({json.dumps(self.config, sort_keys=True)})"


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
def _act(name: str) -> nn.Module:
    return {
        "relu": nn.ReLU,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "relu6": nn.ReLU6,
        "hardswish": nn.Hardswish,
        "leaky_relu": nn.LeakyReLU,
    }[name]()


def _norm(kind: str, c: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(c)
    if kind == "group":
        return nn.GroupNorm(math.gcd(c, 8), c)
    return nn.Identity()


def _cna(cin: int, cout: int, k: int, s: int, norm: str, act: str | None, groups: int = 1):
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=norm == "none"),
        _norm(norm, cout),
    ]
    if act:
        layers.append(_act(act))
    return nn.Sequential(*layers)


class _Residual(nn.Module):
    def __init__(self, body: nn.Module, short: nn.Module | None, act: str | None):
        super().__init__()
        self.body, self.short = body, short or nn.Identity()
        self.act = _act(act) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.short(x))


class _Dense(nn.Module):
    def __init__(self, cin: int, growth: int, k: int, norm: str, act: str):
        super().__init__()
        self.body = nn.Sequential(
            _cna(cin, growth * 2, 1, 1, norm, act), _cna(growth * 2, growth, k, 1, norm, act)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


class _ConvNeXtBlock(nn.Module):
    def __init__(self, c: int, k: int, act: str, ratio: int):
        super().__init__()
        self.dw = nn.Conv2d(c, c, k, 1, k // 2, groups=c)
        self.norm = nn.GroupNorm(1, c)
        self.pw1, self.act, self.pw2 = (
            nn.Conv2d(c, c * ratio, 1),
            _act(act),
            nn.Conv2d(c * ratio, c, 1),
        )
        self.gamma = nn.Parameter(torch.full((c, 1, 1), 1e-2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma * self.pw2(self.act(self.pw1(self.norm(self.dw(x)))))


class _ViT(nn.Module):
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


def _stem(cfg: dict[str, Any], in_chans: int) -> tuple[nn.Module, int]:
    c, norm, act = cfg["stem_width"], cfg["norm"], cfg["act"]
    if cfg["stem"] == "conv3":
        return _cna(in_chans, c, 3, 1, norm, act), c
    if cfg["stem"] == "conv3x2":
        return nn.Sequential(
            _cna(in_chans, c // 2, 3, 2, norm, act), _cna(c // 2, c, 3, 1, norm, act)
        ), c
    if cfg["stem"] == "patch":
        return _cna(in_chans, c, 4, 4, norm, None), c
    return nn.Sequential(_cna(in_chans, c, 5, 2, norm, act), nn.MaxPool2d(3, 2, 1)), c


def _stage_strides(n: int) -> list[int]:
    return [1] + [2] * (n - 1)


def _build_generated(spec: ArchSpec, in_chans: int) -> tuple[nn.Module, int]:
    f, cfg = spec.family, spec.config
    norm, act, k = cfg.get("norm", "batch"), cfg.get("act", "relu"), cfg.get("kernel", 3)
    if f == "vit":
        m = _ViT(in_chans, cfg["dim"], cfg["depth"], cfg["heads"], cfg["patch"], act)
        return m, cfg["dim"]
    stem, c = _stem(cfg, in_chans)
    layers: list[nn.Module] = [stem]
    widths, depths = cfg["widths"], cfg["depths"]
    for w, d, s in zip(widths, depths, _stage_strides(len(widths))):
        for i in range(d):
            stride = s if i == 0 else 1
            if f == "vgg":
                layers.append(_cna(c, w, k, 1, norm, act))
                if stride == 2:
                    layers.append(nn.MaxPool2d(2))
            elif f in ("resnet", "regnet"):
                short = None if (stride == 1 and c == w) else _cna(c, w, 1, stride, norm, None)
                if f == "resnet" and cfg["block"] == "basic":
                    body = nn.Sequential(
                        _cna(c, w, k, stride, norm, act), _cna(w, w, k, 1, norm, None)
                    )
                else:
                    mid = max(8, int(w * cfg.get("bottleneck", 0.25)) // 8 * 8)
                    g = mid // cfg["group_width"] if f == "regnet" else 1
                    body = nn.Sequential(
                        _cna(c, mid, 1, 1, norm, act),
                        _cna(mid, mid, k, stride, norm, act, groups=max(1, g)),
                        _cna(mid, w, 1, 1, norm, None),
                    )
                layers.append(_Residual(body, short, act))
            elif f == "mobilenet":
                hid = c * cfg["expand"]
                body = nn.Sequential(
                    _cna(c, hid, 1, 1, norm, act),
                    _cna(hid, hid, k, stride, norm, act, groups=hid),
                    _cna(hid, w, 1, 1, norm, None),
                )
                if stride == 1 and c == w:
                    layers.append(_Residual(body, None, None))
                else:
                    layers.append(body)
            elif f == "densenet":  # w is the growth rate
                layers.append(_Dense(c, w, k, norm, act))
                c += w
                continue
            elif f == "convnext":
                if stride == 2:
                    layers.append(nn.Sequential(nn.GroupNorm(1, c), nn.Conv2d(c, w, 2, 2)))
                elif c != w:
                    layers.append(nn.Conv2d(c, w, 1))
                layers.append(_ConvNeXtBlock(w, k, act, cfg["ratio"]))
            else:
                raise ArchSpaceError(f"unknown architecture family {f!r}; known: {FAMILIES}")
            c = w
        if f == "densenet":  # transition: 1x1 conv halves the channels, then pooling
            out = max(8, c // 2)
            layers.append(nn.Sequential(_cna(c, out, 1, 1, norm, act), nn.AvgPool2d(2)))
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


# -- sampling ------------------------------------------------------------------------------------
def _common(r: random.Random) -> dict[str, Any]:
    return {
        "act": r.choice(_ACTS),
        "norm": r.choices(_NORMS, weights=(6, 2, 1))[0],
        "kernel": r.choice((3, 3, 5, 7)),
        "stem": r.choice(("conv3", "conv3x2", "patch", "conv5pool")),
        "stem_width": r.choice((8, 16, 24, 32)),
    }


def _stages(r: random.Random, base: tuple[int, ...], max_depth: int) -> dict[str, Any]:
    n = r.randint(2, 4)
    w0 = r.choice(base)
    widths = [int(w0 * 2**i) for i in range(n)]
    return {"widths": widths, "depths": [r.randint(1, max_depth) for _ in range(n)]}


def _sample_real(r: random.Random) -> dict[str, Any]:
    kind = r.choice(
        ("tv_resnet", "tv_mobilenet", "timm_resnet", "timm_convnext", "timm_vit", "timm_mnv3")
    )
    if kind == "tv_resnet":
        block = r.choice(("basic", "bottleneck"))
        layers = [r.randint(1, 2) for _ in range(4)]
        width = r.choice((16, 32, 64))
        if block == "basic" and layers == [2, 2, 2, 2]:
            layers[-1] = 1  # ResNet-18 itself is held out
        return {"model": "torchvision:resnet", "block": block, "layers": layers, "width": width}
    if kind == "tv_mobilenet":
        return {
            "model": "torchvision:mobilenet_v2",
            "width_mult": r.choice((0.25, 0.35, 0.5, 0.75)),
        }
    if kind == "timm_resnet":
        return {"model": "timm:resnet10t", "layers": [r.randint(1, 2) for _ in range(4)]}
    if kind == "timm_convnext":
        d0 = r.choice((16, 24, 32))
        depths = [r.randint(1, 2) for _ in range(4)]
        return {
            "model": "timm:convnext_atto",
            "depths": depths,
            "dims": [d0, 2 * d0, 4 * d0, 8 * d0],
        }
    if kind == "timm_vit":
        return {
            "model": "timm:vit_tiny_patch16_224",
            "img_size": 32,
            "dynamic_img_size": True,
            "patch_size": r.choice((4, 8)),
            "depth": r.randint(1, 4),
            "embed_dim": r.choice((48, 96)),
            "num_heads": r.choice((2, 3)),
        }
    width = r.choice(("050", "075"))
    return (
        {"model": f"timm:mobilenetv3_small_{width}", "se_layer": None}
        if r.random() < 0.3
        else {"model": f"timm:mobilenetv3_small_{width}"}
    )


def sample_spec(seed: int) -> ArchSpec:
    """The architecture drawn by ``seed`` (pure function of the seed)."""
    r = random.Random(seed)
    family = r.choice(FAMILIES)
    cfg: dict[str, Any] = _common(r)
    if family == "vgg":
        cfg |= _stages(r, (16, 24, 32), 2)
    elif family == "resnet":
        cfg |= _stages(r, (16, 24, 32), 2) | {"block": r.choice(("basic", "bottleneck"))}
        if cfg["block"] == "bottleneck":
            cfg["bottleneck"] = 0.25
    elif family == "mobilenet":
        cfg |= _stages(r, (8, 16, 24), 3) | {"expand": r.choice((2, 4, 6))}
    elif family == "regnet":
        cfg |= _stages(r, (24, 32, 48), 2) | {
            "group_width": r.choice((8, 16)),
            "bottleneck": r.choice((0.5, 1.0)),
        }
    elif family == "densenet":
        cfg |= {
            "widths": [r.choice((8, 12, 16))] * r.randint(2, 3),
            "depths": [r.randint(2, 4)] * 3,
        }
        cfg["depths"] = cfg["depths"][: len(cfg["widths"])]
    elif family == "convnext":
        cfg |= _stages(r, (16, 24, 32), 2) | {
            "ratio": r.choice((2, 4)),
            "kernel": r.choice((3, 5, 7)),
        }
        cfg["stem"] = "patch"
        cfg["norm"] = "group"
    elif family == "vit":
        heads = r.choice((2, 4))
        cfg = {
            "dim": heads * r.choice((8, 16, 24)),
            "depth": r.randint(1, 4),
            "heads": heads,
            "patch": r.choice((4, 8)),
            "act": r.choice(("gelu", "relu")),
        }
    else:
        cfg = _sample_real(r)
    return ArchSpec(family, cfg)


_HELD_OUT_KEYS = frozenset(sample_spec(s).key for s in HELD_OUT_SEEDS)


def training_spec(seed: int) -> ArchSpec:
    """Like :func:`sample_spec` but never a held-out architecture (resamples on collision)."""
    if seed in HELD_OUT_SEEDS:
        seed += 10_000_000
    spec = sample_spec(seed)
    while spec.key in _HELD_OUT_KEYS:
        seed += 10_000_000
        spec = sample_spec(seed)
    return spec


def held_out_specs(include_models: bool = True) -> list[ArchSpec]:
    """The evaluation architectures: generated held-out seeds, then the named real models."""
    specs = [sample_spec(s) for s in HELD_OUT_SEEDS]
    if include_models:
        specs += [ArchSpec("real", {"model": m}) for m in HELD_OUT_MODELS]
    return specs
