"""hyperinit: initialise, fine-tune and pretrain medical-imaging models with little labelled data.

>>> import timm, hyperinit
>>> model = timm.create_model("resnet18", in_chans=1, num_classes=2)
>>> report = hyperinit.initialize(model, modality="xray")

Also: ``MetaLROptimizer`` (layer-wise learning rates learned online), ``C2LPretrainer``
(self-supervised pretraining on unlabelled images), ``trace`` (the graph), ``modality_distance``,
the checkpoint registry (``list_checkpoints``) and :mod:`hyperinit.data` (medical image datasets).
"""

from __future__ import annotations

from hyperinit.c2l import C2LPretrainer
from hyperinit.errors import (
    ArchSpaceError,
    C2LCheckpointError,
    C2LConfigError,
    CheckpointDownloadError,
    CheckpointError,
    CheckpointIntegrityError,
    DataError,
    ExampleInputError,
    HyperInitError,
    MetaLRConfigError,
    MetaLRStateError,
    NoParametersError,
    ObjectiveError,
    ParamGroupingError,
    TraceError,
    TrainingError,
    UnknownModalityError,
    UnreadableImageError,
)
from hyperinit.graph import OP_TYPES, ArchGraph, default_example_input, trace
from hyperinit.hub import list_checkpoints
from hyperinit.hypernet import HyperInitConfig, HyperInitializer
from hyperinit.initialize import initialize, load_hypernetwork
from hyperinit.localize import AttentionMiner
from hyperinit.metalr import MetaLROptimizer, layer_groups
from hyperinit.modalities import MODALITIES, resolve_modality
from hyperinit.modality import modality_distance
from hyperinit.models import create_model, set_input_channels
from hyperinit.report import InitReport
from hyperinit.training import HyperTrainer, TrainConfig, register_objective

__version__ = "0.1.0.dev0"

__all__ = [
    "MODALITIES",
    "OP_TYPES",
    "ArchGraph",
    "ArchSpaceError",
    "AttentionMiner",
    "C2LCheckpointError",
    "C2LConfigError",
    "C2LPretrainer",
    "CheckpointDownloadError",
    "CheckpointError",
    "CheckpointIntegrityError",
    "DataError",
    "ExampleInputError",
    "HyperInitConfig",
    "HyperInitError",
    "HyperInitializer",
    "HyperTrainer",
    "InitReport",
    "MetaLRConfigError",
    "MetaLROptimizer",
    "MetaLRStateError",
    "NoParametersError",
    "ObjectiveError",
    "ParamGroupingError",
    "TraceError",
    "TrainConfig",
    "TrainingError",
    "UnknownModalityError",
    "UnreadableImageError",
    "__version__",
    "create_model",
    "default_example_input",
    "initialize",
    "layer_groups",
    "list_checkpoints",
    "load_hypernetwork",
    "modality_distance",
    "register_objective",
    "resolve_modality",
    "set_input_channels",
    "trace",
]
