"""Which parameters `initialize` leaves alone: the prediction head and user exclusions."""

from __future__ import annotations

import re
from collections.abc import Iterable

from torch import nn

from hyperinit.graph.archgraph import ArchGraph

__all__ = ["excluded_parameters", "head_parameters"]


def head_parameters(model: nn.Module, graph: ArchGraph) -> set[str]:
    """Parameter names of the model's prediction head.

    timm models say which module is the classifier (``get_classifier()``); for any other model
    the head is the set of conv / linear / attention layers that reach an output through
    parameter-free, single-path ops (activations, pooling, norms, interpolation), e.g.
    ``fc`` in a ResNet, ``classifier.4`` in an FCN, both auxiliary classifiers of GoogLeNet.
    """
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        try:
            classifier = get_classifier()
        except Exception:
            classifier = None
        if isinstance(classifier, nn.Module):
            ids = {id(p) for p in classifier.parameters()}
            return {n for n, p in model.named_parameters() if id(p) in ids}
    names: set[str] = set()
    for index in graph.output_layers():
        names.update(graph.nodes[index].params)
    return names


def excluded_parameters(names: Iterable[str], patterns: str | Iterable[str] | None) -> set[str]:
    """Names matched by ``patterns``: a parameter name, a module name (its parameters), or a
    regular expression matched in full against the parameter name."""
    if patterns is None:
        return set()
    if isinstance(patterns, str):
        patterns = [patterns]
    pats = list(patterns)
    compiled = []
    for p in pats:
        try:
            compiled.append(re.compile(p))
        except re.error:
            compiled.append(None)
    out = set()
    for name in names:
        for pat, rx in zip(pats, compiled):
            if name == pat or name.startswith(pat + ".") or (rx is not None and rx.fullmatch(name)):
                out.add(name)
                break
    return out
