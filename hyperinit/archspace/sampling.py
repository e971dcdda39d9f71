"""Sampling the architecture space: :func:`sample_spec` is a pure function of its seed;
:func:`training_spec` never returns a held-out architecture, :func:`held_out_specs` lists them."""

from __future__ import annotations

import random
from typing import Any

from hyperinit.archspace.spec import FAMILIES, HELD_OUT_MODELS, HELD_OUT_SEEDS, ArchSpec

__all__ = ["held_out_specs", "sample_spec", "training_spec"]

_ACTS = ("relu", "gelu", "silu", "relu6", "hardswish", "leaky_relu")
_NORMS = ("batch", "group", "none")


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
