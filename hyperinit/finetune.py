"""Deprecated: the fine-tuning baselines live in :mod:`hyperinit.metalr.schemes`."""

from __future__ import annotations

import warnings

from hyperinit.metalr.schemes import (
    all_layers,
    bidirectional,
    freeze_layers,
    last_layer_only,
    layerwise,
)

__all__ = ["all_layers", "bidirectional", "freeze_layers", "last_layer_only", "layerwise"]

warnings.warn(
    "hyperinit.finetune moved to hyperinit.metalr.schemes; import the baselines from there "
    "(this module will be removed in 0.2)",
    DeprecationWarning,
    stacklevel=2,
)
