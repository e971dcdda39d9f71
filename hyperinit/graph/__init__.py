"""Tracing any ``nn.Module`` into an :class:`ArchGraph` of typed ops."""

from hyperinit.graph.archgraph import S_MAX, ArchGraph
from hyperinit.graph.ops import OP_TYPES, VOCAB_VERSION
from hyperinit.graph.recorder import Node
from hyperinit.graph.trace import default_example_input, trace

__all__ = [
    "OP_TYPES",
    "S_MAX",
    "VOCAB_VERSION",
    "ArchGraph",
    "Node",
    "default_example_input",
    "trace",
]
