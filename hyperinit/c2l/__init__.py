"""Comparing-to-Learn (C2L) self-supervised pretraining (Zhou et al., MICCAI 2020)."""

from __future__ import annotations

from hyperinit.c2l.augment import Cutout, TwoViews, default_augment, default_normalization
from hyperinit.c2l.backbone import strip_head
from hyperinit.c2l.checkpointing import C2LHistory
from hyperinit.c2l.export import C2LBackbone, load_backbone
from hyperinit.c2l.loss import (
    C2LLossOutput,
    batch_mixup,
    c2l_loss,
    info_nce,
    info_nce_logits,
    mix,
    sample_lambda,
)
from hyperinit.c2l.pretrainer import C2LPretrainer
from hyperinit.c2l.queue import SEED_QUEUE_SHARE, FeatureQueue, suggested_queue_size

__all__ = [
    "SEED_QUEUE_SHARE",
    "C2LBackbone",
    "C2LHistory",
    "C2LLossOutput",
    "C2LPretrainer",
    "Cutout",
    "FeatureQueue",
    "TwoViews",
    "batch_mixup",
    "c2l_loss",
    "default_augment",
    "default_normalization",
    "info_nce",
    "info_nce_logits",
    "load_backbone",
    "mix",
    "sample_lambda",
    "strip_head",
    "suggested_queue_size",
]
