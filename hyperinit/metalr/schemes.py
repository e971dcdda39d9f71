"""Fine-tuning schemes compared in the MetaLR paper, over the same layer groups as MetaLR.

Each function sets ``requires_grad`` on the model's parameters and returns the parameters left
trainable, ready for an optimizer. Layers are numbered from 1 (the stem) to ``d`` (the head) in
the depth order of :func:`hyperinit.metalr.layer_groups`; ResNet-18 has ``d = 10``.

- :func:`last_layer_only`: train the head, freeze the rest.
- :func:`all_layers`: train everything (with one constant rate: the usual baseline).
- :func:`layerwise`: freeze the lowest ``k`` layers (Yosinski et al.'s layer-wise fine-tuning).
- :func:`bidirectional`: freeze layers ``m..n`` and train both ends (the paper's section 2.1).

Frozen layers are excluded from gradients only; BatchNorm statistics in them still update in
train mode (call ``.eval()`` on those modules to freeze them as well).
"""

from __future__ import annotations

from torch import nn

from hyperinit.errors import MetaLRConfigError
from hyperinit.metalr.grouping import GroupSpec, LayerGroup, layer_groups

__all__ = ["all_layers", "bidirectional", "freeze_layers", "last_layer_only", "layerwise"]


def freeze_layers(
    model: nn.Module, frozen: set[int] | range, groups: GroupSpec = "auto"
) -> list[nn.Parameter]:
    """Freeze the layer groups numbered in ``frozen`` (1-based), unfreeze the others.

    Returns:
        The trainable parameters, in depth order.
    """
    layers: list[LayerGroup] = layer_groups(model, groups)
    bad = [i for i in frozen if not 1 <= i <= len(layers)]
    if bad:
        raise MetaLRConfigError(f"layers {bad} do not exist; the model has {len(layers)} layers.")
    trainable = []
    for i, layer in enumerate(layers, start=1):
        keep = i not in frozen
        for p in layer.params:
            p.requires_grad_(keep)
            if keep:
                trainable.append(p)
    return trainable


def _depth(model: nn.Module, groups: GroupSpec) -> int:
    return len(layer_groups(model, groups))


def last_layer_only(model: nn.Module, groups: GroupSpec = "auto") -> list[nn.Parameter]:
    """Train only the last layer group (the classifier)."""
    d = _depth(model, groups)
    return freeze_layers(model, range(1, d), groups)


def all_layers(model: nn.Module, groups: GroupSpec = "auto") -> list[nn.Parameter]:
    """Train all layers."""
    return freeze_layers(model, set(), groups)


def layerwise(model: nn.Module, k: int, groups: GroupSpec = "auto") -> list[nn.Parameter]:
    """Freeze the lowest ``k`` layers (``0 <= k < d``) and train the rest."""
    d = _depth(model, groups)
    if not 0 <= k < d:
        raise MetaLRConfigError(f"k must be in [0, {d - 1}] for a model with {d} layers, got {k}.")
    return freeze_layers(model, range(1, k + 1), groups)


def bidirectional(
    model: nn.Module, m: int, n: int, groups: GroupSpec = "auto"
) -> list[nn.Parameter]:
    """Freeze layers ``m..n`` (1-based, inclusive, ``1 <= m <= n < d``) and train both ends.

    ``m = 1`` is layer-wise fine-tuning of the lowest ``n`` layers; the head (layer ``d``) is
    always trained.
    """
    d = _depth(model, groups)
    if not 1 <= m <= n < d:
        raise MetaLRConfigError(
            f"need 1 <= m <= n < d = {d} (the head is always trained), got m={m}, n={n}."
        )
    return freeze_layers(model, range(m, n + 1), groups)
