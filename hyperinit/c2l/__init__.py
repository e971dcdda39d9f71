"""Comparing-to-Learn (C2L) self-supervised pretraining (Zhou et al., MICCAI 2020)."""

from __future__ import annotations

from hyperinit.c2l.augment import default_augment
from hyperinit.c2l.backbone import strip_head
from hyperinit.c2l.export import C2LBackbone, load_backbone
from hyperinit.c2l.loss import batch_mixup, c2l_loss, info_nce
from hyperinit.c2l.pretrainer import C2LPretrainer
from hyperinit.c2l.queue import suggested_queue_size

__all__ = [
    "C2LBackbone",
    "C2LPretrainer",
    "batch_mixup",
    "c2l_loss",
    "default_augment",
    "info_nce",
    "load_backbone",
    "strip_head",
    "suggested_queue_size",
]
