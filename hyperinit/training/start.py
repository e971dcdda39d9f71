"""The hypernetwork a training run starts from: a checkpoint or the reference, with the overrides
of its :class:`~hyperinit.training.config.TrainConfig` (scale head, structured share and cap)."""

from __future__ import annotations

import dataclasses
import math

import torch

from hyperinit.errors import TrainingError
from hyperinit.hypernet.model import HyperInitializer
from hyperinit.modalities import embedded_dir
from hyperinit.training.config import TrainConfig

__all__ = ["starting_hypernet"]


def starting_hypernet(config: TrainConfig) -> HyperInitializer:
    """``config.init`` (or the shipped reference checkpoint: the reference initialisation with
    the shipped prediction settings) with the config's overrides applied."""
    if config.init:
        hypernet = HyperInitializer.from_pretrained(config.init)
    else:
        hypernet = HyperInitializer.from_pretrained(str(embedded_dir("reference")))
    if config.scale_range is not None:
        hypernet = _with_scale_range(hypernet, config.scale_range, config.init)
    if config.structured_fraction is not None:
        _set_structured_fraction(hypernet, config.structured_fraction)
    if config.max_structured_share is not None:
        cfg = dataclasses.replace(hypernet.config, max_structured_share=config.max_structured_share)
        if problem := cfg.problem():
            raise TrainingError(problem)
        hypernet.config = cfg
    return hypernet


def _with_scale_range(
    old: HyperInitializer, scale_range: float, init: str | None
) -> HyperInitializer:
    """``old`` with a learned per-weight scale (kept if it has one already)."""
    cfg = dataclasses.replace(old.config, scale_range=scale_range)
    if problem := cfg.problem():
        raise TrainingError(problem)
    new = HyperInitializer(cfg)
    missing, unexpected = new.load_state_dict(old.state_dict(), strict=False)
    if unexpected or any(not k.startswith("log_scale.") for k in missing):
        raise TrainingError(f"cannot add a scale head to {init}: {missing}")
    return new


def _set_structured_fraction(hypernet: HyperInitializer, fraction: float) -> None:
    """Start ``hypernet`` with ``fraction`` of each weight's variance in the structured part."""
    if not 0 < fraction < 1:
        raise TrainingError(f"structured_fraction must be in (0, 1), got {fraction}")
    phi = math.acos(math.sqrt(fraction)) / (math.pi / 2)
    with torch.no_grad():
        hypernet.mix.weight.zero_()
        hypernet.mix.bias.fill_(math.log(phi / (1 - phi)))
    hypernet.config.structured_fraction = fraction
