"""The arithmetic of a MetaLR meta step: the hypergradient of each layer group's rate, the rate
update (eq. 3, additive or on ``log alpha``) and the step rescaled to the new rates (eq. 4).

With ``delta_j = theta'_j - theta_j`` the base optimizer's step of group ``j`` at rate
``alpha_j``, ``hypergrad_j = <grad_j L_val(theta'), delta_j> / alpha_j``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

__all__ = ["hypergradients", "kept_buffers", "rescale_step", "snapshot", "updated_rates"]


def snapshot(buffer: list[torch.Tensor] | None, params: list[nn.Parameter]) -> list[torch.Tensor]:
    """Copy ``params`` into ``buffer`` (re-allocated only when it does not fit) and return it."""
    buf = buffer
    if (
        buf is None
        or len(buf) != len(params)
        or any(
            b.shape != p.shape or b.dtype != p.dtype or b.device != p.device
            for b, p in zip(buf, params)
        )
    ):
        buf = [torch.empty_like(p, memory_format=torch.preserve_format) for p in params]
    torch._foreach_copy_(buf, [p.detach() for p in params])
    return buf


@contextlib.contextmanager
def kept_buffers(model: nn.Module | None) -> Iterator[None]:
    """Restore ``model``'s buffers (BatchNorm statistics) after the block if it is training, so
    that validation batches leave them untouched."""
    buffers = None
    if model is not None and model.training:
        buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield
    finally:
        if buffers is not None:
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)


def hypergradients(
    groups: list[list[nn.Parameter]],
    trainable: Sequence[int],
    grads: Sequence[torch.Tensor | None],
    neg_delta: list[torch.Tensor],
    lrs: list[float],
    inv_scale: float,
) -> list[float]:
    """``hypergrad_j`` of each group from the validation gradients ``grads`` (of the flat
    parameters numbered ``trainable``) and ``neg_delta = theta - theta'``."""
    owner = [j for j, ps in enumerate(groups) for _ in ps]
    dots = torch.zeros(len(groups), dtype=torch.float64, device=neg_delta[0].device)
    for i, g in zip(trainable, grads):
        if g is not None:
            d = torch.dot(g.reshape(-1), neg_delta[i].reshape(-1).to(g.dtype))
            dots[owner[i]] += d.to(dots.device, torch.float64)
    # hypergrad_j = <grad_j L_val(theta'), delta_j> / alpha_j, and delta = -neg_delta
    return [-d * inv_scale / lr for d, lr in zip(dots.tolist(), lrs)]


def updated_rates(
    lrs: list[float],
    hyper: list[float],
    meta_lr: float,
    meta_update: str,
    clip: Callable[[float], float],
) -> list[float]:
    """The rates after one meta step: eq. 3 (``"additive"``) or a step on ``log alpha``."""
    if meta_update == "relative":  # exp argument clipped: at most x/÷ e^5 a step
        return [
            clip(lr * math.exp(max(-5.0, min(5.0, -meta_lr * lr * h)))) for lr, h in zip(lrs, hyper)
        ]
    return [clip(lr - meta_lr * h) for lr, h in zip(lrs, hyper)]


@torch.no_grad()
def rescale_step(
    groups: list[list[nn.Parameter]],
    neg_delta: list[torch.Tensor],
    old: list[float],
    new: list[float],
) -> None:
    """Rescale each group's step from rate ``old`` to ``new`` (eq. 4), in place."""
    # theta <- theta' + (alpha'/alpha - 1) delta = theta' - (alpha'/alpha - 1) neg_delta
    start = 0
    for j, ps in enumerate(groups):
        scale = new[j] / old[j] - 1.0
        if scale != 0.0 and ps:
            torch._foreach_add_(
                [p.detach() for p in ps], neg_delta[start : start + len(ps)], alpha=-scale
            )
        start += len(ps)
