"""Self-supervised score of predicted networks, with no training of those networks.

For each architecture the hypernetwork predicts the weights once; the network then runs on the
objective's task on images it was not trained on. ``probe_steps > 0`` first fits a fresh task
head on the frozen predicted features (a linear-probe style measure that does not depend on the
head trained alongside a hypernetwork), then scores on other images.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from hyperinit.archspace import ArchSpec
from hyperinit.hypernet.model import HyperInitializer
from hyperinit.training.archs import ArchCache, predicted_network, seed_of
from hyperinit.training.data import ImageBank, normalize, to_channels
from hyperinit.training.objectives import Objective, create_objective

__all__ = ["evaluate_objective"]


def evaluate_objective(
    hypernet: HyperInitializer,
    objective: Objective | str,
    specs: Sequence[ArchSpec],
    bank: ImageBank,
    *,
    in_chans: int = 1,
    batches: int = 4,
    batch_size: int = 64,
    image_size: int = 48,
    probe_steps: int = 0,
    probe_lr: float = 3e-3,
    seed: int = 0,
    options: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Per architecture: mean objective loss and score on ``batches`` batches of ``bank``.

    ``objective`` is a trained objective (its head is used, on a copy: the original and its
    queue stay untouched) or a name (a fresh head; ``options`` as for
    :func:`~hyperinit.training.create_objective`, e.g. the distill teacher). With
    ``probe_steps`` a fresh head is fitted on the frozen features first (images drawn from a
    stream disjoint from the scoring one).
    """
    name = objective if isinstance(objective, str) else objective.name
    dim = 128 if isinstance(objective, str) else objective.feature_dim
    cache = ArchCache(dim, size=4)
    device = hypernet.device
    results = []
    for i, spec in enumerate(specs):
        arch = cache.get(spec, in_chans, seed_of(seed, i), image_size)
        with torch.no_grad():
            base = predicted_network(hypernet, arch, seed + i)

        def frozen(x: torch.Tensor, base: Any = base) -> torch.Tensor:
            with torch.no_grad():
                return base(x)

        frozen.module = base.module  # type: ignore[attr-defined]  # for objectives that hook it

        if probe_steps > 0 or isinstance(objective, str):
            torch.manual_seed(seed_of(seed, i, 5) % (1 << 31))
            obj = create_objective(name, dim, options=options).to(device)
        else:
            obj = copy.deepcopy(objective)
        if probe_steps > 0:
            opt = torch.optim.Adam(obj.parameters(), lr=probe_lr)
            for step in range(probe_steps):
                gen = torch.Generator().manual_seed(seed_of(seed, i, step, 7))
                x = normalize(to_channels(bank.batch(batch_size, image_size, gen), in_chans))
                out = obj(frozen, x.to(device), gen)
                opt.zero_grad()
                out.loss.backward()
                opt.step()
        losses, scores = [], []
        with torch.no_grad():
            for b in range(batches):
                gen = torch.Generator().manual_seed(seed_of(seed, i, b, 11))
                x = normalize(to_channels(bank.batch(batch_size, image_size, gen), in_chans))
                out = obj(frozen, x.to(device), gen)
                losses.append(out.loss.item())
                scores.append(out.score.item())
        results.append(
            {
                "arch": str(spec),
                "family": spec.family,
                "params": arch.num_params,
                "loss": sum(losses) / len(losses),
                "score": sum(scores) / len(scores),
            }
        )
    return results
