"""Comparing-to-Learn (C2L) self-supervised pretraining (Zhou et al., MICCAI 2020)."""

from __future__ import annotations

from hyperinit.c2l.loss import (
    C2LLossOutput,
    batch_mixup,
    c2l_loss,
    info_nce,
    info_nce_logits,
    mix,
    sample_lambda,
)
from hyperinit.c2l.queue import FeatureQueue

__all__ = [
    "C2LLossOutput",
    "FeatureQueue",
    "batch_mixup",
    "c2l_loss",
    "info_nce",
    "info_nce_logits",
    "mix",
    "sample_lambda",
]
