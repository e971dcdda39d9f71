"""C2L training state: the history of a run and the ``last.pt`` checkpoint to resume it exactly."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hyperinit.atomic import atomic_path, atomic_write_text
from hyperinit.errors import C2LCheckpointError

if TYPE_CHECKING:
    from hyperinit.c2l.pretrainer import C2LPretrainer

__all__ = ["CHECKPOINT_NAME", "C2LHistory", "load_training_state", "save_training_state"]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"
_CHECKPOINT_VERSION = 1


@dataclass
class C2LHistory:
    """Training record: one row per step and per epoch (loss, positive-pair accuracy, lr)."""

    steps: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)

    @property
    def loss(self) -> list[float]:
        """Loss of every step."""
        return [r["loss"] for r in self.steps]

    @property
    def accuracy(self) -> list[float]:
        """Positive-pair accuracy of every step (the A term: positive beats all negatives)."""
        return [r["accuracy"] for r in self.steps]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> C2LHistory:
        return cls([dict(r) for r in d.get("steps", [])], [dict(r) for r in d.get("epochs", [])])

    def write(self, log_dir: Path, rows: list[dict[str, float]]) -> None:
        """``history.json`` (all of it, atomically) and this epoch's ``rows`` appended to
        ``steps.csv``, in ``log_dir``."""
        log_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(self.to_dict()) + "\n", log_dir / "history.json")
        with open(log_dir / "steps.csv", "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            if f.tell() == 0:
                w.writeheader()
            w.writerows(rows)


def save_training_state(trainer: C2LPretrainer, path: Path) -> None:
    """Write everything that :func:`load_training_state` needs to resume (atomically)."""
    state = {
        "version": _CHECKPOINT_VERSION,
        "config": trainer.config(),
        "student": trainer.student.state_dict(),
        "teacher": trainer.teacher.state_dict(),
        "queue": trainer.queue.state_dict(),
        "optimizer": trainer._optimizer.state_dict(),
        "scheduler": trainer._scheduler.state_dict(),
        "scaler": trainer._scaler.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "mixup": trainer._gen.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        "step": trainer.step,
        "epoch": trainer.epoch,
        "history": trainer.history.to_dict(),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    logger.info("checkpoint: %s (epoch %d, step %d)", path, trainer.epoch, trainer.step)


def load_training_state(trainer: C2LPretrainer, path: Path) -> None:
    """Restore a state written by :func:`save_training_state` into a set-up ``trainer``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise C2LCheckpointError(f"cannot read the C2L checkpoint {path}: {e}") from e
    if not isinstance(state, dict) or state.get("version") != _CHECKPOINT_VERSION:
        raise C2LCheckpointError(f"{path} is not a C2L training checkpoint (version 1).")
    ours, theirs = trainer.config(), state["config"]
    diff = {k: (theirs.get(k), v) for k, v in ours.items() if theirs.get(k) != v}
    if diff:
        raise C2LCheckpointError(
            f"{path} was written with other settings (checkpoint, now): {diff}"
        )
    try:
        trainer.student.load_state_dict(state["student"])
        trainer.teacher.load_state_dict(state["teacher"])
        trainer.queue.load_state_dict(state["queue"])
        trainer._optimizer.load_state_dict(state["optimizer"])
        trainer._scheduler.load_state_dict(state["scheduler"])
        trainer._scaler.load_state_dict(state["scaler"])
    except (RuntimeError, KeyError, ValueError) as e:
        raise C2LCheckpointError(f"{path} does not fit this model: {e}") from e
    torch.set_rng_state(state["rng"]["torch"])
    trainer._gen.set_state(state["rng"]["mixup"])
    if torch.cuda.is_available() and state["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    trainer.step, trainer.epoch = int(state["step"]), int(state["epoch"])
    trainer.history = C2LHistory.from_dict(state["history"])
