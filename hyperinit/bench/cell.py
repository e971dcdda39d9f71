"""A benchmark cell: what one run trains and measures, its key and where its result lives."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from hyperinit.bench.inits import InitFn, hypernet_version, init_label
from hyperinit.bench.tasks import get_task
from hyperinit.errors import BenchConfigError

__all__ = ["SCHEMES", "Cell", "ModelFactory", "cell_path"]

#: ``factory(in_chans, num_classes) -> nn.Module`` (or a factory taking no arguments).
ModelFactory = Callable[..., nn.Module]
SCHEMES = ("all_layers", "last_layer_only", "layerwise", "bidirectional", "metalr")


@dataclass
class Cell:
    """What one benchmark run trains and measures.

    Attributes:
        task: a key of :data:`hyperinit.bench.TASKS`.
        arch: ``timm:NAME`` / ``torchvision:NAME``, or a model factory
            ``f(in_chans, num_classes) -> nn.Module`` (give ``arch_name`` then). For the
            segmentation task the name is the U-Net's encoder.
        init: see :mod:`hyperinit.bench.inits` (``default``, ``hyperinit:xray``,
            ``hyperinit:own``, ``hyperinit:auto``, ``c2l:<path>``) or ``f(model) -> None``.
        fraction: share of the training labels used (stratified, ``data_seed``).
        seed: seeds the model's default init, the hypernetwork's noise and the data order.
        epochs, batch_size, lr: SGD (momentum 0.9, weight decay 1e-4), cosine schedule.
        size: input px (the task's CPU default if None).
        scheme: fine-tuning scheme, one of :data:`SCHEMES`.
        cam_epochs: epochs after which Grad-CAMs of ``cam_images`` test images are stored.
        max_train, max_eval: cap the images per split (tiny runs, tests).
        min_steps_per_epoch: small training sets are repeated to at least this many batches.
    """

    task: str
    arch: str | ModelFactory = "timm:resnet18"
    init: str | InitFn = "default"
    fraction: float = 0.1
    seed: int = 0
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.01
    size: int | None = None
    scheme: str = "all_layers"
    cam_epochs: tuple[int, ...] = ()
    cam_images: int = 4
    max_train: int | None = None
    max_eval: int | None = None
    min_steps_per_epoch: int = 8
    data_seed: int = 0
    arch_name: str | None = None
    init_name: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        self.cam_epochs = tuple(self.cam_epochs)
        self.tags = tuple(self.tags)
        if self.scheme not in SCHEMES:
            raise BenchConfigError(f"unknown scheme {self.scheme!r}; choose from {SCHEMES}.")
        if not 0 < self.fraction <= 1:
            raise BenchConfigError(f"fraction must be in (0, 1], got {self.fraction}.")
        get_task(self.task)

    @property
    def arch_label(self) -> str:
        if self.arch_name:
            return self.arch_name
        if callable(self.arch):
            name = getattr(self.arch, "__name__", "")
            if not name or name == "<lambda>":
                raise BenchConfigError("give a model factory a name (arch_name=...)")
            return name
        return self.arch

    @property
    def init_label(self) -> str:
        return init_label(self.init, self.init_name)

    @property
    def input_size(self) -> int:
        return self.size or get_task(self.task).size

    def config(self) -> dict:
        """The cell as JSON-able settings (callables by name)."""
        d = dataclasses.asdict(self)
        d["arch"], d["init"], d["size"] = self.arch_label, self.init_label, self.input_size
        if isinstance(self.init, str) and self.init.startswith("c2l:"):
            d["init_path"] = self.init.partition(":")[2]
        d.pop("arch_name"), d.pop("init_name")
        version = hypernet_version(self.init, get_task(self.task).modality)
        if version:  # a trained or user checkpoint: its own cells
            d["hypernet"] = version
        return d

    def key(self) -> str:
        """File-name key: readable fields plus a hash of the whole configuration."""
        cfg = self.config()
        digest = hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:8]
        parts = [self.task, cfg["arch"], cfg["init"], f"f{self.fraction:g}", f"s{self.seed}"]
        if self.scheme != "all_layers":
            parts.append(self.scheme)
        safe = "__".join(p.replace("/", "-").replace(":", "-") for p in parts)
        return f"{safe}__{digest}"


def cell_path(cell: Cell, results_dir: str | Path) -> Path:
    """Where a finished cell's JSON lives."""
    return Path(results_dir) / "cells" / f"{cell.key()}.json"
