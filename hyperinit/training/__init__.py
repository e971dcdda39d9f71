"""Training the hypernetwork: objectives, the trainer and its data (see :mod:`.trainer`)."""

from __future__ import annotations

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
from hyperinit.training.trainer import HyperTrainer, TrainConfig, TrainingError, train

__all__ = [
    "C2LObjective",
    "CombinedObjective",
    "HyperTrainer",
    "Objective",
    "ObjectiveError",
    "ObjectiveOutput",
    "RotationObjective",
    "TrainConfig",
    "TrainingError",
    "create_objective",
    "list_objectives",
    "register_objective",
    "train",
]
