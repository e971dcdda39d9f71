"""One architecture's training loss: the hypernetwork's prediction scored by the objective.

:class:`MetaStep` is the module DDP wraps. With ``inner_steps`` it unrolls differentiable SGD
steps from the predicted weights (the seed's bi-level problem, eq. 3 with eq. 1 inside), for which
:func:`twice_differentiable` swaps ops without a double backward for equivalent ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from hyperinit.hypernet.model import HyperInitializer
from hyperinit.training.archs import TrainedArch, bind, move_to
from hyperinit.training.objectives import Objective, ObjectiveOutput

__all__ = ["MetaStep", "twice_differentiable"]


def _hardsigmoid(x: Tensor, inplace: bool = False) -> Tensor:
    """``F.hardsigmoid`` by its definition, relu6(x + 3) / 6 (which has a double backward)."""
    return F.relu6(x + 3) / 6


@contextlib.contextmanager
def twice_differentiable() -> Iterator[None]:
    """Run ops that lack a double backward (fused attention, hardsigmoid) by equivalent ones
    that have one, for the unrolled inner steps."""
    original = F.hardsigmoid
    F.hardsigmoid = _hardsigmoid
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        F.hardsigmoid = original


class MetaStep(nn.Module):
    """Hypernetwork + objective: one architecture's loss (the module DDP wraps).

    With ``inner_steps`` the batch is cut into ``inner_steps + 1`` slices: the objective on the
    first scores the predicted weights, each further slice scores them after one more
    differentiable SGD step (on the previous slice's loss), and the loss is the mean of the
    first and the last; gradients flow through the steps into the hypernetwork.
    """

    def __init__(
        self,
        hypernet: HyperInitializer,
        objective: Objective,
        inner_steps: int = 0,
        inner_lr: float = 0.1,
    ):
        super().__init__()
        self.hypernet, self.objective = hypernet, objective
        self.inner_steps, self.inner_lr = inner_steps, inner_lr

    def forward(
        self, arch: TrainedArch, x: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, dict[str, float], int]:
        move_to(arch, self.hypernet.device)
        params = self.hypernet.predict_params(
            arch.graph, roles=arch.roles, seed=arch.draw % (1 << 31)
        )
        if not self.inner_steps:
            out: ObjectiveOutput = self.objective(bind(arch, params), x, generator)
            return out.loss, out.score, out.metrics, out.images
        with twice_differentiable():
            return self._unrolled(arch, params, x, generator)

    def _unrolled(
        self,
        arch: TrainedArch,
        params: dict[str, Tensor],
        x: Tensor,
        generator: torch.Generator,
    ) -> tuple[Tensor, Tensor, dict[str, float], int]:
        slices = x.tensor_split(self.inner_steps + 1)  # sizes differ by at most one
        first = out = self.objective(bind(arch, params), slices[0], generator)
        images = first.images
        for part in slices[1:]:
            names = [n for n, t in params.items() if t.requires_grad]
            grads = torch.autograd.grad(
                out.loss, [params[n] for n in names], create_graph=True, allow_unused=True
            )
            params = dict(params)
            for n, g in zip(names, grads):
                if g is not None:
                    params[n] = params[n] - self.inner_lr * g
            out = self.objective(bind(arch, params), part, generator)
            images += out.images
        metrics = dict(first.metrics)
        metrics["inner_loss"] = out.loss.item()
        metrics["inner_gain"] = first.loss.item() - out.loss.item()
        return (first.loss + out.loss) / 2, first.score, metrics, images
