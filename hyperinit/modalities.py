"""The modality registry: names, aliases and the checkpoint each one loads.

Trained modality checkpoints come with the training work; until they ship, every modality
resolves to the embedded *reference* hypernetwork, an untrained network whose predictions are
well-scaled (fan-in normalised, symmetry-broken) weights, and a warning says so once.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hyperinit.errors import UnknownModalityError

__all__ = ["MODALITIES", "ModalityCheckpoint", "get_modality", "resolve_modality"]

log = logging.getLogger(__name__)

MODALITIES: tuple[str, ...] = ("xray", "ct", "ultrasound", "dermoscopy", "fundus", "mixed")

_ALIASES = {
    "x-ray": "xray",
    "x_ray": "xray",
    "cxr": "xray",
    "chest_xray": "xray",
    "radiograph": "xray",
    "dr": "xray",
    "computed_tomography": "ct",
    "us": "ultrasound",
    "sonography": "ultrasound",
    "derm": "dermoscopy",
    "dermatoscopy": "dermoscopy",
    "skin": "dermoscopy",
    "retina": "fundus",
    "retinal": "fundus",
    "cfp": "fundus",
    "all": "mixed",
}


@dataclass(frozen=True)
class ModalityCheckpoint:
    """Where a modality's hypernetwork comes from."""

    name: str
    embedded: str
    trained: bool

    @property
    def path(self) -> Path:
        return Path(str(resources.files("hyperinit") / "checkpoints" / self.embedded))


_REGISTRY = {name: ModalityCheckpoint(name, "reference", trained=False) for name in MODALITIES}
_warned: set[str] = set()


def resolve_modality(name: str) -> str:
    """The canonical modality name for ``name`` or an alias; raises with suggestions."""
    key = str(name).strip().lower().replace(" ", "_")
    key = _ALIASES.get(key, key)
    if key in _REGISTRY:
        return key
    choices = sorted(set(MODALITIES) | set(_ALIASES))
    close = difflib.get_close_matches(key, choices, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownModalityError(
        f"unknown modality {name!r}.{hint} Valid names: {', '.join(MODALITIES)} "
        f"(aliases: {', '.join(sorted(_ALIASES))})."
    )


def get_modality(name: str) -> ModalityCheckpoint:
    """The registry entry of a modality (name or alias)."""
    entry = _REGISTRY[resolve_modality(name)]
    if not entry.trained and entry.name not in _warned:
        _warned.add(entry.name)
        log.warning(
            "hyperinit: no trained checkpoint for modality '%s' ships with this version; using "
            "the untrained reference hypernetwork (well-scaled, symmetry-broken weights, no "
            "learned medical features).",
            entry.name,
        )
    return entry
