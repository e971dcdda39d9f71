"""`ArchGraph`: a traced network as a DAG of typed op nodes with their parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hyperinit.graph.ops import OP_INDEX, op_family
from hyperinit.graph.recorder import Node

if TYPE_CHECKING:
    import networkx

__all__ = ["S_MAX", "ArchGraph"]

#: Longest shortest path that still carries a message in the GNN (the seed's s_max).
S_MAX = 50
_UNREACHABLE = 255


@dataclass
class ArchGraph:
    """A network traced into a directed acyclic graph of ops.

    Nodes are in execution order, which is a topological order of the data flow: every edge
    goes from a lower to a higher index. ``param_owner`` maps each bound parameter name to its
    node; ``unbound`` lists the parameters no recorded op consumed (e.g. an auxiliary head that
    did not run).
    """

    nodes: list[Node]
    param_shapes: dict[str, tuple[int, ...]]
    param_owner: dict[str, int]
    unbound: list[str]
    input_shapes: list[tuple[int, ...]]
    traced_as: str = "batch0"
    model_name: str = ""
    s_max: int = S_MAX
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for node in self.nodes:
            if any(i >= node.index for i in node.inputs):
                raise ValueError(f"node {node.index} has an input that is not earlier: not a DAG")

    # -- basic views -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def num_edges(self) -> int:
        return sum(len(n.inputs) for n in self.nodes)

    @cached_property
    def edges(self) -> torch.Tensor:
        """Edges as a ``(2, E)`` long tensor of (source, target) node indices."""
        pairs = [(i, n.index) for n in self.nodes for i in n.inputs]
        if not pairs:
            return torch.zeros(2, 0, dtype=torch.long)
        return torch.tensor(pairs, dtype=torch.long).t().contiguous()

    @cached_property
    def op_ids(self) -> torch.Tensor:
        """Node op types as indices into :data:`hyperinit.graph.ops.OP_TYPES`."""
        return torch.tensor([OP_INDEX[n.op] for n in self.nodes], dtype=torch.long)

    # -- shortest paths ------------------------------------------------------------------------
    @cached_property
    def distances(self) -> np.ndarray:
        """``d[v, u]``: length of the shortest path u -> v, 0 on the diagonal, 255 if none or
        longer than ``s_max``. Computed by dynamic programming in topological order, which is
        exact on a DAG and costs O(N * E) vectorised work."""
        n = len(self.nodes)
        d = np.full((n, n), _UNREACHABLE, dtype=np.uint8)
        limit = min(self.s_max, _UNREACHABLE - 1)
        for node in self.nodes:
            v = node.index
            if node.inputs:
                best = d[node.inputs].min(axis=0) if len(node.inputs) > 1 else d[node.inputs[0]]
                row = best.astype(np.int16) + 1
                row[row > limit] = _UNREACHABLE
                d[v] = row.astype(np.uint8)
            d[v, v] = 0
        return d

    def shortest_path_weights(self) -> torch.Tensor:
        """Dense ``(N, N)`` matrix with ``1 / s_vu`` where ``1 < s_vu <= s_max`` (u -> v), else 0:
        the weights of the seed's MLP_sp messages."""
        d = torch.from_numpy(self.distances.astype(np.float32))
        mask = (d > 1) & (d <= self.s_max)
        return torch.where(mask, 1.0 / d.clamp(min=1), torch.zeros(()))

    # -- structure queries ------------------------------------------------------------------
    def output_layers(self) -> list[int]:
        """Parametric conv / linear / attention nodes that reach an output through ops that are
        neither parametric nor merge paths (add, concat, mul, ...): the network's prediction
        head. A network that ends on a residual stream (a ViT without head) has none."""
        heavy = {n.index for n in self.nodes if n.params and op_family(n.op) in _HEAVY}
        outputs = [n.index for n in self.nodes if n.op == "output"]
        found: list[int] = []
        seen: set[int] = set()
        stack = list(outputs)
        while stack:
            v = stack.pop()
            for u in self.nodes[v].inputs:
                if u in seen:
                    continue
                seen.add(u)
                if u in heavy:
                    found.append(u)
                elif len(self.nodes[u].inputs) <= 1 and not self.nodes[u].params:
                    stack.append(u)
        return sorted(found)

    def depth_fraction(self) -> torch.Tensor:
        """Each node's longest-path depth from the inputs, divided by the graph's depth."""
        depth = np.zeros(len(self.nodes), dtype=np.float32)
        for node in self.nodes:
            if node.inputs:
                depth[node.index] = max(depth[i] for i in node.inputs) + 1
        top = max(float(depth.max()), 1.0)
        return torch.from_numpy(depth / top)

    # -- export ------------------------------------------------------------------------------
    def to_networkx(self) -> networkx.DiGraph:
        """The graph as a :class:`networkx.DiGraph` with node attributes ``op``, ``module``,
        ``func``, ``params``, ``param_shape`` and ``out_shape``."""
        import networkx as nx

        g = nx.DiGraph(model=self.model_name, unbound=list(self.unbound))
        for n in self.nodes:
            g.add_node(
                n.index,
                op=n.op,
                module=n.module,
                func=n.func,
                params=list(n.params),
                shared_params=list(n.shared_params),
                param_shape=n.param_shape,
                out_shape=n.out_shape,
            )
        g.add_edges_from((i, n.index) for n in self.nodes for i in n.inputs)
        return g

    def summary(self) -> str:
        """One line: nodes, edges, parameters bound and unbound."""
        return (
            f"ArchGraph({self.model_name or 'model'}: {len(self.nodes)} nodes, "
            f"{self.num_edges} edges, {len(self.param_owner)} parameters bound, "
            f"{len(self.unbound)} unbound, traced as {self.traced_as})"
        )

    def __repr__(self) -> str:
        return self.summary()

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


_HEAVY = frozenset({"conv", "linear", "attention"})
