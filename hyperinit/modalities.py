"""The modality registry: names, aliases and the checkpoint each one loads.

Each entry is a ``pretrained_cfg`` in timm's sense: where the checkpoint lives on the Hugging Face
Hub (repo id + revision), the sha256 of its files, the copy embedded in the wheel, what it was
trained on and when (the data in ``modalities.json``, shipped with the package). Each modality
with a trained checkpoint (``trained`` in that file, pinned by ``tools/train_modalities.py``)
loads its own embedded folder ``checkpoints/<modality>``; any other modality falls back to the
embedded *reference* hypernetwork, an untrained network whose predictions are well-scaled (fan-in
normalised, symmetry-broken) weights, and a warning says so once per modality.
"""

from __future__ import annotations

import difflib
import json
import logging
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from hyperinit.errors import UnknownModalityError

__all__ = [
    "MODALITIES",
    "ModalityCheckpoint",
    "embedded_dir",
    "get_modality",
    "list_modalities",
    "resolve_modality",
]

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


def package_json(name: str) -> Any:
    """A JSON file shipped in the package (``hyperinit/<name>``), parsed."""
    return json.loads((resources.files("hyperinit") / name).read_text(encoding="utf-8"))


#: The registry's data (``hyperinit/modalities.json``): ``reference`` and ``trained[<modality>]``
#: hold the sha256 of a checkpoint's files and the date they were made; ``training_data`` the
#: data each modality's checkpoint is (to be) trained on, and whose images give the reference
#: coordinates of ``modality="auto"`` (see hyperinit.modality_auto). Trained checkpoints are
#: embedded under hyperinit/checkpoints/<modality> (tools/train_modalities.py; model cards in
#: each).
_DATA: dict[str, Any] = package_json("modalities.json")
_TRAINED: dict[str, dict[str, Any]] = _DATA["trained"]
_TRAINING_DATA: dict[str, str] = _DATA["training_data"]


def embedded_dir(name: str) -> Path:
    """The folder of a checkpoint embedded in the package (``hyperinit/checkpoints/<name>``)."""
    return Path(str(resources.files("hyperinit") / "checkpoints" / name))


@dataclass(frozen=True)
class ModalityCheckpoint:
    """Where a modality's hypernetwork comes from (a timm-style ``pretrained_cfg``).

    Attributes:
        name: canonical modality name.
        repo_id, revision: the Hugging Face Hub repository and the revision pinned by this
            version of hyperinit.
        sha256: ``{filename: sha256}`` of the checkpoint files; checked on every load.
        embedded: folder under ``hyperinit/checkpoints`` with the copy shipped in the wheel.
        trained: False while the files are the untrained reference hypernetwork.
        training_data: a one-line summary of the data the checkpoint was trained on.
        date: when the pinned files were produced.
    """

    name: str
    repo_id: str
    revision: str
    sha256: dict[str, str] = field(default_factory=dict)
    embedded: str | None = "reference"
    trained: bool = False
    training_data: str = ""
    date: str = ""

    @property
    def path(self) -> Path:
        """The embedded copy's directory (raises if the entry has none)."""
        if self.embedded is None:
            raise FileNotFoundError(f"modality {self.name!r} has no embedded checkpoint")
        return embedded_dir(self.embedded)

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(self.sha256)

    @property
    def reference_coords(self) -> dict[str, list[list[float]]]:
        """``{init: [[x, y], ...]}``: the modality's cmv coordinates (for modality="auto")."""
        from hyperinit.modality_auto import COORDS

        return COORDS.get("coords", {}).get(self.name, {})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["trained"] = self.trained
        return d


def _entry(name: str) -> ModalityCheckpoint:
    trained = _TRAINED.get(name)
    files = trained or _DATA["reference"]
    return ModalityCheckpoint(
        name=name,
        repo_id=f"hyperinit/hyperinit-{name}",
        revision="main",
        sha256=dict(files["sha256"]),
        embedded=name if trained else "reference",
        trained=trained is not None,
        training_data=_TRAINING_DATA[name]
        if trained
        else f"none yet (untrained reference); planned: {_TRAINING_DATA[name]}",
        date=files["date"],
    )


_REGISTRY: dict[str, ModalityCheckpoint] = {name: _entry(name) for name in MODALITIES}
_warned: set[str] = set()


def _normalise(name: str) -> str:
    key = str(name).strip().lower().replace(" ", "_")
    return _ALIASES.get(key, key)


def is_modality(name: object) -> bool:
    """Whether ``name`` is a registered modality name or alias (no error, no warning)."""
    return isinstance(name, str) and _normalise(name) in _REGISTRY


def resolve_modality(name: str) -> str:
    """The canonical modality name for ``name`` or an alias; raises with suggestions."""
    key = _normalise(name)
    if key in _REGISTRY:
        return key
    choices = sorted(set(MODALITIES) | set(_ALIASES))
    close = difflib.get_close_matches(key, choices, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownModalityError(
        f"unknown modality {name!r}.{hint} Valid names: {', '.join(MODALITIES)} "
        f"(aliases: {', '.join(sorted(_ALIASES))}), or 'auto' with sample=... ."
    )


def warn_untrained(entry: ModalityCheckpoint) -> None:
    """Log, once per modality, that its checkpoint is the untrained reference."""
    if not entry.trained and entry.name not in _warned:
        _warned.add(entry.name)
        log.warning(
            "hyperinit: no trained checkpoint for modality '%s' ships with this version; using "
            "the untrained reference hypernetwork (well-scaled, symmetry-broken weights, no "
            "learned medical features).",
            entry.name,
        )


def get_modality(name: str) -> ModalityCheckpoint:
    """The registry entry of a modality (name or alias)."""
    entry = _REGISTRY[resolve_modality(name)]
    warn_untrained(entry)
    return entry


def list_modalities() -> list[ModalityCheckpoint]:
    """Every registry entry, in the order of :data:`MODALITIES` (no warnings)."""
    return [_REGISTRY[name] for name in MODALITIES]
