"""Split a model's parameters into layer groups in depth order.

``"auto"`` gives one group per layer or block: a run of plain layers is split at every weight
layer (a convolution or linear layer starts a group; norms and other 1-D parameters join it), and
each block of a repeated stage (``nn.Sequential`` / ``nn.ModuleList`` / ``nn.ModuleDict`` items
with sub-layers) is one group. A torchvision or timm ResNet-18 gives 10 groups: ``conv1`` (the
stem), ``layer1.0`` ... ``layer4.1`` (8 blocks) and ``fc`` (the head), as in the MetaLR paper.
``"module"`` gives one group per module that owns parameters. Depth order is the order in which
modules are registered, which is the execution order for the usual sequential backbones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from torch import nn

from hyperinit.errors import ParamGroupingError

__all__ = ["GroupSpec", "LayerGroup", "layer_groups"]

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)

GroupSpec = str | Mapping[str, "nn.Module | str | Iterable[nn.Parameter]"]


@dataclass
class LayerGroup:
    """One layer group: a name and its parameters (with their names in the model, if known)."""

    name: str
    params: list[nn.Parameter] = field(default_factory=list)
    param_names: list[str] = field(default_factory=list)


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _param_children(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, c) for n, c in module.named_children() if _has_params(c)]


def _is_leaf(module: nn.Module) -> bool:
    return not _param_children(module)


def _is_stage(module: nn.Module) -> bool:
    """A container whose parameterised items are all composite (blocks made of layers)."""
    if not isinstance(module, _CONTAINERS):
        return False
    kids = _param_children(module)
    return bool(kids) and all(not _is_leaf(c) for _, c in kids)


def _starts_group(leaf: nn.Module) -> bool:
    return any(p.dim() >= 2 for p in leaf.parameters(recurse=False))


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class _AutoGrouper:
    def __init__(self) -> None:
        self.groups: list[LayerGroup] = []
        self.run: LayerGroup | None = None  # the open group of a run of plain layers
        self.seen: set[int] = set()

    def _add(self, group: LayerGroup, module: nn.Module, prefix: str, recurse: bool) -> None:
        for pname, p in module.named_parameters(recurse=recurse):
            if id(p) not in self.seen:
                self.seen.add(id(p))
                group.params.append(p)
                group.param_names.append(_join(prefix, pname))

    def expand(self, module: nn.Module, prefix: str) -> None:
        first = len(self.groups)
        in_container = isinstance(module, _CONTAINERS)
        for name, child in _param_children(module):
            path = _join(prefix, name)
            if _is_leaf(child):
                if self.run is None or _starts_group(child):
                    self.run = LayerGroup(path)
                    self.groups.append(self.run)
                self._add(self.run, child, path, recurse=True)
            elif in_container and not _is_stage(child):
                self.run = None
                group = LayerGroup(path)
                self.groups.append(group)
                self._add(group, child, path, recurse=True)
            else:
                self.run = None
                self.expand(child, path)
        direct = list(module.named_parameters(recurse=False))
        if direct:
            if len(self.groups) == first:  # nothing below: the module is its own group
                self.groups.append(LayerGroup(prefix or "root"))
            # parameters owned directly (e.g. a ViT's class token) join the module's first group
            self._add(self.groups[first], module, prefix, recurse=False)


def _module_groups(model: nn.Module) -> list[LayerGroup]:
    groups, seen = [], set()
    for mname, module in model.named_modules():
        group = LayerGroup(mname or "root")
        for pname, p in module.named_parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                group.params.append(p)
                group.param_names.append(_join(mname, pname))
        if group.params:
            groups.append(group)
    return groups


def _mapping_groups(model: nn.Module | None, spec: Mapping) -> list[LayerGroup]:
    named = dict(model.named_parameters()) if model is not None else {}
    groups, owner = [], {}
    for gname, entry in spec.items():
        group = LayerGroup(str(gname))
        if isinstance(entry, nn.Module):
            items = list(entry.parameters())
            names = [None] * len(items)
        elif isinstance(entry, str):
            if model is None:
                raise ParamGroupingError(
                    f"group {gname!r} is a name pattern ({entry!r}); pass `model=` so that "
                    "parameter names can be matched, or give the parameters or module instead."
                )
            pattern = re.compile(entry)
            names = [n for n in named if pattern.match(n)]
            items = [named[n] for n in names]
        elif isinstance(entry, Iterable):
            items = list(entry)
            names = [None] * len(items)
        else:
            raise ParamGroupingError(
                f"group {gname!r} must be an nn.Module, a regex on parameter names or an iterable "
                f"of parameters, not {type(entry).__name__}."
            )
        for n, p in zip(names, items):
            if not isinstance(p, nn.Parameter):
                raise ParamGroupingError(
                    f"group {gname!r} contains a {type(p).__name__}, expected nn.Parameter."
                )
            if id(p) in owner:
                raise ParamGroupingError(
                    f"a parameter is in both group {owner[id(p)]!r} and group {gname!r}; "
                    "each parameter must belong to exactly one group."
                )
            owner[id(p)] = gname
            group.params.append(p)
            group.param_names.append(n if n is not None else "")
        groups.append(group)
    return groups


def layer_groups(model: nn.Module | None, groups: GroupSpec = "auto") -> list[LayerGroup]:
    """Split ``model``'s parameters into named groups in depth order (the head is the last).

    Args:
        model: the network. May be ``None`` only for a mapping of modules / parameters.
        groups: ``"auto"`` (layers and blocks), ``"module"`` (one group per module owning
            parameters) or a mapping ``{name: module | regex on parameter names | parameters}``
            whose order is taken as the depth order.

    Returns:
        The groups, without empty ones for ``"auto"`` and ``"module"``.

    Raises:
        ParamGroupingError: unknown mode, missing model, overlapping or empty groups.
    """
    if isinstance(groups, str):
        if model is None:
            raise ParamGroupingError(
                f'groups="{groups}" needs the model: pass `model=` (or a mapping of groups).'
            )
        if groups == "auto":
            grouper = _AutoGrouper()
            grouper.expand(model, "")
            result = grouper.groups
        elif groups == "module":
            result = _module_groups(model)
        else:
            raise ParamGroupingError(
                f'unknown groups={groups!r}; use "auto", "module" or a mapping of name to '
                "module / parameter-name regex / parameters."
            )
        result = [g for g in result if g.params]
    elif isinstance(groups, Mapping):
        result = _mapping_groups(model, groups)
        empty = [g.name for g in result if not g.params]
        if empty:
            raise ParamGroupingError(f"groups {empty} have no parameters; remove or fix them.")
    else:
        raise ParamGroupingError(
            f'groups must be "auto", "module" or a mapping, not {type(groups).__name__}.'
        )
    if not result:
        raise ParamGroupingError("the model has no parameters to group.")
    return result
