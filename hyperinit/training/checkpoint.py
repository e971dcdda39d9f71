"""A training run's exact state on disk: ``train_state.pt`` (save, resume) and ``log.csv``.

The state holds the step, the elapsed time, the config and the hypernetwork's, objective's and
optimizer's state dicts, written by atomic replace. Resuming refuses a state saved with other
settings (:data:`RESUME_KEYS`); the log is cut back to the resumed step.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch

from hyperinit.atomic import atomic_path
from hyperinit.errors import TrainingError
from hyperinit.training.config import TrainConfig

__all__ = [
    "LOG_NAME",
    "RESUME_KEYS",
    "STATE_NAME",
    "Stateful",
    "load_state",
    "save_state",
    "truncate_log",
    "write_log",
]

STATE_NAME = "train_state.pt"
LOG_NAME = "log.csv"
#: Settings a resumed run must share with the saved one.
RESUME_KEYS = (
    "objective",
    "seed",
    "meta_batch",
    "batch_size",
    "image_size",
    "steps",
    "inner_steps",
    "inner_lr",
    "scale_range",
    "objective_options",
)


class Stateful(Protocol):
    """A module or optimizer: what a training state is saved from and loaded into."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> Any: ...


def save_state(
    path: Path, step: int, elapsed: float, config: TrainConfig, parts: Mapping[str, Stateful]
) -> None:
    """Write the exact training state to ``path`` (atomic replace): the step, the elapsed time,
    the config and the state dict of each of ``parts`` (hypernetwork, objective, optimizer)."""
    state = {
        "step": step,
        "elapsed": elapsed,
        "config": json.dumps(config.to_dict()),
        **{name: part.state_dict() for name, part in parts.items()},
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(
    path: Path, config: TrainConfig, parts: Mapping[str, Stateful], device: torch.device
) -> tuple[int, float] | None:
    """Load the state at ``path`` into ``parts``; returns ``(step, elapsed)``, or None when there
    is no state. Raises :class:`TrainingError` for a run of other settings (:data:`RESUME_KEYS`)."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location=device, weights_only=True)
    saved = json.loads(state["config"])
    mine = config.to_dict()
    defaults = TrainConfig().to_dict()  # a key saved before it existed had its default
    differ = [
        k
        for k in RESUME_KEYS
        if json.dumps(saved.get(k, defaults[k]), sort_keys=True)
        != json.dumps(mine.get(k), sort_keys=True)
    ]
    if differ:
        raise TrainingError(
            f"{path} belongs to a run with other settings ({', '.join(differ)}); "
            "use another --out folder or the same settings to resume."
        )
    for name, part in parts.items():
        part.load_state_dict(state[name])
    return int(state["step"]), float(state["elapsed"])


def write_log(path: Path, rows: list[dict[str, Any]], append: bool) -> None:
    """Write ``rows`` to the CSV log at ``path`` (appended, or a new file with a header)."""
    if not rows:
        return
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    new = not append or not path.exists()
    with open(path, "w" if new else "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerows(rows)


def truncate_log(path: Path, step: int) -> list[dict[str, Any]]:
    """Cut the CSV log at ``path`` back to the rows up to ``step`` and return them."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    write_log(path, rows, append=False) if rows else path.unlink()
    return rows
