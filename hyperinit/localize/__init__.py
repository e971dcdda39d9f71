"""Weakly supervised localisation: attention mining with knowledge preservation and multi-scale
aggregation (Cai et al., MICCAI 2018).

>>> from hyperinit import AttentionMiner
>>> from hyperinit.localize import load_localization_data, localization_scores
>>> data = load_localization_data("chestxray14_bbox/", image_size=256)
>>> miner = AttentionMiner("timm:resnet18", num_classes=8, in_chans=1)
>>> miner.fit(data, epochs=10, checkpoint_dir="runs/am", resume=True)
>>> scores = localization_scores(miner.boxes(data), data.boxes)
"""

from __future__ import annotations

from hyperinit.localize.boxes import (
    DEFAULT_BOX_THRESHOLDS,
    SEED_IOU_THRESHOLDS,
    LocalizationScores,
    heatmap_boxes,
    iobb,
    iou,
    localization_scores,
)
from hyperinit.localize.data import BOX_FINDINGS, LocalizationImages, load_localization_data
from hyperinit.localize.features import StageFeatures
from hyperinit.localize.kp import KP_MODES, frozen_copy, kp_loss
from hyperinit.localize.miner import AttentionMiner, MinerNet
from hyperinit.localize.mining import (
    aggregate_heatmaps,
    class_activation_maps,
    component_at_max,
    connected_components,
    mine,
    normalize_maps,
    update_masks,
)
from hyperinit.localize.msa import MSA_MODES, MultiScaleAggregation
from hyperinit.localize.overlay import draw_overlay, save_overlay

__all__ = [
    "BOX_FINDINGS",
    "DEFAULT_BOX_THRESHOLDS",
    "KP_MODES",
    "MSA_MODES",
    "SEED_IOU_THRESHOLDS",
    "AttentionMiner",
    "LocalizationImages",
    "LocalizationScores",
    "MinerNet",
    "MultiScaleAggregation",
    "StageFeatures",
    "aggregate_heatmaps",
    "class_activation_maps",
    "component_at_max",
    "connected_components",
    "draw_overlay",
    "frozen_copy",
    "heatmap_boxes",
    "iobb",
    "iou",
    "kp_loss",
    "load_localization_data",
    "localization_scores",
    "mine",
    "normalize_maps",
    "save_overlay",
    "update_masks",
]
