"""The fine-tuning baselines' former import path, kept working (:mod:`hyperinit.metalr.schemes`)."""

from __future__ import annotations

from hyperinit.metalr.schemes import (
    all_layers,
    bidirectional,
    freeze_layers,
    last_layer_only,
    layerwise,
)

__all__ = ["all_layers", "bidirectional", "freeze_layers", "last_layer_only", "layerwise"]
