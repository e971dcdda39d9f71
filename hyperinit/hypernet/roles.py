"""What each parameter is for, and the scale its predicted value must have.

The hypernetwork's raw output is normalised per parameter (docs/design.md, "Parameter roles and
scales"): weights of convolutions, linear layers and attention projections get zero mean and
standard deviation
``gain / sqrt(fan_in)`` (He/Kaiming scaling, with the variance-preserving gain of the activation
that follows, see ``ACTIVATION_GAIN``); normalisation weights stay near 1 and biases near 0;
learned embeddings (position encodings, class tokens, relative-position tables) get the small
scale ViTs are trained from (0.02).
Vector-like scales with no clear role (layer scale, PReLU slopes, NFNet gains) keep their default
initialisation and are reported as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hyperinit.graph.archgraph import ArchGraph
from hyperinit.graph.ops import ACTIVATIONS, op_family

__all__ = ["ROLES", "ParamRole", "assign_roles"]

#: Role names, in embedding-table order.
ROLES: tuple[str, ...] = ("weight", "bias", "norm_weight", "norm_bias", "embedding", "scale")
ROLE_INDEX = {r: i for i, r in enumerate(ROLES)}

#: Roles the hypernetwork predicts; the rest keep their default initialisation.
PREDICTED_ROLES = frozenset({"weight", "bias", "norm_weight", "norm_bias", "embedding"})

EMBEDDING_STD = 0.02
NORM_WEIGHT_RANGE = 0.1
BIAS_RANGE = 0.02

#: Variance-preserving gains 1 / sqrt(E[act(z)^2]) for z ~ N(0, 1) (Kaiming's derivation,
#: evaluated by quadrature; ReLU gives the familiar sqrt(2), tanh 1.59 close to torch's 5/3).
#: Sigmoid-like gates, softmax and unknown activations keep gain 1.
ACTIVATION_GAIN = {
    "relu": 1.4142,
    "relu6": 1.4142,
    "leaky_relu": 1.4141,
    "prelu": 1.3720,
    "gelu": 1.5335,
    "silu": 1.6765,
    "mish": 1.4868,
    "hardswish": 1.7367,
    "elu": 1.2452,
    "softplus": 1.0419,
    "tanh": 1.5925,
}
#: Ops looked through when searching for the activation that follows a layer (besides norms).
_SKIP_FOR_GAIN = frozenset({"max_pool", "avg_pool", "pad", "interpolate"})


@dataclass(frozen=True)
class ParamRole:
    """How one parameter tensor is predicted."""

    name: str
    node: int
    role: str
    shape: tuple[int, ...]
    fan_in: int
    gain: float

    @property
    def target_std(self) -> float:
        """Standard deviation of the predicted tensor (weights and embeddings)."""
        if self.role == "embedding":
            return EMBEDDING_STD
        return self.gain / math.sqrt(max(self.fan_in, 1))

    @property
    def matrix_shape(self) -> tuple[int, int, int]:
        """``(rows, cols, kernel)`` view used by the decoder: leading singleton dimensions are
        dropped, rows are the first remaining dimension, cols the second, kernel the rest."""
        dims = list(self.shape)
        while len(dims) > 1 and dims[0] == 1:
            dims.pop(0)
        rows = dims[0] if dims else 1
        cols = dims[1] if len(dims) > 1 else 1
        kernel = math.prod(dims[2:]) if len(dims) > 2 else 1
        return rows, cols, kernel


def _vector_like(shape: tuple[int, ...]) -> bool:
    return sum(1 for s in shape if s > 1) <= 1


def _role(param: str, shape: tuple[int, ...], family: str, primary: tuple[int, ...]) -> str:
    leaf = param.rsplit(".", 1)[-1].lower()
    is_bias = "bias" in leaf and _vector_like(shape)
    if family == "norm":
        if not _vector_like(shape):
            return "weight"
        return "norm_bias" if is_bias else "norm_weight"
    if is_bias:
        return "bias"
    if family in ("conv", "linear", "attention"):
        # the largest tensor is the weight; a per-channel vector beside it is a scale (the
        # gain of NF-Nets' scaled weight standardisation, weight norm's weight_g, ...)
        if shape != primary and _vector_like(shape):
            return "scale"
        return "weight"
    if family in ("embedding", "add", "concat"):
        return "embedding"
    if _vector_like(shape):
        return "scale"
    return "weight"


def _gain(graph: ArchGraph, node: int, successors: list[list[int]]) -> float:
    """The gain of the first activation downstream (within a few hops, looking through norms,
    pooling and padding), else 1."""
    frontier = successors[node]
    for _ in range(3):
        nxt: list[int] = []
        for v in frontier:
            op = graph.nodes[v].op
            if op in ACTIVATIONS:
                return ACTIVATION_GAIN.get(op, 1.0)
            if op in _SKIP_FOR_GAIN or op_family(op) == "norm":
                nxt.extend(successors[v])
        frontier = nxt
    return 1.0


def _fan_in(shape: tuple[int, ...], node_attrs: dict) -> int:
    if len(shape) < 2:
        return shape[0] if shape else 1
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    if node_attrs.get("transposed"):
        stride = node_attrs.get("stride", 1)
        stride_prod = math.prod(stride) if isinstance(stride, (tuple, list)) else int(stride)
        return max(1, shape[0] * receptive // max(stride_prod, 1))
    return shape[1] * receptive


def assign_roles(graph: ArchGraph) -> list[ParamRole]:
    """The role, fan-in and gain of every bound parameter, in graph order."""
    successors: list[list[int]] = [[] for _ in graph.nodes]
    for node in graph.nodes:
        for u in node.inputs:
            successors[u].append(node.index)
    roles: list[ParamRole] = []
    for node in graph.nodes:
        family = op_family(node.op)
        gain = None
        for name in node.params:
            shape = graph.param_shapes[name]
            role = _role(name, shape, family, node.param_shape)
            if role == "weight" and gain is None:
                gain = _gain(graph, node.index, successors)
            roles.append(
                ParamRole(
                    name=name,
                    node=node.index,
                    role=role,
                    shape=shape,
                    fan_in=_fan_in(shape, node.attrs),
                    gain=gain if (role == "weight" and gain is not None) else 1.0,
                )
            )
    return roles
