"""Self-supervised objectives for training the hypernetwork, chosen by name.

An :class:`Objective` is an ``nn.Module`` holding the small task head (trained together with the
hypernetwork, kept out of the hypernetwork checkpoint) and any state it needs (the C2L queue).
Its ``forward(net, x, generator)`` gets ``net``, a function from images to ``(B, feature_dim)``
features of the predicted network, a batch ``x`` of normalised images and a generator that
drives every random choice, and returns an :class:`ObjectiveOutput`.

Built in: ``"rotation"`` (4-way rotation prediction, Gidaris et al. 2018: the seed's choice),
``"c2l"`` (Comparing-to-Learn, the loss of :mod:`hyperinit.c2l`) and any sum of them written
``"rotation+c2l"``; ``"distill"`` (feature distillation from a modality teacher,
:mod:`hyperinit.training.distill`). New objectives plug in with :func:`register_objective`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperinit.c2l.loss import batch_mixup, c2l_loss
from hyperinit.errors import ObjectiveError

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


def create_objective(
    name: str,
    feature_dim: int = 128,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    **kwargs: object,
) -> Objective:
    """An objective by name; ``"a+b"`` sums objectives ``a`` and ``b`` with equal weights.

    ``options`` maps a part's name to its keyword arguments (``{"distill": {"teacher":
    path}}``); ``kwargs`` go to a single objective."""
    parts = [p.strip().lower() for p in name.split("+") if p.strip()]
    unknown = [p for p in parts if p not in _REGISTRY]
    if not parts or unknown:
        raise ObjectiveError(
            f"unknown objective {name!r}; registered: {', '.join(list_objectives())} "
            "(combine with '+', e.g. 'rotation+c2l'; add your own with register_objective)."
        )
    options = dict(options or {})
    stray = sorted(set(options) - set(parts))
    if stray:
        raise ObjectiveError(f"options given for {stray}, which {name!r} does not include")
    if len(parts) == 1:
        return _REGISTRY[parts[0]](feature_dim, **{**options.get(parts[0], {}), **kwargs})
    return CombinedObjective([_REGISTRY[p](feature_dim, **options.get(p, {})) for p in parts])


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


def _prototype_logits(
    feats: Tensor, labels: Tensor, classes: int, temperature: float
) -> tuple[Tensor, Tensor]:
    """Nearest-prototype logits, no per-architecture weights: the batch is split in halves,
    each half is classified by cosine similarity to the class means of the other half.
    Returns ``(logits, labels)`` in the order of ``feats``."""
    f = F.normalize(feats.float(), dim=1)
    half = len(f) // 2
    parts = []
    for q, s in ((slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))):
        onehot = F.one_hot(labels[s], classes).float()
        protos = F.normalize(onehot.t() @ f[s], dim=1)
        parts.append(f[q] @ protos.t() / temperature)
    return torch.cat(parts), labels


def _balanced_labels(b: int, classes: int, generator: torch.Generator) -> Tensor:
    """Labels with every class in each half of the batch, shuffled within halves."""
    half = b // 2
    out = []
    for n in (half, b - half):
        lab = torch.arange(n) % classes
        out.append(lab[torch.randperm(n, generator=generator)])
    return torch.cat(out)


@register_objective
class RotationObjective(Objective):
    """Predict which of 4 rotations (0, 90, 180, 270 degrees) was applied (one per image,
    after a random horizontal flip).

    Features go through a small shared head and are classified by their nearest class
    prototype (the mean of the other half of the batch): a classifier with no weights of its
    own, so the task is the same for every architecture and rewards features in which the
    rotations separate, whatever network produced them.
    """

    name = "rotation"

    def __init__(self, feature_dim: int = 128, temperature: float = 0.1):
        super().__init__(feature_dim)
        if temperature <= 0:
            raise ObjectiveError(f"temperature must be > 0, got {temperature}")
        self.head = _head(feature_dim, feature_dim)
        self.temperature = temperature

    @staticmethod
    def make_task(x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(rotated images, labels)``: image ``i`` is flipped at random, then rotated by
        ``labels[i] * 90`` degrees (counter-clockwise); each half of the batch holds every
        rotation."""
        b = x.shape[0]
        k = _balanced_labels(b, 4, generator).to(x.device)
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        rotated = torch.stack([torch.rot90(x[i], int(k[i]), (1, 2)) for i in range(b)])
        return rotated, k

    def forward(self, net: Network, x: Tensor, generator: torch.Generator) -> ObjectiveOutput:
        b = x.shape[0]
        if b < 8:
            raise ObjectiveError(f"rotation needs batches of at least 8 images, got {b}")
        rotated, k = self.make_task(x, generator)
        logits, k = _prototype_logits(self.head(net(rotated)), k, 4, self.temperature)
        loss = F.cross_entropy(logits, k)
        acc = (logits.argmax(1) == k).float().mean()
        return ObjectiveOutput(loss, acc, {"rot_loss": loss.item(), "rot_acc": acc.item()}, b)


@register_objective
class C2LObjective(Objective):
    """Comparing-to-Learn: the three InfoNCE terms with batch mixup of
    :func:`hyperinit.c2l.c2l_loss`, on two augmented views.

    The teacher is the predicted network itself with stopped gradients (momentum 0): an EMA
    copy of the hypernetwork would double the prediction cost of every architecture. Negatives
    are the teacher's keys of the other half of the batch, from the same architecture (a
    feature queue would mix the feature spaces of different architectures); mixup pairs stay
    within each half.
    """

    name = "c2l"

    def __init__(self, feature_dim: int = 128, temperature: float = 0.1, mixup_alpha: float = 1.0):
        super().__init__(feature_dim)
        if temperature <= 0 or mixup_alpha <= 0:
            raise ObjectiveError("c2l needs temperature > 0 and mixup_alpha > 0")
        self.head = _head(feature_dim, feature_dim)
        self.temperature, self.mixup_alpha = temperature, mixup_alpha

    def forward(self, net: Network, x: Tensor, generator: torch.Generator) -> ObjectiveOutput:
        b = x.shape[0]
        if b < 4:
            raise ObjectiveError(f"c2l needs batches of at least 4 images, got {b}")
        half = b // 2
        x1, x2 = augment(x, generator), augment(x, generator)
        mixes = [
            batch_mixup(x1[s], x2[s], self.mixup_alpha, generator)
            for s in (slice(0, half), slice(half, None))
        ]
        xm1 = torch.cat([m[0] for m in mixes])
        xm2 = torch.cat([m[1] for m in mixes])
        student = self.head(net(torch.cat([x1, xm1])))
        with torch.no_grad():
            teacher = self.head(net(torch.cat([x2, xm2])))
        v1a, v1m, v2a, v2m = student[:b], student[b:], teacher[:b], teacher[b:]
        losses, accs = [], []
        for (lam, perm), (q, n) in zip(
            [(m[2], m[3]) for m in mixes],
            [(slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))],
        ):
            out = c2l_loss(
                v1a[q],
                v1m[q],
                v2a[q],
                v2m[q],
                v2a[n].detach(),
                lam=lam,
                perm=perm,
                temperature=self.temperature,
            )
            losses.append(out.loss)
            accs.append(out.accuracy)
        loss = (losses[0] + losses[1]) / 2
        acc = (accs[0] + accs[1]) / 2
        metrics = {"c2l_loss": loss.item(), "c2l_acc": acc.item()}
        return ObjectiveOutput(loss, acc, metrics, 4 * b)


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
