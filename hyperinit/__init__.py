"""hyperinit: initialise, fine-tune and pretrain medical-imaging models with little labelled data.

>>> import timm, hyperinit
>>> model = timm.create_model("resnet18", in_chans=1, num_classes=2)
>>> report = hyperinit.initialize(model, modality="xray")

The names here are the ones a user calls: ``initialize`` and ``create_model`` (predicted
initial weights), ``trace`` (the graph), ``MetaLROptimizer`` (layer-wise learning rates learned
online), ``C2LPretrainer`` (self-supervised pretraining), ``AttentionMiner`` (weakly supervised
localisation), ``HyperTrainer`` (train your own hypernetwork), ``list_checkpoints`` and
``modality_distance``. Everything else lives in its subpackage: the errors in
:mod:`hyperinit.errors` (all subclasses of :class:`HyperInitError`), datasets in
:mod:`hyperinit.data`, the checkpoint registry in :mod:`hyperinit.modalities`, the graph's op
vocabulary in :mod:`hyperinit.graph`.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from hyperinit import errors as _errors
from hyperinit.c2l import C2LPretrainer
from hyperinit.errors import HyperInitError
from hyperinit.graph import ArchGraph, trace
from hyperinit.hub import list_checkpoints
from hyperinit.hypernet import HyperInitializer
from hyperinit.init_report import InitReport
from hyperinit.initialize import initialize
from hyperinit.localize import AttentionMiner
from hyperinit.metalr import MetaLROptimizer
from hyperinit.modality_auto import modality_distance
from hyperinit.models import create_model
from hyperinit.training import HyperTrainer, TrainConfig

__version__ = "0.1.0.dev0"

__all__ = [
    "ArchGraph",
    "AttentionMiner",
    "C2LPretrainer",
    "HyperInitError",
    "HyperInitializer",
    "HyperTrainer",
    "InitReport",
    "MetaLROptimizer",
    "TrainConfig",
    "__version__",
    "create_model",
    "initialize",
    "list_checkpoints",
    "modality_distance",
    "trace",
]

#: Names that used to be exported here, and the module that holds them now.
_MOVED = {
    "MODALITIES": "hyperinit.modalities",
    "resolve_modality": "hyperinit.modalities",
    "OP_TYPES": "hyperinit.graph",
    "default_example_input": "hyperinit.graph",
    "HyperInitConfig": "hyperinit.hypernet",
    "load_hypernetwork": "hyperinit.initialize",
    "layer_groups": "hyperinit.metalr",
    "set_input_channels": "hyperinit.models",
    "register_objective": "hyperinit.training",
    **{name: "hyperinit.errors" for name in _errors.__all__ if name != "HyperInitError"},
}


def __getattr__(name: str) -> Any:
    """Old top-level names keep working for a while, with a warning naming the new home."""
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module 'hyperinit' has no attribute {name!r}")
    warnings.warn(
        f"hyperinit.{name} moved to {module}.{name}; import it from there "
        "(the top-level name will be removed in 0.2)",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(module), name)
