"""The architectures a training run draws: built once, traced, cached, run with predicted weights.

Each architecture's module, graph and parameter roles are built on first use and kept in an
:class:`ArchCache`; :func:`predicted_network` runs one with the parameters a hypernetwork predicts
(``torch.func.functional_call``). Seeds are mixed by :func:`seed_of`, so draws are a pure function
of ``(seed, rank, step)``.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.func import functional_call

from hyperinit.archspace import ArchSpec, Backbone, build
from hyperinit.graph.archgraph import ArchGraph
from hyperinit.graph.trace import trace
from hyperinit.hypernet.model import HyperInitializer
from hyperinit.hypernet.roles import ParamRole, assign_roles

__all__ = [
    "ArchCache",
    "BoundNetwork",
    "TrainedArch",
    "bind",
    "move_to",
    "predicted_network",
    "seed_of",
]


@dataclass
class TrainedArch:
    """A built architecture with its cached graph and parameter roles."""

    spec: ArchSpec
    in_chans: int
    module: Backbone
    graph: ArchGraph
    roles: list[ParamRole]
    draw: int
    num_params: int = field(default=0)


def seed_of(*parts: int) -> int:
    """A 62-bit seed mixed from integers (stable across runs and machines)."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFF)) * 1099511628211) % (1 << 62)
    return h


class ArchCache:
    """Built architectures, graphs and roles, least recently used first out."""

    def __init__(self, feature_dim: int, size: int = 128):
        self.feature_dim, self.size = feature_dim, size
        self._items: OrderedDict[tuple[str, int], TrainedArch] = OrderedDict()
        self._num_params: dict[tuple[str, int], int] = {}

    def get(self, spec: ArchSpec, in_chans: int, draw: int, image_size: int) -> TrainedArch:
        key = (spec.key, in_chans)
        if key in self._items:
            self._items.move_to_end(key)
            item = self._items[key]
            return dataclasses.replace(item, draw=draw)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_of(int(spec.key, 16), in_chans) % (1 << 31))
            module = build(spec, in_chans, self.feature_dim)
        module.requires_grad_(False)
        module.train()
        graph = trace(module, torch.zeros(2, in_chans, image_size, image_size))
        item = TrainedArch(
            spec,
            in_chans,
            module,
            graph,
            assign_roles(graph),
            draw,
            sum(p.numel() for p in module.parameters()),
        )
        self._items[key] = item
        self._num_params[key] = item.num_params
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return item

    def num_params(self, spec: ArchSpec, in_chans: int, image_size: int) -> int:
        key = (spec.key, in_chans)
        if key not in self._num_params:
            self.get(spec, in_chans, 0, image_size)
        return self._num_params[key]


class BoundNetwork:
    """``net(x) -> features``: ``module`` run with ``params`` (the rest: its own tensors).
    ``.module`` is there for objectives that hook its layers."""

    def __init__(self, module: Backbone, params: dict[str, Tensor]):
        self.module, self.params = module, params

    def __call__(self, x: Tensor) -> Tensor:
        return functional_call(self.module, self.params, (x,), strict=False)


def bind(arch: TrainedArch, params: dict[str, Tensor]) -> BoundNetwork:
    """``arch`` run with ``params`` (see :class:`BoundNetwork`)."""
    return BoundNetwork(arch.module, params)


def move_to(arch: TrainedArch, device: torch.device) -> None:
    """Move ``arch``'s module to ``device`` (no-op when it is there)."""
    if next(arch.module.parameters()).device != device:
        arch.module.to(device)


def predicted_network(hypernet: HyperInitializer, arch: TrainedArch, seed: int) -> BoundNetwork:
    """``net(x) -> features`` running ``arch`` with parameters predicted by ``hypernet``."""
    move_to(arch, hypernet.device)
    return bind(arch, hypernet.predict_params(arch.graph, roles=arch.roles, seed=seed))
