"""The C2L objective (Zhou et al., MICCAI 2020, Algorithm 1), reusable on its own.

Three pieces, each usable without :class:`~hyperinit.c2l.C2LPretrainer`:

* :func:`info_nce` -- one InfoNCE term: positives are matching rows of ``key``, negatives are the
  rows of a feature ``queue``; returns the mean cross entropy with the positive at index 0.
* :func:`batch_mixup` -- the seed's batch mixup: *one* lambda ~ Beta(alpha, alpha) and *one*
  permutation, applied to both views.
* :func:`c2l_loss` -- the seed's full loss from student / teacher features: the A term
  (v1A vs v2A), the M term (v1M vs v2M) and the mixed-feature term (v1M vs vm, vm = feature
  mixup of the teacher's v2A with the same lambda and permutation).

Features are compared after L2 normalisation (done here, so raw features may be passed).

Example, inside any training loop that owns a student, a teacher and a queue::

    xm1, xm2, lam, perm = batch_mixup(x1, x2, alpha=1.0, generator=g)
    out = c2l_loss(student(x1), student(xm1), teacher(x2), teacher(xm2), queue.features,
                   lam=lam, perm=perm, temperature=0.07)
    out.loss.backward()
    queue.enqueue(out.keys)            # v2A, v2M, vm: the seed's queue update
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hyperinit.errors import C2LConfigError

__all__ = [
    "C2LLossOutput",
    "batch_mixup",
    "c2l_loss",
    "info_nce",
    "info_nce_logits",
    "mix",
    "sample_lambda",
]


def _check_pair(query: Tensor, key: Tensor, queue: Tensor) -> None:
    if query.dim() != 2 or key.shape != query.shape:
        raise C2LConfigError(
            f"query and key must both be (batch, dim) with the same shape; got "
            f"{tuple(query.shape)} and {tuple(key.shape)}"
        )
    if queue.dim() != 2 or queue.shape[1] != query.shape[1]:
        raise C2LConfigError(
            f"queue must be (length, dim={query.shape[1]}); got {tuple(queue.shape)}"
        )


def info_nce_logits(query: Tensor, key: Tensor, queue: Tensor, temperature: float = 0.07) -> Tensor:
    """Logits ``(batch, 1 + len(queue))``: column 0 is ``<q_j, k_j>``, then ``<q_j, queue_i>``,
    all over ``temperature``. Inputs are L2-normalised here; ``key`` and ``queue`` get no
    gradient."""
    _check_pair(query, key, queue)
    if temperature <= 0:
        raise C2LConfigError(f"temperature must be > 0; got {temperature}")
    q = F.normalize(query.float(), dim=1)
    k = F.normalize(key.detach().float(), dim=1)
    neg = F.normalize(queue.detach().float(), dim=1)
    pos = (q * k).sum(dim=1, keepdim=True)
    return torch.cat([pos, q @ neg.t()], dim=1) / temperature


def info_nce(
    query: Tensor,
    key: Tensor,
    queue: Tensor,
    temperature: float = 0.07,
    *,
    reduction: str = "mean",
) -> Tensor:
    """InfoNCE with the positive ``key[j]`` for ``query[j]`` and the ``queue`` rows as negatives.

    ``query``: (B, D) with gradient; ``key``: (B, D), detached; ``queue``: (N, D), detached.
    All three are L2-normalised here. ``reduction``: ``"mean"``, ``"sum"`` or ``"none"``.
    """
    logits = info_nce_logits(query, key, queue, temperature)
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target, reduction=reduction)


def batch_mixup(
    x_a: Tensor,
    x_b: Tensor,
    alpha: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    fold: bool = True,
) -> tuple[Tensor, Tensor, float, Tensor]:
    """Mix each view with a shuffled copy of itself, with one lambda and one permutation.

    ``x_m = lam * x + (1 - lam) * x[perm]`` for both ``x_a`` and ``x_b`` (same batch size).
    lambda ~ Beta(alpha, alpha), drawn from ``generator`` (reproducible); ``fold`` maps it to
    ``max(lam, 1 - lam)`` as the official code does, so the original image dominates. Returns
    ``(xm_a, xm_b, lam, perm)``.
    """
    if x_a.shape[0] != x_b.shape[0]:
        raise C2LConfigError(
            f"both views need the same batch size; got {x_a.shape[0]} and {x_b.shape[0]}"
        )
    if alpha <= 0:
        raise C2LConfigError(f"mixup_alpha must be > 0; got {alpha}")
    lam = sample_lambda(alpha, generator, fold=fold)
    perm = torch.randperm(x_a.shape[0], generator=generator).to(x_a.device)
    return mix(x_a, lam, perm), mix(x_b, lam, perm.to(x_b.device)), lam, perm


def sample_lambda(
    alpha: float, generator: torch.Generator | None = None, *, fold: bool = True
) -> float:
    """lambda ~ Beta(alpha, alpha), reproducible from ``generator`` (the global torch RNG if
    None): a seed drawn from it drives numpy's Beta sampler."""
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    return max(lam, 1.0 - lam) if fold else lam


def mix(x: Tensor, lam: float, perm: Tensor) -> Tensor:
    """``lam * x + (1 - lam) * x[perm]`` (images or features)."""
    return lam * x + (1.0 - lam) * x[perm]


@dataclass
class C2LLossOutput:
    """The loss and what goes with it.

    ``loss``: mean of the three terms (as the official code; the seed sums them, a constant
    factor). ``terms``: the A, M and mixed-feature terms. ``keys``: (3B, D) normalised
    ``[v2A; v2M; vm]`` to enqueue after the step. ``accuracy``: fraction of rows of the A term
    whose positive logit beats every negative.
    """

    loss: Tensor
    terms: dict[str, Tensor]
    keys: Tensor
    accuracy: Tensor


def c2l_loss(
    v1a: Tensor,
    v1m: Tensor,
    v2a: Tensor,
    v2m: Tensor,
    queue: Tensor,
    *,
    lam: float,
    perm: Tensor,
    temperature: float = 0.07,
) -> C2LLossOutput:
    """The seed's three-term loss (Algorithm 1, lines 12-15).

    ``v1a``, ``v1m``: student features of the augmented and batch-mixed views (with gradient);
    ``v2a``, ``v2m``: teacher features of the other view and its mix (no gradient);
    ``lam``, ``perm``: those :func:`batch_mixup` used, reused for the feature mixup
    ``vm = mix(v2a, lam, perm)`` (on raw features, then normalised, as the official code).
    """
    with torch.no_grad():
        vm = mix(v2a.detach().float(), lam, perm.to(v2a.device))
        k_a = F.normalize(v2a.detach().float(), dim=1)
        k_m = F.normalize(v2m.detach().float(), dim=1)
        k_mix = F.normalize(vm, dim=1)
    logits_a = info_nce_logits(v1a, k_a, queue, temperature)
    target = torch.zeros(logits_a.shape[0], dtype=torch.long, device=logits_a.device)
    terms = {
        "A": F.cross_entropy(logits_a, target),
        "M": info_nce(v1m, k_m, queue, temperature),
        "mix": info_nce(v1m, k_mix, queue, temperature),
    }
    loss = (terms["A"] + terms["M"] + terms["mix"]) / 3.0
    with torch.no_grad():
        accuracy = (logits_a.argmax(dim=1) == 0).float().mean()
    return C2LLossOutput(loss, terms, torch.cat([k_a, k_m, k_mix], dim=0), accuracy)
