"""The modality registry: names, aliases and the checkpoint each one loads.

Each entry is a ``pretrained_cfg`` in timm's sense: where the checkpoint lives on the Hugging Face
Hub (repo id + revision), the sha256 of its files, the copy embedded in the wheel, what it was
trained on and when. Each modality with a trained checkpoint (``_TRAINED``, made by
``benchmarks/train_modalities.py``) loads its own embedded folder ``checkpoints/<modality>``;
any other modality falls back to the embedded *reference* hypernetwork, an untrained network
whose predictions are well-scaled (fan-in normalised, symmetry-broken) weights, and a warning
says so once per modality.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from hyperinit.errors import UnknownModalityError

__all__ = [
    "MODALITIES",
    "ModalityCheckpoint",
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

#: sha256 of the files of the untrained reference checkpoint (hyperinit/checkpoints/reference).
_REFERENCE_SHA256 = {
    "config.json": "f170614b6aa2262db35607e3cc3796687068c0aac690646dfea888079c91aadf",
    "model.safetensors": "82c9868ab6e18b5ea403f9ece6e02774297f9614d5f1f981f3b309f0a6b2c00c",
}
_REFERENCE_DATE = "2026-11-22"

#: The data each modality's checkpoint is (to be) trained on, and whose images give the
#: reference coordinates of ``modality="auto"`` (see hyperinit.modality).
_TRAINING_DATA = {
    "xray": "chest X-ray: Kermany et al. 2018 paediatric CXR, train split (5,216 images)",
    "ct": "chest CT slices: UCSD-AI4H COVID-CT, 80 % seeded split (746 images in all)",
    "ultrasound": "breast ultrasound: BUSI, Al-Dhabyani et al. 2020, 80 % seeded split",
    "dermoscopy": "dermoscopy: DermaMNIST (HAM10000), official train split (7,007 images)",
    "fundus": "retinal fundus: DRIVE, Staal et al. 2004, official training split (20 images)",
    "mixed": "the five datasets above together",
}


#: Trained checkpoints embedded under hyperinit/checkpoints/<modality>: sha256 of their files
#: and the date they were made (benchmarks/train_modalities.py; model cards in each folder).
_TRAINED: dict[str, tuple[dict[str, str], str]] = {
    "xray": (
        {
            "config.json": "eee4f774ca343980dc19c9b7036698fff22ed355431f62ad45036afc6121cf32",
            "model.safetensors": "dedb479336003426312c1ed2b41d4524eb6afae44d6bff89a69f8561bf51200e",
        },
        "2026-11-22",
    ),
    "ct": (
        {
            "config.json": "d47fb2ad10ee6d8270a5f19ee37da07ebcad1f4797686ac99c3952071c63f096",
            "model.safetensors": "7f884c758844e4164e8b7dfe95af34c75a6638bbd7a345d2889fa884b8a3b2cd",
        },
        "2026-11-22",
    ),
    "ultrasound": (
        {
            "config.json": "5348be399a40e3719f2f1e72ee699ef7728f02cc2d96af7c9394765f7e6a8842",
            "model.safetensors": "2a505c5226b45506556b31ac5e2ce0c806d344af3583ac5a0f7075d43a1ef824",
        },
        "2026-11-22",
    ),
    "dermoscopy": (
        {
            "config.json": "3283971769efac4b07d9129d11ba9e625f6a5c02558e6d33710e0c244d4a1965",
            "model.safetensors": "be7dc490089a5a068095b62b8233d8d1b579c554177c8f23e5b98bf9aee015c4",
        },
        "2026-11-22",
    ),
    "fundus": (
        {
            "config.json": "6d0dfbe65b7e245e84ccb6c0726d4667f1df91851be667837de7a8d1656f7433",
            "model.safetensors": "c061e0140b193b5bee00786b568b55d8bbfd0681588588daba0e5d0f1c1aa809",
        },
        "2026-11-22",
    ),
    "mixed": (
        {
            "config.json": "84ef22fa6f2e914d27859829e608a2d447a32d5eaccdaf17ed4b2e8aaced35b4",
            "model.safetensors": "7cf8346ffceee74fa8b74f06c952a64a325f8f700e345d530555801d0a8a19f4",
        },
        "2026-11-22",
    ),
}


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
        return Path(str(resources.files("hyperinit") / "checkpoints" / self.embedded))

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(self.sha256)

    @property
    def reference_coords(self) -> dict[str, list[list[float]]]:
        """``{init: [[x, y], ...]}``: the modality's cmv coordinates (for modality="auto")."""
        from hyperinit._modality_coords import COORDS

        return COORDS.get("coords", {}).get(self.name, {})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["trained"] = self.trained
        return d


def _entry(name: str) -> ModalityCheckpoint:
    if name in _TRAINED:
        sha256, date = _TRAINED[name]
        return ModalityCheckpoint(
            name=name,
            repo_id=f"hyperinit/hyperinit-{name}",
            revision="main",
            sha256=dict(sha256),
            embedded=name,
            trained=True,
            training_data=_TRAINING_DATA[name],
            date=date,
        )
    return ModalityCheckpoint(
        name=name,
        repo_id=f"hyperinit/hyperinit-{name}",
        revision="main",
        sha256=dict(_REFERENCE_SHA256),
        embedded="reference",
        trained=False,
        training_data=f"none yet (untrained reference); planned: {_TRAINING_DATA[name]}",
        date=_REFERENCE_DATE,
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
