"""`HyperInitConfig`: the hyperparameters stored in a checkpoint's ``config.json``."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hyperinit.atomic import atomic_write_text
from hyperinit.errors import CheckpointError
from hyperinit.graph.archgraph import S_MAX
from hyperinit.graph.ops import OP_TYPES, VOCAB_VERSION
from hyperinit.hypernet.roles import ROLES
from hyperinit.postprocess import PostProcess

__all__ = ["FORMAT_NAME", "HyperInitConfig"]

#: Written to every config.json; a file without it is not a hyperinit checkpoint.
FORMAT_NAME = "hyperinit.HyperInitializer"
FORMAT_VERSION = 1
#: Kinds of symmetry-breaking noise (``HyperInitConfig.noise``).
NOISE_KINDS = ("kron", "gaussian", "orthogonal")
#: Limits on the structured share of variance (``HyperInitConfig.spectrum``).
SPECTRA = ("predicted", "flat")
#: Which structured rows sum to zero (``HyperInitConfig.centre_rows``).
CENTRE_ROWS = ("all", "except_depthwise", "none")


@dataclass
class HyperInitConfig:
    """Hyperparameters of a :class:`~hyperinit.HyperInitializer` and facts about its checkpoint.

    Attributes:
        d_model: width of node features.
        gnn_rounds: K, the rounds of gated message passing (each forward then backward).
        s_max: longest shortest path that carries an MLP_sp message.
        code_rank: rank of the structured part of each predicted matrix.
        core_size: spatial size of the decoded kernel core (larger kernels are interpolated).
        decoder_hidden: channels of the decoder's convolutional layers.
        structured_fraction: initial share of variance in the structured part (untrained nets).
        max_structured_share: cap on each predicted weight's share of variance in the
            structured (low-rank) part, applied at prediction; ``None`` keeps the trained share.
            The rest of the variance goes to seeded full-rank noise, so a lower cap gives
            higher-rank weights.
        noise: the symmetry-breaking noise: ``"kron"`` (a Kronecker product of two small
            Gaussian factors, fast), ``"gaussian"`` (i.i.d., one draw per element) or
            ``"orthogonal"`` (a Kronecker product of two small semi-orthogonal factors: every
            singular value equal, about as fast as ``"kron"``).
        scale_range: ``None``: every predicted weight has the fan-in scale of its role.
            A number ``r > 1``: the hypernetwork also predicts a per-tensor multiplier of that
            scale in ``[1/r, r]`` (1 when untrained). For a layer followed by a norm the scale
            changes nothing in the forward pass but sets the effective learning rate of
            fine-tuning, which only the bi-level objective (``TrainConfig.inner_steps``) sees.
        spectrum: ``"predicted"``: each weight's structured part and share as predicted;
            ``"flat"``: the structured part replaced by its polar factor (its ``r`` directions
            kept, their singular values equal) and its share at most ``r / min(rows, cols)``,
            what ``r`` directions hold when every singular value is equal, so the low-rank part
            cannot dominate the spectrum (pair with ``noise="orthogonal"``: a flat full-rank
            part). A cheap stand-in for orthogonalising each predicted weight.
        centre_rows: which weights' structured part has rows that sum to zero: ``"all"``,
            ``"except_depthwise"`` or ``"none"``. A zero sum cancels the mean of the inputs a
            row mixes (large after a ReLU); for a depthwise kernel (one input channel) that is
            its channel's local mean, so every depthwise filter becomes high-pass.
        postprocess: what :func:`hyperinit.initialize` does to the predictions before writing
            them (:class:`~hyperinit.postprocess.PostProcess` options; ``None``: nothing).
        op_types, roles: the vocabularies the embedding tables were built with.
        modality, training: what the checkpoint was trained on (free-form for the model card).
    """

    d_model: int = 64
    gnn_rounds: int = 2
    s_max: int = S_MAX
    code_rank: int = 16
    core_size: int = 7
    decoder_hidden: int = 32
    structured_fraction: float = 0.1
    max_structured_share: float | None = None
    noise: str = "kron"
    scale_range: float | None = None
    spectrum: str = "predicted"
    centre_rows: str = "all"
    postprocess: dict[str, Any] | None = None
    op_types: list[str] = field(default_factory=lambda: list(OP_TYPES))
    roles: list[str] = field(default_factory=lambda: list(ROLES))
    vocab_version: int = VOCAB_VERSION
    modality: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    library_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["format"] = FORMAT_NAME
        d["format_version"] = FORMAT_VERSION
        return d

    def save(self, path: str | Path) -> None:
        """Write ``config.json`` (atomically)."""
        atomic_write_text(json.dumps(self.to_dict(), indent=2) + "\n", path)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> HyperInitConfig:
        if data.get("format") != FORMAT_NAME:
            raise CheckpointError(
                f'{source} is not a hyperinit checkpoint config (no "format": '
                f'"{FORMAT_NAME}"). Load checkpoints written by '
                "HyperInitializer.save_pretrained()."
            )
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise CheckpointError(
                f"{source} has format_version {data['format_version']}, newer than this "
                f"hyperinit understands ({FORMAT_VERSION}): upgrade hyperinit."
            )
        known = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in data.items() if k in known})
        problem = config.problem()
        if problem:
            raise CheckpointError(f"{source}: {problem}. Fix the value in config.json.")
        return config

    def problem(self) -> str | None:
        """What is wrong with the prediction settings (``None`` when they are valid)."""
        cap = self.max_structured_share
        if cap is not None and not (isinstance(cap, (int, float)) and 0 < cap <= 1):
            return f"max_structured_share must be a number in (0, 1] or null, got {cap!r}"
        if self.noise not in NOISE_KINDS:
            return f"noise must be one of {', '.join(NOISE_KINDS)}, got {self.noise!r}"
        r = self.scale_range
        if r is not None and not (
            isinstance(r, (int, float)) and not isinstance(r, bool) and 1 < r < float("inf")
        ):
            return f"scale_range must be a finite number > 1 or null, got {r!r}"
        if self.centre_rows not in CENTRE_ROWS:
            return f"centre_rows must be one of {', '.join(CENTRE_ROWS)}, got {self.centre_rows!r}"
        if self.spectrum not in SPECTRA:
            return f"spectrum must be one of {', '.join(SPECTRA)}, got {self.spectrum!r}"
        try:
            self.post_process()
        except CheckpointError as e:
            return str(e).partition(". Fix")[0]
        return None

    def post_process(self) -> PostProcess:
        """The :class:`~hyperinit.postprocess.PostProcess` of ``postprocess``."""
        return PostProcess.from_dict(self.postprocess)

    @classmethod
    def load(cls, path: str | Path) -> HyperInitConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(
                f"cannot read checkpoint config {path}: {e}. A checkpoint directory holds "
                "config.json and model.safetensors written by save_pretrained()."
            ) from e
        if not isinstance(data, dict):
            raise CheckpointError(f"{path} is not a JSON object: not a hyperinit config.")
        return cls.from_dict(data, source=str(path))
