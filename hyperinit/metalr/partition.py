"""The base optimizer's parameters partitioned by MetaLR layer group.

:func:`optimizer_layer_groups` matches the layer groups of the model to the parameters the base
optimizer trains; :func:`regroup` splits the base optimizer's parameter groups so that each one
belongs to exactly one layer group (tagged with :data:`~hyperinit.metalr.rates.GROUP_KEY`).
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.optim import Optimizer

from hyperinit.errors import ParamGroupingError
from hyperinit.metalr.grouping import GroupSpec, LayerGroup, layer_groups
from hyperinit.metalr.rates import GROUP_KEY

__all__ = ["layer_params", "optimizer_layer_groups", "regroup"]


def optimizer_layer_groups(
    base: Optimizer, model: nn.Module | None, groups: GroupSpec
) -> tuple[list[LayerGroup], bool]:
    """The layer groups over ``base``'s parameters, and whether they come from ``model``
    (without a model each parameter group of ``base`` is one layer group)."""
    base_params = [p for g in base.param_groups for p in g["params"]]
    in_opt = {id(p) for p in base_params}
    if model is None and isinstance(groups, str) and groups == "auto":
        return [
            LayerGroup(f"group{i}", list(g["params"]))
            for i, g in enumerate(base.param_groups)
            if g["params"]
        ], False
    layers = layer_groups(model, groups)
    is_mapping = not isinstance(groups, str)
    kept = []
    for g in layers:
        idx = [i for i, p in enumerate(g.params) if id(p) in in_opt]
        if is_mapping and len(idx) != len(g.params):
            raise ParamGroupingError(
                f"group {g.name!r} has parameters that base_optimizer does not optimise; "
                "build the base optimizer on all of them or leave them out of the group."
            )
        if idx:
            names = [g.param_names[i] for i in idx] if g.param_names else []
            kept.append(LayerGroup(g.name, [g.params[i] for i in idx], names))
    covered = {id(p) for g in kept for p in g.params}
    missing = [p for p in base_params if id(p) not in covered]
    if missing:
        raise ParamGroupingError(
            f"{len(missing)} parameter(s) of base_optimizer are in no layer group (shapes "
            f"{[tuple(p.shape) for p in missing[:3]]}...); pass the model they belong to, "
            "or add them to the groups mapping."
        )
    return kept, True


def regroup(base: Optimizer, layers: list[LayerGroup]) -> None:
    """Split ``base``'s groups so that each belongs to exactly one layer group (in place:
    whoever holds the ``param_groups`` list sees the new groups)."""
    owner = {id(p): gi for gi, g in enumerate(base.param_groups) for p in g["params"]}
    new_groups: list[dict[str, Any]] = []
    for j, layer in enumerate(layers):
        by_base: dict[int, list[nn.Parameter]] = {}
        for p in layer.params:
            by_base.setdefault(owner[id(p)], []).append(p)
        for gi in sorted(by_base):
            skip = ("params", "param_names")
            options = {k: v for k, v in base.param_groups[gi].items() if k not in skip}
            options["params"] = by_base[gi]
            options[GROUP_KEY] = j
            new_groups.append(options)
    base.param_groups[:] = new_groups


def layer_params(param_groups: list[dict[str, Any]], n: int) -> list[list[nn.Parameter]]:
    """The parameters of each of the ``n`` layer groups, from the tagged parameter groups."""
    params: list[list[nn.Parameter]] = [[] for _ in range(n)]
    for g in param_groups:
        params[g[GROUP_KEY]].extend(g["params"])
    return params
