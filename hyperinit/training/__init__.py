"""Training the hypernetwork: its config, objectives, trainer and data (see :mod:`.trainer`)."""

from __future__ import annotations

from hyperinit.errors import TrainingError
from hyperinit.training.config import TrainConfig
from hyperinit.training.distill import DistillObjective
from hyperinit.training.objectives import (
    C2LObjective,
    CombinedObjective,
    Objective,
    ObjectiveError,
    ObjectiveOutput,
    RotationObjective,
    create_objective,
    list_objectives,
    register_objective,
)
from hyperinit.training.proxy import ProbeData, probe_score, select_snapshot
from hyperinit.training.trainer import HyperTrainer, train

__all__ = [
    "C2LObjective",
    "CombinedObjective",
    "DistillObjective",
    "HyperTrainer",
    "Objective",
    "ObjectiveError",
    "ObjectiveOutput",
    "ProbeData",
    "RotationObjective",
    "TrainConfig",
    "TrainingError",
    "create_objective",
    "list_objectives",
    "probe_score",
    "register_objective",
    "select_snapshot",
    "train",
]
