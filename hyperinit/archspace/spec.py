"""The architecture space's names: its families, the held-out evaluation set and
:class:`ArchSpec`, a buildable architecture (family plus the choices that define it)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FAMILIES", "HELD_OUT_MODELS", "HELD_OUT_SEEDS", "ArchSpec"]

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
