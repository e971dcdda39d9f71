"""TrainConfig: every setting of a hypernetwork training run (stored in its checkpoint)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in its checkpoint and model card).

    Attributes:
        modality: the modality the checkpoint is for (registry name).
        data: a folder of unlabelled images; None uses the bundled training images of
            ``modality`` (:func:`hyperinit.data.pretraining_files`, never test images).
        objective: registered objective name, or a sum such as ``"rotation+c2l"``.
        objective_options: keyword arguments per objective part, e.g. ``{"distill":
            {"teacher": "runs/teacher"}}`` (:func:`hyperinit.training.create_objective`).
        steps: optimisation steps; the cosine schedule spans them.
        meta_batch: architectures per step (per process).
        batch_size, image_size: images per step and their side in px (random resized crops
            of ``crop_scale`` of the area, from images decoded at ``load_size``).
        in_chans: input channel counts the architectures are drawn with.
        max_params: architectures with more parameters are redrawn (keeps steps cheap).
        checkpoint_every: steps between checkpoints (always one at the end).
        snapshot_every: also export the hypernetwork every this many steps to
            ``out/snapshots/step_<k>/`` (checkpoints ``initialize`` loads), for choosing one
            afterwards by a downstream proxy (:func:`hyperinit.training.proxy.select_snapshot`).
        time_limit_s: stop (with a checkpoint) after this much wall time; resume continues.
        init: hypernetwork checkpoint to start from (None: the reference initialisation).
        structured_fraction: start with this share of each predicted weight's variance in the
            learned (structured) part instead of the checkpoint's; the rest is seeded noise.
        max_structured_share: train (and save) the hypernetwork with this cap on the
            structured share (``HyperInitConfig.max_structured_share``); None keeps the
            checkpoint's. Start with ``structured_fraction`` at or below the cap: a share held
            at the cap gets no gradient.
        inner_steps: the bi-level objective (the seed's eq. 3 with eq. 1 as the inner
            problem): take this many differentiable SGD steps of the objective from the
            predicted weights, each on its own slice of the batch, and train the hypernetwork
            on the mean of the loss before and after them. 0: the loss of the predicted
            weights alone. The inner steps make the hypernetwork see how its weights fine-tune
            (for normalised layers, their scale sets the effective learning rate).
        inner_lr: learning rate of the inner SGD steps (plain SGD; about ``lr / (1 -
            momentum)`` of the fine-tuning the checkpoint is for).
        scale_range: let the hypernetwork predict each weight's scale within ``[1/r, r]``
            of its role's fan-in scale (``HyperInitConfig.scale_range``; added to a checkpoint
            that lacks it, starting at 1). None keeps the checkpoint's setting.
    """

    modality: str = "xray"
    data: str | None = None
    objective: str = "rotation"
    objective_options: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    steps: int = 500
    meta_batch: int = 2
    batch_size: int = 32
    image_size: int = 48
    load_size: int = 80
    crop_scale: tuple[float, float] = (0.35, 1.0)
    in_chans: tuple[int, ...] = (1, 3)
    max_params: int = 3_000_000
    feature_dim: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 20
    clip: float = 5.0
    checkpoint_every: int = 50
    snapshot_every: int | None = None
    log_every: int = 10
    seed: int = 0
    out: str = "runs/hyperinit"
    amp: bool = True
    device: str | None = None
    time_limit_s: float | None = None
    init: str | None = None
    structured_fraction: float | None = None
    max_structured_share: float | None = None
    inner_steps: int = 0
    inner_lr: float = 0.1
    scale_range: float | None = None
    max_images: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
