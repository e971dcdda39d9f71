"""Self-supervised objectives for training the hypernetwork, chosen by name.

An :class:`Objective` is an ``nn.Module`` holding the small task head (trained together with the
hypernetwork, kept out of the hypernetwork checkpoint) and any state it needs (the C2L queue).
Its ``forward(net, x, generator)`` gets ``net``, a function from images to ``(B, feature_dim)``
features of the predicted network, a batch ``x`` of normalised images and a generator that
drives every random choice, and returns an :class:`ObjectiveOutput`.

Built in: ``"rotation"`` (4-way rotation prediction, Gidaris et al. 2018: the seed's choice),
``"c2l"`` (Comparing-to-Learn, the loss of :mod:`hyperinit.c2l`) and any sum of them written
``"rotation+c2l"``. New objectives plug in with :func:`register_objective`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperinit.c2l.loss import batch_mixup, c2l_loss
from hyperinit.errors import HyperInitError

__all__ = [
    "C2LObjective",
    "CombinedObjective",
    "Objective",
    "ObjectiveError",
    "ObjectiveOutput",
    "RotationObjective",
    "create_objective",
    "list_objectives",
    "register_objective",
]

Network = Callable[[Tensor], Tensor]


class ObjectiveError(HyperInitError, ValueError):
    """Unknown objective name or invalid objective argument."""


@dataclass
class ObjectiveOutput:
    """``loss`` to minimise; ``score`` in [0, 1], higher is better (accuracy on the task);
    ``metrics``: floats for the log; ``images``: images pushed through the network."""

    loss: Tensor
    score: Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    images: int = 0


class Objective(nn.Module):
    """Base class: a self-supervised task with its head. Subclasses set ``name``."""

    name: ClassVar[str] = ""

    def __init__(self, feature_dim: int = 128):
        super().__init__()
        self.feature_dim = feature_dim

    def forward(self, net: Network, x: Tensor, generator: torch.Generator) -> ObjectiveOutput:
        raise NotImplementedError


_REGISTRY: dict[str, type[Objective]] = {}


def register_objective(cls: type[Objective]) -> type[Objective]:
    """Class decorator: make ``cls`` available to :func:`create_objective` as ``cls.name``."""
    if not cls.name or "+" in cls.name:
        raise ObjectiveError(f"objective class {cls.__name__} needs a name without '+'")
    _REGISTRY[cls.name] = cls
    return cls


def list_objectives() -> list[str]:
    """Registered objective names."""
    return sorted(_REGISTRY)


def create_objective(name: str, feature_dim: int = 128, **kwargs: object) -> Objective:
    """An objective by name; ``"a+b"`` sums objectives ``a`` and ``b`` with equal weights."""
    parts = [p.strip().lower() for p in name.split("+") if p.strip()]
    unknown = [p for p in parts if p not in _REGISTRY]
    if not parts or unknown:
        raise ObjectiveError(
            f"unknown objective {name!r}; registered: {', '.join(list_objectives())} "
            "(combine with '+', e.g. 'rotation+c2l'; add your own with register_objective)."
        )
    if len(parts) == 1:
        return _REGISTRY[parts[0]](feature_dim, **kwargs)
    return CombinedObjective([_REGISTRY[p](feature_dim) for p in parts])


def _head(d: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, out))


def augment(x: Tensor, generator: torch.Generator, max_rotation: float = 10.0) -> Tensor:
    """Batched random view: crop (scale 0.6-1), rotation (+-``max_rotation`` degrees),
    horizontal flip, brightness / contrast jitter; one draw per image from ``generator``."""
    b = x.shape[0]
    s = torch.empty(b).uniform_(0.6, 1.0, generator=generator).sqrt()
    a = torch.empty(b).uniform_(-max_rotation, max_rotation, generator=generator) * math.pi / 180
    flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    t = (torch.rand(b, 2, generator=generator) * 2 - 1) * (1 - s)[:, None]
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = s * a.cos() * flip, -s * a.sin()
    theta[:, 1, 0], theta[:, 1, 1] = s * a.sin() * flip, s * a.cos()
    theta[:, :, 2] = t
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, padding_mode="reflection", align_corners=False)
    gain = torch.empty(b, 1, 1, 1).uniform_(0.7, 1.3, generator=generator).to(x)
    shift = torch.empty(b, 1, 1, 1).uniform_(-0.3, 0.3, generator=generator).to(x)
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    return (y - mean) * gain + mean + shift


@register_objective
class RotationObjective(Objective):
    """Predict which of 4 rotations (0, 90, 180, 270 degrees) was applied (one per image,
    after a random horizontal flip)."""

    name = "rotation"

    def __init__(self, feature_dim: int = 128):
        super().__init__(feature_dim)
        self.head = _head(feature_dim, 4)

    @staticmethod
    def make_task(x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(rotated images, labels)``: image ``i`` is flipped at random, then rotated by
        ``labels[i] * 90`` degrees (counter-clockwise)."""
        b = x.shape[0]
        k = torch.randint(4, (b,), generator=generator).to(x.device)
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        rotated = torch.stack([torch.rot90(x[i], int(k[i]), (1, 2)) for i in range(b)])
        return rotated, k

    def forward(self, net: Network, x: Tensor, generator: torch.Generator) -> ObjectiveOutput:
        b = x.shape[0]
        rotated, k = self.make_task(x, generator)
        logits = self.head(net(rotated))
        loss = F.cross_entropy(logits.float(), k)
        acc = (logits.argmax(1) == k).float().mean()
        return ObjectiveOutput(loss, acc, {"rot_loss": loss.item(), "rot_acc": acc.item()}, b)


@register_objective
class C2LObjective(Objective):
    """Comparing-to-Learn (three InfoNCE terms with batch mixup, :func:`hyperinit.c2l.c2l_loss`)
    on two augmented views, negatives from a queue of recent keys.

    The teacher is the predicted network itself with stopped gradients (momentum 0): an EMA
    copy of the hypernetwork would double the prediction cost for every architecture.
    """

    name = "c2l"

    def __init__(
        self,
        feature_dim: int = 128,
        queue_size: int = 2048,
        temperature: float = 0.1,
        mixup_alpha: float = 1.0,
    ):
        super().__init__(feature_dim)
        if queue_size < 1 or temperature <= 0 or mixup_alpha <= 0:
            raise ObjectiveError("c2l needs queue_size >= 1, temperature > 0, mixup_alpha > 0")
        self.head = _head(feature_dim, feature_dim)
        self.temperature, self.mixup_alpha = temperature, mixup_alpha
        self.register_buffer("queue", torch.zeros(queue_size, feature_dim))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_len", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _enqueue(self, keys: Tensor) -> None:
        n = self.queue.shape[0]
        keys = keys[-n:]
        idx = (self.queue_ptr + torch.arange(len(keys), device=keys.device)) % n
        self.queue[idx] = keys.to(self.queue)
        self.queue_ptr.copy_((self.queue_ptr + len(keys)) % n)
        self.queue_len.copy_(torch.clamp(self.queue_len + len(keys), max=n))

    def forward(self, net: Network, x: Tensor, generator: torch.Generator) -> ObjectiveOutput:
        b = x.shape[0]
        x1, x2 = augment(x, generator), augment(x, generator)
        xm1, xm2, lam, perm = batch_mixup(x1, x2, self.mixup_alpha, generator)
        student = self.head(net(torch.cat([x1, xm1])))
        with torch.no_grad():
            teacher = self.head(net(torch.cat([x2, xm2])))
        queue = self.queue[: int(self.queue_len)]
        out = c2l_loss(
            student[:b],
            student[b:],
            teacher[:b],
            teacher[b:],
            queue,
            lam=lam,
            perm=perm,
            temperature=self.temperature,
        )
        self._enqueue(out.keys)
        metrics = {"c2l_loss": out.loss.item(), "c2l_acc": out.accuracy.item()}
        return ObjectiveOutput(out.loss, out.accuracy, metrics, 4 * b)


class CombinedObjective(Objective):
    """The mean of several objectives' losses (and of their scores)."""

    def __init__(self, objectives: list[Objective]):
        super().__init__(objectives[0].feature_dim)
        self.name = "+".join(o.name for o in objectives)  # type: ignore[misc]
        self.parts = nn.ModuleList(objectives)

    def forward(self, net: Network, x: Tensor, generator: torch.Generator) -> ObjectiveOutput:
        outs = [o(net, x, generator) for o in self.parts]
        metrics: dict[str, float] = {}
        for o in outs:
            metrics.update(o.metrics)
        n = len(outs)
        return ObjectiveOutput(
            sum(o.loss for o in outs) / n,
            sum(o.score for o in outs) / n,
            metrics,
            sum(o.images for o in outs),
        )
