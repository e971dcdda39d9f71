"""MetaLR: layer-wise learning rates learned online from validation batches, and the fine-tuning
baselines it is compared with (:mod:`hyperinit.metalr.schemes`)."""

from __future__ import annotations

from hyperinit.metalr.grouping import LayerGroup, layer_groups
from hyperinit.metalr.optimizer import MetaLROptimizer
from hyperinit.metalr.plot import plot_lr_by_depth, plot_lr_over_time
from hyperinit.metalr.validation import ValidationLoss

__all__ = [
    "LayerGroup",
    "MetaLROptimizer",
    "ValidationLoss",
    "layer_groups",
    "plot_lr_by_depth",
    "plot_lr_over_time",
]
