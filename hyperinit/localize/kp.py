"""Knowledge preservation (Cai et al., MICCAI 2018, section 2.2, eqs. 4-5).

The L2 distance between the global-average-pooled outputs of chosen layers of a frozen copy of
the network (N_A, the one before attention mining) and of the network being tuned (N_B), on the
images that do not go through mining.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch import Tensor, nn

from hyperinit.errors import LocalizationError

__all__ = ["KP_MODES", "frozen_copy", "gap", "kp_loss"]

#: ``None`` (no KP), ``"vanilla"`` (only a fraction of each batch is mined), ``"features"``
#: (vanilla plus the feature-distance loss of eqs. 4-6)
KP_MODES = (None, "vanilla", "features")


def gap(x: Tensor) -> Tensor:
    """Global average pooling of (N, D, h, w) to (N, D); (N, D) is returned as it is."""
    return x.mean(dim=(-2, -1)) if x.dim() == 4 else x


def kp_loss(layers_a: Sequence[Tensor], layers_b: Sequence[Tensor]) -> Tensor:
    """Eqs. 4-5: ``1/|K| sum_k 1/n sum_i ||g(X_A(k))_i - g(X_B(k))_i||_2`` over the chosen
    layers ``k`` (feature maps or logits) and the ``n`` images given.

    ``layers_a`` come from the frozen network (no gradient flows into them).
    """
    if len(layers_a) != len(layers_b) or not layers_a:
        raise LocalizationError(
            f"kp_loss needs the same layers from both networks; got {len(layers_a)} and "
            f"{len(layers_b)}"
        )
    total = None
    for a, b in zip(layers_a, layers_b):
        if a.shape != b.shape:
            raise LocalizationError(f"KP layer shapes differ: {tuple(a.shape)} vs {b.shape}")
        dist = (gap(a.detach()).float() - gap(b).float()).norm(dim=1).mean()
        total = dist if total is None else total + dist
    assert total is not None
    return total / len(layers_a)


def frozen_copy(net: nn.Module) -> nn.Module:
    """N_A: a copy of ``net`` without gradients whose batch-norm running statistics never change
    (momentum 0), so that it runs in train mode, like N_B, and stays the same network."""
    frozen = copy.deepcopy(net).requires_grad_(False)
    for m in frozen.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.0
    return frozen
